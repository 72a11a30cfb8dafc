"""Which launcher starts, asks about and stops a run's process: the local one or Ray's.

Apart from ``launcher.py`` (the interface and the local launcher) and ``ray_launcher.py`` (the
Ray Jobs launcher, which builds on the former's helpers), so neither imports the other back.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping
from typing import Any

from babysit.errors import InvalidValue
from babysit.launcher import LocalLauncher


def make_launcher(launcher: Any = None, *, ray_address: str | None = None,
                  num_cpus: float | None = None, num_gpus: float | None = None) -> Any:
    """The launcher a Client starts processes with: an object is used as it is; ``"local"``
    or ``"ray"``; None takes ``$BABYSIT_LAUNCHER`` (default local). Ray's address comes from
    ``ray_address`` or ``$BABYSIT_RAY_ADDRESS``, its per-run CPUs/GPUs from the arguments or
    ``$BABYSIT_RAY_NUM_CPUS``/``$BABYSIT_RAY_NUM_GPUS`` (defaults 1 and 0).

    >>> make_launcher("local").kind
    'local'
    """
    if launcher is not None and not isinstance(launcher, str):
        return launcher
    kind = (launcher if launcher is not None
            else os.environ.get("BABYSIT_LAUNCHER") or "local").strip().lower()
    if kind == "local":
        return LocalLauncher()
    if kind != "ray":
        raise InvalidValue(f"the launcher must be 'local' or 'ray' (BABYSIT_LAUNCHER, "
                           f"--launcher), got {kind!r}")
    from babysit.ray_launcher import RayLauncher  # pure Python; ray itself only when used

    return RayLauncher(ray_address,
                       num_cpus=_env_number("BABYSIT_RAY_NUM_CPUS", num_cpus, 1.0),
                       num_gpus=_env_number("BABYSIT_RAY_NUM_GPUS", num_gpus, 0.0))


def _env_number(name: str, given: float | None, default: float) -> float:
    if given is not None:
        return given
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InvalidValue(f"{name} must be a number, got {text!r}") from None


def launcher_env(launcher: Any) -> dict[str, str]:
    """The settings a child process (a study's orchestrator) needs to launch its runs the
    same way: ``BABYSIT_LAUNCHER`` and, for Ray, its address and resources."""
    if getattr(launcher, "kind", None) != "ray":
        return {"BABYSIT_LAUNCHER": "local"}
    res = launcher.resources
    env = {"BABYSIT_LAUNCHER": "ray", "BABYSIT_RAY_ADDRESS": launcher.address}
    if res.get("num_cpus") is not None:
        env["BABYSIT_RAY_NUM_CPUS"] = str(res["num_cpus"])
    if res.get("num_gpus") is not None:
        env["BABYSIT_RAY_NUM_GPUS"] = str(res["num_gpus"])
    return env


def launcher_for(record: Any, default: Any) -> Any:
    """The launcher that started ``record``'s process, to ask it about that process: a Ray
    job's launcher for a run whose ``launcher`` column names a Ray job (``default`` itself when
    it talks to the same cluster), else a local one (runs started by ``babysit run``, by a
    local launcher, or before schema v5)."""
    handle = getattr(record, "launcher", None)
    if isinstance(handle, Mapping) and handle.get("kind") == "ray":
        if getattr(default, "kind", None) == "ray" and \
                getattr(default, "address", None) == handle.get("address"):
            return default
        return _ray_launcher(str(handle.get("address")))
    if isinstance(default, LocalLauncher):
        return default
    return LocalLauncher()


@functools.lru_cache(maxsize=8)
def _ray_launcher(address: str) -> Any:
    """One launcher per cluster address, so asking about many runs reuses its HTTP client."""
    from babysit.ray_launcher import RayLauncher

    return RayLauncher(address)
