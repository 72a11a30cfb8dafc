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
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

# Param and the scale names live in babysit.study.param; they are re-exported here, where
# users and the rest of babysit import them from.
from babysit.study.param import (  # noqa: F401
    DIRECTIONS,
    SCALES,
    Param,
    SpaceError,
    _is_integral,
    _is_number,
    _round,
    check_direction,
    score_key,
)


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
