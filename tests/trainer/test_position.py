"""The data position: an epoch resumed mid-way yields exactly the batches it would have."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from babysit import checkpoint as ckpt
from babysit.trainer.position import DataPosition, loader_generators


def _loader(generator: torch.Generator | None = None, n: int = 40) -> DataLoader:
    return DataLoader(TensorDataset(torch.arange(float(n))), batch_size=4, shuffle=True,
                      generator=generator)


def _take(position: DataPosition, iterator, batches: int) -> list[list[float]]:
    """Take up to ``batches`` batches, as the loop does (counting each), then random draws as
    a training step would make (dropout, augmentation)."""
    out = []
    for batch in iterator:
        out.append(batch[0].tolist())
        position.batch += 1
        if len(out) == batches:
            break
    out.append([torch.rand(1).item(), random.random(), float(np.random.rand())])
    return out


def _run(position: DataPosition, loader, batches: int, warnings: list[str]) -> list[list[float]]:
    return _take(position, position.open_epoch(loader, warnings.append), batches)


def _checkpoint(position: DataPosition) -> dict:
    return {**position.state(), "rng": ckpt.capture_rng()}


def test_resuming_inside_an_epoch_gives_the_same_batches_and_random_draws():
    torch.manual_seed(3)
    loader = _loader()
    first = DataPosition()
    warnings: list[str] = []
    iterator = first.open_epoch(loader, warnings.append)
    _take(first, iterator, 4)                           # 4 batches into epoch 0...
    saved = _checkpoint(first)                          # ...the day ends here
    rest = _take(first, iterator, 10)                   # what came next, uninterrupted
    assert len(rest) == 6 + 1

    torch.manual_seed(99)                               # another process, other RNG states
    random.seed(99)
    again = DataPosition()
    again.restore(saved)
    assert (again.epoch, again.batch, again.reposition) == (0, 4, True)
    assert _run(again, loader, 10, warnings) == rest
    assert again.batch == first.batch
    assert warnings == []


def test_the_loaders_own_generator_is_captured_and_restored():
    loader = _loader(torch.Generator().manual_seed(5))
    assert len(loader_generators(loader)) == 1
    first = DataPosition()
    iterator = first.open_epoch(loader, [].append)
    _take(first, iterator, 2)
    saved = _checkpoint(first)
    rest = _take(first, iterator, 10)
    loader.generator.manual_seed(1234)                  # the generator moved on meanwhile
    again = DataPosition()
    again.restore(saved)
    assert _run(again, loader, 10, []) == rest


def test_a_position_that_cannot_be_found_again_says_why():
    first = DataPosition()
    _run(first, _loader(), 8, [])                       # batch 8 of 10
    saved = _checkpoint(first)
    warnings: list[str] = []
    again = DataPosition()
    again.restore(saved)
    _run(again, _loader(n=16), 10, warnings)            # a loader of 4 batches per epoch
    assert any("4 batches per epoch" in w for w in warnings)
    other = DataPosition()
    other.restore(saved)
    _run(other, _loader(torch.Generator()), 1, warnings)   # a generator the checkpoint lacks
    assert any("generators differ" in w for w in warnings)


def test_a_new_epoch_starts_from_batch_zero_and_new_states():
    position = DataPosition()
    _run(position, _loader(), 3, [])
    position.end_epoch()
    assert (position.epoch, position.batch, position.epoch_rng) == (1, 0, None)
    assert position.state() == {"epoch": 1, "batch": 0, "epoch_rng": None}
