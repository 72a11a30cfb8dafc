"""Search strategies: what configs a study launches next, given what it has heard so far.

A strategy is a small ask/tell object. The study orchestrator asks for configs, launches one
run per `Suggestion`, and tells the strategy each run's final objective (NaN or inf for a run
that diverged or crashed). It never sees processes, checkpoints or the store.

Each strategy owns its random source, created from ``seed`` (a numpy Generator, or Optuna's
sampler seed): the same seed and the same sequence of ask/tell calls give the same configs.
Nothing here touches the global ``random`` or ``numpy.random`` state.

>>> from babysit.study.space import Space
>>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
>>> strategy = make_strategy("grid", space, n_per_param=3)
>>> [s.config for s in strategy.ask(5)]
[{'lr': 0.0001}, {'lr': 0.01}, {'lr': 1.0}]
>>> strategy.ask(1), strategy.exhausted
([], True)
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from babysit.study.space import Param, Space, SpaceError, check_direction

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class Suggestion:
    """A config to launch, with the number to quote when telling its result.

    >>> Suggestion(0, {"lr": 0.1}).config
    {'lr': 0.1}
    """

    number: int
    config: dict[str, Any]


@runtime_checkable
class Strategy(Protocol):
    """What a study orchestrator needs from a search strategy.

    ``ask(n)`` returns up to ``n`` suggestions (fewer, or [], when the strategy is waiting for
    results or has nothing left: ``exhausted`` tells the two apart). ``tell(number, value)``
    gives a suggestion's final objective; ``report(number, day, value)`` an intermediate one.
    """

    @property
    def exhausted(self) -> bool: ...

    def ask(self, n: int) -> list[Suggestion]: ...

    def tell(self, number: int, value: float) -> None: ...

    def report(self, number: int, day: int, value: float) -> None: ...


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise SpaceError(f"ask needs a whole number of configs >= 0, got {n!r}")
    return int(n)


def _check_value(number: int, value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        raise SpaceError(
            f"the value told for trial {number} must be a number, got {value!r}"
        ) from None


class _Bookkeeping:
    """Numbers suggestions and checks that every tell answers exactly one ask."""

    def __init__(self, space: Space) -> None:
        if not isinstance(space, Space):
            raise SpaceError(f"a strategy needs a Space, got {space!r}")
        self.space = space
        self._asked: dict[int, dict[str, Any]] = {}
        self._told: dict[int, float] = {}

    def _new(self, config: dict[str, Any]) -> Suggestion:
        number = len(self._asked)
        self._asked[number] = config
        return Suggestion(number, dict(config))

    def _record(self, number: Any, value: Any) -> float:
        if number not in self._asked:
            raise SpaceError(
                f"trial {number!r} was never asked (asked so far: 0..{len(self._asked) - 1})"
            )
        if number in self._told:
            raise SpaceError(f"trial {number!r} was already told a value ({self._told[number]!r})")
        self._told[number] = _check_value(number, value)
        return self._told[number]

    @property
    def results(self) -> list[tuple[dict[str, Any], float]]:
        """Every told (config, value), in the order suggestions were made."""
        return [(dict(self._asked[n]), v) for n, v in sorted(self._told.items())]

    @property
    def pending(self) -> list[int]:
        """Numbers asked but not told yet."""
        return [n for n in self._asked if n not in self._told]

    def tell(self, number: int, value: float) -> None:
        """Record the final objective of suggestion ``number`` (NaN/inf: the run failed)."""
        self._record(number, value)

    def report(self, number: int, day: int, value: float) -> None:
        """Intermediate objective at the end of ``day``; this strategy does not use it."""
        if number not in self._asked:
            raise SpaceError(f"trial {number!r} was never asked")


class GridStrategy(_Bookkeeping):
    """Every point of ``space.grid(n_per_param)``, in order, once; then exhausted.

    >>> from babysit.study.space import Space
    >>> g = GridStrategy(Space.from_dict({"opt": ["sgd", "adam"]}), 3)
    >>> [s.config["opt"] for s in g.ask(10)]
    ['sgd', 'adam']
    """

    def __init__(self, space: Space, n_per_param: int | Mapping[str, int] = 3) -> None:
        super().__init__(space)
        self._grid = space.grid(n_per_param)

    @property
    def size(self) -> int:
        """How many configs the grid has."""
        return len(self._grid)

    @property
    def exhausted(self) -> bool:
        return len(self._asked) >= len(self._grid)

    def ask(self, n: int) -> list[Suggestion]:
        n = _check_n(n)
        start = len(self._asked)
        return [self._new(dict(c)) for c in self._grid[start : start + n]]


class RandomStrategy(_Bookkeeping):
    """Configs drawn independently, each param on its own scale; never exhausted.

    >>> from babysit.study.space import Space
    >>> r = RandomStrategy(Space.from_dict({"opt": ["sgd", "adam"]}), seed=0)
    >>> [s.config["opt"] for s in r.ask(5)]
    ['adam', 'adam', 'adam', 'sgd', 'sgd']
    """

    def __init__(self, space: Space, *, seed: int | None = None) -> None:
        super().__init__(space)
        self._rng = np.random.default_rng(seed)

    @property
    def exhausted(self) -> bool:
        return False

    def ask(self, n: int) -> list[Suggestion]:
        return [self._new(self.space.sample(self._rng)) for _ in range(_check_n(n))]


class CoarseToFineStrategy(_Bookkeeping):
    """Random batches, each drawn from a space narrowed around the best results so far.

    Round 0 samples ``batch_size`` configs from the whole space. When every config of a batch
    has been told, the space is narrowed (`Space.narrow`) around the best ``top_fraction`` of
    all results inside it, and the next batch is drawn from there; after ``rounds`` batches
    the strategy is exhausted. Until a batch is fully told, ``ask`` returns what is left of it
    and then [] (tell a failed run NaN, or the study waits for it forever).

    `narrow_to` is the UI's "zoom in here": it replaces the current space by a region of the
    study's whole space and starts a new batch there at once (one more round if needed).

    >>> from babysit.study.space import Space
    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> c2f = CoarseToFineStrategy(space, batch_size=4, rounds=2, seed=0)
    >>> for s in c2f.ask(4):
    ...     c2f.tell(s.number, abs(s.config["lr"] - 0.5))
    >>> c2f.space["lr"].low > 1e-4, c2f.round
    (True, 1)
    """

    def __init__(
        self,
        space: Space,
        *,
        direction: str = "min",
        batch_size: int = 16,
        top_fraction: float = 0.25,
        rounds: int = 3,
        margin: float = 0.1,
        seed: int | None = None,
    ) -> None:
        super().__init__(space)
        self.direction = check_direction(direction)
        for label, v in (("batch_size", batch_size), ("rounds", rounds)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise SpaceError(f"{label} must be a whole number >= 1, got {v!r}")
        for label, f in (("top_fraction", top_fraction), ("margin", margin)):
            if isinstance(f, bool) or not isinstance(f, int | float) or not 0 < f <= 1:
                raise SpaceError(f"{label} must be in (0, 1], got {f!r}")
        self.whole_space = space
        self.batch_size = batch_size
        self.top_fraction = top_fraction
        self.rounds = rounds
        self.margin = margin
        self._rng = np.random.default_rng(seed)
        self.round = 0
        self._batch: list[int] = []  # numbers asked in the current round
        self._unasked = [space.sample(self._rng) for _ in range(batch_size)]

    @property
    def exhausted(self) -> bool:
        return self.round >= self.rounds - 1 and not self._unasked and self._batch_told()

    def _batch_told(self) -> bool:
        return all(n in self._told for n in self._batch)

    def _start_round(self, space: Space) -> None:
        self.space = space
        self.round += 1
        self._batch = []
        self._unasked = [space.sample(self._rng) for _ in range(self.batch_size)]

    def ask(self, n: int) -> list[Suggestion]:
        n = _check_n(n)
        out: list[Suggestion] = []
        # With the batch all asked, wait for its results: the last tell starts the next round.
        while len(out) < n and self._unasked:
            suggestion = self._new(self._unasked.pop(0))
            self._batch.append(suggestion.number)
            out.append(suggestion)
        return out

    def tell(self, number: int, value: float) -> None:
        self._record(number, value)
        # Narrow as soon as the batch is complete, so `space` shows the next round's range.
        if not self._unasked and self._batch_told() and self.round < self.rounds - 1:
            scored = [(c, v) for c, v in self.results if self.space.contains(c)]
            if any(math.isfinite(v) for _, v in scored):
                self._start_round(
                    self.space.narrow(
                        scored, self.direction, top_fraction=self.top_fraction, margin=self.margin
                    )
                )
            else:  # a whole batch failed: nothing to narrow around, search the same range again
                self._start_round(self.space)

    def narrow_to(self, region: Mapping[str, Any]) -> Space:
        """Start a new batch in ``region`` of the study's whole space; return the new space.

        Configs of the current batch that were not asked yet are dropped; runs already
        launched keep going and their results still count.
        """
        space = self.whole_space.narrow_to(region)
        self.rounds = max(self.rounds, self.round + 2)
        self._start_round(space)
        return space


# -- Optuna ----------------------------------------------------------------------------------------

OPTUNA_SAMPLERS = ("tpe", "gp", "random")


def optuna_distribution(param: Param) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution that searches ``param`` on its own scale.

    ``log`` is a log float; ``one_minus_log`` is a log float over ``1 - beta`` (so TPE/GP see
    0.1..0.001, spread evenly per decade); ``pow2`` is an int over the exponent; ``choice`` is
    categorical. `to_optuna` and `from_optuna` convert values.

    >>> optuna_distribution(Param("batch_size", "pow2", 16, 256))
    IntDistribution(high=8, log=False, low=4, step=1)
    """
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    if param.scale == "choice":
        return CategoricalDistribution(param.choices or ())
    assert param.low is not None and param.high is not None
    if param.scale == "int":
        return IntDistribution(int(param.low), int(param.high))
    if param.scale == "pow2":
        lo, hi = param.exponents
        return IntDistribution(lo, hi)
    if param.scale == "one_minus_log":
        return FloatDistribution(1.0 - param.high, 1.0 - param.low, log=True)
    return FloatDistribution(param.low, param.high, log=param.scale == "log")


