"""A tiny real Hugging Face Trainer: a 1-layer GPT-2 with random weights on random tokens.

No download: the model is built from a GPT2Config and the data is generated. Dropout is on,
so an exact resume needs the RNG states. Run as a script (a fork or restart starts it again) or
import ``build`` in a test.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import torch  # noqa: E402
from transformers import GPT2Config, GPT2LMHeadModel, Trainer, TrainingArguments  # noqa: E402

from babysit.integrations.huggingface import BabysitCallback, train  # noqa: E402


class RandomTokens(torch.utils.data.Dataset):
    def __init__(self, n: int = 256, length: int = 16, vocab: int = 64, seed: int = 0):
        gen = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, vocab, (n, length), generator=gen)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def build(output_dir: str, *, steps: int = 40, day: str = "10 steps", lr: float = 1e-3,
          warmup: int = 5, callbacks: list | None = None, project: str = "hf-tiny",
          babysit: bool = True, pace: float = 0.0, nan_filter: bool = True,
          save_steps: int = 0, width: int = 32, **callback_kwargs) -> Trainer:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=64, n_positions=16, n_embd=width, n_layer=1, n_head=2,
                        bos_token_id=0, eos_token_id=0)
    model = GPT2LMHeadModel(config)
    args = TrainingArguments(
        output_dir=output_dir, max_steps=steps, per_device_train_batch_size=8,
        learning_rate=lr, warmup_steps=warmup, lr_scheduler_type="linear", weight_decay=0.01,
        logging_steps=1, save_strategy="steps" if save_steps else "no",
        save_steps=save_steps or 500, save_total_limit=1, report_to=[], use_cpu=True, seed=0,
        dataloader_num_workers=0, disable_tqdm=True, logging_nan_inf_filter=nan_filter)
    extra = list(callbacks or [])
    hang_at = int(os.environ.get("TINY_HANG_AT", "0"))
    if pace or hang_at:
        extra.append(_Pace(pace, hang_at))
    if babysit:
        extra.append(BabysitCallback(day=day, project=project, **callback_kwargs))
    return Trainer(model=model, args=args, train_dataset=RandomTokens(), callbacks=extra)


class _Pace:
    """Sleep after each step, so a test can act while the run is alive; with ``hang_at``
    (the env var ``TINY_HANG_AT``, which a restart does not inherit) stop at that step for good,
    so a test can kill the process at a known point, not wherever a race left it."""

    def __new__(cls, seconds: float, hang_at: int = 0):
        import time

        from transformers import TrainerCallback

        class Pace(TrainerCallback):
            def on_step_end(self, args, state, control, **kwargs):
                time.sleep(seconds)
                while hang_at and state.global_step >= hang_at:
                    time.sleep(1)
        return Pace()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--day", default="10 steps")
    parser.add_argument("--pace", type=float, default=0.0)
    opts = parser.parse_args()
    trainer = build(opts.out, steps=opts.steps, day=opts.day, pace=opts.pace)
    train(trainer)
    sys.exit(0)
