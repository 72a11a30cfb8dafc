"""The ``babysit`` command line: the same Client calls as Python and the dashboard.

    babysit ls | nudge RUN lr=0.05 lr*=0.5 1-momentum*=0.5 | pause RUN | resume RUN | stop RUN
    babysit rollback RUN DAY [k=v ...] | fork RUN [--day D] [k=v ...] | restart RUN [--day D]
    babysit metrics RUN | events RUN | checkpoints RUN
    babysit run -- python train.py | demo | ui
    babysit exploit TARGET DONOR DAY [k=v ...] | retest RUN
    babysit study create NAME ... -- python train.py | launch | run | list | show | best
    babysit study decisions NAME | approve ID | veto ID | autopilot NAME MODE | stop NAME
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd
import sqlalchemy

from babysit import monitor
from babysit.client import Client
from babysit.errors import BabysitError
from babysit.format import fmt, fmt_hp, local_time, nudge_summary, terminal_safe
from babysit.hparams import describe, parse_assignments, parse_nudge
from babysit.launcher import command_line, process_env, process_start_time
from babysit.launchers import make_launcher

#: epoch-second columns that text output shows as local clock times (--json keeps seconds)
_TIME_COLUMNS = ("time", "created", "ended", "decided")


def _client(args: argparse.Namespace, *, create: bool = False) -> Client:
    """The Client of ``--root``/``--store-url``, with run statuses brought up to date (the
    monitor step). Only the verbs that start something may create a store: a read on a
    missing store says so instead of making an empty one appear."""
    client = Client(args.root, store_url=args.store_url, source="cli", create=create,
                    launcher=_launcher(args))
    client.check_runs()
    return client


def _launcher(args: argparse.Namespace) -> Any:
    """The launcher the verb's options ask for (--launcher, --ray-address, --num-cpus,
    --num-gpus); None leaves the choice to $BABYSIT_LAUNCHER (local by default)."""
    kind = getattr(args, "launcher", None)
    address = getattr(args, "ray_address", None)
    cpus, gpus = getattr(args, "num_cpus", None), getattr(args, "num_gpus", None)
    if kind is None and (address or cpus is not None or gpus is not None):
        kind = "ray"        # Ray's options name the launcher they are for
    if kind is None:
        return None
    if kind == "local" and (address or cpus is not None or gpus is not None):
        raise ValueError("--ray-address, --num-cpus and --num-gpus are for --launcher ray")
    return make_launcher(kind, ray_address=address, num_cpus=cpus, num_gpus=gpus)


def _started(handle: Any) -> str:
    """How a started process is named to the user: its pid, or its Ray job."""
    return f"pid {handle}" if isinstance(handle, int) else f"Ray job {handle.job}"


def _out(text: str) -> None:
    """Print a line of CLI text: names typed by anyone cannot steer the terminal."""
    print(terminal_safe(text, newlines=True))


def _cell(value: Any) -> Any:
    if isinstance(value, Mapping | list | tuple):
        value = json.dumps(value, sort_keys=True, default=str)
    return terminal_safe(value) if isinstance(value, str) else value


def _show(df: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        # exact values (epoch seconds); JSON escapes control characters itself
        print(df.to_json(orient="records", default_handler=str))
        return
    if df.empty:
        print("(none)")
        return
    df = df.copy()
    for column in _TIME_COLUMNS:
        if column in df.columns:
            df[column] = df[column].map(local_time)
    df = df.map(_cell).rename(columns=lambda c: terminal_safe(c))
    with pd.option_context("display.max_rows", 500, "display.max_columns", 30,
                           "display.width", 200, "display.max_colwidth", 60):
        print(df.to_string(index=False))


def _at(step: int | None) -> str:
    return f" at step {step}" if step is not None else ""


def _now(hp: Mapping[str, Any], effective: Mapping[str, Any]) -> str:
    """What the optimizer uses now, with the schedule's part when it differs from hp."""
    return "  ".join(describe(key, effective.get(key), hp.get(key))
                     for key in ("lr", "momentum") if key in effective or key in hp)


