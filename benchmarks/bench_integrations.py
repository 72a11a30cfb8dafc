"""Per-step overhead of babysit's framework callbacks, beside the same Trainer without them.

Hugging Face: a 1-layer GPT-2 (n_embd 64, 4 heads, 64 tokens, batch 8) from a config with
random weights on random tokens, AdamW with linear warmup + decay, ``logging_steps=1`` (the
Trainer logs loss, grad_norm and learning_rate every step: babysit stores each), CPU, one
thread. Lightning: the tests' tiny MLP (``tests/integrations/trainers/pl_tiny.py``) on more data,
``self.log`` every step, a CSVLogger on both sides (Lightning's default kind of logger). Babysat: ``BabysitCallback`` with ``huggingface.train`` /
``lightning.fit``, and days long enough that no checkpoint lands inside the timed steps (a day's
cost is the framework's own save, which both sides would pay). Each run times steps from its
``warmup``-th to its last with a callback of its own, so start-up and ``init`` are not counted.
Bare and babysat runs alternate and the medians of the per-step times are compared.

    python benchmarks/bench_integrations.py
    python benchmarks/bench_integrations.py --steps 200 --pairs 2 --only hf

Target (issue 12): the callback makes a step at most 2% slower.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integrations" / "trainers"))

import torch  # noqa: E402

TARGET_PCT = 2.0


class Clock:
    """Wall and process CPU time of steps ``warmup``..``steps`` (a framework-neutral part of
    both callbacks). CPU time counts every thread of the process (babysit's writer included)
    and not the other processes that inflate wall time on a loaded machine."""

    def __init__(self, warmup: int):
        self.warmup, self.n = warmup, 0
        self.t0 = self.t1 = self.c0 = self.c1 = 0.0

    def tick(self, step: int) -> None:
        if step == self.warmup:
            self.t0, self.c0 = time.perf_counter(), time.process_time()
        elif step > self.warmup:
            self.t1, self.c1, self.n = time.perf_counter(), time.process_time(), step - self.warmup

    @property
    def per_step_ms(self) -> tuple[float, float]:
        """(wall, CPU) milliseconds per step."""
        return (self.t1 - self.t0) / self.n * 1000, (self.c1 - self.c0) / self.n * 1000


HOOK_S = [0.0]      # CPU time inside babysit's hooks (the loop thread's share of its cost)


def timed(cls: type, *names: str) -> type:
    """A subclass of ``cls`` whose ``names`` methods add their CPU time to HOOK_S (thread
    time: other processes on a loaded machine do not inflate it, as they do wall time)."""
    def wrap(name: str):
        method = getattr(cls, name)

        def hook(self, *args, **kwargs):
            t0 = time.thread_time()
            try:
                return method(self, *args, **kwargs)
            finally:
                HOOK_S[0] += time.thread_time() - t0
        return hook
    return type(f"Timed{cls.__name__}", (cls,), {n: wrap(n) for n in names})


def hf_run(babysat: bool, steps: int, warmup: int, folder: str) -> tuple[float, float]:
    from hf_tiny import RandomTokens
    from transformers import (
        GPT2Config,
        GPT2LMHeadModel,
        Trainer,
        TrainerCallback,
        TrainingArguments,
    )

    from babysit.integrations.huggingface import BabysitCallback, train

    clock = Clock(warmup)

    class Tick(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            clock.tick(state.global_step)

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=256, n_positions=64, n_embd=64, n_layer=1,
                                       n_head=4, bos_token_id=0, eos_token_id=0))
    args = TrainingArguments(
        output_dir=f"{folder}/out", max_steps=steps, per_device_train_batch_size=8,
        learning_rate=1e-3, warmup_steps=10, lr_scheduler_type="linear", logging_steps=1,
        save_strategy="no", report_to=[], use_cpu=True, seed=0, disable_tqdm=True,
        log_level="error")
    callbacks: list = [Tick()]
    if babysat:
        cb = timed(BabysitCallback, "on_step_end", "on_log")
        callbacks.append(cb(day=f"{steps * 10} steps", project="bench", root=f"{folder}/store"))
    trainer = Trainer(model=model, args=args,
                      train_dataset=RandomTokens(n=4096, length=64, vocab=256),
                      callbacks=callbacks)
    if babysat:
        train(trainer)
    else:
        trainer.train()
    return clock.per_step_ms


def pl_run(babysat: bool, steps: int, warmup: int, folder: str) -> tuple[float, float]:
    import lightning.pytorch as pl
    from pl_tiny import Tiny
    from torch.utils.data import DataLoader, TensorDataset

    from babysit.integrations import lightning as babysit_lightning
    from babysit.integrations.lightning import BabysitCallback, fit

    if not babysit_lightning.BabysitLogger.__name__.startswith("Timed"):
        # once: wrapping it again at every run counted each hook call once per run so far
        babysit_lightning.BabysitLogger = timed(  # type: ignore[misc]
            babysit_lightning.BabysitLogger, "log_metrics")

    clock = Clock(warmup)

    class Tick(pl.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            clock.tick(trainer.global_step)

    torch.manual_seed(0)
    x = torch.randn(steps * 16, 8)
    loader = DataLoader(TensorDataset(x, (x[:, :4].sum(1) > 0).long()), batch_size=16,
                        shuffle=True)
    callbacks: list = [Tick()]
    if babysat:
        cb = timed(BabysitCallback, "on_train_batch_end", "on_train_epoch_end")
        callbacks.append(cb(day=f"{steps * 10} steps", project="bench", root=f"{folder}/store"))
    # Both sides keep Lightning's default logger (CSVLogger here, TensorBoard where installed):
    # with no logger at all Lightning skips most of its own per-step logging work, which any
    # user who looks at curves pays for anyway.
    from lightning.pytorch.loggers import CSVLogger
    trainer = pl.Trainer(max_steps=steps, accelerator="cpu", devices=1,
                         logger=CSVLogger(f"{folder}/logs"),
                         enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1,
                         default_root_dir=f"{folder}/out", callbacks=callbacks)
    model = Tiny()
    if babysat:
        fit(trainer, model, loader)
    else:
        trainer.fit(model, loader)
    return clock.per_step_ms


def _row(label: str, values: list[float]) -> str:
    return f"{label:28s}{statistics.median(values):10.3f}   " + " ".join(f"{v:.3f}" for v in values)


def measure(name: str, fn, steps: int, warmup: int, pairs: int) -> bool:
    walls: dict[bool, list[float]] = {False: [], True: []}
    cpus: dict[bool, list[float]] = {False: [], True: []}
    hooks = []
    load0 = os.getloadavg()
    for i in range(pairs + 1):
        # alternate which side goes first, so a drift in the machine's load hits both
        for flag in ((False, True) if i % 2 else (True, False)):
            HOOK_S[0] = 0.0
            with tempfile.TemporaryDirectory() as folder:
                wall, cpu = fn(flag, steps, warmup, folder)
            if i:               # the first pair warms caches and imports up, untimed
                walls[flag].append(wall)
                cpus[flag].append(cpu)
                if flag:
                    hooks.append(HOOK_S[0] / steps * 1e6)
    load1 = os.getloadavg()
    print(f"\n{name}: {steps} steps/run ({warmup} untimed), {pairs} alternating pairs, 1 thread")
    print(f"load average {load0[0]:.1f} at the start, {load1[0]:.1f} at the end "
          f"({os.cpu_count()} CPUs)")
    verdicts = []
    for what, data in (("wall", walls), ("CPU (process)", cpus)):
        b, s = statistics.median(data[False]), statistics.median(data[True])
        pct = (s - b) / b * 100
        best = (min(data[True]) - min(data[False])) / min(data[False]) * 100
        verdicts.append(pct)
        print(f"{what + ' ms/step':28s}{'median':>10s}   each run")
        print(_row("  without babysit (baseline)", data[False]))
        print(_row("  with BabysitCallback", data[True]))
        print(f"  overhead (median): {pct:+.2f}%   target <= +{TARGET_PCT:g}%   "
              f"{'PASS' if pct <= TARGET_PCT else 'MISS'}   (best-of: {best:+.2f}%)")
    hook_us = statistics.median(hooks)
    base_cpu = statistics.median(cpus[False])
    print(f"CPU time inside babysit's hooks: {hook_us:.1f} us/step = "
          f"{hook_us / 10 / base_cpu:.2f}% of a step's CPU time (the loop thread's share; the "
          "writer thread's is in the process CPU figures)")
    return verdicts[1] <= TARGET_PCT


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--only", choices=["hf", "lightning"], default=None)
    opts = parser.parse_args()
    torch.set_num_threads(1)
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import transformers
    transformers.logging.set_verbosity_error()
    if opts.only in (None, "hf"):
        measure("Hugging Face Trainer (1-layer GPT-2, logging_steps=1)", hf_run, opts.steps,
                opts.warmup, opts.pairs)
    if opts.only in (None, "lightning"):
        measure("Lightning (tiny MLP, self.log every step)", pl_run, opts.steps, opts.warmup,
                opts.pairs)


if __name__ == "__main__":
    main()
