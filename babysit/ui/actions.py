"""What the dashboard's buttons do: parse the text typed in the browser, call the Client.

Pure Python, no Streamlit: every handler validates all of its input before it calls the Client,
so a NaN, a negative or a word typed into a box sends nothing. Each returns the line the page
shows with ``st.success``; errors are ``BabysitError``s whose message the page shows as is.

>>> parse_number("0.05", "lr")
0.05
>>> momentum_step(0.9, "more")
0.95
"""

from __future__ import annotations

import hmac
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import pandas as pd

from babysit.client import Client
from babysit.errors import InvalidValue
from babysit.hparams import check_value, parse_assignments

#: how long a button waits for the trainer to apply a command before it says so
ACTION_TIMEOUT_S = 15.0
SOURCE = "ui"
_LOCAL_HOSTS = ("localhost", "127.0.0.1", "::1")
_STATUS_MARKS = {"running": "🟢", "starting": "🔵", "paused": "⏸️", "finished": "✅",
                 "stopped": "⏹️", "crashed": "💥", "diverged": "🔥"}


def parse_number(text: object, name: str) -> float:
    """The number typed for hyperparameter ``name``, checked like every other entry point.

    >>> parse_number(" 1e-3 ", "lr")
    0.001
    >>> parse_number("abc", "lr")
    Traceback (most recent call last):
    babysit.errors.InvalidValue: lr must be a number, got 'abc'
    """
    if isinstance(text, bool):
        raise InvalidValue(f"{name} must be a number, got {text!r}")
    if isinstance(text, int | float):
        value = float(text)
    else:
        raw = str(text if text is not None else "").strip()
        try:
            value = float(raw)
        except ValueError:
            raise InvalidValue(f"{name} must be a number, got {raw!r}") from None
    return float(check_value(name, value))


def momentum_step(current: float, direction: str) -> float:
    """Momentum one step up or down on the 1-β scale, where a step means something.

    "more" halves 1-β (0.9 → 0.95 → 0.975), "less" doubles it (0.975 → 0.95 → 0.9), keeping
    1-β below 1 so momentum stays > 0.

    >>> momentum_step(0.95, "less")
    0.9
    """
    value = check_value("momentum", current)
    if direction not in ("more", "less"):
        raise InvalidValue(f"direction must be 'more' or 'less', got {direction!r}")
    gap = 1.0 - float(value)
    if direction == "more":
        gap = gap / 2
    else:
        if gap >= 0.99:
            raise InvalidValue(f"momentum is already {value:g}; set it exactly instead")
        gap = min(gap * 2, 0.99)
    # round away float noise: 1 - 0.05 should read 0.95, not 0.9500000000000001
    return round(1.0 - gap, 12)


def parse_overrides(text: str | None) -> dict[str, int | float]:
    """``"lr=0.1 momentum=0.95"`` (spaces, commas or new lines between) as a dict of numbers.

    >>> parse_overrides("lr=0.1, momentum=0.95")
    {'lr': 0.1, 'momentum': 0.95}
    """
    items = [item for item in re.split(r"[\s,;]+", text or "") if item]
    return parse_assignments(items)


