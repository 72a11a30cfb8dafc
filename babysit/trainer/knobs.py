"""Optimizer knobs: what the optimizer really uses, and nudges computed against it.

Small pure functions over the attached optimizers and schedulers (no store, no threads), called by
the trainer at a step boundary. The live value is the truth: a relative nudge multiplies what the
optimizer uses at the applying step (after the scheduler), never a configured value, and every
lr nudge rescales the schedule with it, so the scheduler's next step continues from the new value
instead of overwriting it. A dashboard that computed ×0.5 from the configured lr once doubled a
decayed learning rate; this module is where that can no longer happen.

Param groups are flattened over all optimizers, in order: ``group=i`` indexes that list.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from torch import Tensor

from babysit.errors import InvalidValue
from babysit.hparams import OPTIMIZER_KEYS, check_factor, check_value

# Where schedulers keep the lr of each group besides group["lr"]. Closed-form schedulers recompute
# from these (LambdaLR: base_lr * lambda(step); CosineAnnealingWarmRestarts; a SequentialLR's
# next child), chainable ones from group["lr"]; scaling both makes every kind continue ×factor.
_LR_GROUP_KEYS = ("initial_lr", "max_lr", "min_lr", "swa_lr")  # LRScheduler; OneCycleLR; SWALR
_LR_LISTS = ("base_lrs", "max_lrs", "min_lrs")  # every LRScheduler; CyclicLR; ReduceLROnPlateau
_LR_FLOORS = ("eta_min",)                        # CosineAnnealing*: one floor for all groups
_MOMENTUM_GROUP_KEYS = ("base_momentum", "max_momentum")  # OneCycleLR / CyclicLR cycle_momentum
_MOMENTUM_LISTS = ("base_momentums", "max_momentums")     # CyclicLR
_UNWRAP_DEPTH = 8


# ------------------------------------------------------------------------------ reading

def unwrap(optimizer: Any) -> Any:
    """The optimizer that owns the param groups, through wrappers that keep it in ``.optimizer``
    (Accelerate's AcceleratedOptimizer, Lightning's LightningOptimizer).

    >>> unwrap(accelerator.prepare(opt)) is opt      # doctest: +SKIP
    True
    """
    for _ in range(_UNWRAP_DEPTH):
        inner = getattr(optimizer, "optimizer", None)
        if inner is None or inner is optimizer or not hasattr(inner, "param_groups"):
            return optimizer
        optimizer = inner
    return optimizer


def _unwrap_scheduler(scheduler: Any) -> Any:
    for _ in range(_UNWRAP_DEPTH):   # Accelerate's AcceleratedScheduler keeps it in .scheduler
        if hasattr(scheduler, "optimizer") or getattr(scheduler, "scheduler", None) is None:
            return scheduler
        scheduler = scheduler.scheduler
    return scheduler


def _all_schedulers(schedulers: Iterable[Any]) -> list[Any]:
    """Every scheduler, with the children of SequentialLR / ChainedScheduler, each once."""
    out: list[Any] = []
    seen: set[int] = set()
    todo = [_unwrap_scheduler(s) for s in schedulers if s is not None]
    while todo:
        sched = todo.pop(0)
        if id(sched) in seen:
            continue
        seen.add(id(sched))
        out.append(sched)
        todo.extend(_unwrap_scheduler(s) for s in getattr(sched, "_schedulers", None) or ())
    return out


def groups(optimizers: Iterable[Any]) -> list[dict[str, Any]]:
    """The param groups of all attached optimizers, flattened in order (the live dicts).

    >>> len(groups([torch.optim.SGD([{"params": [a]}, {"params": [b]}], lr=0.1)]))  # doctest: +SKIP
    2
    """
    return [group for opt in optimizers if opt is not None
            for group in unwrap(opt).param_groups]


def _number(value: Any) -> float | None:
    if isinstance(value, Tensor):
        return float(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _get(group: Mapping[str, Any], key: str) -> float | None:
    if key == "momentum":
        if "betas" in group:
            return _number(group["betas"][0])
        return _number(group.get("momentum"))
    return _number(group.get(key))


def optimizer_keys(optimizers: Iterable[Any]) -> list[str]:
    """The optimizer keys these optimizers have: lr always; momentum for SGD-style ``momentum``
    or Adam-style ``betas``; weight_decay when present. Empty when no optimizer is attached.

    >>> optimizer_keys([torch.optim.Adam(params, lr=1e-3)])  # doctest: +SKIP
    ['lr', 'momentum', 'weight_decay']
    """
    found = groups(optimizers)
    return [key for key in OPTIMIZER_KEYS if any(_get(g, key) is not None for g in found)]


def value(optimizers: Iterable[Any], key: str, group: int = 0) -> float | None:
    """What the optimizer uses for ``key`` in flattened group ``group`` (None: no such value).

    >>> value([opt], "momentum")    # SGD momentum, or Adam's beta1   # doctest: +SKIP
    0.9
    """
    found = groups(optimizers)
    return _get(found[group], key) if 0 <= group < len(found) else None


def fingerprint(optimizers: Iterable[Any]) -> tuple[float | None, ...]:
    """A cheap tuple of every group's lr, momentum and weight_decay: compare it at each step
    boundary and build :func:`effective` only when it changed.

    >>> fingerprint([opt])          # doctest: +SKIP
    (0.05, 0.9, 0.0)
    """
    return tuple(_get(g, key) for g in groups(optimizers) for key in OPTIMIZER_KEYS)


def effective(optimizers: Iterable[Any]) -> dict[str, Any]:
    """What the optimizers use now, in the shape of ``runs.effective`` (without ``step`` and
    ``reads``, which the trainer adds): group 0's values at the top level and every group in
    ``groups``; a key is absent where the optimizer has none; ``{}`` with no optimizer.

    >>> effective([opt])            # doctest: +SKIP
    {'lr': 0.0125, 'momentum': 0.9, 'weight_decay': 0.0, 'groups': [{'lr': 0.0125, ...}]}
    """
    per_group = [{key: v for key in OPTIMIZER_KEYS if (v := _get(g, key)) is not None}
                 for g in groups(optimizers)]
    if not per_group:
        return {}
    return {**per_group[0], "groups": per_group}


# ------------------------------------------------------------------------------ nudging

@dataclass
class _Plan:
    """One key's nudge, computed and checked before anything is written."""
    key: str
    op: str
    arg: float
    ref: int
    olds: list[float | None]
    news: list[float | None]
    writes: list[tuple[Any, Any, Any]] = field(default_factory=list)  # (container, key|attr, value)
    notes: list[str] = field(default_factory=list)

    def detail(self) -> dict[str, Any]:
        pairs = [[old, new] for old, new in zip(self.olds, self.news, strict=True)]
        out: dict[str, Any] = {"old": self.olds[self.ref], "new": self.news[self.ref],
                               "op": self.op, "arg": self.arg, "groups": pairs}
        if self.notes:
            out["note"] = "; ".join(self.notes)
        return out


