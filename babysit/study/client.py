"""The study half of the command API: create, launch, watch and steer studies; retest a run.

`StudyClient` is built on `babysit.run_client.RunClient` (it forks, stops and reads runs through
it) and is what `babysit.Client` is, so the CLI, the dashboard and Python code call the same
code: ``babysit study approve 7``, the Approve button and ``c.approve(7)`` are one code path.
Nothing here imports the orchestrator: it runs as its own process (`launch_study`).

>>> c = babysit.Client()
>>> c.create_study("lr", objective="val_loss", space={"lr": {"scale": "log", "low": 1e-3,
...                "high": 1}}, budget={"runs": 8, "days": 5, "parallel": 2},
...                command=[sys.executable, "-m", "babysit.demo", "--pace", "0"])
>>> c.launch_study("lr")                     # the orchestrator, as a background process
>>> c.study_runs("lr")                       # one row per run: hp, objective, best, ...
"""

from __future__ import annotations

import math
import os
import socket
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from babysit.errors import BabysitError, InvalidValue, UnknownDay
from babysit.hparams import check_key
from babysit.launcher import (
    process_alive,
    process_start_time,
    resolve_executable,
    start_detached,
    store_env,
    terminate,
)
from babysit.launchers import launcher_env
from babysit.run_client import RunClient, check_source, whole
from babysit.store import DECISION_STATUSES, LIVE, DecisionRecord, StudyRecord
from babysit.study.objective import best, best_of, histories
from babysit.study.retest import (
    Probe,
    RetestReport,
    default_movers,
    probe_configs,
    space_movers,
    verdict,
)
from babysit.study.space import Space, SpaceError, check_direction
from babysit.study.specs import (
    budget_spec,
    check_pbt_space,
    donor_of,
    stopping_spec,
    strategy_spec,
)

AUTOPILOT_MODES = ("auto", "supervised", "off")
#: study_runs() columns; a search-space param may not take one of these names
RUN_COLUMNS = ("id", "name", "status", "trial", "day", "step", "objective", "best", "best_day",
               "parent_id", "parent_day", "max_days", "created", "ended", "hp")