def to_optuna(param: Param, value: Any) -> Any:
    """``value`` as the Optuna distribution of ``param`` holds it (momentum 0.99 -> 0.01).

    >>> to_optuna(Param("batch_size", "pow2", 16, 256), 64)
    6
    """
    if not param.contains(value):
        raise SpaceError(f"param {param.name!r}: {value!r} is not in {param.describe()}")
    if param.scale == "pow2":
        return int(value).bit_length() - 1
    if param.scale == "one_minus_log":
        dist = optuna_distribution(param)
        # 1 - (1 - x) need not round-trip exactly: keep it inside the distribution.
        return min(max(1.0 - float(value), dist.low), dist.high)  # type: ignore[attr-defined]
    if param.scale == "choice":
        assert param.choices is not None
        index = param.choice_index(value)
        assert index is not None
        return param.choices[index]
    return value


def from_optuna(param: Param, raw: Any) -> Any:
    """Inverse of `to_optuna`: Optuna's value back in the param's own units.

    >>> from_optuna(Param("batch_size", "pow2", 16, 256), 6)
    64
    """
    if param.scale == "pow2":
        return 2 ** int(raw)
    if param.scale == "one_minus_log":
        return param.clip(1.0 - float(raw))
    if param.scale == "int":
        return int(raw)
    if param.scale in ("linear", "log"):
        return param.clip(float(raw))
    return raw


