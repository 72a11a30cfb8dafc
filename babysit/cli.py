"""The ``babysit`` command line: the same Client calls as Python and the dashboard.

    babysit ls | nudge RUN lr=0.05 | pause RUN | resume RUN | stop RUN
    babysit rollback RUN DAY [k=v ...] | fork RUN [--day D] [k=v ...] | restart RUN [--day D]
    babysit metrics RUN | events RUN | checkpoints RUN
    babysit run -- python train.py | demo | ui
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import pandas as pd

from babysit.client import Client
from babysit.errors import BabysitError
from babysit.hparams import parse_assignments
from babysit.launcher import command_line, process_env


def _client(args: argparse.Namespace) -> Client:
    return Client(args.root, store_url=args.store_url, source="cli")


def _show(df: pd.DataFrame, as_json: bool) -> None:
    if as_json:
        print(df.to_json(orient="records", default_handler=str))
    elif df.empty:
        print("(none)")
    else:
        with pd.option_context("display.max_rows", 500, "display.max_columns", 30,
                               "display.width", 200, "display.max_colwidth", 60):
            print(df.to_string(index=False))


def _fmt_hp(hp: dict[str, Any]) -> str:
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in hp.items())


def cmd_ls(args: argparse.Namespace) -> int:
    df = _client(args).runs(project=args.project, status=args.status)
    if not args.json and not df.empty:
        df = df.assign(hp=df["hp"].map(_fmt_hp),
                       heartbeat_age=df["heartbeat_age"].map(
                           lambda a: "" if a is None or pd.isna(a) else f"{a:.0f}s"),
                       parent=[f"{p:.0f}@{d:.0f}" if pd.notna(p) else "" for p, d in
                               zip(df["parent_id"], df["parent_day"], strict=True)])
        df = df[["id", "name", "project", "status", "day", "step", "hp", "parent",
                 "heartbeat_age"]]
    _show(df, args.json)
    return 0


def cmd_nudge(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    result = _client(args).nudge(args.run, values, wait=not args.no_wait, timeout=args.timeout)
    print(f"run {result.run_id}: nudge {result.status}" +
          (f" at step {result.step}" if result.step is not None else "") + f" ({_fmt_hp(values)})")
    return 0


def _simple(action: str):
    def handler(args: argparse.Namespace) -> int:
        result = getattr(_client(args), action)(args.run, wait=not args.no_wait,
                                                timeout=args.timeout)
        print(f"run {result.run_id}: {action} {result.status}" +
              (f" at step {result.step}" if result.step is not None else ""))
        return 0
    return handler


def cmd_rollback(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    result = _client(args).rollback(args.run, args.day, hp=values, wait=not args.no_wait,
                                    timeout=args.timeout)
    print(f"run {result.run_id}: rolled back to day {args.day} ({result.status})")
    return 0


def cmd_fork(args: argparse.Namespace) -> int:
    values = parse_assignments(args.values)
    child = _client(args).fork(args.run, args.day, hp=values, name=args.name)
    print(f"run {child}: forked from run {args.run}" +
          (f" day {args.day}" if args.day is not None else " (latest day)"))
    return 0


def cmd_restart(args: argparse.Namespace) -> int:
    client = _client(args)
    pid = client.restart(args.run, day=args.day)
    print(f"run {client.run(args.run).id}: restarted (pid {pid})")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    df = _client(args).metrics(args.run, args.name or None,
                               include_superseded=args.include_superseded)
    _show(df.tail(args.tail) if args.tail else df, args.json)
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    df = _client(args).events(args.run)
    if not args.json and not df.empty:
        df = df.assign(time=pd.to_datetime(df["time"], unit="s").dt.strftime("%H:%M:%S"),
                       detail=df["detail"].map(lambda d: json.dumps(d, sort_keys=True)))
    _show(df, args.json)
    return 0


def cmd_checkpoints(args: argparse.Namespace) -> int:
    df = _client(args).checkpoints(args.run, include_superseded=args.include_superseded)
    if not args.json and not df.empty:
        df = df.assign(metrics=df["metrics"].map(
            lambda m: " ".join(f"{k}={v:.4g}" for k, v in m.items()
                               if isinstance(v, int | float))), hp=df["hp"].map(_fmt_hp))
    _show(df, args.json)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    argv = list(args.command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    client = _client(args)
    run_id = client.launch(argv, project=args.project, name=args.name, day=args.day,
                           detach=args.detach)
    if args.detach:
        print(f"run {run_id}: started in the background; log in "
              f"{client.store.root / 'runs' / str(run_id) / 'process.log'}")
        return 0
    # Supervised in the foreground: the script's output stays on this terminal.
    record = client.store.get_run(run_id)
    env = process_env(run_id, record.launch or {}, client.store.root,
                      None if client.store.is_sqlite else client.store.url)
    proc = subprocess.Popen(command_line(record.launch, run_id), env=env)
    client.store.update_run(run_id, pid=proc.pid)
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    try:
        code = proc.wait()
    except KeyboardInterrupt:
        code = proc.wait()
    after = client.run(run_id)
    if after.status in ("starting", "running", "paused"):
        client.store.update_run(run_id, status="crashed", error=f"exit code {code}",
                                ended=time.time())
    return code


def cmd_demo(args: argparse.Namespace) -> int:
    client = _client(args)
    argv = [sys.executable, "-m", "babysit.demo", "--day", args.day, "--pace", str(args.pace)]
    run_id = client.launch(argv, project="demo", detach=True)
    print(f"demo run {run_id} started; log: "
          f"{client.store.root / 'runs' / str(run_id) / 'process.log'}")
    if args.no_ui:
        print("watch it with: babysit ls; steer it with: babysit nudge "
              f"{run_id} lr=0.1")
        return 0
    return _serve(args, extra_env={"BABYSIT_OPEN_RUN": str(run_id)})


def cmd_ui(args: argparse.Namespace) -> int:
    return _serve(args, extra_env={})


def _serve(args: argparse.Namespace, extra_env: dict[str, str]) -> int:
    from pathlib import Path

    app = Path(__file__).resolve().parent / "ui" / "app.py"
    env = dict(os.environ, **extra_env)
    env["BABYSIT_ROOT"] = str(_client(args).store.root)
    if args.store_url:
        env["BABYSIT_STORE_URL"] = args.store_url
    argv = [sys.executable, "-m", "streamlit", "run", str(app),
            "--server.address", args.address, "--server.port", str(args.port),
            "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    print(f"dashboard: http://{args.address}:{args.port}")
    try:
        return subprocess.call(argv, env=env)
    except KeyboardInterrupt:
        return 0


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

    def waiting(p: argparse.ArgumentParser) -> None:
        p.add_argument("--no-wait", action="store_true",
                       help="queue the command and return without waiting for the run")
        p.add_argument("--timeout", type=float, default=60.0,
                       help="seconds to wait for the run to apply it (default 60)")

    p = verb("ls", cmd_ls, "list runs")
    p.add_argument("--project")
    p.add_argument("--status")
    p.add_argument("--json", action="store_true", help="print JSON records")

    p = verb("nudge", cmd_nudge, "change hyperparameters of a running run: nudge RUN lr=0.05")
    p.add_argument("run")
    p.add_argument("values", nargs="+", metavar="key=value")
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

    p = verb("restart", cmd_restart, "new process for a crashed or stopped run")
    p.add_argument("run")
    p.add_argument("--day", type=int, default=None, help="day to start from (default: latest)")

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
    p.add_argument("command", nargs=argparse.REMAINDER)

    for name, handler, help_ in (("demo", cmd_demo, "start a demo run and the dashboard"),
                                 ("ui", cmd_ui, "serve the dashboard")):
        p = verb(name, handler, help_)
        p.add_argument("--address", default="127.0.0.1",
                       help="address to serve on (default 127.0.0.1; others need a password)")
        p.add_argument("--port", type=int, default=8501)
        if name == "demo":
            p.add_argument("--no-ui", action="store_true", help="only start the demo run")
            p.add_argument("--day", default="300 steps", help="demo day length")
            p.add_argument("--pace", type=float, default=0.03, help="seconds per step to wait")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # key=value pairs may come after options (fork RUN --day 2 lr=0.1): argparse alone can't mix
    args, extra = parser.parse_known_args(argv)
    if extra:
        if hasattr(args, "values") and all("=" in item and not item.startswith("-") for item in extra):
            args.values = list(args.values) + extra
        else:
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return int(args.handler(args) or 0)
    except BabysitError as exc:
        print(f"babysit: error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"babysit: error: {exc}", file=sys.stderr)
        return 2
