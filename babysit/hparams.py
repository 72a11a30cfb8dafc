"""Validation of hyperparameter values and nudges, shared by the Client, the CLI, the UI and the
trainer.

Every place where a value enters babysit calls these functions, so a NaN typed in the browser, a
string on the command line and a bad row written straight into the store get the same message.
A nudge is ``{"hp": {key: value}, "scale": {key: factor}, "scale_1m": {key: factor},
"group": int | None, "new": bool}``: absolute values, factors on the live value, and factors on
``1 - value`` (momentum). Relative moves are computed by the trainer against what the optimizer
really uses at the applying step (see ``babysit.trainer.knobs``); nothing here guesses a new value
from a configured one.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from babysit.errors import InvalidValue
from babysit.format import fmt

#: keys babysit applies to an attached optimizer's param_groups; any other key is a user value
OPTIMIZER_KEYS = ("lr", "momentum", "weight_decay")
#: the three ways a nudge moves a value (the ``op`` of a nudge event's detail)
OPS = ("set", "scale", "scale_1m")
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,63}$")
_LARGE = 1e15
_SYNTAX = "expected key=value, key*=factor or 1-key*=factor (e.g. lr*=0.5, 1-momentum*=0.5)"


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
    if isinstance(value, int) and abs(value) > _LARGE:   # before float(): 10**400 overflows it
        raise InvalidValue(f"{key} is implausibly large, got {value!r}")
    if not math.isfinite(value):
        raise InvalidValue(f"{key} must be a finite number, got {value!r}")
    if value < 0:
        raise InvalidValue(f"{key} must be >= 0, got {value!r}")
    if key == "lr" and value <= 0:
        raise InvalidValue(f"lr must be a finite number > 0, got {value!r}")
    if key == "momentum" and not value < 1:
        raise InvalidValue(f"momentum must lie in [0, 1), got {value!r}")
    if abs(value) > _LARGE:
        raise InvalidValue(f"{key} is implausibly large, got {value!r}")
    if isinstance(current, int) and not isinstance(current, bool):
        if float(value) != int(value):
            raise InvalidValue(f"{key} is a whole number (now {current}), got {value!r}")
        return int(value)
    return value


def check_factor(key: str, factor: object, op: str = "scale") -> float:
    """A factor of a relative nudge: a finite number > 0 (``op`` is "scale" or "scale_1m").

    >>> check_factor("lr", 0.5)
    0.5
    """
    what = f"1-{key}" if op == "scale_1m" else key
    if isinstance(factor, bool) or not isinstance(factor, int | float) or \
            (isinstance(factor, int) and abs(factor) > _LARGE) or not math.isfinite(factor) or \
            not 0 < factor <= _LARGE:
        raise InvalidValue(f"the factor for {what} must be a finite number > 0 (at most 1e15), "
                           f"got {factor!r}")
    return float(factor)


def _numeric(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_nudge(
    args: Mapping[str, Any],
    current: Mapping[str, Any],
    *,
    strict: bool = False,
    optimizer_keys: Iterable[str] | None = None,
    n_groups: int | None = None,
) -> dict[str, Any]:
    """Validate a whole nudge before anything changes; return it in its stored shape.

    ``args`` is the nudge command's args (``hp``, ``scale``, ``scale_1m``, ``group``, ``new``;
    any may be missing, so old commands with only ``hp`` still pass). ``current`` is the run's
    hyperparameters (config plus nudged user keys); ``optimizer_keys`` what the attached
    optimizer supports (None or empty: no optimizer, lr/momentum/weight_decay are user values);
    ``n_groups`` the number of param groups when known. A key that is neither in ``current`` nor
    an optimizer key is refused, with the known keys listed, unless ``new`` is true (never on a
    strict run). Result values are not computed here: the trainer does that on live values.

    >>> check_nudge({"scale": {"lr": 0.5}}, {"lr": 0.1}, optimizer_keys=["lr"])
    {'hp': {}, 'scale': {'lr': 0.5}, 'scale_1m': {}, 'group': None, 'new': False}
    """
    if not isinstance(args, Mapping):
        raise InvalidValue(f"a nudge's arguments are a mapping, got {args!r}")
    parts: dict[str, dict[str, Any]] = {}
    for op, name in (("set", "hp"), ("scale", "scale"), ("scale_1m", "scale_1m")):
        part = args.get(name)
        if part is None:
            part = {}
        if not isinstance(part, Mapping):
            raise InvalidValue(f"a nudge's {name} is a mapping of key to number, got {part!r}")
        parts[op] = dict(part)
    new, group = args.get("new", False), args.get("group")
    if not isinstance(new, bool):
        raise InvalidValue(f"new must be true or false, got {new!r}")
    if group is not None and (isinstance(group, bool) or not isinstance(group, int) or group < 0
                              or (n_groups is not None and group >= n_groups)):
        span = f"0..{n_groups - 1}" if n_groups else "a whole number >= 0"
        raise InvalidValue(f"group is the index of a param group ({span}), got {group!r}")
    if not any(parts.values()):
        raise InvalidValue("a nudge needs at least one key=value, got none")

    supported = set(optimizer_keys or ()) or None
    known = sorted(set(current) | (supported or set()))
    seen: dict[str, str] = {}
    clean: dict[str, dict[str, Any]] = {"set": {}, "scale": {}, "scale_1m": {}}
    for op, part in parts.items():
        for key, arg in part.items():
            check_key(key)
            if key in seen:
                raise InvalidValue(f"{key} is nudged twice in one nudge ({seen[key]} and {op})")
            seen[key] = op
            optimizer = supported is not None and key in supported
            if key in OPTIMIZER_KEYS and supported is not None and not optimizer:
                raise InvalidValue(
                    f"this run's optimizer has no {key}; it supports {sorted(supported)}")
            if not optimizer and key not in current:
                if strict:
                    raise InvalidValue(
                        f"unknown hyperparameter {key!r} for a strict run; known: {known}")
                if not new:
                    raise InvalidValue(
                        f"unknown hyperparameter {key!r}; known: {known} "
                        "(to add a new one, pass new=True, or --new on the command line)")
                if op != "set":
                    raise InvalidValue(f"{key} has no value yet, so it can't be scaled; set it")
            if group is not None and not optimizer:
                keys = ", ".join(sorted(supported or OPTIMIZER_KEYS))
                raise InvalidValue(f"group applies to optimizer keys ({keys}"
                                   f"{'' if supported else ' of an attached optimizer'}), "
                                   f"not to {key}")
            now = None if optimizer else current.get(key)
            if now is not None and not _numeric(now):
                raise InvalidValue(f"{key} is {now!r}, not a number, and can't be nudged")
            if op == "set":
                clean[op][key] = check_value(key, arg, now)
                continue
            clean[op][key] = check_factor(key, arg, op)
            if op == "scale_1m" and not (key == "momentum" or (now is not None and 0 <= now < 1)):
                raise InvalidValue(
                    f"1-{key}*= works on values in [0, 1) like momentum; {key} is {now!r}")
    return {"hp": clean["set"], "scale": clean["scale"], "scale_1m": clean["scale_1m"],
            "group": group, "new": new}


def check_updates(
    updates: Mapping[str, object],
    current: Mapping[str, Any],
    *,
    strict: bool = False,
    optimizer_keys: Iterable[str] | None = None,
    new: bool = False,
) -> dict[str, int | float]:
    """Validate absolute values (a nudge's ``hp``, a rollback's or fork's overrides) as a whole.

    The rules of :func:`check_nudge`: a key neither in ``current`` nor an optimizer key is
    refused unless ``new``. ``optimizer_keys`` lists the optimizer keys the run's optimizer
    supports (None: no optimizer attached, so lr/momentum/weight_decay are plain user values).

    >>> check_updates({"lr": 0.1}, {"lr": 0.2, "batch": 64})
    {'lr': 0.1}
    """
    return check_nudge({"hp": updates, "new": new}, current, strict=strict,
                       optimizer_keys=optimizer_keys)["hp"]


def user_changes(
    current: Mapping[str, Any],
    *,
    hp: Mapping[str, Any] | None = None,
    scale: Mapping[str, float] | None = None,
    scale_1m: Mapping[str, float] | None = None,
    skip: Iterable[str] = (),
) -> dict[str, dict[str, Any]]:
    """New values of the user hyperparameters a (checked) nudge moves; changes nothing.

    Keys in ``skip`` (the optimizer keys, which ``knobs.nudge`` applies) are left out. Returns
    ``{key: {"old": ..., "new": ..., "op": "set"|"scale"|"scale_1m", "arg": ...}}``; a whole-number
    key stays whole, so ``batch=63`` ×0.5 is refused rather than rounded behind the user's back.

    >>> user_changes({"batch": 64}, scale={"batch": 0.5})
    {'batch': {'old': 64, 'new': 32, 'op': 'scale', 'arg': 0.5}}
    """
    skipped = set(skip)
    out: dict[str, dict[str, Any]] = {}
    for op, part in (("set", hp), ("scale", scale), ("scale_1m", scale_1m)):
        for key, arg in (part or {}).items():
            if key in skipped:
                continue
            old = current.get(key)
            if op == "set":
                out[key] = {"old": old, "new": check_value(key, arg, old), "op": op, "arg": arg}
                continue
            if isinstance(old, bool) or not isinstance(old, int | float):
                raise InvalidValue(f"{key} is {old!r}, not a number, and can't be scaled")
            factor = check_factor(key, arg, op)
            raw = old * factor if op == "scale" else 1 - (1 - old) * factor
            if op == "scale_1m" and not 0 <= raw < 1:
                raise InvalidValue(f"1-{key} ×{factor:g} takes {key} from {old!r} to {raw!r}, "
                                   "outside [0, 1)")
            whole = math.isfinite(raw) and abs(raw - round(raw)) <= 1e-9 * max(1.0, abs(raw))
            if isinstance(old, int) and whole:
                raw = round(raw)   # 100 × 0.07 is 7.000000000000001 in floating point
            elif isinstance(old, int):
                raise InvalidValue(f"{key} is a whole number: {old} ×{factor:g} = {raw!r} is not; "
                                   f"choose another factor or set {key} to a whole number")
            out[key] = {"old": old, "new": check_value(key, raw, old), "op": op, "arg": factor}
    return out


def _number(key: str, text: str) -> int | float:
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise InvalidValue(f"{key} must be a number, got {text!r}") from None


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
        key = check_key(key.strip())
        out[key] = check_value(key, _number(key, text.strip()))
    return out


def parse_nudge(items: Iterable[str]) -> dict[str, dict[str, int | float]]:
    """Parse the CLI's nudge items: ``key=value``, ``key*=factor`` and ``1-key*=factor``.

    >>> parse_nudge(["lr*=0.5", "momentum=0.9", "1-beta*=2"])
    {'hp': {'momentum': 0.9}, 'scale': {'lr': 0.5}, 'scale_1m': {'beta': 2.0}}
    """
    out: dict[str, dict[str, int | float]] = {"hp": {}, "scale": {}, "scale_1m": {}}
    seen: dict[str, str] = {}
    for item in items:
        if not isinstance(item, str):
            raise InvalidValue(f"{_SYNTAX}, got {item!r}")
        left, sep, text = item.partition("*=")
        if sep:
            op, key = ("scale_1m", left[2:]) if left.strip().startswith("1-") else ("scale", left)
            key = key.strip()
        else:
            left, sep, text = item.partition("=")
            key, op = left.strip(), "hp"
            if not sep or not key:
                raise InvalidValue(f"{_SYNTAX}, got {item!r}")
            if key.startswith("1-"):
                raise InvalidValue(f"1-{key[2:]} takes only *= (1-{key[2:]}*=0.5); to set "
                                   f"{key[2:]} write {key[2:]}=value, got {item!r}")
        if not key or not _KEY.match(key):
            raise InvalidValue(f"{_SYNTAX}; hyperparameter names are identifiers like 'lr', "
                               f"got {item!r}")
        if key in seen:
            raise InvalidValue(f"{key} is given twice ({seen[key]!r} and {item!r})")
        seen[key] = item
        number = _number(key, text.strip())
        out[op][key] = check_value(key, number) if op == "hp" else check_factor(key, number, op)
    return out


def describe(key: str, effective: float | None, configured: float | None) -> str:
    """The value a run uses now beside the configured one, for tables and headers.

    >>> describe("lr", 0.0125, 0.05)
    'lr 0.0125 · schedule ×0.25 of 0.05'
    >>> describe("lr", 0.05, 0.05)
    'lr 0.05'
    """
    if effective is None:
        return key if configured is None else f"{key} {fmt(configured)}"
    if configured is None or not _numeric(configured):
        return f"{key} {fmt(effective)}"
    if configured == effective:
        return f"{key} {fmt(effective)}"
    if configured == 0 or effective == 0:
        return f"{key} {fmt(effective)} · configured {fmt(configured)}"
    ratio = f"{effective / configured:.3g}"
    if ratio == "1":          # equal within what the table shows: float noise of a rescale
        return f"{key} {fmt(effective)}"
    if key != "lr":
        return f"{key} {fmt(effective)} · configured {fmt(configured)}"
    return f"lr {fmt(effective)} · schedule ×{ratio} of {fmt(configured)}"


def describe_lr(effective_lr: float | None, configured_lr: float | None) -> str:
    """``describe("lr", ...)``: ``"lr 0.0125 · schedule ×0.25 of 0.05"``, or ``"lr 0.05"``."""
    return describe("lr", effective_lr, configured_lr)
