"""A study's search space: one `Param` per hyperparameter, each sampled on its own scale.

The scale is the point of this module. A learning rate between 1e-4 and 1 is sampled
log-uniformly, so each decade gets the same share of runs; a momentum between 0.9 and 0.999 is
sampled on ``1 - 10**r``, so [0.9, 0.99] gets as many runs as [0.99, 0.999]; a batch size is a
power of two. Everything else that works on positions (coarse-to-fine narrowing, PBT
perturbation, plotting, grids) goes through the same per-scale transform, ``to_unit`` /
``from_unit``, so "halfway" means the same thing everywhere.

>>> import numpy as np
>>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1.0},
...                          "opt": {"choices": ["sgd", "adam"]}})
>>> space.grid(3)[:2]
[{'lr': 0.0001, 'opt': 'sgd'}, {'lr': 0.0001, 'opt': 'adam'}]
"""

from __future__ import annotations

import itertools
import json
import math
import numbers
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

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


class _YamlLoader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float (YAML 1.1 wants ``1.0e-4``; people write 1e-4)."""


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


@dataclass(frozen=True)
class Space:
    """An ordered collection of `Param`s, one per hyperparameter searched by a study.

    >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1},
    ...                          "batch_size": {"scale": "pow2", "low": 16, "high": 256}})
    >>> space.names
    ('lr', 'batch_size')
    """

    params: tuple[Param, ...]

    def __post_init__(self) -> None:
        params = tuple(self.params)
        for p in params:
            if not isinstance(p, Param):
                raise SpaceError(f"a space holds Param objects, got {p!r}")
        if not params:
            raise SpaceError("a space needs at least one param, got none")
        seen: set[str] = set()
        for p in params:
            if p.name in seen:
                raise SpaceError(f"duplicate param name {p.name!r}")
            seen.add(p.name)
        object.__setattr__(self, "params", params)

    # -- building --------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any]) -> Space:
        """Build a space from ``{name: param spec}`` (see `Param.from_spec`), keeping its order.

        >>> Space.from_dict({"momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999}})
        Space(params=(Param(name='momentum', scale='one_minus_log', low=0.9, high=0.999, choices=None),))
        """
        if not isinstance(spec, Mapping):
            raise SpaceError(f"a space spec must be a mapping of param name to spec, got {spec!r}")
        return cls(tuple(Param.from_spec(name, p) for name, p in spec.items()))

    @classmethod
    def from_file(cls, path: str | Path) -> Space:
        """Read a space spec from a ``.yaml``/``.yml``, ``.toml`` or ``.json`` file.

        >>> Space.from_file("study.yaml")  # doctest: +SKIP
        """
        path = Path(path)
        suffix = path.suffix.lower()
        if suffix not in (".yaml", ".yml", ".toml", ".json"):
            raise SpaceError(
                f"a space file must end in .yaml, .yml, .toml or .json, got {str(path)!r}"
            )
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise SpaceError(f"cannot read space file {str(path)!r}: {exc}") from exc
        fmt = {".toml": "toml", ".json": "json"}.get(suffix, "yaml")
        return cls.from_text(text, fmt, what=f"space file {str(path)!r}")

    @classmethod
    def from_text(cls, text: str, fmt: str = "yaml", *, what: str = "the space spec") -> Space:
        """A space from YAML (JSON reads as YAML too), TOML or JSON text.

        >>> Space.from_text("lr: {scale: log, low: 1e-4, high: 1}")["lr"].low
        0.0001
        """
        if fmt not in ("yaml", "toml", "json"):
            raise SpaceError(f"a space spec is yaml, toml or json, got {fmt!r}")
        try:
            if fmt == "toml":
                data: Any = tomllib.loads(text)
            elif fmt == "json":
                data = json.loads(text)
            else:
                data = yaml.load(text, Loader=_YamlLoader)  # noqa: S506 - a SafeLoader subclass
        except (tomllib.TOMLDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
            raise SpaceError(f"cannot parse {what} as {fmt}: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The spec that `from_dict` reads back to an equal space (JSON/YAML/TOML friendly).

        >>> Space((Param("lr", "log", 1e-4, 1.0),)).to_dict()
        {'lr': {'scale': 'log', 'low': 0.0001, 'high': 1.0}}
        """
        return {p.name: p.to_spec() for p in self.params}

    # -- access ----------------------------------------------------------------------------------

    @property
    def names(self) -> tuple[str, ...]:
        """The param names, in order."""
        return tuple(p.name for p in self.params)

    def __getitem__(self, name: str) -> Param:
        for p in self.params:
            if p.name == name:
                return p
        raise SpaceError(f"no param named {name!r}; the space has {', '.join(self.names)}")

    def __iter__(self) -> Iterator[Param]:
        return iter(self.params)

    def __len__(self) -> int:
        return len(self.params)

    # -- configs ---------------------------------------------------------------------------------

    def problems(self, config: Mapping[str, Any]) -> list[str]:
        """Every reason ``config`` is not a point of this space ([] when it is).

        Keys that are not params (fixed settings such as ``epochs``) are allowed.

        >>> Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}}).problems({"lr": 2})
        ["param 'lr': 2 is not in log [0.0001, 1.0]"]
        """
        if not isinstance(config, Mapping):
            return [f"a config must be a mapping of param name to value, got {config!r}"]
        out = []
        for p in self.params:
            if p.name not in config:
                out.append(f"param {p.name!r} is missing from the config")
            elif not p.contains(config[p.name]):
                out.append(f"param {p.name!r}: {config[p.name]!r} is not in {p.describe()}")
        return out

    def contains(self, config: Mapping[str, Any]) -> bool:
        """Whether ``config`` has a legal value for every param."""
        return not self.problems(config)

    def validate(self, config: Mapping[str, Any]) -> None:
        """Raise `SpaceError` naming every param of ``config`` that is missing or out of range.

        >>> Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}}).validate({"lr": 0.1})
        """
        problems = self.problems(config)
        if problems:
            raise SpaceError("; ".join(problems))

    def sample(self, rng: np.random.Generator) -> dict[str, Any]:
        """One config, each param drawn on its own scale, in param order.

        >>> space = Space.from_dict({"opt": ["sgd", "adam"]})
        >>> space.sample(np.random.default_rng(0))
        {'opt': 'adam'}
        """
        return {p.name: p.sample(rng) for p in self.params}

    def grid(
        self, n_per_param: int | Mapping[str, int], *, limit: int = 100_000
    ) -> list[dict[str, Any]]:
        """Every combination of each param's `Param.grid` (first param varies slowest).

        ``n_per_param`` is one size for all params or ``{name: size}`` (missing names get 1,
        the middle). Raises `SpaceError` when the product would exceed ``limit`` configs.

        >>> Space.from_dict({"a": {"scale": "int", "low": 1, "high": 2}, "b": ["x", "y"]}).grid(2)
        [{'a': 1, 'b': 'x'}, {'a': 1, 'b': 'y'}, {'a': 2, 'b': 'x'}, {'a': 2, 'b': 'y'}]
        """
        if isinstance(n_per_param, Mapping):
            unknown = [k for k in n_per_param if k not in self.names]
            if unknown:
                raise SpaceError(
                    f"grid sizes name unknown param(s) {unknown!r}; the space has {list(self.names)!r}"
                )
            axes = [p.grid(n_per_param.get(p.name, 1)) for p in self.params]
        else:
            axes = [p.grid(n_per_param) for p in self.params]
        total = math.prod(len(a) for a in axes)
        if total > limit:
            raise SpaceError(
                f"the grid has {total} configs ({' x '.join(str(len(a)) for a in axes)}), over the limit of {limit}"
            )
        return [dict(zip(self.names, combo, strict=True)) for combo in itertools.product(*axes)]

    # -- narrowing -------------------------------------------------------------------------------

    def narrow(
        self,
        scored: Sequence[tuple[Mapping[str, Any], float]],
        direction: str,
        *,
        top_fraction: float | None = None,
        k: int | None = None,
        margin: float = 0.1,
    ) -> Space:
        """Coarse-to-fine: a smaller space around the best of ``scored`` (config, value) pairs.

        The best ``k`` configs (or the best ``top_fraction`` of them, at least one; 0.25 when
        neither is given) are kept, each numeric param's range becomes the span of their
        positions widened by ``margin`` (a fraction of the current range) on each side, on the
        param's own scale, and never leaves the current bounds. A choice param keeps the
        choices the best configs used. Configs outside this space are ignored; NaN/inf
        values count as worst and are never "best".

        >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
        >>> space.narrow([({"lr": 1e-3}, 0.5), ({"lr": 0.1}, 0.9)], "min", k=1, margin=0.25)["lr"]
        Param(name='lr', scale='log', low=0.0001, high=0.01, choices=None)
        """
        check_direction(direction)
        if top_fraction is not None and k is not None:
            raise SpaceError(
                f"give top_fraction or k, not both (got top_fraction={top_fraction!r}, k={k!r})"
            )
        if k is not None and (not _is_integral(k) or k < 1):
            raise SpaceError(f"k must be an integer >= 1, got {k!r}")
        if top_fraction is None and k is None:
            top_fraction = 0.25
        if top_fraction is not None and (not _is_number(top_fraction) or not 0 < top_fraction <= 1):
            raise SpaceError(f"top_fraction must be in (0, 1], got {top_fraction!r}")
        if not _is_number(margin) or not 0 < margin <= 1:
            raise SpaceError(
                f"margin must be in (0, 1] (a fraction of the current range), got {margin!r}"
            )
        inside = [(c, float(v)) for c, v in scored if self.contains(c)]
        finite = [(c, v) for c, v in inside if math.isfinite(v)]
        if not finite:
            raise SpaceError(
                f"cannot narrow: none of the {len(scored)} scored configs is inside the space with a finite value"
            )
        ranked = sorted(enumerate(finite), key=lambda iv: (score_key(iv[1][1], direction), iv[0]))
        n_top = (
            int(k) if k is not None else max(1, math.ceil(float(top_fraction or 0) * len(inside)))
        )
        top = [c for _, (c, _) in ranked[:n_top]]
        return Space(
            tuple(_narrow_param(p, [c[p.name] for c in top], float(margin)) for p in self.params)
        )

    def narrow_to(self, region: Mapping[str, Any]) -> Space:
        """The space restricted to ``region``: ``{name: (low, high)}``, or a list of choices
        for a choice param (a box selected in the UI). Params not named keep their range.

        The region must lie within this space; ``int`` and ``pow2`` bounds are rounded
        inwards (37.2..120.5 becomes 38..120, and for pow2 the powers of two inside it).

        >>> space = Space.from_dict({"lr": {"scale": "log", "low": 1e-4, "high": 1}})
        >>> space.narrow_to({"lr": (1e-3, 1e-2)})["lr"]
        Param(name='lr', scale='log', low=0.001, high=0.01, choices=None)
        """
        if not isinstance(region, Mapping):
            raise SpaceError(
                f"a region must be a mapping of param name to (low, high), got {region!r}"
            )
        unknown = [k for k in region if k not in self.names]
        if unknown:
            raise SpaceError(
                f"region names unknown param(s) {unknown!r}; the space has {list(self.names)!r}"
            )
        params = []
        for p in self.params:
            if p.name not in region:
                params.append(p)
                continue
            bounds = region[p.name]
            where = f"region for param {p.name!r}"
            if p.scale == "choice":
                if isinstance(bounds, str | bytes) or not isinstance(bounds, Iterable):
                    raise SpaceError(f"{where}: give a list of choices, got {bounds!r}")
                indices = set()
                for c in bounds:
                    index = p.choice_index(c)
                    if index is None:
                        raise SpaceError(f"{where}: {c!r} is not one of {list(p.choices or ())!r}")
                    indices.add(index)
                if not indices:
                    raise SpaceError(f"{where}: pick at least one choice, got {bounds!r}")
                # Keep the space's order, so choice positions stay comparable across rounds.
                params.append(_keep_choices(p, indices))
                continue
            if (
                isinstance(bounds, str | bytes)
                or not isinstance(bounds, Sequence)
                or len(bounds) != 2
            ):
                raise SpaceError(f"{where}: give (low, high), got {bounds!r}")
            low, high = bounds
            for label, b in (("low", low), ("high", high)):
                if not _is_number(b) or not math.isfinite(float(b)):
                    raise SpaceError(f"{where}: {label} must be a finite number, got {b!r}")
            assert p.low is not None and p.high is not None
            if not (p.low <= low < high <= p.high):
                raise SpaceError(
                    f"{where}: need {p.low!r} <= low < high <= {p.high!r}, got low={low!r}, high={high!r}"
                )
            if p.scale in ("int", "pow2"):
                low, high = math.ceil(low), math.floor(high)
                if p.scale == "int" and low >= high:
                    raise SpaceError(f"{where}: needs at least two integers, got {bounds!r}")
            params.append(Param(p.name, p.scale, low, high))
        return Space(tuple(params))


def _keep_choices(p: Param, indices: Iterable[int]) -> Param:
    keep = set(indices)
    return Param(
        p.name, "choice", choices=tuple(c for i, c in enumerate(p.choices or ()) if i in keep)
    )


def _narrow_param(p: Param, values: list[Any], margin: float) -> Param:
    """The range of ``p`` around ``values`` (all inside ``p``), ``margin`` wider on each side."""
    if p.scale == "choice":
        return _keep_choices(p, (i for i in map(p.choice_index, values) if i is not None))
    assert p.low is not None and p.high is not None
    units = [p.to_unit(v) for v in values]
    u_lo, u_hi = max(0.0, min(units) - margin), min(1.0, max(units) + margin)
    t_lo, t_hi = p._t_bounds()
    t_a, t_b = t_lo + u_lo * (t_hi - t_lo), t_lo + u_hi * (t_hi - t_lo)
    if p.scale in ("int", "pow2"):
        # Work on integers (the int itself, or the exponent), rounding outwards; 1e-9 keeps
        # float noise (5.000000001) from widening the range by a whole step.
        first, last = (int(p.low), int(p.high)) if p.scale == "int" else p.exponents
        points = (
            [int(v) for v in values]
            if p.scale == "int"
            else [int(v).bit_length() - 1 for v in values]
        )
        lo = min(max(first, math.floor(t_a + 1e-9)), *points)
        hi = max(min(last, math.ceil(t_b - 1e-9)), *points)
        if lo == hi:  # two values at least, so the param stays a range: widen where there is room
            if hi < last:
                hi += 1
            elif lo > first:
                lo -= 1
            else:  # pow2 with a single power of two in range: nothing to narrow
                return p
        return (
            Param(p.name, p.scale, lo, hi)
            if p.scale == "int"
            else Param(p.name, "pow2", 2**lo, 2**hi)
        )
    low = p.low if u_lo == 0.0 else min(_round(p.from_unit(u_lo)), *values)
    high = p.high if u_hi == 1.0 else max(_round(p.from_unit(u_hi)), *values)
    return Param(p.name, p.scale, max(p.low, low), min(p.high, high))
