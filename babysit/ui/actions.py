"""What the dashboard's buttons do: parse the text typed in the browser, call the Client.

Pure Python, no Streamlit: every handler validates all of its input before it calls the Client,
so a NaN, a negative or a word typed into a box sends nothing. Each returns the line the page
shows with ``st.success``; errors are ``BabysitError``s whose message the page shows as is.
Relative moves (lr ×0.5 / ×2, momentum more / less) are computed by the trainer against the
value its optimizer uses at the applying step; the line shown is the trainer's account of what
it did (``CommandResult.detail``), never a value guessed here.

>>> parse_number("0.05", "lr")
0.05
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
from babysit.format import fmt, nudge_summary
from babysit.hparams import check_value, parse_assignments
from babysit.run_client import run_key
from babysit.study.objective import best

#: how long a button waits for the trainer to apply a command before it says so
ACTION_TIMEOUT_S = 15.0
SOURCE = "ui"
#: the momentum buttons move 1 - momentum: "more" halves it (0.9 → 0.95), "less" doubles it
MOMENTUM_FACTORS = {"more": 0.5, "less": 2.0}
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


def parse_overrides(text: str | None) -> dict[str, int | float]:
    """``"lr=0.1 momentum=0.95"`` (spaces, commas or new lines between) as a dict of numbers.

    >>> parse_overrides("lr=0.1, momentum=0.95")
    {'lr': 0.1, 'momentum': 0.95}
    """
    items = [item for item in re.split(r"[\s,;]+", text or "") if item]
    return parse_assignments(items)


def _applied(result: Any) -> str:
    """The confirmation of a nudge, from what the trainer reported."""
    return nudge_summary(getattr(result, "detail", None), getattr(result, "step", None))


def lr_times(client: Client, run_id: int, factor: float, *,
             timeout: float = ACTION_TIMEOUT_S) -> str:
    """Multiply the learning rate the optimizer uses now by ``factor`` (the ×0.5 / ×2 buttons):
    every param group, keeping their ratios, and the schedule.

    >>> lr_times(client, 3, 0.5)            # doctest: +SKIP
    'lr 0.0125 → 0.00625 applied at step 412'
    """
    if isinstance(factor, bool) or not isinstance(factor, int | float) or \
            not math.isfinite(factor) or factor <= 0:
        raise InvalidValue(f"factor must be a finite number > 0, got {factor!r}")
    result = client.nudge(run_key(run_id), scale={"lr": float(factor)}, source=SOURCE,
                          timeout=timeout)
    return _applied(result)


#: a key the loop read within this many steps of the trainer's last report counts as read now
READ_SLACK_STEPS = 50


def unread_note(key: str, effective: Mapping[str, Any] | None) -> str:
    """"" when the training loop reads ``run.hp[key]``, else what the user should know: a knob
    the loop does not read does nothing when nudged, and must not pretend to.

    >>> unread_note("clip", {"step": 900, "reads": {"clip": 899}})
    ''
    >>> unread_note("batch_size", {"step": 900, "reads": {"batch_size": 0}})
    'not read by the loop since step 0'
    >>> unread_note("warmup", {"step": 900, "reads": {}})
    'never read by the loop'
    >>> unread_note("weight_decay", {"step": 900, "weight_decay": 0.0, "reads": {}})
    ''
    """
    if not isinstance(effective, Mapping) or not isinstance(effective.get("reads"), Mapping):
        return ""           # the trainer has not reported (an older trainer, or not started)
    raw = effective.get("groups")
    groups: list[Any] = raw if isinstance(raw, list) else []
    if key in effective or any(isinstance(g, Mapping) and key in g for g in groups):
        return ""           # an optimizer's own setting: a nudge changes the optimizer itself
    reads, step = effective["reads"], effective.get("step")
    last = reads.get(key)
    if last is None:
        return "never read by the loop"
    if isinstance(step, int) and isinstance(last, int) and step - last > READ_SLACK_STEPS:
        return f"not read by the loop since step {last}"
    return ""


def set_value(client: Client, run_id: int, name: str, text: object, *,
              timeout: float = ACTION_TIMEOUT_S) -> str:
    """Set hyperparameter ``name`` to the number typed in its box (for lr: the effective lr
    becomes exactly that value and the schedule goes on from there).

    >>> set_value(client, 3, "lr", "0.02")  # doctest: +SKIP
    'lr 0.0125 → 0.02 applied at step 500'
    """
    value = parse_number(text, name)
    result = client.nudge(run_key(run_id), {name: value}, source=SOURCE, timeout=timeout)
    return _applied(result)


def momentum_nudge(client: Client, run_id: int, direction: str, *,
                   timeout: float = ACTION_TIMEOUT_S) -> str:
    """The "more momentum" / "less momentum" buttons: the trainer halves or doubles
    1 - momentum (Adam: 1 - beta1) of what its optimizer uses now."""
    if direction not in MOMENTUM_FACTORS:
        raise InvalidValue(f"direction must be 'more' or 'less', got {direction!r}")
    result = client.nudge(run_key(run_id), scale_1m={"momentum": MOMENTUM_FACTORS[direction]},
                          source=SOURCE, timeout=timeout)
    return _applied(result)


def pause(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    run_id = run_key(run_id)   # type: ignore[assignment]
    client.pause(run_id, source=SOURCE, timeout=timeout)
    return f"run {run_id} paused"


def resume(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    run_id = run_key(run_id)   # type: ignore[assignment]
    client.resume(run_id, source=SOURCE, timeout=timeout)
    return f"run {run_id} resumed"


def stop(client: Client, run_id: int, *, timeout: float = ACTION_TIMEOUT_S) -> str:
    run_id = run_key(run_id)   # type: ignore[assignment]
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
    run_id = run_key(run_id)   # type: ignore[assignment]
    if not confirmed:
        raise InvalidValue("tick the confirmation box first: a rollback restarts the run "
                           f"from day {day_n} (later days stay in the store, superseded)")
    result = client.rollback(run_id, day_n, hp=hp, source=SOURCE, timeout=timeout)
    extra = f" with {', '.join(f'{k}={fmt(v, 6)}' for k, v in hp.items())}" if hp else ""
    at = f" at step {result.step}" if getattr(result, "step", None) is not None else ""
    return f"run {run_id} rolled back to the end of day {day_n}{extra}{at}"


def fork(client: Client, run_id: int, day: object, overrides: str = "") -> tuple[str, int]:
    """Start a new run from ``day``'s checkpoint with ``key=value`` overrides; (message, id)."""
    day_n = _day(day)
    hp = parse_overrides(overrides)
    run_id = run_key(run_id)   # type: ignore[assignment]
    child = client.fork(run_id, day_n, hp=hp, source=SOURCE)
    extra = f" with {', '.join(f'{k}={fmt(v, 6)}' for k, v in hp.items())}" if hp else ""
    return f"forked run {child} from run {run_id} at the end of day {day_n}{extra}", child


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
    name = None
    for metrics in checkpoints["metrics"]:      # day 0 (the start) has no means: skip it
        names = sorted(str(k) for k in metrics if str(k).startswith("val_")) \
            if isinstance(metrics, Mapping) else []
        if names:
            name = names[0]
            break
    if name is None:
        return ""
    direction = "max" if any(w in name for w in ("acc", "auc", "f1", "score")) else "min"
    value, day = best(((int(d), m.get(name)) for d, m in
                       zip(checkpoints["day"], checkpoints["metrics"], strict=False)
                       if isinstance(m, Mapping)), direction)
    return "" if day is None else f"{name} {value:.4g} (day {day})"


