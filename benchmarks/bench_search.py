"""Search strategies at equal compute on the demo task: best validation loss against steps spent.

The task is babysit's demo: 5 spirals (4096 training points, a held-out validation set of 1024
and a test set of 1024, all generated), ``babysit.demo.model()``, SGD with gradient clipping 5,
batch 64, one thread. Two hyperparameters are searched, over the same bounds by every method:
lr in [1e-4, 1] and momentum in [0.5, 0.999]. Every method gets the same budget of training
steps, summed over all its trials (default 16 trials x 600 steps = 9600); a "day" is 100
steps and ends with the validation loss, which is what the methods see and what is recorded.

Methods:

- ``grid``: a linear 4 x 4 grid over lr and momentum (a naive user's grid), in an order
  shuffled by the seed so that its curve over compute is not decided by the enumeration order.
- ``uniform``: random search, lr and momentum uniform on a linear scale (babysit's
  `RandomStrategy` over a linear `Space`).
- ``log``: babysit's random search on the right scales (lr ``log``, momentum
  ``one_minus_log``), `RandomStrategy`.
- ``tpe``: Optuna used directly, the outside baseline: ``TPESampler(seed)`` and
  ``MedianPruner()`` with defaults, ``trial.report`` / ``should_prune`` at each day end. It
  searches lr on a log scale and ``1 - momentum`` on a log scale, the same space as ``log``,
  so the comparison is of the search, not of the scales. Pruned trials free their steps for
  more trials.
- ``pbt``: babysit's Population Based Training: a population of ``--trials`` members, each
  trained for ``--steps`` steps in lock step (so the same number of models and steps per model
  as the sequential methods), initial configs from the ``log`` space; at each day end but the
  last, `babysit.study.pbt.plan` (defaults: bottom/top 25%, x0.8/x1.2 on each param's own
  scale, resample with probability 0.25) decides; an exploit copies the winner's model and
  optimizer ``state_dict`` into the loser, then the new lr and momentum go into the optimizer's
  param_groups.
- ``c2f``: babysit's `CoarseToFineStrategy` on the ``log`` space, 2 rounds of trials/2 configs.
- ``optuna_bs``: Optuna's TPE through babysit's `OptunaStrategy` (ask/tell, no pruning).

The sequential methods run one trial after another until the budget is spent (the last trial
is cut short at the budget) or the method has nothing left to try (the grid, coarse-to-fine).
A trial whose validation loss is not finite has diverged and stops at that day end (PBT
instead replaces a diverged member by exploiting a winner, as `select` ranks it worst).
"Best validation loss" at a compute point is the lowest validation loss of any day-end
evaluation so far (each one is a checkpoint the user could keep); the test loss of that
evaluation is reported beside it, as a check that selection on validation did not overfit.
Trial i of every method starts from the same initial weights and data order (seeded by the
method's seed and i), so the methods differ only in the hyperparameters they try.

Training is in-process: no store, no subprocesses, no checkpoints on disk. This measures the
quality of the search per unit of compute, not babysit's plumbing (see the other benchmarks).

    python benchmarks/bench_search.py                        # ~5 min of CPU, 1 thread
    python benchmarks/bench_search.py --seeds 1 --trials 8   # smaller
    python benchmarks/bench_search.py --methods log,pbt,tpe

Writes the raw results to benchmarks/results/bench_search.json and the plot of best validation
loss against compute to docs/bench_search.png (needs matplotlib: ``pip install -e .[bench]``).
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from babysit.demo import model, spirals  # noqa: E402
from babysit.study import (  # noqa: E402
    CoarseToFineStrategy,
    GridStrategy,
    OptunaStrategy,
    RandomStrategy,
    Space,
    Strategy,
    Suggestion,
    plan,
)

METHODS = ("grid", "uniform", "log", "tpe", "pbt", "c2f", "optuna_bs")
LABELS = {
    "grid": "grid, linear",
    "uniform": "random, linear",
    "log": "random, log scales (babysit)",
    "tpe": "Optuna TPE + MedianPruner (direct)",
    "pbt": "PBT (babysit)",
    "c2f": "coarse-to-fine (babysit)",
    "optuna_bs": "Optuna TPE via babysit",
}
LR = (1e-4, 1.0)
MOMENTUM = (0.5, 0.999)
BATCH = 64
CLIP = 5.0

# The two spaces: the one a naive user writes, and the one babysit asks for.
LINEAR_SPACE = Space.from_dict({
    "lr": {"scale": "linear", "low": LR[0], "high": LR[1]},
    "momentum": {"scale": "linear", "low": MOMENTUM[0], "high": MOMENTUM[1]},
})
LOG_SPACE = Space.from_dict({
    "lr": {"scale": "log", "low": LR[0], "high": LR[1]},
    "momentum": {"scale": "one_minus_log", "low": MOMENTUM[0], "high": MOMENTUM[1]},
})


@dataclass(frozen=True)
class Task:
    """The demo data: training, validation and test spirals (generated, fixed for all runs)."""

    x: torch.Tensor
    y: torch.Tensor
    xv: torch.Tensor
    yv: torch.Tensor
    xt: torch.Tensor
    yt: torch.Tensor

    @classmethod
    def make(cls) -> Task:
        return cls(*spirals(4096, seed=0), *spirals(1024, seed=1), *spirals(1024, seed=2))


@dataclass
class Budget:
    """Steps spent so far across all trials of one method, and every day-end evaluation."""

    total: int
    spent: int = 0
    # (steps spent, val loss, test loss, lr, momentum) at each day end, in order of compute
    evaluations: list[tuple[int, float, float, float, float]] = field(default_factory=list)

    @property
    def left(self) -> int:
        return self.total - self.spent


class Member:
    """One model being trained: weights, optimizer and its own data order."""

    def __init__(self, task: Task, config: dict[str, Any], seed: int) -> None:
        self.task = task
        # Weights come from the global torch RNG inside a fork, so the caller's state is untouched.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.net = model()
        self.opt = torch.optim.SGD(self.net.parameters(), lr=config["lr"],
                                   momentum=config["momentum"])
        self.config = dict(config)
        self._gen = torch.Generator().manual_seed(seed)
        self._perm = torch.randperm(len(task.x), generator=self._gen)
        self._pos = 0
        self._loss = nn.CrossEntropyLoss()

    def set_config(self, config: dict[str, Any]) -> None:
        self.config = dict(config)
        for group in self.opt.param_groups:
            group["lr"] = config["lr"]
            group["momentum"] = config["momentum"]

    def train(self, steps: int, budget: Budget) -> None:
        for _ in range(steps):
            if self._pos + BATCH > len(self._perm):
                self._perm = torch.randperm(len(self.task.x), generator=self._gen)
                self._pos = 0
            idx = self._perm[self._pos:self._pos + BATCH]
            self._pos += BATCH
            loss = self._loss(self.net(self.task.x[idx]), self.task.y[idx])
            self.opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(self.net.parameters(), CLIP)
            self.opt.step()
        budget.spent += steps

    @torch.no_grad()
    def evaluate(self, budget: Budget) -> float:
        """Validation loss (NaN when diverged); recorded with the test loss in ``budget``."""
        val = self._loss(self.net(self.task.xv), self.task.yv).item()
        test = self._loss(self.net(self.task.xt), self.task.yt).item()
        budget.evaluations.append((budget.spent, val, test, self.config["lr"],
                                   self.config["momentum"]))
        return val


def trial_seed(seed: int, i: int) -> int:
    """Initial weights and data order of trial i: the same for every method at a given seed."""
    return 10_000 * seed + i


def train_trial(task: Task, config: dict[str, Any], seed: int, budget: Budget, steps: int,
                day: int, on_day: Callable[[int, float], bool] | None = None) -> float:
    """Train one config day by day; return its last validation loss (NaN if it diverged).

    Stops early when the budget runs out, the loss is not finite, or ``on_day(day, val)``
    returns False (a pruner).
    """
    member = Member(task, config, seed)
    val, done, d = math.nan, 0, 0
    while done < steps and budget.left > 0:
        n = min(day, steps - done, budget.left)
        member.train(n, budget)
        done += n
        d += 1
        val = member.evaluate(budget)
        if not math.isfinite(val):
            break
        if on_day is not None and not on_day(d, val):
            break
    return val


def sequential(strategy: Strategy, task: Task, seed: int, budget: Budget, steps: int,
               day: int) -> dict[str, Any]:
    """Ask one config at a time, train it, tell its last validation loss."""
    n = 0
    while budget.left > 0:
        asked = strategy.ask(1)
        if not asked:
            break  # the grid or coarse-to-fine has nothing left
        suggestion = asked[0]

        def report(d: int, val: float, number: int = suggestion.number) -> bool:
            strategy.report(number, d, val)
            return True

        val = train_trial(task, suggestion.config, trial_seed(seed, n), budget, steps, day, report)
        strategy.tell(suggestion.number, val)
        n += 1
    return {"trials": n}


class ShuffledGrid:
    """babysit's `GridStrategy`, every point once, handed out in an order drawn from ``seed``."""

    def __init__(self, space: Space, n_per_param: int, seed: int) -> None:
        self.grid = GridStrategy(space, n_per_param)
        self._left = self.grid.ask(self.grid.size)
        np.random.default_rng(seed).shuffle(self._left)  # type: ignore[arg-type]

    @property
    def exhausted(self) -> bool:
        return not self._left

    def ask(self, n: int) -> list[Suggestion]:
        out, self._left = self._left[:n], self._left[n:]
        return out

    def tell(self, number: int, value: float) -> None:
        self.grid.tell(number, value)

    def report(self, number: int, day: int, value: float) -> None:
        self.grid.report(number, day, value)