def _write(container: Any, where: Any, new: Any) -> None:
    if isinstance(container, dict):
        old = container.get(where)
        if isinstance(old, Tensor) and not isinstance(new, Tensor):
            old.fill_(new)    # as torch does: a tensor lr (compiled, capturable) stays the same
        else:
            container[where] = new
    else:
        setattr(container, where, new)


def _like(old: Any, new: float) -> Any:
    """``new`` in the type of ``old`` (a tensor entry stays a tensor, on its device)."""
    if isinstance(old, Tensor):
        return old.detach().clone().fill_(new)
    return new


def _check_group(group: object, n: int) -> int | None:
    if group is None:
        return None
    if isinstance(group, bool) or not isinstance(group, int) or not 0 <= group < n:
        raise InvalidValue(f"group is the index of a param group (0..{n - 1}), got {group!r}")
    return group


def _plan(optimizers: Sequence[Any], schedulers: Sequence[Any], key: str, op: str, arg: Any,
          group: int | None) -> _Plan:
    opts = [unwrap(o) for o in optimizers if o is not None]
    flat = [(o, j, g) for o in opts for j, g in enumerate(o.param_groups)]
    if not flat:
        raise InvalidValue(f"no optimizer is attached, so there is no {key} to nudge")
    supported = optimizer_keys(opts)
    if key not in supported:
        raise InvalidValue(f"this run's optimizer has no {key}; it supports {supported}")
    if op not in ("set", "scale", "scale_1m"):
        raise InvalidValue(f"a nudge is set, scale or scale_1m, got {op!r}")
    if op == "scale_1m" and key != "momentum":
        raise InvalidValue(f"1-{key}*= is for momentum (steps on 1 - beta), not {key}")
    group = _check_group(group, len(flat))
    olds = [_get(g, key) for _, _, g in flat]
    scope = [i for i, old in enumerate(olds) if old is not None and group in (None, i)]
    if not scope:
        raise InvalidValue(f"param group {group} has no {key}")
    ref = scope[0]
    arg = float(check_value(key, arg)) if op == "set" else check_factor(key, arg, op)
    plan = _Plan(key, op, arg, ref, olds, list(olds))

    # factor[i]: how group i's schedule moves (×factor for lr and weight_decay, ×factor on 1-β
    # for momentum set/scale_1m; None: the schedule stays as it is)
    factor: dict[int, float | None] = {}
    ref_old = olds[ref]
    assert ref_old is not None
    one_minus = key == "momentum" and op in ("set", "scale_1m")
    for i in scope:
        old = olds[i]
        assert old is not None
        if op == "set" and key == "momentum":
            f = (1 - arg) / (1 - ref_old)            # momentum < 1, so never a division by 0
            plan.news[i] = arg if old == ref_old else 1 - (1 - old) * f
        elif op == "set" and ref_old == 0:
            f = None
            plan.news[i] = arg
        elif op == "set":
            f = arg / ref_old
            plan.news[i] = arg if old == ref_old else old * f
        elif op == "scale":
            f = arg
            plan.news[i] = old * f
        else:
            f = arg
            plan.news[i] = 1 - (1 - old) * f
        factor[i] = f
        _check_result(key, op, arg, old, plan.news[i], i)
    if op == "set" and ref_old == 0 and key != "momentum":
        plan.notes.append(
            (f"{key} was 0, so there is no factor: set to {arg:g}" if len(scope) == 1 else
             f"{key} was 0, so no factor keeps the groups' ratios: every group set to {arg:g}")
            + ("; the schedule was not rescaled, so a scheduler may overwrite it at its next step"
               if key == "lr" else ""))
    elif op == "scale" and ref_old == 0:
        plan.notes.append(
            f"{key} is 0 at this step, so ×{arg:g} leaves it 0"
            + (f"; the schedule is scaled ×{arg:g}, so its later values are ×{arg:g}"
               if key == "lr" else ""))

    for i in scope:   # the groups themselves
        _, _, g = flat[i]
        new = plan.news[i]
        assert new is not None
        if key == "momentum" and "betas" in g:
            betas = tuple(g["betas"])
            plan.writes.append((g, "betas", (_like(betas[0], new), *betas[1:])))
        else:
            plan.writes.append((g, "momentum" if key == "momentum" else key, new))

    def move(x: Any, f: float) -> Any:
        return 1 - (1 - x) * f if one_minus else x * f

    if key == "momentum":
        _plan_momentum_schedule(plan, flat, schedulers, factor, move)
    elif key == "lr":
        _plan_lr_schedule(plan, flat, schedulers, factor, group)
    return plan