def cmd_ls(args: argparse.Namespace) -> int:
    df = _client(args).runs(project=args.project, status=args.status)
    if not args.json and not df.empty:
        df = df.assign(now=[_now(h, e) for h, e in zip(df["hp"], df["effective"], strict=True)],
                       hp=df["hp"].map(fmt_hp),
                       heartbeat_age=df["heartbeat_age"].map(
                           lambda a: "" if a is None or pd.isna(a) else f"{a:.0f}s"),
                       parent=[f"{p}@{d}" if p is not None else "" for p, d in
                               zip(df["parent_id"], df["parent_day"], strict=True)])
        # one vocabulary of days: the store's "day" is the last day saved (0: none yet)
        df = df.rename(columns={"day": "days_saved"})[
            ["id", "name", "project", "status", "days_saved", "step", "now", "hp", "parent",
             "heartbeat_age"]]
    _show(df, args.json)
    return 0


def cmd_nudge(args: argparse.Namespace) -> int:
    parts = parse_nudge(args.values)
    result = _client(args).nudge(args.run, parts["hp"], scale=parts["scale"],
                                 scale_1m=parts["scale_1m"], group=args.group, new=args.new,
                                 wait=not args.no_wait, timeout=args.timeout)
    if result.status == "pending":
        _out(f"run {result.run_id}: nudge queued (command {result.id})")
    else:
        _out(f"run {result.run_id}: {nudge_summary(result.detail, result.step)}")
    return 0


def _simple(action: str):
    def handler(args: argparse.Namespace) -> int:
        result = getattr(_client(args), action)(args.run, wait=not args.no_wait,
                                                timeout=args.timeout)
        _out(f"run {result.run_id}: {action} {result.status}{_at(result.step)}")
        return 0
    return handler