def optuna_direct(task: Task, seed: int, budget: Budget, steps: int, day: int) -> dict[str, Any]:
    """Optuna as its docs show it: an objective with report/should_prune, study.optimize."""
    import optuna

    study = optuna.create_study(direction="minimize",
                                sampler=optuna.samplers.TPESampler(seed=seed),
                                pruner=optuna.pruners.MedianPruner())

    def objective(trial: optuna.Trial) -> float:
        config = {"lr": trial.suggest_float("lr", *LR, log=True),
                  "momentum": 1.0 - trial.suggest_float("one_minus_momentum",
                                                        1.0 - MOMENTUM[1], 1.0 - MOMENTUM[0],
                                                        log=True)}

        pruned = False

        def report(d: int, val: float) -> bool:
            nonlocal pruned
            trial.report(val, d)
            pruned = trial.should_prune()
            return not pruned

        val = train_trial(task, config, trial_seed(seed, trial.number), budget, steps, day, report)
        if pruned:
            raise optuna.TrialPruned()
        return val  # NaN: Optuna marks the trial failed, as a diverged run should be

    def stop_when_spent(study: optuna.Study, _trial: optuna.trial.FrozenTrial) -> None:
        if budget.left <= 0:
            study.stop()

    study.optimize(objective, callbacks=[stop_when_spent])
    pruned = sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials)
    return {"trials": len(study.trials), "pruned": pruned}