def _fmt(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def _applied(result: Any) -> str:
    step = getattr(result, "step", None)
    return f" at step {step}" if step is not None else ""


def _current(client: Client, run_id: int, name: str) -> float:
    hp = client.run(run_id).hp
    value = hp.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidValue(f"run {run_id} has no numeric {name} to change (hp: {dict(hp)})")
    return float(value)


def lr_times(client: Client, run_id: int, factor: float, *,
             timeout: float = ACTION_TIMEOUT_S) -> str:
    """Multiply the run's learning rate by ``factor`` (the ×0.5 / ×2 buttons).

    >>> lr_times(client, 3, 0.5)            # doctest: +SKIP
    'lr 0.1 → 0.05 applied at step 412'
    """
    if isinstance(factor, bool) or not isinstance(factor, int | float) or \
            not math.isfinite(factor) or factor <= 0:
        raise InvalidValue(f"factor must be a finite number > 0, got {factor!r}")
    old = _current(client, run_id, "lr")
    new = check_value("lr", old * factor)
    result = client.nudge(run_id, lr=new, source=SOURCE, timeout=timeout)
    return f"lr {_fmt(old)} → {_fmt(new)} applied{_applied(result)}"


def set_value(client: Client, run_id: int, name: str, text: object, *,
              timeout: float = ACTION_TIMEOUT_S) -> str:
    """Set hyperparameter ``name`` to the number typed in its box.

    >>> set_value(client, 3, "lr", "0.02")  # doctest: +SKIP
    'lr → 0.02 applied at step 500'
    """
    value = parse_number(text, name)
    result = client.nudge(run_id, {name: value}, source=SOURCE, timeout=timeout)
    return f"{name} → {_fmt(value)} applied{_applied(result)}"


def momentum_nudge(client: Client, run_id: int, direction: str, *,
                   timeout: float = ACTION_TIMEOUT_S) -> str:
    """The "more momentum" / "less momentum" buttons (see :func:`momentum_step`)."""
    old = _current(client, run_id, "momentum")
    new = momentum_step(old, direction)
    result = client.nudge(run_id, momentum=new, source=SOURCE, timeout=timeout)
    return f"momentum {_fmt(old)} → {_fmt(new)} applied{_applied(result)}"


def pause(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    client.pause(run_id, source=SOURCE, timeout=timeout)
    return f"run {run_id} paused"


def resume(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    client.resume(run_id, source=SOURCE, timeout=timeout)
    return f"run {run_id} resumed"


def stop(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    client.stop(run_id, source=SOURCE, timeout=timeout)
    return f"run {run_id} stopped; restart it later with babysit restart {run_id}"


def _day(day: object) -> int:
    if isinstance(day, bool):
        raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
    try:
        value = int(str(day).strip()) if not isinstance(day, int) else day
    except ValueError:
        raise InvalidValue(f"day must be a whole number >= 0, got {day!r}") from None
    if value < 0:
        raise InvalidValue(f"day must be a whole number >= 0, got {day!r}")
    return value


def rollback(client: Client, run_id: int, day: object, *, confirmed: bool,
             overrides: str = "", timeout: float = 60.0) -> str:
    """Roll the run back to the end of ``day`` (after the confirmation box is ticked)."""
    day_n = _day(day)
    hp = parse_overrides(overrides)
    if not confirmed:
        raise InvalidValue("tick the confirmation box first: a rollback restarts the run "
                           f"from day {day_n} (later days stay in the store, superseded)")
    result = client.rollback(run_id, day_n, hp=hp, source=SOURCE, timeout=timeout)
    extra = f" with {', '.join(f'{k}={_fmt(v)}' for k, v in hp.items())}" if hp else ""
    return f"run {run_id} rolled back to day {day_n}{extra}{_applied(result)}"


def fork(client: Client, run_id: int, day: object, overrides: str = "") -> tuple[str, int]:
    """Start a new run from ``day``'s checkpoint with ``key=value`` overrides; (message, id)."""
    day_n = _day(day)
    hp = parse_overrides(overrides)
    child = client.fork(run_id, day_n, hp=hp, source=SOURCE)
    extra = f" with {', '.join(f'{k}={_fmt(v)}' for k, v in hp.items())}" if hp else ""
    return f"forked run {child} from run {run_id} day {day_n}{extra}", child


# --------------------------------------------------------------------------- access control


def password_ok(given: str | None, expected: str | None) -> bool:
    """Constant-time comparison; no password configured means nobody gets in.

    >>> password_ok("s3cret", "s3cret"), password_ok("", ""), password_ok("x", None)
    (True, False, False)
    """
    if not expected or not given:
        return False
    return hmac.compare_digest(str(given).encode(), str(expected).encode())


def _hostname(host: str | None) -> str:
    host = (host or "").strip().lower()
    if host.startswith("["):                      # [::1]:8501
        return host[1:].partition("]")[0]
    if host.count(":") == 1:                      # localhost:8501
        return host.partition(":")[0]
    return host


def is_local(server_address: str | None, host_header: str | None) -> bool:
    """Whether only this machine can reach the dashboard, so controls need no password.

    The bind address decides (Streamlit listens on every interface when it is unset); the
    browser's Host header must agree too, which also turns away DNS-rebinding pages.

    >>> is_local("127.0.0.1", "localhost:8501"), is_local(None, "localhost:8501")
    (True, False)
    """
    if _hostname(server_address) not in _LOCAL_HOSTS:
        return False
    return host_header is None or _hostname(host_header) in _LOCAL_HOSTS


# --------------------------------------------------------------------------- tables


def status_mark(status: str) -> str:
    """The status with an emoji, so crashed and diverged runs stand out in a table.

    >>> status_mark("crashed")
    '💥 crashed'
    """
    return f"{_STATUS_MARKS.get(status, '❔')} {status}"


def best_val(checkpoints: pd.DataFrame) -> str:
    """Best day-mean of the first ``val_*`` metric over the day checkpoints, e.g. 'val_loss 0.21 (day 3)'.

    Higher is better for accuracy-like names (acc, auc, f1, score), lower for everything else.
    """
    if checkpoints is None or not len(checkpoints) or "metrics" not in checkpoints:
        return ""
    best: tuple[float, int] | None = None
    name = None
    for day, metrics in zip(checkpoints["day"], checkpoints["metrics"], strict=False):
        if not isinstance(metrics, Mapping):
            continue
        if name is None:
            names = sorted(k for k in metrics if str(k).startswith("val_"))
            name = names[0] if names else None
        value = metrics.get(name) if name else None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            continue
        higher = any(w in name for w in ("acc", "auc", "f1", "score")) if name else False
        if best is None or (value > best[0] if higher else value < best[0]):
            best = (float(value), int(day))
    if best is None or name is None:
        return ""
    return f"{name} {best[0]:.4g} (day {best[1]})"


def runs_table(runs: pd.DataFrame, latest_loss: Mapping[int, float | None],
               best: Mapping[int, str]) -> pd.DataFrame:
    """The Runs page's table: one row per run, what a babysitter scans for first."""
    rows = []
    for r in runs.to_dict("records"):
        hp = r.get("hp") if isinstance(r.get("hp"), Mapping) else {}
        age = r.get("heartbeat_age")
        parent = r.get("parent_id")
        parent_text = "" if parent is None or pd.isna(parent) else \
            f"#{int(parent)} day {int(r['parent_day'])}" if r.get("parent_day") is not None \
            and not pd.isna(r.get("parent_day")) else f"#{int(parent)}"
        rows.append({
            "id": int(r["id"]), "project": r.get("project") or "", "name": r.get("name") or "",
            "status": status_mark(str(r.get("status"))), "day": r.get("day"),
            "step": r.get("step"), "loss": latest_loss.get(int(r["id"])),
            "best val": best.get(int(r["id"]), ""),
            "lr": hp.get("lr"), "momentum": hp.get("momentum"),
            "heartbeat": "" if age is None or pd.isna(age) else f"{age:.0f}s ago",
            "parent": parent_text, "error": r.get("error") or "",
        })
    columns = ["id", "project", "name", "status", "day", "step", "loss", "best val", "lr",
               "momentum", "heartbeat", "parent", "error"]
    return pd.DataFrame(rows, columns=columns)


def events_table(events: pd.DataFrame) -> pd.DataFrame:
    """The audit log, newest first, each event as one readable line."""
    from babysit.ui.figures import describe_event

    columns = ["time", "step", "day", "kind", "source", "what", "superseded"]
    if events is None or not len(events):
        return pd.DataFrame(columns=columns)
    out = pd.DataFrame({
        "time": [time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) for t in events["time"]],
        "step": events["step"], "day": events["day"], "kind": events["kind"],
        "source": events["source"],
        "what": [describe_event(k, d) for k, d in zip(events["kind"], events["detail"], strict=False)],
        "superseded": events["superseded"],
    })
    return out.iloc[::-1].reset_index(drop=True)