def cmd_rollback(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    result = _client(args).rollback(args.run, args.day, hp=values, wait=not args.no_wait,
                                    timeout=args.timeout)
    _out(f"run {result.run_id}: rolled back to the end of day {args.day} ({result.status})")
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    child = _client(args).fork(args.run, args.day, hp=values, name=args.name)
    _out(f"run {child}: forked from run {args.run} at the end of " +
         (f"day {args.day}" if args.day is not None else "its latest saved day"))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    client = _client(args)
    handle = client.restart(args.run, day=args.day)
    _out(f"run {client.run(args.run).id}: restarted ({_started(handle)})")
    return 0


def cmd_console(args: argparse.Namespace) -> int:
    client = _client(args)
    text = client.console(args.run, lines=args.lines)
    if text is None:
        _out(f"run {client.run(args.run).id}: no console output saved (started in a notebook?)")
        return 1
    _out(text)
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    df = _client(args).metrics(args.run, args.name or None,
                               include_superseded=args.include_superseded)
    _show(df.tail(args.tail) if args.tail else df, args.json)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    _show(_client(args).events(args.run), args.json)
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    df = _client(args).checkpoints(args.run, include_superseded=args.include_superseded)
    if not args.json and not df.empty:
        df = df.assign(metrics=df["metrics"].map(
            lambda m: " ".join(f"{k}={fmt(v)}" for k, v in m.items()
                               if isinstance(v, int | float))), hp=df["hp"].map(fmt_hp))
    _show(df, args.json)
    return 0


def cmd_note(args: argparse.Namespace) -> int:
    client = _client(args)
    client.set_note(args.run, " ".join(args.text))
    print(f"run {client.run(args.run).id}: note {'cleared' if not args.text else 'saved'}")
    return 0


def cmd_tag(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.run(args.run)
    tags = list(record.tags)
    for change in args.changes:
        if change.startswith("-"):
            tags = [t for t in tags if t != change[1:]]
        else:
            tags.append(change.removeprefix("+"))
    tags = client.set_tags(record.id, tags)
    print(f"run {record.id}: tags {' '.join(tags) if tags else '(none)'}")
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    client = _client(args, create=True)
    on_cluster = getattr(client.launcher, "kind", "local") != "local"
    run_id = client.launch(argv, project=args.project, name=args.name, day=args.day,
                           detach=args.detach or on_cluster)
    if on_cluster:      # a job on the cluster: nothing to supervise from this terminal
        job = (client.run(run_id).launcher or {}).get("job")
        _out(f"run {run_id}: submitted as Ray job {job}; its output: babysit console "
             f"{run_id}, or the Ray dashboard")
        return 0
    if args.detach:
        _out(f"run {run_id}: started in the background; log in "
             f"{client.store.root / 'runs' / str(run_id) / 'process.log'}")
        return 0
    # Supervised in the foreground: the script's output stays on this terminal.
    record = client.run(run_id)
    env = process_env(run_id, record.launch or {}, client.store.root, client._store_url)
    proc = subprocess.Popen(command_line(record.launch, run_id), env=env)
    client.store.update_run(run_id, only_if_status=("starting",), pid=proc.pid,
                            pid_start=process_start_time(proc.pid), host=socket.gethostname())
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = proc.wait()
    after = client.run(run_id)
    if after.live:
        # this process saw the exit code: the crash reason says it
        monitor.mark_crashed(client.store, after,
                             monitor.gone_reason(after, exit_code=code))
    elif after.status == "crashed" and code and f"code {code}" not in (after.error or ""):
        # a script that raised SystemExit(N) without `with run:` (not through sys.exit, which
        # babysit wraps): its trainer could not see N (atexit is not told), this process can
        client.store.update_run(run_id, error=f"{after.error or 'crashed'}; the process exited "
                                              f"with code {code}")
    return code


def cmd_exploit(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    result = _client(args).exploit(args.target, args.donor, args.day, hp=values,
                                   wait=not args.no_wait, timeout=args.timeout, reason=args.reason)
    _out(f"run {result.run_id}: exploit of run {args.donor} at the end of day {args.day} {result.status}"
         f"{_at(result.step)}" + (f" ({fmt_hp(values)})" if values else ""))
    return 0


def _print_retest(report: Any) -> None:
    _out(report.summary)
    for probe in report.probes:
        value = "-" if probe.value is None else f"{probe.value:.4g}"
        what = "control (unchanged)" if probe.control else fmt_hp(probe.hp)
        _out(f"  run {probe.run_id:>5}  {probe.status:<9} {report.objective}={value:<10} {what}")


def cmd_retest(args: argparse.Namespace) -> int:
    client = _client(args)
    if not args.report:
        retest_id = client.retest(args.run, probes=args.probes, days=args.days,
                                  factor=args.factor, objective=args.objective,
                                  direction=args.direction)
        _out(f"retest {retest_id} of run {args.run}: probes started")
    report = client.retest_report(args.run)
    deadline = time.monotonic() + args.timeout
    while args.wait and not report.done and time.monotonic() < deadline:
        time.sleep(1.0)
        client.check_runs()
        report = client.retest_report(args.run)
    _print_retest(report)
    return 0


# ---------------------------------------------------------------------- study verbs
def _option_value(text: str) -> Any:
    """A strategy option's value: JSON when it parses (numbers, lists), else the text."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def cmd_study_create(args: argparse.Namespace) -> int:
    from pathlib import Path

    argv = list(args.command)
    if not argv:
        raise ValueError("give the trial's command after --, e.g. "
                         "babysit study create NAME ... -- python train.py")
    options = {}
    for item in args.option or []:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--option takes KEY=VALUE, got {item!r}")
        options[key.strip()] = _option_value(text.strip())
    space: Any = args.space
    if not Path(space).exists() and space.lstrip().startswith("{"):
        space = json.loads(space)       # an inline JSON spec
    budget = {k: v for k, v in (("runs", args.runs), ("days", args.days),
                                ("parallel", args.parallel)) if v is not None}
    client = _client(args, create=True)
    study_id = client.create_study(
        args.name, objective=args.objective, direction=args.direction, space=space,
        strategy={"kind": args.strategy, **options}, budget=budget, command=argv,
        stopping=args.stop or [], autopilot=args.autopilot, project=args.project,
        parent=args.parent, seed=args.seed)
    _out(f"study {study_id} ({args.name}) created")
    if args.launch:
        pid = client.launch_study(study_id)
        _out(f"study {args.name}: orchestrator started (pid {pid}); log in "
             f"{client.store.root / 'studies' / str(study_id) / 'orchestrator.log'}")
    else:
        _out(f"start it with: babysit study launch {args.name}")
    return 0


def cmd_study_launch(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.study(args.name)
    if args.foreground:
        return cmd_study_run(args)
    pid = client.launch_study(record.id)
    _out(f"study {record.name}: orchestrator started (pid {pid}); log in "
         f"{client.store.root / 'studies' / str(record.id) / 'orchestrator.log'}")
    return 0


def cmd_study_run(args: argparse.Namespace) -> int:
    from babysit.study.orchestrator import Orchestrator

    status = Orchestrator(_client(args), args.name).run(poll_s=args.poll)
    _out(f"study {args.name}: {status}")
    return 0


def cmd_study_list(args: argparse.Namespace) -> int:
    df = _client(args).studies()
    if not args.json and not df.empty:
        df = df.assign(best=df["best"].map(lambda v: "" if pd.isna(v) else f"{v:.4g}"),
                       runs=[f"{r}/{b}" for r, b in zip(df["runs"], df["budget_runs"],
                                                         strict=True)])
        df = df[["id", "name", "status", "strategy", "autopilot", "objective", "direction",
                 "runs", "live", "best", "best_run", "orchestrator"]]
    _show(df, args.json)
    return 0


def _runs_table(df: pd.DataFrame) -> pd.DataFrame:
    df = df.drop(columns=["hp", "created", "ended"])
    for column in ("objective", "best"):
        df[column] = df[column].map(lambda v: "" if pd.isna(v) else f"{v:.4g}")
    return df


def cmd_study_show(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.study(args.name)
    runs = client.study_runs(record.id)
    if args.json:
        print(json.dumps({"study": record.__dict__, "runs": json.loads(
            runs.to_json(orient="records", default_handler=str))}, default=str))
        return 0
    alive = "alive" if client.orchestrator_alive(record) else "not running"
    _out(f"study {record.id} {record.name} ({record.status}; orchestrator {alive})")
    _out(f"  objective: {record.objective} ({record.direction})   project: {record.project}")
    _out(f"  strategy: {json.dumps(record.strategy)}   autopilot: {record.autopilot}")
    _out(f"  budget: {json.dumps(record.budget)}   stopping: {json.dumps(record.stopping)}")
    _out(f"  space: {json.dumps(record.space)}")
    _out(f"  command: {' '.join([record.command['executable'], *record.command['argv']])}")
    _show(_runs_table(runs), False)
    return 0


def cmd_study_best(args: argparse.Namespace) -> int:
    client = _client(args)
    record = client.study(args.name)
    best = client.study_best(record.id)
    if args.json:
        print(json.dumps(best, default=str))
    elif best is None:
        _out(f"study {record.name}: no run has a {record.objective} yet")
    else:
        _out(f"study {record.name}: best run {best['id']} ({best['name']}, {best['status']}): "
             f"{record.objective} {best['best']:.4g} at day {best['best_day']}; "
             f"{fmt_hp(best['hp'])}")
    return 0


def cmd_study_decisions(args: argparse.Namespace) -> int:
    df = _client(args).decisions(args.name, status=args.status)
    if not args.json and not df.empty:
        df = df[["id", "run_id", "kind", "status", "donor", "donor_day", "reason",
                 "created", "decided_by", "error"]]
    _show(df, args.json)
    return 0


def _decide(verb: str):
    def handler(args: argparse.Namespace) -> int:
        record = getattr(_client(args), verb)(args.id)
        _out(f"decision {record.id} ({record.kind} of run {record.run_id}): {record.status}")
        return 0
    return handler


def cmd_study_autopilot(args: argparse.Namespace) -> int:
    _client(args).set_autopilot(args.name, args.mode)
    _out(f"study {args.name}: autopilot {args.mode}")
    return 0


def cmd_study_stop(args: argparse.Namespace) -> int:
    stopped = _client(args).stop_study(args.name, timeout=args.timeout)
    _out(f"study {args.name}: stopped" +
         (f" with runs {', '.join(map(str, stopped))}" if stopped else ""))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from babysit.ui.server import check_port, stopped_by_signals

    if not args.no_ui:
        check_port(args.address, args.port)     # before any run exists: nothing to clean up
    with stopped_by_signals():
        client = _client(args, create=True)
        # --epochs 0: the demo trains until stopped, so its controls are live whenever
        # someone comes back to the dashboard
        argv = [sys.executable, "-m", "babysit.demo", "--day", args.day, "--pace",
                str(args.pace), "--epochs", "0"]
        if not args.no_ui:
            # --watch: it (and its forks) stop once this dashboard is gone, even SIGKILLed
            import psutil

            me = psutil.Process()
            argv += ["--watch", f"{me.pid}:{me.create_time()!r}"]
        run_id = client.launch(argv, project="demo", detach=True)
        print(f"demo run {run_id} started; log: "
              f"{client.store.root / 'runs' / str(run_id) / 'process.log'}", flush=True)
        if args.no_ui:
            print(f"watch it with: babysit ls; steer it with: babysit nudge {run_id} lr=0.1; "
                  f"end it with: babysit stop {run_id}")
            return 0
        try:
            return _serve(args, extra_env={"BABYSIT_OPEN_RUN": str(run_id)})
        except KeyboardInterrupt:
            return 0
        finally:
            # the demo lives as long as its dashboard: no training left behind, orphaned
            _stop_demo(client, run_id)


def _stop_demo(client: Client, run_id: int) -> None:
    """Stop the demo run (a command, then SIGTERM/SIGKILL if it does not stop in time)."""
    try:
        if client.run(run_id).live:
            client.stop(run_id, wait=True, timeout=15.0, reason="babysit demo ended")
            print(f"demo run {run_id} stopped (restart it with: babysit restart {run_id})",
                  flush=True)
        # "stopped" is written before the process has flushed and exited: wait for that too
        record, deadline = client.run(run_id), time.monotonic() + 15.0
        while monitor.run_alive(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        if monitor.run_alive(record):
            client.terminate(run_id)
    except KeyboardInterrupt:        # impatient: a second Ctrl-C ends the process now
        client.terminate(run_id)
    except BabysitError as exc:
        print(f"babysit: demo run {run_id}: {exc}", file=sys.stderr)


def cmd_ui(args: argparse.Namespace) -> int:
    from babysit.ui.server import check_port, stopped_by_signals

    check_port(args.address, args.port)
    with stopped_by_signals():
        try:
            return _serve(args, extra_env={})
        except KeyboardInterrupt:
            return 0


def _serve(args: argparse.Namespace, extra_env: dict[str, str]) -> int:
    from babysit.ui.server import serve

    # the dashboard may be the first thing started in a folder: it opens (creates) the store
    return serve(_client(args, create=True).store.root, address=args.address, port=args.port,
                 store_url=args.store_url, extra_env=extra_env, ssl_cert=args.ssl_cert,
                 ssl_key=args.ssl_key)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babysit", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default=None,
                        help="store folder (default: $BABYSIT_ROOT or ./checkpoints)")
    parser.add_argument("--store-url", default=os.environ.get("BABYSIT_STORE_URL"),
                        help="SQLAlchemy URL of another database, e.g. PostgreSQL "
                             "(default: $BABYSIT_STORE_URL or the SQLite file in the root)")
    sub = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    def verb(name: str, handler: Any, help_: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_, description=help_)
        p.set_defaults(handler=handler)
        return p

    def launching(p: argparse.ArgumentParser) -> None:
        p.add_argument("--launcher", default=None, choices=["local", "ray"],
                       help="where run processes start (default: $BABYSIT_LAUNCHER or local)")
        p.add_argument("--ray-address", default=None,
                       help="the Ray dashboard (Jobs API) address, e.g. http://head:8265 "
                            "(default: $BABYSIT_RAY_ADDRESS); implies --launcher ray")
        p.add_argument("--num-cpus", type=float, default=None,
                       help="CPUs each Ray job asks for (default: $BABYSIT_RAY_NUM_CPUS or 1)")
        p.add_argument("--num-gpus", type=float, default=None,
                       help="GPUs each Ray job asks for (default: $BABYSIT_RAY_NUM_GPUS or 0)")

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-wait", action="store_true",
                       help="queue the command and return without waiting for the run")
        p.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait for the run to apply it (default 60)")

    p = verb("ls", cmd_ls, "list runs")
    p.add_argument("--project")
    p.add_argument("--status")
    p.add_argument("--json", action="store_true", help="print JSON records")

    p = verb("nudge", cmd_nudge, "change hyperparameters of a running run: nudge RUN lr=0.05, "
             "lr*=0.5 (scale what the optimizer uses now), 1-momentum*=0.5 (more momentum)")
    p.add_argument("run")
    p.add_argument("values", nargs="+", metavar="key=value|key*=factor|1-key*=factor")
    p.add_argument("--group", type=int, default=None,
                   help="change only this param group (index over all optimizers' groups)")
    p.add_argument("--new", action="store_true",
                   help="allow a key that is neither in the run's config nor an optimizer key")
    waiting(p)
    for name in ("pause", "resume", "stop"):
        p = verb(name, _simple(name), f"{name} a run at its next step")
        p.add_argument("run")
        waiting(p)

    p = verb("rollback", cmd_rollback, "continue a run from the end of an earlier day")
    p.add_argument("run")
    p.add_argument("day", type=int)
    p.add_argument("values", nargs="*", metavar="key=value")
    waiting(p)

    p = verb("fork", cmd_fork, "start a new run from a day of another run, with overrides")
    p.add_argument("run")
    p.add_argument("--day", type=int, default=None, help="day to start from (default: latest)")
    p.add_argument("--name", default=None)
    p.add_argument("values", nargs="*", metavar="key=value")
    launching(p)

    p = verb("restart", cmd_restart, "new process for a crashed or stopped run")
    p.add_argument("run")
    p.add_argument("--day", type=int, default=None, help="day to start from (default: latest)")
    launching(p)

    p = verb("console", cmd_console, "print the tail of a run's console output (local log or "
             "Ray job logs)")
    p.add_argument("run")
    p.add_argument("--lines", type=int, default=50, help="how many lines (default 50)")

    p = verb("note", cmd_note, "set a run's free-text note: note RUN some text (none clears it)")
    p.add_argument("run")
    p.add_argument("text", nargs="*")

    p = verb("tag", cmd_tag, "add or remove tags of a run: tag RUN +baseline -old")
    p.add_argument("run")
    p.add_argument("changes", nargs=argparse.REMAINDER, metavar="+TAG|-TAG")

    p = verb("metrics", cmd_metrics, "print a run's metric rows")
    p.add_argument("run")
    p.add_argument("--name", action="append", help="only this metric (repeatable)")
    p.add_argument("--tail", type=int, default=0, help="only the last N rows")
    p.add_argument("--include-superseded", action="store_true")
    p.add_argument("--json", action="store_true")

    p = verb("events", cmd_events, "print a run's events (nudges, rollbacks, forks, ...)")
    p.add_argument("run")
    p.add_argument("--json", action="store_true")

    p = verb("checkpoints", cmd_checkpoints, "print a run's day checkpoints")
    p.add_argument("run")
    p.add_argument("--include-superseded", action="store_true")
    p.add_argument("--json", action="store_true")

    p = verb("run", cmd_run, "launch a script as a babysat run: babysit run -- python train.py")
    p.add_argument("--project", default=None)
    p.add_argument("--name", default=None)
    p.add_argument("--day", default=None, help="day length if the script's init() gives none")
    p.add_argument("--detach", action="store_true", help="start in the background and return")
    launching(p)
    p.add_argument("command", nargs=argparse.REMAINDER)

    p = verb("exploit", cmd_exploit,
             "copy a day of another run into a running run: exploit TARGET DONOR DAY [k=v]")
    p.add_argument("target", help="the running run that takes the weights")
    p.add_argument("donor", help="the run whose day checkpoint is copied")
    p.add_argument("day", type=int)
    p.add_argument("values", nargs="*", metavar="key=value")
    p.add_argument("--reason", default=None, help="why, for the event log")
    waiting(p)

    p = verb("retest", cmd_retest, "fork short probes around a run's hyperparameters and report "
             "whether its setting is still the best")
    p.add_argument("run")
    p.add_argument("--probes", type=int, default=4, help="probes besides the control (default 4)")
    p.add_argument("--days", type=int, default=1, help="days each probe trains (default 1)")
    p.add_argument("--factor", type=float, default=2.0,
                   help="how far a probe moves a hyperparameter on its scale (default 2)")
    p.add_argument("--objective", default=None,
                   help="metric to compare (default: the run's study's, else val_loss)")
    p.add_argument("--direction", default=None, choices=["min", "max"])
    p.add_argument("--report", action="store_true",
                   help="start nothing: print the latest retest's report")
    p.add_argument("--wait", action="store_true", help="wait until every probe is done")
    p.add_argument("--timeout", type=float, default=600.0,
                   help="seconds --wait waits at most (default 600)")
    launching(p)

    study = verb("study", None, "define, launch and steer studies (many runs, an autopilot)")
    ssub = study.add_subparsers(dest="study_verb", required=True, metavar="STUDY_VERB")

    def study_verb(name: str, handler: Any, help_: str) -> argparse.ArgumentParser:
        sp = ssub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(handler=handler)
        return sp

    p = study_verb("create", cmd_study_create,
                   "define a study: study create NAME --objective M --space FILE ... -- python "
                   "train.py")
    p.add_argument("name")
    p.add_argument("--objective", required=True, help="metric compared at day ends (val_loss)")
    p.add_argument("--direction", default="min", choices=["min", "max"])
    p.add_argument("--space", required=True,
                   help="search space: a .yaml/.toml/.json file, or inline JSON")
    p.add_argument("--strategy", default="random",
                   help="grid, random, coarse_to_fine, optuna or pbt (default random)")
    p.add_argument("--option", action="append", metavar="KEY=VALUE",
                   help="a strategy option, e.g. n_per_param=3, sampler=tpe, quantile=0.25")
    p.add_argument("--seed", type=int, default=None, help="the strategy's seed (default: drawn)")
    p.add_argument("--runs", type=int, default=None, help="trials in all (default 8; PBT: parallel)")
    p.add_argument("--days", type=int, default=None, help="days each trial trains (default 5)")
    p.add_argument("--parallel", type=int, default=None,
                   help="trials live at once; PBT's population (default 2)")
    p.add_argument("--stop", action="append", metavar="RULE",
                   help="early stopping: patience:DAYS, threshold:DAY:VALUE, walltime:SECONDS, "
                        "median[:MIN_DAYS[:MIN_RUNS]], asha[:MIN_DAYS[:ETA[:MAX_DAYS]]]")
    p.add_argument("--autopilot", default="auto", choices=["auto", "supervised", "off"])
    p.add_argument("--project", default=None, help="project of its runs (default: NAME)")
    p.add_argument("--parent", default=None, help="the study this one refines")
    p.add_argument("--launch", action="store_true", help="start its orchestrator right away")
    launching(p)
    p.set_defaults(command=[])      # the trial's command: what follows `--` (see main)

    p = study_verb("launch", cmd_study_launch, "start a study's orchestrator in the background")
    p.add_argument("name")
    p.add_argument("--foreground", action="store_true",
                   help="run the orchestrator in this terminal instead")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between two ticks")
    launching(p)
    p = study_verb("run", cmd_study_run, "the orchestrator loop itself, in the foreground")
    p.add_argument("name")
    p.add_argument("--poll", type=float, default=1.0, help="seconds between two ticks")
    p = study_verb("list", cmd_study_list, "list studies")
    p.add_argument("--json", action="store_true")
    for name, handler, help_ in (("show", cmd_study_show, "a study's settings and runs"),
                                 ("best", cmd_study_best, "a study's best run so far")):
        p = study_verb(name, handler, help_)
        p.add_argument("name")
        p.add_argument("--json", action="store_true")
    p = study_verb("decisions", cmd_study_decisions, "the autopilot's moves (exploits, stops)")
    p.add_argument("name")
    p.add_argument("--status", default=None,
                   help="proposed, approved, vetoed, applied or failed")
    p.add_argument("--json", action="store_true")
    for name, help_ in (("approve", "approve a proposed autopilot move"),
                        ("veto", "veto a proposed autopilot move")):
        p = study_verb(name, _decide(name), help_)
        p.add_argument("id", help="the decision id (babysit study decisions NAME)")
    p = study_verb("autopilot", cmd_study_autopilot, "switch the autopilot: auto, supervised, off")
    p.add_argument("name")
    p.add_argument("mode", choices=["auto", "supervised", "off"])
    p = study_verb("stop", cmd_study_stop, "stop a study's orchestrator and its live runs")
    p.add_argument("name")
    p.add_argument("--timeout", type=float, default=30.0,
                   help="seconds to wait for the runs to stop before SIGTERM (default 30)")

    for name, handler, help_ in (("demo", cmd_demo, "start a demo run and the dashboard"),
                                 ("ui", cmd_ui, "serve the dashboard")):
        p = verb(name, handler, help_)
        p.add_argument("--address", default="127.0.0.1",
                       help="address to serve on (default 127.0.0.1; others need a password)")
        p.add_argument("--port", type=int, default=8501)
        p.add_argument("--ssl-cert", default=None, help="TLS certificate file (with --ssl-key)")
        p.add_argument("--ssl-key", default=None, help="TLS private key file (with --ssl-cert)")
        if name == "demo":
            p.add_argument("--no-ui", action="store_true", help="only start the demo run")
            p.add_argument("--day", default="300 steps", help="demo day length")
            p.add_argument("--pace", type=float, default=0.03, help="seconds per step to wait")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    # `--` ends babysit's own options: what follows is a command (`run`, `study create`)
    command = None
    if "--" in argv:
        cut = argv.index("--")
        argv, command = argv[:cut], argv[cut + 1:]
    # key=value pairs may come after options (fork RUN --day 2 lr=0.1): argparse alone can't mix
    args, extra = parser.parse_known_args(argv)
    if command is not None:
        if not hasattr(args, "command"):
            parser.error(f"unrecognized arguments: -- {' '.join(command)}")
        args.command = list(args.command) + command
    if extra:
        if hasattr(args, "values") and all("=" in item and not item.startswith("-") for item in extra):
            args.values = list(args.values) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except BrokenPipeError:
        # `babysit metrics RUN | head`: the reader has all it wants. Point stdout at devnull
        # so the interpreter's final flush does not complain either.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except (BabysitError, ValueError) as exc:
        return _fail(exc)
    except (sqlalchemy.exc.SQLAlchemyError, sqlite3.Error) as exc:
        # a store error the store did not wrap (a malformed file, a driver fault)
        return _fail(f"store error: {getattr(exc, 'orig', None) or exc}")


def _fail(message: object) -> int:
    print(terminal_safe(f"babysit: error: {message}", newlines=True), file=sys.stderr)
    return 2
