"""The built-in demo: a small MLP learns to tell apart 5 interleaved spirals.

The data is generated (no download), the model is small enough for 2 CPU cores, and the demo
paces itself so that a day lasts tens of seconds and a learning-rate or momentum nudge visibly
bends the curve within a minute. ``python -m babysit.demo --help`` lists the options.
"""

from __future__ import annotations

import argparse
import math
import time

import psutil
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import babysit


def spirals(n: int, classes: int = 5, noise: float = 0.15, seed: int = 0
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` points on ``classes`` interleaved spiral arms (one turn each) in 2-D, with labels.

    Tuned so that plain SGD at lr 0.01 / momentum 0.5 plateaus while lr 0.1 / momentum 0.9
    learns within a few hundred steps: a nudge visibly bends the curve.
    """
    gen = torch.Generator().manual_seed(seed)
    label = torch.randint(0, classes, (n,), generator=gen)
    radius = torch.rand(n, generator=gen)
    angle = radius * 2 * math.pi + label * (2 * math.pi / classes)
    angle = angle + noise * torch.randn(n, generator=gen)
    x = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    return 3 * x, label


def watched(spec: str | None) -> psutil.Process | None:
    """The process named by ``PID:START`` (``--watch``), if it is alive now, else None.

    ``babysit demo`` passes itself, so its run (and every fork of it started while the demo
    lives) stops when the demo is gone, even killed with SIGKILL: a run that trains until
    stopped must not outlive the dashboard that shows it. A restart after the demo ended finds
    the process gone and trains until stopped, as the user asked. The start time guards
    against a reused pid."""
    if not spec:
        return None
    try:
        pid, start = spec.split(":")
        proc = psutil.Process(int(pid))
        return proc if abs(proc.create_time() - float(start)) < 1e-3 else None
    except (ValueError, psutil.Error):
        return None


def model(width: int = 64, classes: int = 5) -> nn.Module:
    return nn.Sequential(nn.Linear(2, width), nn.Tanh(), nn.Linear(width, width), nn.Tanh(),
                         nn.Linear(width, classes))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m babysit.demo", description=__doc__)
    parser.add_argument("--project", default="demo")
    parser.add_argument("--name", default=None)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--momentum", type=float, default=0.5)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=400,
                        help="epochs to train (default 400; 0: until stopped, as `babysit demo`"
                             " runs it, so its controls stay live for whoever comes back later)")
    parser.add_argument("--day", default="300 steps", help="checkpoint period (default: 300 steps)")
    parser.add_argument("--pace", type=float, default=0.03,
                        help="seconds to wait per step so a person can watch (0: full speed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--watch", default=None, metavar="PID:START",
                        help="stop (at a day's end) once this process is gone: babysit demo's own")
    parser.add_argument("--fingerprint", action="store_true",
                        help="also log wsum, the sum of the weights each step starts from")
    args = parser.parse_args(argv)

    # One thread: a model this small gains nothing from more, and a study's trials share the
    # cores (on a busy 2-core machine two threads made a step 20x slower).
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    x, y = spirals(4096, seed=args.seed)
    xv, yv = spirals(1024, seed=args.seed + 1)
    config = {"lr": args.lr, "momentum": args.momentum, "weight_decay": args.weight_decay,
              "batch_size": args.batch_size, "grad_clip": 5.0}
    # As a study's trial, the run's hyperparameters (batch_size included) come from the study.
    run = babysit.init(project=args.project, name=args.name, config=config, day=args.day)
    loader = DataLoader(TensorDataset(x, y), batch_size=int(run.hp["batch_size"]), shuffle=True)
    net = model()
    opt = torch.optim.SGD(net.parameters(), lr=run.hp["lr"], momentum=run.hp["momentum"],
                          weight_decay=run.hp["weight_decay"])
    run.attach(model=net, optimizer=opt)
    loss_fn = nn.CrossEntropyLoss()

    watching = watched(args.watch)

    @run.on_day_end
    def validate(day: int) -> None:
        with torch.no_grad():
            logits = net(xv)
            run.log(val_loss=loss_fn(logits, yv).item(),
                    val_acc=(logits.argmax(1) == yv).float().mean().item())

    with run:
        # 0 epochs: a billion, i.e. until stopped (years at the demo's pace)
        for xb, yb in run.loop(loader, epochs=args.epochs or 10**9):
            if args.fingerprint:
                run.log(wsum=float(sum(p.double().sum() for p in net.parameters())))
            loss = loss_fn(net(xb), yb)
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), run.hp["grad_clip"])
            opt.step()
            run.log(loss=loss.item())
            if args.pace:
                time.sleep(args.pace)
            if watching is not None and run.step % 50 == 0 and not watching.is_running():
                print("the babysit demo that started this run is gone: stopping", flush=True)
                run.finish("stopped")
                break


if __name__ == "__main__":
    main()
