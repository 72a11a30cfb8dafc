"""Formatting for the dashboard: numbers, clock times, event details and run labels, as text.

Nothing here imports plotly or Streamlit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from babysit.format import fmt
from babysit.ui.text import shorten

# Short names for the legend of the compare figure: "#3 lr=0.05 m=0.9".
_HP_ABBREVIATIONS = {"lr": "lr", "momentum": "m", "weight_decay": "wd", "batch_size": "bs"}


def describe_event(
    kind: str,
    detail: Mapping[str, Any] | str | None = None,
    source: str | None = None,
    time: float | None = None,
    *,
    ref_time: float | None = None,
) -> str:
    """One line saying what an event changed, for hovers and the audit log.

    The clock time is local; it carries the date when it is not the day of ``ref_time``
    (default: ``time`` itself, so the date is left out).

    >>> describe_event("nudge", {"lr": {"old": 0.1, "new": 0.05}}, "ui")
    'nudge lr 0.1 → 0.05 (ui)'
    >>> describe_event("rollback", {"to_day": 2, "to_step": 400, "from_step": 731}, "cli")
    'rollback to the end of day 2 (step 400) from step 731 (cli)'
    >>> describe_event("started", {"hp": {}, "day": "100 steps"})
    'started days of 100 steps, hp={}'
    >>> describe_event("restarted", {"from_day": 2, "from_run": 4, "overrides": {}}, "trainer")
    'restarted from run #4 at the end of day 2 (trainer)'
    """
    what = _describe_detail(str(kind), _parse_detail(detail))
    text = f"{kind} {what}" if what else str(kind)
    where = [str(source)] if source not in (None, "") and not _is_missing(source) else []
    if time is not None and _finite(time):
        where.append(_clock(float(time), ref_time))
    return f"{text} ({', '.join(where)})" if where else text


def run_label(run: Mapping[str, Any] | pd.Series, max_hps: int = 4) -> str:
    """Legend label of a run: its id and current hyperparameters, lr first: for lr, momentum
    and weight decay the value the optimizer uses now (``effective``, after the schedule).

    >>> run_label({"id": 3, "hp": {"momentum": 0.9, "lr": 0.05}})
    '#3 lr=0.05 m=0.9'
    >>> run_label({"id": 3, "hp": {"lr": 0.05}, "effective": {"lr": 0.0125, "groups": []}})
    '#3 lr=0.0125'
    """
    hp = _parse_detail(run.get("hp"))
    effective = run.get("effective")
    if isinstance(effective, Mapping):
        hp.update({k: v for k, v in effective.items() if k in ("lr", "momentum", "weight_decay")
                   and isinstance(v, int | float) and not isinstance(v, bool)})
    label = f"#{fmt(run.get('id'))}"
    keys = sorted(hp, key=lambda k: (list(_HP_ABBREVIATIONS).index(k) if k in _HP_ABBREVIATIONS else 99, k))
    parts = [f"{shorten(_HP_ABBREVIATIONS.get(k, k), 40)}={shorten(fmt(hp[k], digits=3), 40)}"
             for k in keys[:max_hps]]
    if len(keys) > max_hps:
        parts.append("…")
    return " ".join([label, *parts])


def _parse_detail(detail: Any) -> dict[str, Any]:
    """An event detail or run hp as a dict, whether it came as a dict, JSON text or nothing."""
    if isinstance(detail, Mapping):
        return dict(detail)
    if isinstance(detail, str | bytes) and detail:
        try:
            parsed = json.loads(detail)
        except ValueError:
            return {"detail": detail}
        return dict(parsed) if isinstance(parsed, Mapping) else {"detail": parsed}
    return {}


def _describe_detail(kind: str, d: dict[str, Any]) -> str:
    if not d:
        return ""
    if kind == "rollback" and "to_day" in d:
        text = f"to the end of day {fmt(d['to_day'])}"
        if "to_step" in d:
            text += f" (step {fmt(d['to_step'])})"
        if "from_step" in d:
            text += f" from step {fmt(d['from_step'])}"
        rest = {k: v for k, v in d.items() if k not in ("to_day", "to_step", "from_step")}
        return _join(text, _describe_pairs(rest))
    if kind == "fork" and "child" in d:
        text = f"child #{fmt(d['child'])}"
        if "day" in d:
            text += f" at the end of day {fmt(d['day'])}"
        return _join(text, _describe_pairs({k: v for k, v in d.items() if k not in ("child", "day")}))
    if "from_day" in d:         # forked, restarted, exploit: where the state came from
        text = (f"from run #{fmt(d['from_run'])} " if d.get("from_run") is not None else "from ") \
            + f"at the end of day {fmt(d['from_day'])}"
        rest = {k: v for k, v in d.items() if k not in ("from_day", "from_run")
                and not (k == "overrides" and not v)}
        return _join(text, _describe_pairs(rest))
    if kind == "started" and isinstance(d.get("day"), str):    # the day's length, not a day
        return _join(f"days of {d['day']}", _describe_pairs({k: v for k, v in d.items()
                                                            if k != "day"}))
    if kind == "diverged" and "metric" in d:
        text = f"{d['metric']} = {fmt(d.get('value'))}"
        return _join(text, _describe_pairs({k: v for k, v in d.items() if k not in ("metric", "value")}))
    return _describe_pairs(d)


def _describe_pairs(d: Mapping[str, Any]) -> str:
    parts = []
    for key, value in d.items():
        if isinstance(value, Mapping) and "new" in value:
            parts.append(f"{key} {fmt(value.get('old'))} → {fmt(value['new'])}")
        elif isinstance(value, Mapping):
            parts.append(f"{key}={json.dumps(value, default=str, separators=(',', ':'))}")
        else:
            parts.append(f"{key}={fmt(value)}")
    text = ", ".join(parts)
    return text if len(text) <= 200 else text[:199] + "…"


def _join(*parts: str) -> str:
    return ", ".join(p for p in parts if p)


def _clock(t: float, ref: float | None) -> str:
    when = datetime.fromtimestamp(t)
    if ref is not None and datetime.fromtimestamp(ref).date() != when.date():
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return when.strftime("%H:%M:%S")


def _utc_offset(t: float) -> float:
    offset = datetime.fromtimestamp(t).astimezone().utcoffset()
    return offset.total_seconds() if offset is not None else 0.0


def _iso(value: np.datetime64) -> str:
    return str(value.astype("datetime64[ms]"))


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _as_int(value: Any) -> int | None:
    if _is_missing(value) or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return int(f) if math.isfinite(f) else None