def _check_result(key: str, op: str, arg: float, old: float, new: float | None, i: int) -> None:
    assert new is not None
    how = {"set": f"={arg:g}", "scale": f"×{arg:g}", "scale_1m": f"1-{key} ×{arg:g}"}[op]
    bad = (not math.isfinite(new) or new < 0 or new > 1e15
           or (key == "momentum" and not new < 1))
    if bad:
        span = "[0, 1)" if key == "momentum" else "a finite number >= 0"
        raise InvalidValue(f"{key} {how} would take param group {i} from {old!r} to {new!r}; "
                           f"{key} must be {span}")


def _offsets(flat: list[tuple[Any, int, dict[str, Any]]]) -> dict[int, tuple[int, int]]:
    """id(optimizer) -> (index of its first group in the flat list, number of groups)."""
    out: dict[int, tuple[int, int]] = {}
    for i, (opt, j, _) in enumerate(flat):
        if j == 0:
            out[id(opt)] = (i, len(opt.param_groups))
    return out


def _plan_lr_schedule(plan: _Plan, flat: list[tuple[Any, int, dict[str, Any]]],
                      schedulers: Sequence[Any], factor: dict[int, float | None],
                      group: int | None) -> None:
    for i, f in factor.items():
        _, _, g = flat[i]
        for name in _LR_GROUP_KEYS:
            if f is not None and _number(g.get(name)) is not None:
                plan.writes.append((g, name, g[name] * f))
    offsets = _offsets(flat)
    for sched in _all_schedulers(schedulers):
        owner = offsets.get(id(unwrap(getattr(sched, "optimizer", None))))
        if owner is None:
            continue      # a scheduler of an optimizer babysit was not given: not ours to move
        start, count = owner
        mine = [factor.get(start + j) for j in range(count)]
        for name in _LR_LISTS:
            entries = getattr(sched, name, None)
            if isinstance(entries, list | tuple) and len(entries) == count:
                plan.writes.append((sched, name, [e if f is None else e * f
                                                  for e, f in zip(entries, mine, strict=True)]))
        last = getattr(sched, "_last_lr", None)
        if isinstance(last, list) and len(last) == count:
            news = [plan.news[start + j] if start + j in factor else None for j in range(count)]
            plan.writes.append((sched, "_last_lr", [e if new is None else _like(e, new)
                                                    for e, new in zip(last, news, strict=True)]))
        uniform = mine[0] if all(f == mine[0] for f in mine) else None
        for name in (*_LR_FLOORS, "default_min_lr"):
            floor = _number(getattr(sched, name, None))
            if not floor:
                continue
            if uniform is not None:
                plan.writes.append((sched, name, getattr(sched, name) * uniform))
            elif name in _LR_FLOORS and any(f is not None for f in mine):
                raise InvalidValue(
                    f"can't move param group {group}'s lr alone: {type(sched).__name__}'s "
                    f"{name}={floor:g} is one floor shared by all {count} groups of its "
                    "optimizer; nudge every group (no group) instead")