def _optuna_sampler(
    sampler: str, seed: int | None, n_startup_trials: int | None
) -> optuna.samplers.BaseSampler:
    import optuna

    if sampler not in OPTUNA_SAMPLERS:
        raise SpaceError(
            f"unknown Optuna sampler {sampler!r}; expected one of {', '.join(OPTUNA_SAMPLERS)}"
        )
    if n_startup_trials is not None and (
        isinstance(n_startup_trials, bool)
        or not isinstance(n_startup_trials, int)
        or n_startup_trials < 0
    ):
        raise SpaceError(f"n_startup_trials must be a whole number >= 0, got {n_startup_trials!r}")
    startup = 10 if n_startup_trials is None else n_startup_trials  # both samplers default to 10
    if sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup)
    if sampler == "gp":
        try:
            import scipy  # noqa: F401  # GPSampler needs scipy and torch
        except ImportError as exc:
            raise SpaceError(
                "sampler 'gp' needs scipy: pip install scipy (or use sampler='tpe')"
            ) from exc
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if n_startup_trials is not None:
        raise SpaceError(f"sampler 'random' takes no n_startup_trials, got {n_startup_trials!r}")
    return optuna.samplers.RandomSampler(seed=seed)


class OptunaStrategy(_Bookkeeping):
    """Suggestions from an Optuna sampler (TPE, GP or random) through Optuna's ask/tell.

    The Optuna study lives in memory and is private to the strategy: the store stays the
    record. Batches asked before any result is told are spread out by TPE's constant liar.

    >>> from babysit.study.space import Space
    >>> space = Space.from_dict({"momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999}})
    >>> tpe = OptunaStrategy(space, sampler="tpe", seed=0)
    >>> [s] = tpe.ask(1)
    >>> 0.9 <= s.config["momentum"] <= 0.999
    True
    >>> tpe.tell(s.number, 0.3)
    """

    def __init__(
        self,
        space: Space,
        *,
        direction: str = "min",
        sampler: str = "tpe",
        seed: int | None = None,
        n_startup_trials: int | None = None,
    ) -> None:
        super().__init__(space)
        import optuna

        self.direction = check_direction(direction)
        self.sampler = sampler
        self._distributions = {p.name: optuna_distribution(p) for p in space}
        self._study = optuna.create_study(
            direction="minimize" if direction == "min" else "maximize",
            sampler=_optuna_sampler(sampler, seed, n_startup_trials),
        )
        self._trials: dict[int, optuna.trial.Trial] = {}

    @property
    def exhausted(self) -> bool:
        return False

    def ask(self, n: int) -> list[Suggestion]:
        out: list[Suggestion] = []
        for _ in range(_check_n(n)):
            trial = self._study.ask(self._distributions)
            config = {p.name: from_optuna(p, trial.params[p.name]) for p in self.space}
            suggestion = self._new(config)
            self._trials[suggestion.number] = trial
            out.append(suggestion)
        return out

    def enqueue(self, config: Mapping[str, Any]) -> None:
        """Make the next `ask` return ``config`` (its params): a restarted study orchestrator
        replays the trials it launched this way, so the sampler learns from their results."""
        self._study.enqueue_trial({p.name: to_optuna(p, config[p.name]) for p in self.space})

    def tell(self, number: int, value: float) -> None:
        from optuna.trial import TrialState

        value = self._record(number, value)
        trial = self._trials.pop(number)
        if math.isfinite(value):
            self._study.tell(trial, value)
        else:  # a diverged run: Optuna keeps it as failed and its sampler ignores it
            self._study.tell(trial, state=TrialState.FAIL)

    def report(self, number: int, day: int, value: float) -> None:
        """Pass an intermediate objective to the Optuna trial (step = day), when finite."""
        super().report(number, day, value)
        value = _check_value(number, value)
        if number in self._trials and math.isfinite(value):
            self._trials[number].report(value, step=int(day))


