"""One hyperparameter of a search space (`Param`), sampled and moved on its own scale.

Split from `babysit.study.space` (which holds `Space`, the ordered collection, and its spec
parsing); `babysit.study.space` re-exports every name here.

>>> Param("lr", "log", 1e-4, 1.0).from_unit(0.5)
0.01
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

SCALES = ("linear", "log", "one_minus_log", "int", "pow2", "choice")
DIRECTIONS = ("min", "max")

_CONTINUOUS = ("linear", "log", "one_minus_log")
_SPEC_KEYS = ("scale", "low", "high", "choices")
# Grids and narrowed bounds are rounded to this many significant digits, so 1e-3 reads as
# 0.001 and not 0.0010000000000000002 in configs, run names and the event log.
_DIGITS = 12


class SpaceError(ValueError):
    """A search space, a config, or another study input is not acceptable; the message says which."""


def check_direction(direction: str) -> str:
    """Return ``direction`` if it is "min" or "max", else raise `SpaceError`.

    >>> check_direction("max")
    'max'
    """
    if direction not in DIRECTIONS:
        raise SpaceError(f"direction must be 'min' or 'max', got {direction!r}")
    return direction


def score_key(value: float, direction: str) -> float:
    """Sort key for an objective value, smaller is better; NaN and +-inf count as worst.

    A diverged run reports NaN or inf; it must rank below every finite run whatever the
    direction (a loss of -inf is a bug, not a record).

    >>> sorted([0.5, float("nan"), 0.1], key=lambda v: score_key(v, "min"))
    [0.1, 0.5, nan]
    """
    value = float(value)
    if not math.isfinite(value):
        return math.inf
    return value if direction == "min" else -value


def _round(x: float) -> float:
    return float(f"{x:.{_DIGITS}g}")


def _is_number(x: Any) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _is_integral(x: Any) -> bool:
    return _is_number(x) and math.isfinite(float(x)) and float(x) == int(x)


def _floor_half(x: float) -> int:
    """Round half up (Python's round() rounds half to even, which biases grids)."""
    return math.floor(x + 0.5)


@dataclass(frozen=True)
class Param:
    """One hyperparameter and the scale it is searched on.

    ``scale`` is one of ``linear`` (uniform in [low, high]), ``log`` (``10**r``, r uniform in
    [log10 low, log10 high]: learning rates, weight decay), ``one_minus_log`` (``1 - 10**r``:
    momentum, Adam betas; low/high in beta units, e.g. 0.9 and 0.999), ``int`` (uniform
    integer, both ends included), ``pow2`` (a power of two in [low, high]: batch size) and
    ``choice`` (one of ``choices``).

    >>> Param("momentum", "one_minus_log", 0.9, 0.999).grid(3)
    [0.9, 0.99, 0.999]
    """

    name: str
    scale: str
    low: float | int | None = None
    high: float | int | None = None
    choices: tuple[Any, ...] | None = None

    def __post_init__(self) -> None:
        name, scale, low, high, choices = self.name, self.scale, self.low, self.high, self.choices
        if not isinstance(name, str) or not name:
            raise SpaceError(f"a param name must be a non-empty string, got {name!r}")
        where = f"param {name!r}"
        if scale not in SCALES:
            raise SpaceError(
                f"{where}: unknown scale {scale!r}; expected one of {', '.join(SCALES)}"
            )
        if scale == "choice":
            if low is not None or high is not None:
                raise SpaceError(
                    f"{where}: scale 'choice' takes choices, not low/high (got low={low!r}, high={high!r})"
                )
            if (
                choices is None
                or isinstance(choices, str | bytes | Mapping)
                or not isinstance(choices, Iterable)
            ):
                raise SpaceError(
                    f"{where}: scale 'choice' needs a list of choices, got {choices!r}"
                )
            choices = tuple(choices)
            if not choices:
                raise SpaceError(f"{where}: choices must not be empty, got {list(choices)!r}")
            for c in choices:
                # Configs are stored as JSON and handed to Optuna: only plain scalars survive both.
                if not (c is None or isinstance(c, bool | int | float | str)):
                    raise SpaceError(
                        f"{where}: each choice must be a string, number, bool or null, got {c!r}"
                    )
            for i, c in enumerate(choices):
                if any(type(c) is type(s) and c == s for s in choices[:i]):
                    raise SpaceError(f"{where}: choice {c!r} appears twice in {list(choices)!r}")
            object.__setattr__(self, "choices", choices)
            return
        if choices is not None:
            raise SpaceError(
                f"{where}: scale {scale!r} takes low/high, not choices (got {choices!r})"
            )
        if low is None or high is None:
            raise SpaceError(
                f"{where}: scale {scale!r} needs both low and high, got low={low!r}, high={high!r}"
            )
        for label, bound in (("low", low), ("high", high)):
            if not _is_number(bound) or not math.isfinite(float(bound)):
                raise SpaceError(f"{where}: {label} must be a finite number, got {bound!r}")
        if scale in ("int", "pow2"):
            for label, bound in (("low", low), ("high", high)):
                if not _is_integral(bound):
                    raise SpaceError(
                        f"{where}: scale {scale!r} needs integer bounds, got {label}={bound!r}"
                    )
            low, high = int(low), int(high)
        else:
            low, high = float(low), float(high)
        if low >= high:
            raise SpaceError(f"{where}: low must be < high, got low={low!r}, high={high!r}")
        if scale == "log" and low <= 0:
            raise SpaceError(f"{where}: scale 'log' needs low > 0, got low={low!r}")
        if scale == "one_minus_log" and not (low > 0 and high < 1):
            raise SpaceError(
                f"{where}: scale 'one_minus_log' needs 0 < low < high < 1 in beta units "
                f"(e.g. 0.9 to 0.999), got low={low!r}, high={high!r}"
            )
        if scale == "pow2" and high < 1:
            raise SpaceError(
                f"{where}: scale 'pow2' has no power of two between low={low!r} and high={high!r}"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)
        if scale == "pow2":
            lo_exp, hi_exp = self.exponents
            if lo_exp > hi_exp:
                raise SpaceError(
                    f"{where}: scale 'pow2' has no power of two between low={low!r} and high={high!r}"
                )

    # -- the param's own scale -----------------------------------------------------------------

    @property
    def is_log(self) -> bool:
        """Whether a plot should use a log axis for this param (``log`` and ``pow2``).

        ``one_minus_log`` is not: plot ``1 - value`` on a log axis, or ``to_unit(value)``.

        >>> Param("lr", "log", 1e-4, 1.0).is_log
        True
        """
        return self.scale in ("log", "pow2")

    @property
    def exponents(self) -> tuple[int, int]:
        """For ``pow2``: the smallest and largest exponent e with low <= 2**e <= high.

        >>> Param("batch_size", "pow2", 10, 300).exponents
        (4, 8)
        """
        if self.scale != "pow2":
            raise SpaceError(
                f"param {self.name!r}: exponents only exist for scale 'pow2', not {self.scale!r}"
            )
        assert self.low is not None and self.high is not None
        # Integer arithmetic, exact for any size (math.log2 of a large int can be off by one).
        lo = max(0, (int(self.low) - 1).bit_length())
        hi = int(self.high).bit_length() - 1
        return lo, hi

    def _t(self, value: float) -> float:
        """Position of a number on the param's own axis (before scaling to [0, 1])."""
        if self.scale == "log":
            return math.log10(value)
        if self.scale == "one_minus_log":
            return -math.log10(1.0 - value)
        if self.scale == "pow2":
            return math.log2(value)
        return float(value)

    def _t_inv(self, t: float) -> float:
        if self.scale == "log":
            return 10.0**t
        if self.scale == "one_minus_log":
            return 1.0 - 10.0 ** (-t)
        if self.scale == "pow2":
            return 2.0**t
        return t

    def _t_bounds(self) -> tuple[float, float]:
        if self.scale == "pow2":
            lo, hi = self.exponents
            return float(lo), float(hi)
        assert self.low is not None and self.high is not None
        return self._t(self.low), self._t(self.high)

    def choice_index(self, value: Any) -> int | None:
        """For ``choice``: the index of ``value`` among the choices, or None.

        A bool only matches a bool (``True == 1`` in Python, but not here); 2.0 matches 2.

        >>> Param("opt", "choice", choices=("sgd", "adam")).choice_index("adam")
        1
        """
        if self.scale != "choice":
            raise SpaceError(
                f"param {self.name!r}: choice_index needs scale 'choice', not {self.scale!r}"
            )
        assert self.choices is not None
        for i, c in enumerate(self.choices):
            if type(c) is type(value) and c == value:
                return i
        if _is_number(value):
            for i, c in enumerate(self.choices):
                if _is_number(c) and c == value:
                    return i
        return None

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is a legal value of this param.

        >>> Param("batch_size", "pow2", 16, 256).contains(48)
        False
        """
        if self.scale == "choice":
            return self.choice_index(value) is not None
        if not _is_number(value) or not math.isfinite(float(value)):
            return False
        assert self.low is not None and self.high is not None
        if not self.low <= value <= self.high:
            return False
        if self.scale == "int":
            return _is_integral(value)
        if self.scale == "pow2":
            return _is_integral(value) and int(value) > 0 and int(value) & (int(value) - 1) == 0
        return True

    def _check(self, value: Any) -> None:
        if not self.contains(value):
            raise SpaceError(f"param {self.name!r}: {value!r} is not in {self.describe()}")

    def describe(self) -> str:
        """A short human description of the range, for messages and the UI.

        >>> Param("lr", "log", 1e-4, 1.0).describe()
        'log [0.0001, 1.0]'
        """
        if self.scale == "choice":
            return f"choice {list(self.choices or ())!r}"
        return f"{self.scale} [{self.low!r}, {self.high!r}]"

    def to_unit(self, value: Any) -> float:
        """Position of ``value`` in [0, 1] on the param's own scale (0 = low, 1 = high).

        For ``log``, 0.5 is the geometric middle; for ``choice``, choice i of n sits at
        i / (n - 1). Raises `SpaceError` for a value outside the param: clip it first.

        >>> Param("lr", "log", 1e-4, 1.0).to_unit(1e-2)
        0.5
        """
        self._check(value)
        if self.scale == "choice":
            assert self.choices is not None
            if len(self.choices) == 1:
                return 0.0
            index = self.choice_index(value)
            assert index is not None
            return index / (len(self.choices) - 1)
        t_lo, t_hi = self._t_bounds()
        if t_hi == t_lo:  # pow2 with a single power of two in range
            return 0.0
        u = (self._t(float(value)) - t_lo) / (t_hi - t_lo)
        return min(1.0, max(0.0, u))

    def from_unit(self, u: float) -> Any:
        """The value at position ``u`` in [0, 1] on the param's own scale; inverse of `to_unit`.

        ``int``, ``pow2`` and ``choice`` round to the nearest legal value.

        >>> Param("batch_size", "pow2", 16, 256).from_unit(0.5)
        64
        """
        if not _is_number(u) or not 0.0 <= float(u) <= 1.0:
            raise SpaceError(f"param {self.name!r}: a unit position must be in [0, 1], got {u!r}")
        u = float(u)
        if self.scale == "choice":
            assert self.choices is not None
            return self.choices[_floor_half(u * (len(self.choices) - 1))]
        assert self.low is not None and self.high is not None
        if self.scale == "int":
            return int(self.low + _floor_half(u * (self.high - self.low)))
        if self.scale == "pow2":
            lo, hi = self.exponents
            return 2 ** (lo + _floor_half(u * (hi - lo)))
        # Exact ends: 10**log10(x) need not give back x.
        if u == 0.0:
            return self.low
        if u == 1.0:
            return self.high
        t_lo, t_hi = self._t_bounds()
        return self.clip(self._t_inv(t_lo + u * (t_hi - t_lo)))

    def clip(self, value: Any) -> Any:
        """The legal value nearest to ``value`` (on the param's own scale for pow2).

        A choice that is not among the choices is an error: there is no "nearest" one.

        >>> Param("lr", "log", 1e-4, 1.0).clip(3.0), Param("batch_size", "pow2", 16, 256).clip(100)
        (1.0, 128)
        """
        if self.scale == "choice":
            self._check(value)
            return value
        if not _is_number(value) or math.isnan(float(value)):
            raise SpaceError(f"param {self.name!r}: cannot clip {value!r} into {self.describe()}")
        assert self.low is not None and self.high is not None
        v = min(max(float(value), float(self.low)), float(self.high))
        if self.scale == "int":
            return int(min(max(_floor_half(v), self.low), self.high))
        if self.scale == "pow2":
            lo, hi = self.exponents
            return 2 ** min(max(_floor_half(math.log2(v)) if v > 0 else lo, lo), hi)
        return v

    def sample(self, rng: np.random.Generator) -> Any:
        """One value drawn uniformly on the param's own scale.

        >>> Param("lr", "log", 1e-4, 1.0).sample(np.random.default_rng(0)) < 1.0
        True
        """
        if self.scale == "choice":
            assert self.choices is not None
            return self.choices[int(rng.integers(len(self.choices)))]
        assert self.low is not None and self.high is not None
        if self.scale == "int":
            return int(rng.integers(int(self.low), int(self.high), endpoint=True))
        if self.scale == "pow2":
            lo, hi = self.exponents
            return 2 ** int(rng.integers(lo, hi, endpoint=True))
        t_lo, t_hi = self._t_bounds()
        return self.clip(self._t_inv(t_lo + float(rng.random()) * (t_hi - t_lo)))

    def grid(self, n: int) -> list[Any]:
        """``n`` values evenly spaced on the param's own scale, ends included.

        ``n == 1`` gives the middle. ``choice`` gives every choice whatever ``n``; ``int`` and
        ``pow2`` give every legal value when there are at most ``n`` of them.

        >>> Param("lr", "log", 1e-4, 1.0).grid(5)
        [0.0001, 0.001, 0.01, 0.1, 1.0]
        """
        if not _is_integral(n) or n < 1:
            raise SpaceError(f"param {self.name!r}: grid size must be an integer >= 1, got {n!r}")
        n = int(n)
        if self.scale == "choice":
            assert self.choices is not None
            return list(self.choices)
        assert self.low is not None and self.high is not None
        if self.scale == "int" and self.high - self.low + 1 <= n:
            return list(range(int(self.low), int(self.high) + 1))
        if self.scale == "pow2":
            lo, hi = self.exponents
            if hi - lo + 1 <= n:
                return [2**e for e in range(lo, hi + 1)]
        units = [0.5] if n == 1 else [i / (n - 1) for i in range(n)]
        if self.scale in ("int", "pow2"):
            # More legal values than n, so the rounded points are n distinct values.
            return [self.from_unit(u) for u in units]
        return [self.clip(_round(self.from_unit(u))) for u in units]

    def perturb(self, value: Any, factor: float) -> Any:
        """``value`` moved by ``factor`` on the param's own scale, clipped to the bounds.

        For the usual positive hyperparameters a factor above 1 moves the value up and one
        below 1 moves it down, on every scale:

        - ``log``: ``value * factor`` (a shift of log10(factor) on the log axis).
        - ``linear``: ``value * factor``, as in Ray Tune's PBT (so 0 stays 0, and a negative
          value moves away from 0: resampling covers those).
        - ``one_minus_log``: ``1 - (1 - value) / factor``: the averaging horizon
          ``1 / (1 - beta)`` is multiplied by ``factor``, so x1.2 on 0.99 gives 0.99167
          (100 steps -> 120 steps) and x0.8 gives 0.9875 (80 steps).
        - ``int``: ``round(value * factor)``, at least one step the way the product moved
          (2 x 1.2 gives 3, not 2).
        - ``pow2``: one power of two up (factor > 1) or down (factor < 1).
        - ``choice``: the next choice in list order (factor > 1) or the previous one.

        >>> Param("lr", "log", 1e-4, 1.0).perturb(0.01, 1.2)
        0.012
        >>> Param("momentum", "one_minus_log", 0.9, 0.999).perturb(0.99, 0.8)
        0.9875
        """
        if not _is_number(factor) or not math.isfinite(float(factor)) or factor <= 0:
            raise SpaceError(
                f"param {self.name!r}: a perturb factor must be a finite number > 0, got {factor!r}"
            )
        factor = float(factor)
        if self.scale == "choice":
            self._check(value)
            assert self.choices is not None
            index = self.choice_index(value)
            assert index is not None
            step = (factor > 1) - (factor < 1)
            return self.choices[min(max(index + step, 0), len(self.choices) - 1)]
        if not _is_number(value) or not math.isfinite(float(value)):
            raise SpaceError(
                f"param {self.name!r}: cannot perturb {value!r}, it is not a finite number"
            )
        value = float(value)
        if self.scale == "pow2":
            step = (factor > 1) - (factor < 1)
            exponent = _floor_half(math.log2(value)) if value > 0 else self.exponents[0]
            return self.clip(2 ** (exponent + step))
        if self.scale == "int":
            start = _floor_half(value)
            moved = _floor_half(value * factor)
            if moved == start and value * factor != value:
                # Rounding undid the move (2 x 1.2 = 2.4 -> 2): take one step the same way.
                moved += 1 if value * factor > value else -1
            return self.clip(moved)
        if self.scale == "one_minus_log":
            if not value < 1:
                raise SpaceError(
                    f"param {self.name!r}: one_minus_log value must be < 1, got {value!r}"
                )
            return self.clip(_round(1.0 - (1.0 - value) / factor))
        return self.clip(_round(value * factor))

    # -- spec ------------------------------------------------------------------------------------

    @classmethod
    def from_spec(cls, name: str, spec: Any) -> Param:
        """Build a param from its spec: ``{"scale": ..., "low": ..., "high": ...}``,
        ``{"choices": [...]}`` (scale "choice" implied), or a bare list of choices.

        >>> Param.from_spec("opt", ["sgd", "adam"])
        Param(name='opt', scale='choice', low=None, high=None, choices=('sgd', 'adam'))
        """
        if isinstance(spec, list | tuple):
            return cls(name, "choice", choices=tuple(spec))
        if not isinstance(spec, Mapping):
            raise SpaceError(
                f"param {name!r}: spec must be a mapping like {{'scale': 'log', 'low': 1e-4, "
                f"'high': 1}} or a list of choices, got {spec!r}"
            )
        unknown = [k for k in spec if k not in _SPEC_KEYS]
        if unknown:
            raise SpaceError(
                f"param {name!r}: unknown key(s) {', '.join(map(repr, unknown))}; "
                f"expected {', '.join(_SPEC_KEYS)}"
            )
        scale = spec.get("scale", "choice" if "choices" in spec else None)
        if scale is None:
            raise SpaceError(
                f"param {name!r}: missing 'scale' (one of {', '.join(SCALES)}) in {dict(spec)!r}"
            )
        choices = spec.get("choices")
        return cls(
            name,
            scale,
            low=spec.get("low"),
            high=spec.get("high"),
            choices=tuple(choices) if isinstance(choices, list) else choices,
        )

    def to_spec(self) -> dict[str, Any]:
        """The spec dict that `from_spec` reads back to an equal param.

        >>> Param("lr", "log", 1e-4, 1.0).to_spec()
        {'scale': 'log', 'low': 0.0001, 'high': 1.0}
        """
        if self.scale == "choice":
            return {"scale": "choice", "choices": list(self.choices or ())}
        return {"scale": self.scale, "low": self.low, "high": self.high}