def _plan_momentum_schedule(plan: _Plan, flat: list[tuple[Any, int, dict[str, Any]]],
                            schedulers: Sequence[Any], factor: dict[int, float | None],
                            move: Any) -> None:
    """OneCycleLR / CyclicLR with cycle_momentum recompute momentum from their bounds every
    step: move the bounds as the live value moved, or the nudge would last one step."""
    def checked(x: Any, f: float, what: str) -> Any:
        new = move(x, f)
        if not (math.isfinite(new) and 0 <= new < 1):
            raise InvalidValue(f"momentum {plan.op} {plan.arg:g} would take the schedule's "
                               f"{what} from {x!r} to {new!r}, outside [0, 1)")
        return new

    for i, f in factor.items():
        _, _, g = flat[i]
        for name in _MOMENTUM_GROUP_KEYS:
            if f is not None and _number(g.get(name)) is not None:
                plan.writes.append((g, name, checked(g[name], f, name)))
    offsets = _offsets(flat)
    for sched in _all_schedulers(schedulers):
        owner = offsets.get(id(unwrap(getattr(sched, "optimizer", None))))
        if owner is None:
            continue
        start, count = owner
        mine = [factor.get(start + j) for j in range(count)]
        for name in _MOMENTUM_LISTS:
            entries = getattr(sched, name, None)
            if isinstance(entries, list | tuple) and len(entries) == count:
                plan.writes.append((sched, name, [e if f is None else checked(e, f, name)
                                                  for e, f in zip(entries, mine, strict=True)]))


def _commit(plans: Iterable[_Plan]) -> dict[str, dict[str, Any]]:
    out = {}
    for plan in plans:
        for container, where, new in plan.writes:
            _write(container, where, new)
        out[plan.key] = plan.detail()
    return out


def apply(optimizers: Sequence[Any], schedulers: Sequence[Any], key: str, *,
          value: float | None = None, scale: float | None = None,
          scale_1m: float | None = None, group: int | None = None) -> dict[str, Any]:
    """Nudge one optimizer key (lr, momentum, weight_decay) against its live value, schedule too.

    Give exactly one of ``value`` (absolute), ``scale`` (× the live value) and ``scale_1m``
    (× ``1 - momentum``). An absolute value sets group 0 (or ``group``) to exactly ``value`` and
    moves every other group by the same factor (on 1 - β for momentum), so ratios survive and a
    group at weight_decay 0 stays at 0; ``group`` moves only that group and its schedule entries.
    Checked in full before anything changes. Returns the nudge event's detail for this key:
    ``{"old", "new", "op", "arg", "groups": [[old, new], ...]}`` (old/new of group 0 or of the
    targeted group; ``groups`` has every flattened group, [None, None] where it lacks the key),
    plus ``"note"`` when a value was 0 and the result needs saying.

    >>> apply([opt], [sched], "lr", scale=0.5)   # doctest: +SKIP
    {'old': 0.0125, 'new': 0.00625, 'op': 'scale', 'arg': 0.5, 'groups': [[0.0125, 0.00625]]}
    """
    given = [(op, arg) for op, arg in (("set", value), ("scale", scale), ("scale_1m", scale_1m))
             if arg is not None]
    if len(given) != 1:
        raise InvalidValue(f"a nudge of {key} takes one of value, scale or scale_1m, got "
                           f"{dict(given) or 'none'}")
    (op, arg), = given
    return _commit([_plan(optimizers, schedulers, key, op, arg, group)])[key]


