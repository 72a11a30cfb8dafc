"""What the dashboard remembers per project: the panels a user chose, in their order.

A small JSON file beside the store (``<root>/dashboard.json``), written atomically; a missing
or unreadable file means "no choice yet", never an error on the page.

>>> import tempfile; root = tempfile.mkdtemp()
>>> save_panels(root, "digits", ["val_acc", "loss"]); load_panels(root, "digits")
['val_acc', 'loss']
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

FILE = "dashboard.json"
_MAX_PANELS = 200


def _read(root: str | os.PathLike[str]) -> dict:
    try:
        data = json.loads((Path(root) / FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def load_panels(root: str | os.PathLike[str], project: str) -> list[str] | None:
    """The panels chosen for ``project``, in order, or None when none were chosen."""
    panels = _read(root).get("panels", {})
    chosen = panels.get(str(project)) if isinstance(panels, dict) else None
    if not isinstance(chosen, list):
        return None
    return [str(n) for n in chosen if isinstance(n, str)][:_MAX_PANELS]


def save_panels(root: str | os.PathLike[str], project: str, names: list[str]) -> None:
    """Remember ``names`` for ``project`` (an empty list forgets the choice)."""
    folder = Path(root)
    if not folder.is_dir():
        return                  # a dashboard never creates the store's folder
    data = _read(folder)
    kept = data.get("panels")
    panels: dict[str, Any] = kept if isinstance(kept, dict) else {}
    if names:
        panels[str(project)] = [str(n) for n in names][:_MAX_PANELS]
    else:
        panels.pop(str(project), None)
    data["panels"] = panels
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".dashboard-", suffix=".json")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)
        os.replace(tmp, folder / FILE)
    except OSError:
        Path(tmp).unlink(missing_ok=True)
