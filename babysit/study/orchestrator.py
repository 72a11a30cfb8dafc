"""The study orchestrator: the part of a study that acts.

Each `Orchestrator.tick` reads the study and its runs from the store and

1. tells the strategy what it learned: every new day-end objective (``report``, read from the
   checkpoint rows: ``checkpoints.metrics[objective]``, the day's mean) and the result of every
   trial that ended (``tell``: its best day, NaN if it has none);
2. applies autopilot decisions a person approved, and fails proposals whose run has ended;
3. unless the autopilot is ``off``: applies the stopping rules to each run that finished a day,
   and for PBT, once the live population has all reached a new day end, plans exploits with
   `babysit.study.pbt.plan`. In ``auto`` mode a move is applied at once (``stop`` /
   ``exploit`` with source ``autopilot`` and the move's reason); in ``supervised`` mode it
   is written as a ``proposed`` decision and waits for ``Client.approve``;
4. launches trials the strategy suggests while fewer than ``parallel`` are live and fewer than
   ``runs`` were launched (the queue: later trials wait for a free slot). A trial finishes by
   itself after ``days`` days (its run's ``max_days``).

All its state is in the store, so it can be killed and started again: the strategy is rebuilt
by replaying the study's trials in order (asking again, telling the ended ones), and trials are
counted from the store, so none is launched twice.

It acts on runs only through `Steering` (launch, exploit, stop, and the monitor step
``check_runs`` run at the start of each tick); `babysit.Client` is one.

>>> Orchestrator(client, "lr-search").run(poll_s=1.0)    # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any, Protocol

import numpy as np

from babysit.errors import BabysitError, InvalidValue
from babysit.launcher import process_alive, process_start_time
from babysit.store import LIVE, CheckpointRecord, DecisionRecord, RunRecord, Store, StudyRecord
from babysit.study.objective import best_of, histories
from babysit.study.pbt import plan
from babysit.study.space import Space, SpaceError
from babysit.study.specs import build_rule, build_strategy, donor_of, pbt_options
from babysit.study.strategies import Strategy

ENDED = ("finished", "stopped", "crashed")


class Steering(Protocol):
    """What the orchestrator needs to act on runs (`babysit.Client` is one)."""

    store: Store

    def launch(self, argv: list[str], *, project: str | None = None, name: str | None = None,
               cwd: str | None = None, hp: Mapping[str, Any] | None = None,
               study_id: int | None = None, max_days: int | None = None,
               trial: int | None = None) -> int: ...

    def exploit(self, target: int | str, donor: int | str, day: int,
                hp: Mapping[str, Any] | None = None, *, source: str | None = None,
                reason: str | None = None, decision: int | None = None) -> Any: ...

    def stop(self, run: int | str, *, source: str | None = None,
             reason: str | None = None) -> Any: ...

    def check_runs(self, run: int | str | None = None, *,
                   study: int | None = None) -> Sequence[int]: ...


class Orchestrator:
    """Runs one study: ``tick()`` does one round of work; ``run()`` loops until it is done.

    >>> orch = Orchestrator(babysit.Client(), "lr-search")     # doctest: +SKIP
    >>> while orch.tick(): time.sleep(1)                       # doctest: +SKIP
    """

    def __init__(self, client: Steering, study: int | str, *,
                 log: Callable[[str], None] | None = None):
        self.client = client
        self.store = client.store
        record = self.store.get_study(study)
        self.study_id, self.name = record.id, record.name
        self.objective, self.direction = record.objective, record.direction
        self.space = Space.from_dict(record.space)
        self.seed = int(record.strategy.get("seed") or 0)
        self.pbt = pbt_options(record.strategy) if record.strategy.get("kind") == "pbt" else None
        self.rules = [(dict(spec), build_rule(spec)) for spec in record.stopping]
        self.strategy: Strategy | None = None
        self.told: set[int] = set()
        self.reported: set[tuple[int, int]] = set()
        self.judged: dict[int, int] = {}      # run id -> the last day the stopping rules saw
        self.pbt_day = 0                      # the last day end a PBT round was planned for
        self._stop = threading.Event()
        self._print = log or (lambda line: print(line, flush=True))

    def log(self, message: str) -> None:
        self._print(f"{time.strftime('%H:%M:%S')} study {self.name}: {message}")

    # ------------------------------------------------------------------ one round
    def tick(self) -> bool:
        """One round of work (see the module docstring). False once the study is done or
        stopped."""
        study = self.store.get_study(self.study_id)
        if study.status in ("done", "stopped"):
            return False
        self.client.check_runs(study=self.study_id)   # the monitor step: dead trials crashed
        trials = self._trials()
        checkpoints = self.store.checkpoints_of([t.id for t in trials])
        hist = histories(checkpoints, self.objective)
        if self.strategy is None:
            self.strategy = self._rebuild(study, trials, hist)
        self._feed(trials, hist)
        if self._settle(study, trials):
            trials = self._trials()      # an approved stop or exploit changed them
        if study.autopilot != "off":
            self._stop_rules(study, trials, hist)
            if self.pbt is not None:
                self._pbt_round(study, trials, hist, checkpoints)
        trials = self._trials()
        if self._launch(study, trials) or any(t.status in LIVE for t in trials) or \
                self.store.decisions(study.id, status="approved"):
            return True
        # Nothing live and nothing more to launch: the budget is spent, the strategy exhausted
        # (a grid), or it has nothing to suggest with every result told.
        self.store.update_study(study.id, only_if_status=("created", "running"), status="done",
                                ended=time.time())
        self.log(f"done: {len(trials)} trial(s)")
        return False

    def _trials(self) -> list[RunRecord]:
        records = [r for r in self.store.list_runs(study_id=self.study_id) if r.trial is not None]
        return sorted(records, key=lambda r: r.trial or 0)

    # ------------------------------------------------------------------ the strategy
    def _rebuild(self, study: StudyRecord, trials: list[RunRecord],
                 hist: Mapping[int, list[float]]) -> Strategy:
        """A fresh strategy that has asked for every trial already launched, in order, and
        heard the result of those that had ended when the next one was asked."""
        strategy = build_strategy(study.strategy, self.space, self.direction)
        for trial in trials:
            enqueue = getattr(strategy, "enqueue", None)
            if enqueue is not None:   # Optuna: the next ask returns exactly this config
                try:
                    enqueue(trial.config)
                except (SpaceError, KeyError) as exc:
                    self.log(f"trial {trial.trial}: cannot replay its config ({exc})")
            got = strategy.ask(1)
            if not got:     # coarse-to-fine waits for its batch: tell what had ended, then ask
                self._tell_ended(strategy, trials, hist)
                got = strategy.ask(1)
            if not got or got[0].number != trial.trial:
                self.log(f"replay: trial {trial.trial} was not asked again the same way")
            elif any(got[0].config.get(k) != trial.config.get(k) for k in self.space.names):
                self.log(f"replay: trial {trial.trial} was launched with another config")
        self.pbt_day = max((int(d.detail.get("day") or 0) for d in self.store.decisions(study.id)
                            if d.kind == "exploit"), default=0)
        if trials:
            self.log(f"rebuilt the {study.strategy['kind']} strategy from {len(trials)} trial(s)")
        return strategy

    def _tell_ended(self, strategy: Strategy, trials: list[RunRecord],
                    hist: Mapping[int, list[float]]) -> None:
        for trial in trials:
            number = trial.trial
            if number is None or number in self.told or trial.status not in ENDED:
                continue
            value, _ = best_of(hist.get(trial.id, []), self.direction)
            try:
                strategy.tell(number, value)
            except SpaceError as exc:
                self.log(f"trial {number}: cannot tell its result ({exc})")
                continue
            self.told.add(number)
            self.log(f"trial {number} (run {trial.id}) {trial.status}: best {self.objective} "
                     f"{value:.4g}")

    def _feed(self, trials: list[RunRecord], hist: Mapping[int, list[float]]) -> None:
        assert self.strategy is not None
        for trial in trials:
            number = trial.trial
            if number is None or number in self.told:
                continue
            for day, value in enumerate(hist.get(trial.id, []), 1):
                if (number, day) not in self.reported and math.isfinite(value):
                    self.reported.add((number, day))
                    try:
                        self.strategy.report(number, day, value)
                    except SpaceError as exc:
                        self.log(f"trial {number}: cannot report day {day} ({exc})")
        self._tell_ended(self.strategy, trials, hist)

    # ------------------------------------------------------------------ the queue
    def _launch(self, study: StudyRecord, trials: list[RunRecord]) -> int:
        assert self.strategy is not None
        budget = study.budget
        live = sum(t.status in LIVE for t in trials)
        want = min(budget["parallel"] - live, budget["runs"] - len(trials))
        if want <= 0 or self.strategy.exhausted:
            return 0
        command = study.command
        suggestions = self.strategy.ask(want)
        for s in suggestions:
            run_id = self.client.launch(
                [command["executable"], *command["argv"]], cwd=command.get("cwd"),
                project=study.project, name=f"{study.name}-{s.number}", hp=s.config,
                study_id=study.id, trial=s.number, max_days=budget["days"])
            shown = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                             for k, v in s.config.items())
            self.log(f"launched trial {s.number} as run {run_id}: {shown}")
        return len(suggestions)

    # ------------------------------------------------------------------ the autopilot
    def _move(self, study: StudyRecord, kind: str, run_id: int, detail: dict[str, Any]) -> None:
        if study.autopilot == "supervised":
            decision = self.store.add_decision(study.id, run_id, kind, detail)
            self.log(f"proposed {kind} of run {run_id} (decision {decision}): {detail['reason']}")
            return
        decision = self.store.add_decision(study.id, run_id, kind, detail, status="approved",
                                           decided_by="autopilot")
        self._apply(self.store.get_decision(decision))

    def _apply(self, decision: DecisionRecord) -> None:
        """Apply an approved decision; it ends applied or failed (with the error)."""
        detail = decision.detail
        try:
            target = self.store.get_run(decision.run_id)
            if self._already_applied(decision, target):
                self.store.decide(decision.id, "applied", "autopilot")
                return
            if decision.kind == "exploit":
                donor, donor_day = donor_of(detail)
                self.client.exploit(decision.run_id, donor, donor_day,
                                    hp=detail.get("new_hp") or None, source="autopilot",
                                    reason=detail.get("reason"), decision=decision.id)
            elif decision.kind == "stop":
                if target.status not in LIVE:
                    raise InvalidValue(f"run {target.id} is {target.status}; nothing to stop")
                self.client.stop(decision.run_id, source="autopilot",
                                 reason=detail.get("reason"))
            else:
                raise InvalidValue(f"the autopilot cannot apply a {decision.kind!r} decision")
        except BabysitError as exc:
            self.store.decide(decision.id, "failed", "autopilot", error=str(exc))
            self.log(f"{decision.kind} of run {decision.run_id} failed: {exc}")
            return
        self.store.decide(decision.id, "applied", "autopilot")
        self.log(f"{decision.kind} of run {decision.run_id}: {detail.get('reason')}")

    def _already_applied(self, decision: DecisionRecord, target: RunRecord) -> bool:
        """Whether an approved move took effect before a restart of the orchestrator."""
        if decision.kind == "exploit":
            events = self.store.events(target.id)
            return any(kind == "exploit" and isinstance(d, dict) and d.get("decision") == decision.id
                       for kind, d in zip(events["kind"], events["detail"], strict=True))
        return decision.kind == "stop" and target.status == "stopped"

    def _settle(self, study: StudyRecord, trials: list[RunRecord]) -> int:
        """Apply approved decisions, fail proposals whose run ended; returns how many applied."""
        approved = self.store.decisions(study.id, status="approved")
        for decision in approved:
            self._apply(decision)
        by_id = {t.id: t for t in trials}
        for decision in self.store.decisions(study.id, status="proposed"):
            run = by_id.get(decision.run_id) or self.store.get_run(decision.run_id)
            if run.status not in LIVE:
                with contextlib.suppress(InvalidValue):   # decided by a person meanwhile
                    self.store.decide(decision.id, "failed", "autopilot",
                                      error=f"run {run.id} is {run.status}: the move expired")
        return len(approved)

    def _waiting(self, study: StudyRecord, kind: str) -> set[int]:
        """Runs with a move of this kind proposed or approved but not applied yet; for stops
        also runs already stopped, or kept going by a person (a vetoed stop is not proposed
        again every day)."""
        statuses = ("proposed", "approved", "vetoed", "applied") if kind == "stop" else \
            ("proposed", "approved")
        return {d.run_id for d in self.store.decisions(study.id)
                if d.kind == kind and d.status in statuses}

    def _stop_rules(self, study: StudyRecord, trials: list[RunRecord],
                    hist: Mapping[int, list[float]]) -> None:
        if not self.rules:
            return
        waiting = self._waiting(study, "stop")
        history: dict[Hashable, list[float]] = {t.id: hist[t.id] for t in trials if hist.get(t.id)}
        now = time.time()
        for trial in trials:
            days = history.get(trial.id)
            if trial.status not in LIVE or trial.id in waiting or not days:
                continue
            day = len(days)
            if self.judged.get(trial.id) == day:
                continue
            self.judged[trial.id] = day
            if trial.max_days is not None and day >= trial.max_days:
                continue    # it finishes by itself
            for spec, rule in self.rules:
                verdict = rule.should_stop(history, trial.id, self.direction,
                                           elapsed_s=now - trial.created, metric=self.objective)
                if verdict.stop:
                    self._move(study, "stop", trial.id, {"reason": verdict.reason, "rule": spec,
                                                         "day": day, "score": days[-1]})
                    break

    def _pbt_round(self, study: StudyRecord, trials: list[RunRecord],
                   hist: Mapping[int, list[float]], checkpoints: list[CheckpointRecord]) -> None:
        assert self.pbt is not None
        population = [t for t in trials if t.status in LIVE]
        if len(population) < 2:
            return
        common = min(len(hist.get(t.id, [])) for t in population)
        if common < 1 or common <= self.pbt_day:
            return
        self.pbt_day = common
        if common % self.pbt["interval"] or any(
                t.max_days is not None and common >= t.max_days for t in population):
            return
        at_day = {c.run_id: c for c in checkpoints if c.day == common}
        members = [t for t in population if t.id in at_day]
        scores: dict[Hashable, float] = {t.id: hist[t.id][common - 1] for t in members}
        configs: dict[Hashable, dict[str, Any]] = {t.id: dict(at_day[t.id].hp) for t in members}
        rng = np.random.default_rng([self.seed, common])   # the same plan after a restart
        exploits = plan(scores, configs, self.space, rng, self.pbt["quantile"], self.direction,
                        perturb_factors=self.pbt["perturb_factors"],
                        resample_probability=self.pbt["resample_probability"],
                        metric=self.objective, day=common)
        waiting = self._waiting(study, "exploit")
        for e in exploits:
            if e.loser in waiting:
                continue
            loser, winner = int(e.loser), int(e.winner)  # type: ignore[call-overload]
            detail = {
                "donor": winner, "donor_day": common, "day": common,
                "reason": e.reason, "score": scores[loser], "donor_score": scores[winner],
                "old_hp": {k: configs[loser].get(k) for k in self.space.names},
                "new_hp": {k: e.new_config[k] for k in self.space.names},
                "ops": [{"name": op.name, "old": op.old, "new": op.new, "how": op.how}
                        for op in e.ops],
            }
            self._move(study, "exploit", loser, detail)

    # ------------------------------------------------------------------ the loop
    def claim(self) -> None:
        """Record this process as the study's orchestrator; refuse if another one is alive."""
        record = self.store.get_study(self.study_id)
        if record.status == "done":
            raise InvalidValue(f"study {record.name} is done; create a follow-up study "
                               "(parent=...) to search further")
        me = os.getpid()
        if record.pid not in (None, me) and process_alive(record.pid, record.pid_start,
                                                           record.host, record.heartbeat):
            where = f" on {record.host}" if record.host else ""
            raise BabysitError(f"study {record.name} already has an orchestrator "
                               f"(pid {record.pid}{where})")
        started = process_start_time(me)
        if not self.store.update_study(self.study_id, only_if_pid=(record.pid,), pid=me,
                                       pid_start=started, host=socket.gethostname(),
                                       heartbeat=time.time(), status="running", ended=None):
            raise BabysitError(f"another orchestrator took study {record.name} meanwhile")

    def run(self, poll_s: float = 1.0) -> str:
        """Claim the study and tick every ``poll_s`` seconds until it is done or stopped
        (``Client.stop_study``, SIGTERM or Ctrl-C). Returns the study's status."""
        if not isinstance(poll_s, int | float) or isinstance(poll_s, bool) or \
                not 0 < poll_s <= 3600:
            raise InvalidValue(f"poll_s must be a number of seconds in (0, 3600], got {poll_s!r}")
        self.claim()
        me = os.getpid()
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, lambda *_: self._stop.set())
        self.log(f"orchestrator started (pid {me})")
        try:
            while not self._stop.is_set():
                try:
                    if not self.tick():
                        break
                except BabysitError as exc:   # a locked store, a vanished run: try again later
                    self.log(f"tick failed: {exc}")
                except Exception:             # a bug must not leave the study unattended
                    traceback.print_exc(file=sys.stdout)
                if not self.store.update_study(self.study_id, only_if_pid=(me,),
                                               heartbeat=time.time()):
                    self.log("another orchestrator took over; leaving")
                    break
                self._stop.wait(poll_s)
        except KeyboardInterrupt:
            pass
        finally:
            self.store.update_study(self.study_id, only_if_pid=(me,), pid=None, pid_start=None,
                                    host=None)
        status = self.store.get_study(self.study_id).status
        self.log(f"orchestrator ends (study {status})")
        return status