def nudge(optimizers: Sequence[Any], schedulers: Sequence[Any], *,
          hp: Mapping[str, Any] | None = None, scale: Mapping[str, Any] | None = None,
          scale_1m: Mapping[str, Any] | None = None,
          group: int | None = None) -> dict[str, dict[str, Any]]:
    """Apply the optimizer part of a nudge command, all or nothing: every key is checked before
    any is written. Keys that are not optimizer keys of these optimizers (user values, or
    everything when no optimizer is attached) are left to the caller; see
    ``babysit.hparams.user_changes``. Returns ``{key: detail}`` as :func:`apply` does.

    >>> nudge([opt], [sched], scale={"lr": 0.5}, scale_1m={"momentum": 0.5})  # doctest: +SKIP
    {'lr': {...}, 'momentum': {...}}
    """
    mine = set(optimizer_keys(optimizers))
    plans: list[_Plan] = []
    seen: set[str] = set()
    for op, part in (("set", hp), ("scale", scale), ("scale_1m", scale_1m)):
        for key, arg in (part or {}).items():
            if key not in mine:
                if key in OPTIMIZER_KEYS and mine:
                    raise InvalidValue(
                        f"this run's optimizer has no {key}; it supports {sorted(mine)}")
                continue
            if key in seen:
                raise InvalidValue(f"{key} is nudged twice in one nudge")
            seen.add(key)
            plans.append(_plan(optimizers, schedulers, key, op, arg, group))
    return _commit(plans)


# ---------------------------------------------------------------------- the trainer's call sites
def is_scheduler(obj: Any) -> bool:
    """An LR scheduler: anything that drives an optimizer (``obj.optimizer``) and steps a
    schedule (``base_lrs``, ``get_last_lr``, or ReduceLROnPlateau's ``min_lrs``), or wraps one."""
    inner = _unwrap_scheduler(obj)
    return hasattr(getattr(inner, "optimizer", None), "param_groups") and any(
        hasattr(inner, name) for name in ("base_lrs", "get_last_lr", "min_lrs", "_schedulers"))


def is_optimizer(obj: Any) -> bool:
    """An optimizer, or a wrapper around one (Accelerate, Lightning); never a scheduler."""
    return not is_scheduler(obj) and hasattr(unwrap(obj), "param_groups")


def current(optimizers: Sequence[Any], hp: Mapping[str, Any], key: str) -> Any:
    """The value in use: an optimizer key from the first param group, any other from ``hp``."""
    if optimizers and key in optimizer_keys(optimizers):
        return value(optimizers, key)
    return hp.get(key)


def set_value(optimizers: Sequence[Any], schedulers: Sequence[Any], key: str, new: float
              ) -> dict[str, Any]:
    """Set an optimizer key (group 0 exactly, the other groups by the same factor; lr: the
    schedule scaled with it)."""
    return apply(optimizers, schedulers, key, value=new)


def optimizer_values(optimizers: Sequence[Any]) -> dict[str, float]:
    """lr / momentum / weight_decay as the first param group was configured (the run's hp):
    for lr the scheduler's ``initial_lr`` when it set one, since a warmup's first factor (often
    0) is the schedule's doing, not the configuration."""
    out = {}
    found = groups(optimizers)
    for key in optimizer_keys(optimizers):
        v = value(optimizers, key)
        if key == "lr" and found and _number(found[0].get("initial_lr")) is not None:
            v = _number(found[0]["initial_lr"])
        if v is not None:
            out[key] = v
    return out
