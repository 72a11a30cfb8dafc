"""The data position: which epoch and batch the loop is at, and how to get back there exactly.

An epoch's order is drawn from RNG states at its start (torch's global generator, and any
generator of the loader or its sampler). A checkpoint keeps those states and the batch index; to
resume inside an epoch, the loop replays the epoch's start, skips the batches already trained on,
then puts every generator back where the checkpoint left it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch

from babysit import checkpoint as ckpt


def loader_generators(loader: Any) -> list[torch.Generator]:
    """The generators that decide a loader's order (its own, its sampler's, its batch sampler's)."""
    found: list[torch.Generator] = []
    for holder in (loader, getattr(loader, "sampler", None),
                   getattr(getattr(loader, "batch_sampler", None), "sampler", None)):
        gen = getattr(holder, "generator", None)
        if isinstance(gen, torch.Generator) and all(gen is not g for g in found):
            found.append(gen)
    return found


def capture_epoch_rng(loader: Any) -> dict[str, Any]:
    """The RNG states an epoch of ``loader`` starts from."""
    return {"torch": torch.get_rng_state(),
            "loader": [g.get_state() for g in loader_generators(loader)]}


def restore_epoch_rng(loader: Any, state: dict[str, Any]) -> str | None:
    """Put the epoch-start states back; returns why that was impossible, or None."""
    torch.set_rng_state(state["torch"])
    generators = loader_generators(loader)
    if len(generators) != len(state.get("loader", [])):
        return "the data loader's generators differ from the checkpoint's"
    for gen, gen_state in zip(generators, state["loader"], strict=True):
        gen.set_state(gen_state)
    return None


class DataPosition:
    """Where the loop stands in its data, and where it must go back to after a restore.

    >>> pos = DataPosition(); it = pos.open_epoch(loader, warn=print); next(it); pos.batch += 1
    """

    def __init__(self) -> None:
        self.epoch = 0
        self.batch = 0                              # batches done in this epoch
        self.epoch_rng: dict[str, Any] | None = None
        self.reposition = False                     # leave the current epoch and reopen it
        self._target: dict[str, Any] | None = None  # where the next open_epoch must resume

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the position."""
        return {"epoch": self.epoch, "batch": self.batch, "epoch_rng": self.epoch_rng}

    def restore(self, payload: dict[str, Any]) -> None:
        """Go back to a checkpoint's position (at the next ``open_epoch``)."""
        self.epoch, self.batch = int(payload["epoch"]), int(payload["batch"])
        self._target = {"epoch_rng": payload.get("epoch_rng"), "batch": self.batch,
                        "rng": payload["rng"]}
        self.reposition = True

    def memo(self) -> dict[str, Any]:
        """Everything this position holds, to put back with ``recall`` (a failed restore)."""
        return dict(vars(self))

    def recall(self, memo: dict[str, Any]) -> None:
        vars(self).update(memo)

    def end_epoch(self) -> None:
        self.epoch += 1
        self.batch = 0
        self.epoch_rng = None

    def open_epoch(self, loader: Iterable[Any], warn: Callable[[str], None]) -> Iterator[Any]:
        """An iterator over the rest of the current epoch; ``warn(why)`` when the position
        cannot be restored exactly (the run goes on, no longer reproducible)."""
        target, self._target = self._target, None
        self.reposition = False
        if target is None or (target.get("epoch_rng") is None and not target.get("batch")):
            self.epoch_rng = capture_epoch_rng(loader)
            return iter(loader)
        epoch_rng = target["epoch_rng"]
        if epoch_rng is not None:
            problem = restore_epoch_rng(loader, epoch_rng)
            if problem:
                warn(problem)
        self.epoch_rng = epoch_rng
        iterator = iter(loader)
        for skipped in range(target["batch"]):
            try:
                next(iterator)
            except StopIteration:
                warn(f"the data loader has {skipped} batches per epoch, but the checkpoint is "
                     f"at batch {target['batch']}: the data position cannot be restored")
                break
        ckpt.restore_rng(target["rng"])
        return iterator