def exploit(loser: Member, winner: Member, config: dict[str, Any]) -> None:
    """PBT's exploit in memory: the loser takes the winner's weights and optimizer state, then
    ``config`` (the explored hyperparameters)."""
    loser.net.load_state_dict(winner.net.state_dict())  # copies into the loser's params
    # Optimizer.load_state_dict keeps the given tensors (no copy when dtype and device match):
    # without the deepcopy both members would share, and both update, one momentum buffer.
    loser.opt.load_state_dict(copy.deepcopy(winner.opt.state_dict()))
    loser.set_config(config)  # after the optimizer load, which brings the winner's lr/momentum


def pbt(task: Task, seed: int, budget: Budget, steps: int, day: int,
        population: int) -> dict[str, Any]:
    """Train ``population`` members in lock step; at each day end but the last, exploit/explore."""
    rng = np.random.default_rng(seed)
    starts = RandomStrategy(LOG_SPACE, seed=seed).ask(population)
    members = [Member(task, s.config, trial_seed(seed, i)) for i, s in enumerate(starts)]
    exploits, d, done = 0, 0, 0
    while done < steps and budget.left > 0:
        n = min(day, steps - done)
        scores = {}
        for i, member in enumerate(members):
            if budget.left <= 0:
                break
            member.train(min(n, budget.left), budget)
            scores[i] = member.evaluate(budget)
        done += n
        d += 1
        if done >= steps or len(scores) < len(members):
            break
        configs = {i: m.config for i, m in enumerate(members)}
        for move in plan(scores, configs, LOG_SPACE, rng, metric="val_loss", day=d):
            exploit(members[move.loser], members[move.winner], move.new_config)
            exploits += 1
    return {"trials": population, "exploits": exploits}


