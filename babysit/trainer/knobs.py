"""The optimizer knobs: read and set lr / momentum / weight_decay on attached optimizers, and
keep schedules in step with a nudge. Pure functions over optimizers and schedulers.

(Today's logic, moved out of the trainer as it was; see the knobs branch for per-group targeting,
relative moves and effective values.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from babysit.hparams import OPTIMIZER_KEYS


def is_optimizer(obj: Any) -> bool:
    return isinstance(obj, torch.optim.Optimizer)


def is_scheduler(obj: Any) -> bool:
    """An LR scheduler: anything that drives an optimizer (``obj.optimizer``)."""
    return isinstance(getattr(obj, "optimizer", None), torch.optim.Optimizer)


def optimizer_keys(optimizers: Sequence[Any]) -> list[str] | None:
    """The optimizer keys the first optimizer supports; None without an optimizer."""
    if not optimizers:
        return None
    group = optimizers[0].param_groups[0]
    keys = ["lr"]
    if "momentum" in group or "betas" in group:
        keys.append("momentum")
    if "weight_decay" in group:
        keys.append("weight_decay")
    return keys


def current(optimizers: Sequence[Any], hp: Mapping[str, Any], key: str) -> Any:
    """The value in use: an optimizer key from the first param group, any other from ``hp``."""
    if optimizers and key in OPTIMIZER_KEYS:
        group = optimizers[0].param_groups[0]
        if key == "momentum":
            return group["betas"][0] if "betas" in group else group.get("momentum")
        return group.get(key)
    return hp.get(key)


def set_value(optimizers: Sequence[Any], schedulers: Sequence[Any], key: str, value: float
              ) -> None:
    """Set an optimizer key on every param group (lr: scaling the schedule with it)."""
    if key == "lr":
        scale_lr(optimizers, schedulers, value)
        return
    for opt in optimizers:
        for group in opt.param_groups:
            if key == "momentum" and "betas" in group:
                group["betas"] = (value, *tuple(group["betas"])[1:])
            elif key in group:
                group[key] = value


def scale_lr(optimizers: Sequence[Any], schedulers: Sequence[Any], value: float) -> None:
    """Set the current lr and scale the schedule with it, so a scheduler's next step keeps
    the nudge instead of overwriting it (closed-form schedulers recompute from base_lrs,
    chainable ones from the group's lr; both are scaled)."""
    now = optimizers[0].param_groups[0]["lr"]
    factor = value / now if now else None
    for opt in optimizers:
        for group in opt.param_groups:
            group["lr"] = group["lr"] * factor if factor else value
            for key in ("initial_lr", "max_lr", "min_lr"):
                if isinstance(group.get(key), int | float):
                    group[key] = group[key] * factor if factor else value
    for sched in schedulers:
        if hasattr(sched, "base_lrs"):
            sched.base_lrs = [b * factor if factor else value for b in sched.base_lrs]
        if isinstance(getattr(sched, "eta_min", None), int | float) and factor:
            sched.eta_min = sched.eta_min * factor
        if isinstance(getattr(sched, "min_lrs", None), list) and factor:
            sched.min_lrs = [m * factor for m in sched.min_lrs]
        if hasattr(sched, "_last_lr"):
            sched._last_lr = [g["lr"] for g in sched.optimizer.param_groups]


def optimizer_values(optimizers: Sequence[Any]) -> dict[str, float]:
    """lr / momentum / weight_decay as the first optimizer uses them (for the run's hp)."""
    values = {}
    for key in optimizer_keys(optimizers) or []:
        value = current(optimizers, {}, key)
        if isinstance(value, int | float) and not isinstance(value, bool):
            values[key] = value
    return values