def _field(label: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Run a check, naming the field in its error: ``space: param 'lr': low must be ...``."""
    try:
        return fn(*args, **kwargs)
    except (SpaceError, InvalidValue) as exc:
        raise InvalidValue(f"{label}: {exc}") from None


def _text(value: Any, label: str, *, limit: int = 200) -> str:
    if not isinstance(value, str) or not value.strip() or len(value.strip()) > limit:
        raise InvalidValue(f"{label} must be non-empty text of at most {limit} characters, "
                           f"got {value!r}")
    return value.strip()


def _study_name(name: Any) -> str:
    name = _text(name, "a study name")
    if name.isdigit():
        raise InvalidValue(f"a study name must not be only digits (ids are), got {name!r}")
    if any(not ch.isprintable() for ch in name):
        raise InvalidValue(f"a study name must be printable text, got {name!r}")
    return name


def _space(space: Any) -> Space:
    if isinstance(space, Space):
        return space
    if isinstance(space, Mapping):
        return Space.from_dict(space)
    if isinstance(space, str | os.PathLike):
        return Space.from_file(Path(space))
    raise SpaceError(f"give a Space, a spec mapping or a .yaml/.toml/.json file, got {space!r}")


def _command(command: Any, cwd: str | None) -> dict[str, Any]:
    if isinstance(command, str) or not isinstance(command, Sequence) or not command or \
            not all(isinstance(a, str) and a for a in command):
        raise InvalidValue("command must be the trial's argument list, e.g. "
                           f"['python', 'train.py', '--pace', '0'], got {command!r}")
    folder = Path(cwd or os.getcwd()).resolve()
    if not folder.is_dir():
        raise InvalidValue(f"the trial's folder {str(folder)!r} does not exist")
    # the absolute path, so the orchestrator (started later, maybe from another shell) and
    # every trial run the same program
    executable = resolve_executable(command[0])
    if not (os.path.isabs(executable) and os.access(executable, os.X_OK)):
        raise InvalidValue(f"cannot find the program {command[0]!r}")
    return {"executable": executable, "argv": list(command[1:]), "cwd": str(folder), "env": {}}


def _decision_id(decision_id: Any) -> int:
    if isinstance(decision_id, str) and decision_id.strip().isdigit():
        return int(decision_id)
    return whole(decision_id, "a decision id", 1)


class StudyClient(RunClient):
    """The run commands plus studies: define, launch, watch and steer them; retest a run."""

    # ------------------------------------------------------------------ defining
    def create_study(self, name: str, *, objective: str, direction: str = "min",
                     space: Space | Mapping[str, Any] | str | os.PathLike[str],
                     strategy: str | Mapping[str, Any] = "random",
                     budget: Mapping[str, int] | None = None, command: Sequence[str],
                     stopping: Sequence[str | Mapping[str, Any]] = (), autopilot: str = "auto",
                     project: str | None = None, parent: int | str | None = None,
                     cwd: str | None = None, seed: int | None = None) -> int:
        """Define a study (nothing starts: see `launch_study`); returns its id.

        ``space``: a `Space`, its spec or a YAML/TOML/JSON file. ``strategy``: grid, random,
        coarse_to_fine, optuna or pbt, or ``{"kind": ..., options}``. ``budget``: runs (trials in
        all), days (each trial's length) and parallel (live at once; PBT's population).
        ``stopping``: rules such as ``"patience:3"`` or ``{"rule": "median"}``. ``command``: the
        trial's argument list (its ``babysit.init()`` receives the trial's hyperparameters).
        ``parent``: the study this one refines (coarse-to-fine). Every field is checked before
        anything is written.

        >>> c.create_study("pbt-demo", objective="val_loss", space="space.yaml",
        ...                strategy="pbt", budget={"parallel": 4, "days": 6},
        ...                command=[sys.executable, "-m", "babysit.demo", "--pace", "0"])
        """
        name = _study_name(name)
        objective = _text(objective, "objective (a metric name)")
        direction = _field("direction", check_direction, direction)
        space_obj = _field("space", _space, space)
        for param in space_obj.names:       # each becomes a hyperparameter of the trials
            _field("space", check_key, param)
        clash = sorted(set(space_obj.names) & set(RUN_COLUMNS))
        if clash:
            raise InvalidValue(f"space: param name(s) {', '.join(clash)} clash with the study's "
                               "run table; rename them")
        strategy_json = _field("strategy", strategy_spec, strategy, space_obj, direction,
                               seed=seed)
        if strategy_json["kind"] == "pbt":
            _field("space", check_pbt_space, space_obj)
        budget_json = _field("budget", budget_spec, budget, pbt=strategy_json["kind"] == "pbt")
        stopping_json = _field("stopping", stopping_spec, stopping)
        if autopilot not in AUTOPILOT_MODES:
            raise InvalidValue(f"autopilot must be one of {AUTOPILOT_MODES}, got {autopilot!r}")
        launch = _command(command, cwd)
        project = name if project is None else _text(project, "project")
        parent_id = None if parent is None else self.store.get_study(parent).id
        return self.store.create_study(
            name=name, project=project, objective=objective, direction=direction,
            space=space_obj.to_dict(), strategy=strategy_json, budget=budget_json,
            stopping=stopping_json, autopilot=autopilot, command=launch, parent_id=parent_id)

    # ------------------------------------------------------------------ reading
    def study(self, study: int | str) -> StudyRecord:
        """One study (by id or name) as stored."""
        return self.store.get_study(study)

    def orchestrator_alive(self, study: int | str | StudyRecord) -> bool:
        """Whether the study's orchestrator process is running."""
        record = study if isinstance(study, StudyRecord) else self.store.get_study(study)
        return process_alive(record.pid, record.pid_start, record.host, record.heartbeat)

    def studies(self) -> pd.DataFrame:
        """All studies: id, name, project, status, objective, direction, strategy, autopilot,
        runs (launched), live, budget (runs, days, parallel), best, best_run, parent_id,
        orchestrator (alive or not), created."""
        rows = []
        for s in self.store.list_studies():
            runs = self.store.list_runs(study_id=s.id)
            hist = histories(self.store.checkpoints_of([r.id for r in runs]), s.objective)
            top = best(((r.id, best_of(hist.get(r.id, []), s.direction)[0]) for r in runs),
                       s.direction)
            rows.append({
                "id": s.id, "name": s.name, "project": s.project, "status": s.status,
                "objective": s.objective, "direction": s.direction,
                "strategy": s.strategy.get("kind"), "autopilot": s.autopilot,
                "runs": sum(r.trial is not None for r in runs),
                "live": sum(r.status in LIVE for r in runs),
                "budget_runs": s.budget.get("runs"), "days": s.budget.get("days"),
                "parallel": s.budget.get("parallel"), "best": top[0], "best_run": top[1],
                "parent_id": s.parent_id, "orchestrator": self.orchestrator_alive(s),
                "created": s.created})
        columns = ["id", "name", "project", "status", "objective", "direction", "strategy",
                   "autopilot", "runs", "live", "budget_runs", "days", "parallel", "best",
                   "best_run", "parent_id", "orchestrator", "created"]
        return pd.DataFrame(rows, columns=columns)

    def study_runs(self, study: int | str) -> pd.DataFrame:
        """One row per run of the study: id, name, status, trial (None for a person's fork or a
        retest probe), day, step, one column per search-space param (current values: PBT
        changes them), objective (at the run's last checkpoint day), best and best_day, parent,
        max_days, created, ended, hp (all hyperparameters)."""
        record = self.store.get_study(study)
        names = list(Space.from_dict(record.space).names)
        runs = self.store.list_runs(study_id=record.id)
        hist = histories(self.store.checkpoints_of([r.id for r in runs]), record.objective)
        rows = []
        for r in runs:
            values = hist.get(r.id, [])
            top, top_day = best_of(values, record.direction)
            rows.append({
                "id": r.id, "name": r.name, "status": r.status, "trial": r.trial, "day": r.day,
                "step": r.step, **{n: r.hp.get(n) for n in names},
                "objective": values[-1] if values else math.nan, "best": top,
                "best_day": top_day, "parent_id": r.parent_id, "parent_day": r.parent_day,
                "max_days": r.max_days, "created": r.created, "ended": r.ended,
                "hp": dict(r.hp)})
        columns = ["id", "name", "status", "trial", "day", "step", *names, "objective", "best",
                   "best_day", "parent_id", "parent_day", "max_days", "created", "ended", "hp"]
        return pd.DataFrame(rows, columns=columns)

    def study_best(self, study: int | str) -> dict[str, Any] | None:
        """The study's best run (best objective at any day end) as a dict, or None yet."""
        record = self.store.get_study(study)
        runs = self.study_runs(record.id)
        _, index = best(zip(runs.index, runs["best"], strict=True), record.direction)
        return None if index is None else runs.loc[index].to_dict()

    def decisions(self, study: int | str, status: str | None = None) -> pd.DataFrame:
        """The autopilot's moves: id, run_id, kind, status, donor, donor_day (an exploit's
        run and day whose weights are copied), reason, detail, created, decided, decided_by,
        error."""
        if status is not None and status not in DECISION_STATUSES:
            raise InvalidValue(f"status must be one of {DECISION_STATUSES}, got {status!r}")
        record = self.store.get_study(study)
        rows = [{"id": d.id, "study_id": d.study_id, "run_id": d.run_id, "kind": d.kind,
                 "status": d.status, "donor": donor_of(d.detail)[0],
                 "donor_day": donor_of(d.detail)[1], "reason": d.detail.get("reason"),
                 "detail": d.detail, "created": d.created, "decided": d.decided,
                 "decided_by": d.decided_by, "error": d.error}
                for d in self.store.decisions(record.id, status=status)]
        columns = ["id", "study_id", "run_id", "kind", "status", "donor", "donor_day",
                   "reason", "detail", "created", "decided", "decided_by", "error"]
        return pd.DataFrame({c: pd.Series([row[c] for row in rows], dtype=object)
                             for c in columns})

    # ------------------------------------------------------------------ steering
    def approve(self, decision_id: int, source: str | None = None) -> DecisionRecord:
        """Approve a proposed autopilot move; the study's orchestrator applies it at its next
        tick. A decision is decided once: approving a vetoed one is an error."""
        return self.store.decide(_decision_id(decision_id), "approved",
                                 check_source(source or self.source))

    def veto(self, decision_id: int, source: str | None = None) -> DecisionRecord:
        """Veto a proposed autopilot move: it is never applied."""
        return self.store.decide(_decision_id(decision_id), "vetoed",
                                 check_source(source or self.source))

    def set_autopilot(self, study: int | str, mode: str) -> None:
        """``auto`` applies the autopilot's moves, ``supervised`` proposes them for approval,
        ``off`` makes none (the runs go on training)."""
        if mode not in AUTOPILOT_MODES:
            raise InvalidValue(f"autopilot must be one of {AUTOPILOT_MODES}, got {mode!r}")
        self.store.update_study(self.store.get_study(study).id, autopilot=mode)

    def launch_study(self, study: int | str) -> int:
        """Start the study's orchestrator (``python -m babysit study run ID``) as a background
        process; its log is ``studies/<id>/orchestrator.log`` under the root. Returns its pid.
        A stopped study goes on where it was; a done one is refused."""
        record = self.store.get_study(study)
        if record.status == "done":
            raise InvalidValue(f"study {record.name} is done; create a follow-up study "
                               "(parent=...) to search further")
        if self.orchestrator_alive(record):
            raise BabysitError(f"study {record.name} already has an orchestrator "
                               f"(pid {record.pid})")
        env = dict(os.environ)
        for name in ("BABYSIT_RUN_ID", "BABYSIT_STORE_URL"):
            env.pop(name, None)
        env.update(store_env(self.store.root, self._store_url))
        env.update(launcher_env(self.launcher))    # its trials start where this Client's would
        env.setdefault("PYTHONUNBUFFERED", "1")
        argv = [sys.executable, "-m", "babysit", "study", "run", str(record.id)]
        cwd = record.command.get("cwd") or os.getcwd()
        pid = start_detached(argv, cwd=cwd if Path(cwd).is_dir() else os.getcwd(), env=env,
                             log_path=self.store.root / "studies" / str(record.id) /
                             "orchestrator.log", what=f"the orchestrator of study {record.name}")
        started = process_start_time(pid)
        # Recorded now so stop_study can find it before it has claimed the study itself.
        self.store.update_study(record.id, status="running", pid=pid, pid_start=started,
                                host=socket.gethostname(), heartbeat=time.time(), ended=None)
        return pid

    def stop_study(self, study: int | str, *, timeout: float = 30.0,
                   source: str | None = None) -> list[int]:
        """Stop the study: its orchestrator first (so it launches nothing more), then every live
        run of the study. Returns the ids of the runs it stopped."""
        record = self.store.get_study(study)
        self.store.update_study(record.id, status="stopped", ended=time.time())
        if record.pid is not None and (record.host in (None, socket.gethostname())):
            terminate(record.pid, lambda: self.orchestrator_alive(record))
        self.check_runs(study=record.id)
        live = [r for r in self.store.list_runs(study_id=record.id) if r.status in LIVE]
        stopped = []
        for r in live:   # ask them all first, then wait for them together
            try:
                self.stop(r.id, wait=False, source=source, reason=f"study {record.name} stopped")
                stopped.append(r.id)
            except BabysitError:
                continue    # ended meanwhile
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and \
                any(self._checked(i).status in LIVE for i in stopped):
            time.sleep(0.05)
        for run_id in stopped:
            if self.run(run_id).status in LIVE:
                self.terminate(run_id)
        return stopped

    # ------------------------------------------------------------------ retest
    def retest(self, run: int | str, *, probes: int = 4, days: int = 1,
               factor: float = 2.0, objective: str | None = None, direction: str | None = None,
               source: str | None = None) -> int:
        """Retest a run's hyperparameters: from its latest checkpoint, fork a control probe
        (its hyperparameters unchanged) and ``probes`` probes with one hyperparameter moved up
        or down by ``factor`` on its own scale (lr x2 and /2, momentum on the 1 - beta scale);
        each trains ``days`` days and finishes. Returns the retest's id for `retest_report`.

        The objective and its direction are the run's study's, else ``val_loss``/``min``.

        >>> rid = c.retest(7, probes=4, days=1)
        >>> c.retest_report(7).still_best        # None until the probes are done
        """
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 1000:
            raise InvalidValue(f"days must be a whole number from 1 to 1000, got {days!r}")
        record = self.run(run)
        checkpoint = self.store.checkpoint(record.id)
        if checkpoint is None:
            raise UnknownDay(f"run {record.id} has no checkpoint yet to retest from")
        study = self.store.get_study(record.study_id) if record.study_id is not None else None
        objective = _text(objective if objective is not None else
                          (study.objective if study else "val_loss"), "objective")
        direction = check_direction(direction if direction is not None else
                                    (study.direction if study else "min"))
        movers = space_movers(Space.from_dict(study.space)) if study else default_movers()
        moves = probe_configs(checkpoint.hp, movers, probes=probes, factor=factor)
        if not moves:
            raise InvalidValue(f"run {record.id} has no hyperparameter to move "
                               f"({', '.join(movers)} are all missing or at a bound)")
        source = check_source(source or self.source)
        target = checkpoint.day + days
        control = self.fork(record.id, checkpoint.day, name=f"{record.name}-retest-control",
                            max_days=target, source=source)
        forked = [{"run": control, "hp": {}, "control": True}]
        for k, move in enumerate(moves, 1):
            child = self.fork(record.id, checkpoint.day, hp=move,
                              name=f"{record.name}-retest-{k}", max_days=target, source=source)
            forked.append({"run": child, "hp": move, "control": False})
        detail = {"day": checkpoint.day, "days": days, "target_day": target, "factor": factor,
                  "objective": objective, "direction": direction, "probes": forked}
        return self.store.add_event(record.id, checkpoint.step, checkpoint.day + 1, "retest",
                                    source, detail, record.branch)

    def retest_report(self, run: int | str, retest: int | None = None) -> RetestReport:
        """Where a retest of ``run`` stands (the latest one, or the one with id ``retest``):
        each probe's objective at the last day, and whether the run's setting is still the
        best (``still_best``: None until every probe is done)."""
        record = self.run(run)
        events = self.store.events(record.id)
        events = events[events["kind"] == "retest"]
        if retest is not None:
            events = events[events["id"] == retest]
        if events.empty:
            which = f"retest {retest}" if retest is not None else "retest"
            raise InvalidValue(f"run {record.id} has no {which}; start one with retest()")
        row = events.iloc[-1]
        detail = row["detail"]
        target = int(detail["target_day"])
        found = []
        for probe in detail["probes"]:
            child = self.store.get_run(probe["run"])
            checkpoint = self.store.checkpoint(child.id, target)
            value = None
            if checkpoint is not None:
                raw = checkpoint.metrics.get(detail["objective"])
                value = float(raw) if isinstance(raw, int | float) else math.nan
            found.append(Probe(child.id, dict(probe["hp"]), bool(probe["control"]), child.status,
                               value))
        still_best, winner, done = verdict(found, detail["direction"])
        if still_best is None:
            summary = (f"retest of run {record.id} from day {detail['day']}: "
                       + ("done, but the control has no value" if done else
                          f"{sum(p.value is not None for p in found)} of {len(found)} probes "
                          f"have reached day {target}"))
        elif still_best:
            summary = (f"run {record.id}'s setting is still the best: no probe beat it at day "
                       f"{target} ({detail['objective']} {winner.value:.4g})")  # type: ignore[union-attr]
        else:
            assert winner is not None and winner.value is not None
            moved = " ".join(f"{k}={v:.4g}" for k, v in winner.hp.items())
            summary = (f"run {record.id}'s setting is no longer the best: probe run {winner.run_id}"
                       f" ({moved}) reached {detail['objective']} {winner.value:.4g} at day "
                       f"{target}")
        return RetestReport(int(row["id"]), record.id, int(detail["day"]), target,
                            detail["objective"], detail["direction"], tuple(found), done,
                            still_best, winner, summary)