def run_method(method: str, task: Task, seed: int, trials: int, steps: int, day: int
               ) -> dict[str, Any]:
    """One method at one seed; returns its evaluations, curve and counters."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    budget = Budget(trials * steps)
    t0 = time.process_time()
    if method == "grid":
        side = max(2, round(math.sqrt(trials)))
        info = sequential(ShuffledGrid(LINEAR_SPACE, side, seed), task, seed, budget, steps, day)
    elif method == "uniform":
        info = sequential(RandomStrategy(LINEAR_SPACE, seed=seed), task, seed, budget, steps, day)
    elif method == "log":
        info = sequential(RandomStrategy(LOG_SPACE, seed=seed), task, seed, budget, steps, day)
    elif method == "c2f":
        strategy = CoarseToFineStrategy(LOG_SPACE, batch_size=max(1, trials // 2), rounds=2,
                                        seed=seed)
        info = sequential(strategy, task, seed, budget, steps, day)
    elif method == "optuna_bs":
        info = sequential(OptunaStrategy(LOG_SPACE, sampler="tpe", seed=seed), task, seed,
                          budget, steps, day)
    elif method == "tpe":
        info = optuna_direct(task, seed, budget, steps, day)
    else:
        info = pbt(task, seed, budget, steps, day, population=trials)
    return {**info, "steps": budget.spent, "budget": budget.total,
            "cpu_s": round(time.process_time() - t0, 2),
            "evaluations": [[s, _finite(v), _finite(t), lr, m]
                            for s, v, t, lr, m in budget.evaluations]}


def _finite(value: float) -> float | None:
    """NaN and inf (a diverged model) become None, so the results are strict JSON."""
    return value if math.isfinite(value) else None


Evaluation = Sequence[Any]  # [steps spent, val loss or None, test loss or None, lr, momentum]


def best_curve(evaluations: Sequence[Evaluation], points: Sequence[int]) -> list[float | None]:
    """Lowest validation loss among evaluations made by each compute point (None: none yet)."""
    out: list[float | None] = []
    for p in points:
        vals = [e[1] for e in evaluations if e[0] <= p and e[1] is not None]
        out.append(min(vals) if vals else None)
    return out


def best_evaluation(evaluations: Sequence[Evaluation]) -> Evaluation | None:
    """The evaluation with the lowest validation loss (the first one on a tie)."""
    finite = [e for e in evaluations if e[1] is not None]
    return min(finite, key=lambda e: e[1]) if finite else None


def run(methods: Sequence[str] = METHODS, seeds: Sequence[int] = (0, 1, 2), trials: int = 16,
        steps: int = 600, day: int = 100, log: Callable[[str], None] | None = None
        ) -> dict[str, Any]:
    """The whole benchmark; returns a JSON-ready dict (settings, per method and seed results).

    >>> r = run(["log"], seeds=[0], trials=2, steps=20, day=10)
    >>> len(r["results"]["log"]["0"]["curve"])  # best val loss after each day of compute
    4
    """
    for label, v in (("trials", trials), ("steps", steps), ("day", day)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{label} must be a whole number >= 1, got {v!r}")
    if steps % day:
        raise ValueError(f"steps must be a multiple of day, got steps={steps!r}, day={day!r}")
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ValueError(f"methods must be among {', '.join(METHODS)}, got {list(methods)!r}")
    task = Task.make()
    total = trials * steps
    points = list(range(day, total + 1, day))
    results: dict[str, dict[str, Any]] = {}
    for method in methods:
        results[method] = {}
        for seed in seeds:
            r = run_method(method, task, seed, trials, steps, day)
            r["curve"] = best_curve(r["evaluations"], points)
            best = best_evaluation(r["evaluations"]) or [None] * 5
            r["best_val"], r["best_test"] = best[1], best[2]
            r["best_config"] = {"lr": best[3], "momentum": best[4]}
            results[method][str(seed)] = r
            if log and best[1] is None:
                log(f"  {method:10} seed {seed}: every trial diverged; {r['trials']} trials")
            elif log:
                log(f"  {method:10} seed {seed}: best val {best[1]:.4f} at lr {best[3]:.3g}, "
                    f"momentum {best[4]:.4g}; {r['trials']} trials, {r['cpu_s']} cpu s")
    return {"settings": {"trials": trials, "steps": steps, "day": day, "budget": total,
                         "seeds": list(seeds), "lr": LR, "momentum": MOMENTUM, "batch": BATCH,
                         "torch": torch.__version__},
            # lr and momentum are those in force during the day that ended (PBT changes them)
            "evaluation_fields": ["steps spent", "val loss", "test loss", "lr", "momentum"],
            "points": points, "results": results}


def _at(curve: Sequence[float | None], points: Sequence[int], fraction: float) -> float | None:
    target = fraction * points[-1]
    index = min(i for i, p in enumerate(points) if p >= target - 1e-9)
    return curve[index]


def _mean_std(values: Sequence[float | None]) -> str:
    finite = [v for v in values if v is not None]
    if not finite:
        return "-"
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    missing = f" ({len(values) - len(finite)} none)" if len(finite) < len(values) else ""
    return f"{statistics.mean(finite):.3f} ± {std:.3f}{missing}"


def table(result: dict[str, Any]) -> str:
    """The printed table: mean ± std over seeds of the best val loss at 25/50/100% of the budget."""
    points = result["points"]
    lines = [f"{'method':36} {'25%':>15} {'50%':>15} {'100%':>15} {'test @100%':>15} trials"]
    for method, per_seed in result["results"].items():
        runs = list(per_seed.values())
        cells = [_mean_std([_at(r["curve"], points, f) for r in runs]) for f in (0.25, 0.5, 1.0)]
        test = _mean_std([r["best_test"] for r in runs])
        extra = ""
        if method == "tpe":
            extra = f" ({statistics.mean(r['pruned'] for r in runs):.0f} pruned)"
        if method == "pbt":
            extra = f" ({statistics.mean(r['exploits'] for r in runs):.0f} exploits)"
        trials = statistics.mean(r["trials"] for r in runs)
        lines.append(f"{LABELS[method]:36} {cells[0]:>15} {cells[1]:>15} {cells[2]:>15} "
                     f"{test:>15} {trials:.1f}{extra}")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Best validation loss against compute: mean over seeds, shaded min to max."""
    try:
        import matplotlib
    except ImportError:
        raise SystemExit("the plot needs matplotlib: pip install -e '.[bench]' "
                         "(or pass --no-plot)") from None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = np.array(result["points"]) / result["settings"]["budget"] * 100
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    for method, per_seed in result["results"].items():
        curves = np.array([[np.nan if v is None else v for v in r["curve"]]
                           for r in per_seed.values()], dtype=float)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before any eval
            mean, lo, hi = np.nanmean(curves, 0), np.nanmin(curves, 0), np.nanmax(curves, 0)
        (line,) = ax.plot(points, mean, label=LABELS[method], lw=1.8)
        ax.fill_between(points, lo, hi, color=line.get_color(), alpha=0.15, lw=0)
    s = result["settings"]
    ax.set_yscale("log")
    ax.set_xlabel(f"compute spent, % of the budget ({s['budget']} steps = "
                  f"{s['trials']} trials x {s['steps']} steps)")
    ax.set_ylabel("best validation loss so far")
    ax.set_title(f"Demo task (spirals), mean over {len(s['seeds'])} seeds, shaded min-max")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(METHODS),
                        help=f"comma-separated, among {', '.join(METHODS)}")
    parser.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1")
    parser.add_argument("--trials", type=int, default=16, help="budget = trials x steps")
    parser.add_argument("--steps", type=int, default=600, help="training steps per trial")
    parser.add_argument("--day", type=int, default=100, help="steps per day (an evaluation)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks/results/bench_search.json")
    parser.add_argument("--png", type=Path, default=ROOT / "docs/bench_search.png")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    import optuna

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a diverged trial is expected here
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    t0 = time.perf_counter()
    result = run(methods, range(args.seeds), args.trials, args.steps, args.day, log=print)
    wall = time.perf_counter() - t0
    s = result["settings"]
    print(f"\ndemo task, lr {LR}, momentum {MOMENTUM}, budget {s['budget']} steps per method "
          f"and seed ({s['trials']} x {s['steps']}), day = {s['day']} steps, seeds {s['seeds']}")
    print("best validation loss so far, mean ± std over seeds, at a share of the budget")
    print(table(result))
    print(f"(wall {wall:.0f} s)")
    result["wall_s"] = round(wall, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, allow_nan=False) + "\n")
    print(f"wrote {args.json}")
    if not args.no_plot:
        plot(result, args.png)
        print(f"wrote {args.png}")


if __name__ == "__main__":
    main()
