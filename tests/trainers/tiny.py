"""A small real trainer for tests: shuffled DataLoader, dropout, SGD/Adam, optional scheduler.

Logs ``loss`` (before the update) and ``wsum`` (a fingerprint of the weights the step starts
from), so tests can compare curves value for value and check where a fork started.
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import resource
import signal
import sys
import time

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import babysit

parser = argparse.ArgumentParser()
parser.add_argument("--steps", type=int, default=100_000)
parser.add_argument("--epochs", type=int, default=None)
parser.add_argument("--day", default="20 steps")
parser.add_argument("--pace", type=float, default=0.0)
parser.add_argument("--optimizer", default="sgd", choices=["sgd", "adam"])
parser.add_argument("--scheduler", default="none",
                    choices=["none", "step", "cosine", "lambda", "warmup_cosine"])
parser.add_argument("--groups", type=int, default=1, choices=[1, 2],
                    help="2: the last layer in a second param group at a tenth of the lr")
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--strict", action="store_true")
parser.add_argument("--project", default="tiny")
parser.add_argument("--final", default=None, help="write the final weights' sha256 here")
parser.add_argument("--nan-at", type=int, default=-1, help="log a NaN loss at this step")
parser.add_argument("--guard", default="pause")
parser.add_argument("--big-mb", type=float, default=0.0,
                    help="attach an extra buffer of this size, so a checkpoint write takes a while")
parser.add_argument("--grow-at", type=int, default=-1, help="at this step, grow the buffer ...")
parser.add_argument("--grow-mb", type=float, default=0.0, help="... to this size")
parser.add_argument("--fsize-limit-mb", type=float, default=0.0,
                    help="no file of this process may grow past this (RLIMIT_FSIZE): disk full")
parser.add_argument("--log-lr", action="store_true",
                    help="log used_lr0, used_lr1: each group's lr as its update uses it")
parser.add_argument("--exit-at", type=int, default=-1, help="sys.exit(--exit-code) at this step")
parser.add_argument("--exit-code", type=int, default=1)
parser.add_argument("--raise-exit", action="store_true",
                    help="raise SystemExit(--exit-code) instead of calling sys.exit")
parser.add_argument("--sigint-at", type=int, default=-1, help="send itself SIGINT at this step")
parser.add_argument("--no-with", action="store_true", help="no `with run:` around the loop")
parser.add_argument("--hard-exit-after-days", type=int, default=-1,
                    help="os._exit(0) right after this many day ends")
parser.add_argument("--changed-loader-on-restart", default="none",
                    choices=["none", "generator", "short"],
                    help="when relaunched by babysit, use a loader that cannot resume exactly")
args = parser.parse_args()

if args.fsize_limit_mb:
    # Writes past the limit fail with a real OSError (EFBIG) instead of killing the process.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    limit = int(args.fsize_limit_mb * 2**20)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))


class Blob(nn.Module):
    """Dead weight in the checkpoint (a buffer, not a parameter)."""

    def __init__(self, mb: float):
        super().__init__()
        self.register_buffer("data", torch.zeros(int(mb * 2**20 / 4)))



def warmup_cosine(step: int, warmup: int = 10, total: int = 400) -> float:
    """Linear warmup over ``warmup`` steps, then a cosine down to 0 at ``total``."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total) / total))


torch.manual_seed(0)
x = torch.randn(512, 8)
y = (x[:, :4].sum(1) > 0).long()
loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True)
if os.environ.get("BABYSIT_RUN_ID") and args.changed_loader_on_restart == "generator":
    # a loader with its own generator: the checkpoint holds no state for it
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True,
                        generator=torch.Generator().manual_seed(1))
elif os.environ.get("BABYSIT_RUN_ID") and args.changed_loader_on_restart == "short":
    # 4 batches per epoch: a checkpoint taken at batch 20 cannot be found again
    loader = DataLoader(TensorDataset(x[:64], y[:64]), batch_size=16, shuffle=True)

config = {"lr": args.lr, "momentum": 0.9, "weight_decay": 0.0, "clip": 1.0}
run = babysit.init(project=args.project, config=config, day=args.day, strict=args.strict,
                   guard=babysit.Guard(policy=args.guard))
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))
params: list = list(model.parameters())
if args.groups == 2:
    params = [{"params": list(model[0].parameters())},
              {"params": list(model[3].parameters()), "lr": run.hp["lr"] / 10}]
if args.optimizer == "sgd":
    opt = torch.optim.SGD(params, lr=run.hp["lr"], momentum=run.hp["momentum"])
else:
    opt = torch.optim.Adam(params, lr=run.hp["lr"], betas=(run.hp["momentum"], 0.999))
sched = None
if args.scheduler == "step":
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
elif args.scheduler == "cosine":
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=1000, eta_min=0.001)
elif args.scheduler == "lambda":
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.99 ** s)
elif args.scheduler == "warmup_cosine":
    sched = torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
blob = Blob(args.big_mb) if args.big_mb else None
run.attach(model=model, optimizer=opt, scheduler=sched, blob=blob)
loss_fn = nn.CrossEntropyLoss()


def train() -> None:
    days_ended = 0

    @run.on_day_end
    def count(day: int) -> None:
        nonlocal days_ended
        days_ended += 1

    for xb, yb in run.loop(loader, epochs=args.epochs, steps=None if args.epochs else args.steps):
        if days_ended >= args.hard_exit_after_days >= 0:
            os._exit(0)
        if run.step == args.exit_at:
            if args.raise_exit:
                raise SystemExit(args.exit_code)
            sys.exit(args.exit_code)
        if run.step == args.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        wsum = float(sum(p.double().sum() for p in model.parameters()))
        loss = loss_fn(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), run.hp["clip"])
        # the lr each group's update uses at this step, as the optimizer sees it
        used = {f"used_lr{i}": group["lr"] for i, group in enumerate(opt.param_groups)} \
            if args.log_lr else {}
        opt.step()
        if sched is not None:
            sched.step()
        value = float("nan") if run.step == args.nan_at else loss.item()
        if run.step == args.grow_at and blob is not None:
            blob.data = torch.zeros(int(args.grow_mb * 2**20 / 4))
        run.log(loss=value, wsum=wsum, **used)
        if args.pace:
            time.sleep(args.pace)
    if args.final:
        digest = hashlib.sha256()
        for tensor in model.state_dict().values():
            digest.update(tensor.numpy().tobytes())
        with open(args.final, "w") as f:
            f.write(digest.hexdigest())


if args.no_with:
    train()
else:
    with run:
        train()
