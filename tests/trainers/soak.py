"""A trivial trainer for the many-writers soak test: logs every step, paced, for a while.

Each step logs ``n`` (0, 1, 2, ... without gaps) and a few more metrics; at the end the number
of steps logged is written to ``--count-file``, so the test can check that every row is in the
store exactly once.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

import babysit

parser = argparse.ArgumentParser()
parser.add_argument("--seconds", type=float, default=60.0)
parser.add_argument("--pace", type=float, default=0.02)
parser.add_argument("--metrics", type=int, default=4, help="metrics besides n")
parser.add_argument("--count-file", required=True)
parser.add_argument("--project", default="soak")
args = parser.parse_args()

torch.set_num_threads(1)      # 16 of these share 2 cores
torch.manual_seed(0)
x, y = torch.randn(8, 4), torch.randn(8, 1)
run = babysit.init(project=args.project, config={"lr": 0.01}, day="500 steps")
model = nn.Linear(4, 1)
opt = torch.optim.SGD(model.parameters(), lr=run.hp["lr"])
run.attach(model=model, optimizer=opt)

logged = 0
deadline = time.monotonic() + args.seconds
with run:
    for _ in run.loop(steps=10**9):
        loss = nn.functional.mse_loss(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        value = loss.item()
        run.log(n=logged, loss=value, **{f"m{i}": value * i for i in range(args.metrics)})
        logged += 1
        if time.monotonic() > deadline:
            break
        time.sleep(args.pace)
with open(args.count_file, "w") as f:
    f.write(str(logged))