# -- factory ----------------------------------------------------------------------------------------

STRATEGIES: dict[str, tuple[type, dict[str, Any]]] = {
    "grid": (GridStrategy, {}),
    "random": (RandomStrategy, {}),
    "coarse_to_fine": (CoarseToFineStrategy, {}),
    "tpe": (OptunaStrategy, {"sampler": "tpe"}),
    "gp": (OptunaStrategy, {"sampler": "gp"}),
    "optuna_random": (OptunaStrategy, {"sampler": "random"}),
}


def make_strategy(
    name: str, space: Space, *, direction: str = "min", seed: int | None = None, **options: Any
) -> Strategy:
    """Build the strategy called ``name`` (one of `STRATEGIES`) for ``space``.

    ``direction`` and ``seed`` go to the strategies that use them (grid uses neither);
    other ``options`` go to the constructor, and an option it does not take is an error.

    >>> from babysit.study.space import Space
    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
    >>> type(make_strategy("coarse_to_fine", space, direction="max", batch_size=8)).__name__
    'CoarseToFineStrategy'
    """
    check_direction(direction)
    if name not in STRATEGIES:
        raise SpaceError(f"unknown strategy {name!r}; expected one of {', '.join(STRATEGIES)}")
    cls, fixed = STRATEGIES[name]
    accepted = set(inspect.signature(cls).parameters) - {"space"}
    clash = sorted(set(options) & set(fixed))
    unknown = sorted(set(options) - accepted - {"direction", "seed"})
    if clash or unknown:
        raise SpaceError(
            f"strategy {name!r} does not take option(s) {', '.join(clash + unknown)}; "
            f"it takes {', '.join(sorted(accepted - set(fixed))) or 'none'}"
        )
    kwargs = dict(fixed, **options)
    if "direction" in accepted:
        kwargs["direction"] = direction
    if "seed" in accepted:
        kwargs["seed"] = seed
    return cls(space, **kwargs)
