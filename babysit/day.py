"""What a "day" is: the period between two checkpoints, set by the user as steps, epochs or time."""

from __future__ import annotations

import re
from dataclasses import dataclass

from babysit.errors import InvalidValue

_UNITS = {
    "step": ("steps", 1.0), "steps": ("steps", 1.0),
    "epoch": ("epochs", 1.0), "epochs": ("epochs", 1.0),
    "s": ("seconds", 1.0), "sec": ("seconds", 1.0), "secs": ("seconds", 1.0),
    "second": ("seconds", 1.0), "seconds": ("seconds", 1.0),
    "m": ("seconds", 60.0), "min": ("seconds", 60.0), "mins": ("seconds", 60.0),
    "minute": ("seconds", 60.0), "minutes": ("seconds", 60.0),
    "h": ("seconds", 3600.0), "hour": ("seconds", 3600.0), "hours": ("seconds", 3600.0),
    "d": ("seconds", 86400.0), "day": ("seconds", 86400.0), "days": ("seconds", 86400.0),
}
_PATTERN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]+)\s*$")


@dataclass(frozen=True)
class DaySpec:
    """A parsed day length: ``DaySpec.parse("200 steps") == DaySpec("steps", 200)``."""

    unit: str  # "steps" | "epochs" | "seconds"
    amount: float

    @classmethod
    def parse(cls, text: str | int) -> DaySpec:
        """Parse "200 steps", "2 epochs", "30s", "10 min", "24h"; a bare int means steps.

        >>> DaySpec.parse("30s")
        DaySpec(unit='seconds', amount=30.0)
        """
        if isinstance(text, bool):
            raise InvalidValue(f"day must be like '200 steps', '2 epochs' or '30s', got {text!r}")
        if isinstance(text, int):
            text = f"{text} steps"
        if not isinstance(text, str):
            raise InvalidValue(f"day must be like '200 steps', '2 epochs' or '30s', got {text!r}")
        match = _PATTERN.match(text)
        if not match or match.group(2).lower() not in _UNITS:
            raise InvalidValue(f"day must be like '200 steps', '2 epochs' or '30s', got {text!r}")
        unit, scale = _UNITS[match.group(2).lower()]
        amount = float(match.group(1)) * scale
        if amount <= 0:
            raise InvalidValue(f"day must be a positive length, got {text!r}")
        if unit in ("steps", "epochs"):
            if amount != int(amount):
                raise InvalidValue(f"a day of {unit} must be a whole number, got {text!r}")
            amount = int(amount)
        return cls(unit, amount)

    def __str__(self) -> str:
        if self.unit == "seconds":
            return f"{self.amount:g}s"
        return f"{int(self.amount)} {self.unit}"