def runs_table(runs: pd.DataFrame, latest_loss: Mapping[int, float | None],
               best: Mapping[int, str]) -> pd.DataFrame:
    """The Runs page's table: one row per run, what a babysitter scans for first."""
    rows = []
    for r in runs.to_dict("records"):
        hp = r.get("hp") if isinstance(r.get("hp"), Mapping) else {}
        # what the optimizer uses now (after its schedule); the configured value until the
        # trainer has reported
        now = {**hp, **(r.get("effective") if isinstance(r.get("effective"), Mapping) else {})}
        age = r.get("heartbeat_age")
        parent = r.get("parent_id")
        parent_text = "" if parent is None or pd.isna(parent) else \
            f"#{int(parent)}, end of day {int(r['parent_day'])}" if r.get("parent_day") is not None \
            and not pd.isna(r.get("parent_day")) else f"#{int(parent)}"
        rows.append({
            "id": int(r["id"]), "project": r.get("project") or "", "name": r.get("name") or "",
            "status": status_mark(str(r.get("status"))), "days saved": r.get("day"),
            "step": r.get("step"), "loss": latest_loss.get(int(r["id"])),
            "best val": best.get(int(r["id"]), ""),
            "lr": now.get("lr"), "momentum": now.get("momentum"),
            "heartbeat": "" if age is None or pd.isna(age) else f"{age:.0f}s ago",
            "parent": parent_text, "error": r.get("error") or "",
        })
    columns = ["id", "project", "name", "status", "days saved", "step", "loss", "best val", "lr",
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
