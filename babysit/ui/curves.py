"""The dashboard's memory of each run's curve: read the whole history once, then only new rows.

A live page redraws every couple of seconds. Reading 20 runs x 100k rows from the store on each
redraw would take seconds; reading only the rows logged since the last redraw takes a
millisecond. A rollback or restart marks old rows superseded in place (an update, not new rows)
and always bumps the run's ``branch``; so a branch that changed means "read it all again".
This relies on row ids becoming visible in increasing order, which holds for SQLite (one writer
at a time); a server database whose sequences can commit out of order needs a different key.

No Streamlit here: ``state.py`` keeps one ``CurveCache`` per server process.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import pandas as pd

from babysit.store import Store


@dataclass
class _Entry:
    branch: int
    last_id: int
    frame: pd.DataFrame


class CurveCache:
    """Metric rows of recently viewed runs (superseded rows included), topped up incrementally.

    >>> cache = CurveCache()
    >>> df = cache.metrics(store, run_id=3, branch=0)   # the first call reads the whole run
    >>> df = cache.metrics(store, run_id=3, branch=0)   # later calls read only the new rows
    """

    def __init__(self, max_runs: int = 64):
        self.max_runs = max_runs
        self._entries: OrderedDict[tuple[str, int], _Entry] = OrderedDict()
        self._lock = threading.Lock()    # Streamlit serves each browser tab from its own thread

    def metrics(self, store: Store, run_id: int, branch: int) -> pd.DataFrame:
        """Every metric row of ``run_id`` (columns as ``Store.metrics``, without ``id``)."""
        key = (store.url, int(run_id))
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.branch != branch:
                frame = store.metrics(run_id, include_superseded=True)
                last = int(frame["id"].max()) if len(frame) else 0
                frame = frame.drop(columns=["id"])
                # A few names over 100k rows: a categorical column concatenates and groups
                # several times faster than strings.
                frame["name"] = frame["name"].astype("category")
                entry = _Entry(branch, last, frame)
            else:
                new = store.metrics(run_id, include_superseded=True, since_id=entry.last_id)
                if len(new):
                    # Rows of one name stay in step order: new rows come after the old ones.
                    entry.last_id = int(new["id"].max())
                    new = new.drop(columns=["id"])
                    names = entry.frame["name"].cat.categories
                    extra = sorted(set(new["name"]) - set(names))
                    if extra:
                        entry.frame["name"] = entry.frame["name"].cat.add_categories(extra)
                        names = entry.frame["name"].cat.categories
                    new["name"] = pd.Categorical(new["name"], categories=names)
                    entry.frame = pd.concat([entry.frame, new], ignore_index=True)
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_runs:
                self._entries.popitem(last=False)
            return entry.frame     # shared: callers read it, never change it

    def forget(self) -> None:
        with self._lock:
            self._entries.clear()
