"""System metrics of the training process, sampled by the writer thread every few seconds.

``sys/cpu_percent`` (this process and its children, % of one core), ``sys/rss_mb`` (resident
memory of the process and its children, MB) and, when CUDA is initialised in this process,
``sys/gpu_mem_mb`` (memory torch has allocated) and ``sys/gpu_util`` (utilisation, when
``torch.cuda.utilization`` can read it). They go in as ordinary metric rows at the loop's
current step, so the dashboard draws them as panels of their own; they are left out of the
day means stored with checkpoints. Sampling never raises: a metric that cannot be read is
skipped.

>>> s = SystemSampler(); _ = s.sample(); sorted(k for k in s.sample() if k.startswith("sys/r"))
['sys/rss_mb']
"""

from __future__ import annotations

import contextlib
import sys
from typing import Any

import psutil

#: seconds between two samples (the writer thread checks this on its own loop)
INTERVAL_S = 5.0


class SystemSampler:
    """Reads this process's CPU and memory (psutil) and, if torch has CUDA up, the GPU."""

    def __init__(self) -> None:
        self._proc = psutil.Process()
        self._children: dict[int, psutil.Process] = {}
        self._proc.cpu_percent(None)           # the first call only starts the clock

    def _family(self) -> list[psutil.Process]:
        try:
            kids = self._proc.children(recursive=True)      # DataLoader workers
        except psutil.Error:
            kids = []
        alive = {}
        for kid in kids:
            known = self._children.get(kid.pid)
            if known is None:
                try:
                    kid.cpu_percent(None)
                except psutil.Error:
                    continue
                known = kid
            alive[kid.pid] = known
        self._children = alive
        return [self._proc, *alive.values()]

    def sample(self) -> dict[str, float]:
        """{metric name: value} now; an empty dict when nothing can be read."""
        out: dict[str, float] = {}
        cpu = rss = 0.0
        ok = False
        for proc in self._family():
            try:
                cpu += proc.cpu_percent(None)
                rss += proc.memory_info().rss
                ok = True
            except psutil.Error:
                continue
        if ok:
            out["sys/cpu_percent"] = round(cpu, 1)
            out["sys/rss_mb"] = round(rss / 2**20, 1)
        out.update(_gpu())
        return out


def _gpu() -> dict[str, float]:
    # Only when the training script already imported torch and brought CUDA up: sampling
    # must never import torch or create a CUDA context of its own.
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return {}
    try:
        if not torch.cuda.is_available() or not torch.cuda.is_initialized():
            return {}
        out = {"sys/gpu_mem_mb": round(torch.cuda.memory_allocated() / 2**20, 1)}
        with contextlib.suppress(Exception):   # needs pynvml; memory alone is worth drawing
            out["sys/gpu_util"] = float(torch.cuda.utilization())
        return out
    except Exception:
        return {}
