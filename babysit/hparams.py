"""Validation of hyperparameter values, shared by the Client, the CLI, the UI and the trainer.

Every place where a value enters babysit calls these functions, so a NaN typed in the browser, a
string on the command line and a bad row written straight into the store get the same message.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from babysit.errors import InvalidValue

#: keys babysit applies to an attached optimizer's param_groups; any other key is a user value
OPTIMIZER_KEYS = ("lr", "momentum", "weight_decay")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")


def check_key(key: object) -> str:
    """A hyperparameter name: an identifier-like string (letters, digits, _ . -)."""
    if not isinstance(key, str) or not _KEY.match(key):
        raise InvalidValue(f"hyperparameter names are identifiers like 'lr' or 'grad_clip', got {key!r}")
    return key


def check_value(key: str, value: object, current: object = None) -> int | float:
    """Return ``value`` if it is an acceptable value for ``key``; raise InvalidValue naming it.

    Values are finite, non-negative numbers (not booleans); ``lr`` is > 0; ``momentum`` lies in
    [0, 1); a key whose current value is an integer (batch size, say) takes whole numbers only.

    >>> check_value("lr", 0.05)
    0.05
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(f"{key} must be a number, got {value!r}")
    if isinstance(value, int) and abs(value) > 1e15:   # before float(): 10**400 overflows it
        raise InvalidValue(f"{key} is implausibly large, got {value!r}")
    if not math.isfinite(value):
        raise InvalidValue(f"{key} must be a finite number, got {value!r}")
    if value < 0:
        raise InvalidValue(f"{key} must be >= 0, got {value!r}")
    if key == "lr" and value <= 0:
        raise InvalidValue(f"lr must be a finite number > 0, got {value!r}")
    if key == "momentum" and not value < 1:
        raise InvalidValue(f"momentum must lie in [0, 1), got {value!r}")
    if abs(value) > 1e15:
        raise InvalidValue(f"{key} is implausibly large, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if float(value) != int(value):
            raise InvalidValue(f"{key} is a whole number (now {current}), got {value!r}")
        return int(value)
    return value


def check_updates(
    updates: Mapping[str, object],
    current: Mapping[str, Any],
    *,
    strict: bool = False,
    optimizer_keys: Iterable[str] | None = None,
) -> dict[str, int | float]:
    """Validate a whole nudge: every key and value, before anything changes.

    ``optimizer_keys`` lists the optimizer keys the run's optimizer supports (None: no optimizer
    attached, so lr/momentum/weight_decay are plain user values).
    """
    if not updates:
        raise InvalidValue("a nudge needs at least one key=value, got none")
    supported = set(optimizer_keys) if optimizer_keys is not None else None
    clean: dict[str, int | float] = {}
    for key, value in updates.items():
        check_key(key)
        if key in OPTIMIZER_KEYS and supported is not None and key not in supported:
            raise InvalidValue(f"this run's optimizer has no {key}; it supports {sorted(supported)}")
        known = key in current or (supported is not None and key in supported)
        if strict and not known:
            raise InvalidValue(
                f"unknown hyperparameter {key!r} for a strict run; known: {sorted(current)}")
        now = current.get(key)
        if now is not None and (isinstance(now, bool) or not isinstance(now, int | float)):
            raise InvalidValue(f"{key} is {now!r}, not a number, and can't be nudged")
        clean[key] = check_value(key, value, now)
    return clean


def parse_assignments(items: Iterable[str]) -> dict[str, int | float]:
    """Parse ``["lr=0.05", "batch_size=64"]`` from the command line into numbers.

    >>> parse_assignments(["lr=0.05", "batch=64"])
    {'lr': 0.05, 'batch': 64}
    """
    out: dict[str, int | float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep:
            raise InvalidValue(f"expected key=value, got {item!r}")
        check_key(key.strip())
        text = text.strip()
        try:
            value: int | float = int(text)
        except ValueError:
            try:
                value = float(text)
            except ValueError:
                raise InvalidValue(f"{key} must be a number, got {text!r}") from None
        out[key.strip()] = check_value(key.strip(), value)
    return out
