"""Names a user gives babysit (projects, runs, metrics, config keys): plain text of a sane length.

A name is shown in the dashboard, in plotly legends and in a terminal; a control character (a
terminal escape, a newline) or a bidi override in one would rewrite what the user sees, and a
100 kB name fills the screen. So they are refused where they enter, with the value named.
"""

from __future__ import annotations

import re

from babysit.errors import InvalidValue

#: the longest name babysit takes (the store's name columns are VARCHAR(200))
MAX_NAME = 200
# C0 and C1 controls (ESC, newline, DEL, CSI, ...) and the bidi overrides/isolates that reorder
# the text around them (a name that reads "gpj.exe" on screen).
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is an acceptable name; else InvalidValue naming it.

    >>> check_name("metric name", "val/loss")
    'val/loss'
    >>> check_name("run name", "a\\x1b[2Jb")
    Traceback (most recent call last):
    ...
    babysit.errors.InvalidValue: run name may not contain control characters, got 'a\\x1b[2Jb'
    """
    if not isinstance(value, str):
        raise InvalidValue(f"{what} must be a string, got {value!r}")
    if len(value) > MAX_NAME:
        raise InvalidValue(f"{what} may be at most {MAX_NAME} characters, got {len(value)}: "
                           f"{value[:40]!r}...")
    if _UNSAFE.search(value):
        raise InvalidValue(f"{what} may not contain control characters, got {value!r}")
    return value
