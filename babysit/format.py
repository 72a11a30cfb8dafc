"""How babysit writes values for people: one number format, hyperparameters, a nudge's
confirmation, times, and text that is safe to print on a terminal (effective-vs-configured
values: `babysit.hparams.describe`). No Streamlit, no torch: the CLI and the dashboard
both use it.

>>> fmt(0.05), fmt(3e-05), fmt(400.0), fmt(float("nan")), fmt(None)
('0.05', '3e-05', '400', 'nan', '–')
>>> fmt_hp({"lr": 0.0125, "batch_size": 64})
'lr=0.0125 batch_size=64'
"""

from __future__ import annotations

import math
import numbers
import time
import unicodedata
from collections.abc import Mapping
from typing import Any

#: categories of characters that steer a terminal or hide text: controls (ESC, CR, BEL...),
#: format characters (bidi overrides, zero-width), surrogates, private use; and the line and
#: paragraph separators
_UNSAFE_CATEGORIES = ("Cc", "Cf", "Cs", "Co", "Zl", "Zp")
_SAFE_FORMAT = {"\u200d"}      # the zero-width joiner inside emoji sequences only joins


def fmt(value: Any, digits: int = 4, none: str = "–") -> str:
    """Numbers as people write them: 0.05, 3e-05, 400, nan; ``none`` for None.

    >>> fmt(0.123456, 6), fmt(True), fmt(7)
    ('0.123456', 'true', '7')
    """
    if value is None:
        return none
    if type(value).__name__ in ("bool", "bool_"):        # Python's and numpy's (1.x, 2.x)
        return str(bool(value)).lower()
    if isinstance(value, numbers.Integral):
        return str(int(value))
    if isinstance(value, numbers.Real):
        f = float(value)
        if math.isnan(f):
            return "nan"
        if math.isinf(f):
            return "inf" if f > 0 else "-inf"
        return str(int(f)) if f.is_integer() and abs(f) < 1e15 else f"{f:.{digits}g}"
    return str(value)


def fmt_hp(hp: Mapping[str, Any], digits: int = 6) -> str:
    """Hyperparameters as ``key=value`` pairs.

    >>> fmt_hp({"lr": 0.05, "momentum": 0.9})
    'lr=0.05 momentum=0.9'
    """
    return " ".join(f"{k}={fmt(v, digits)}" for k, v in hp.items())


def nudge_summary(detail: Mapping[str, Any] | None, step: int | None) -> str:
    """A nudge as the trainer reports it applied it (its event detail and step), the only
    account a confirmation may give: never what a client guessed the values would be.

    >>> nudge_summary({"lr": {"old": 0.0125, "new": 0.00625, "op": "scale"}}, 1000)
    'lr 0.0125 → 0.00625 applied at step 1000'
    >>> nudge_summary({}, 7)
    'nudge applied at step 7'
    """
    changes = [f"{key} {fmt(d.get('old'), 6)} → {fmt(d.get('new'), 6)}"
               for key, d in (detail or {}).items() if isinstance(d, Mapping)]
    at = f" at step {step}" if step is not None else ""
    return (", ".join(changes) if changes else "nudge") + " applied" + at


def terminal_safe(text: Any, *, newlines: bool = False) -> str:
    """``text`` with every character that could steer a terminal written out as an escape
    (``\\x1b``, ``\\u202e``), so a run name can never rewrite the screen. With ``newlines``
    line breaks are kept (for multi-line messages).

    >>> terminal_safe("evil\\x1b[2Jname")
    'evil\\\\x1b[2Jname'
    """
    text = str(text)
    if text.isascii() and text.isprintable():
        return text
    out = []
    for ch in text:
        if (newlines and ch == "\n") or ch in _SAFE_FORMAT or \
                unicodedata.category(ch) not in _UNSAFE_CATEGORIES:
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def local_time(epoch: Any, *, date: bool = True) -> str:
    """An epoch time as the local clock shows it: ``2026-12-01 14:03:07`` (or the time alone).

    >>> local_time(None)
    ''
    """
    if epoch is None or isinstance(epoch, bool) or not isinstance(epoch, numbers.Real) or \
            not math.isfinite(epoch):
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S" if date else "%H:%M:%S",
                         time.localtime(float(epoch)))
