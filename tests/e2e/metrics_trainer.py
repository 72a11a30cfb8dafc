"""A small real trainer for the browser tests: logs loss, val_loss and val_acc, prints a line
per day, trains until stopped."""

from __future__ import annotations

import argparse
import time

import torch

import babysit

parser = argparse.ArgumentParser()
parser.add_argument("--lr", type=float, default=0.05)
parser.add_argument("--pace", type=float, default=0.02)
args = parser.parse_args()

torch.manual_seed(0)
x = torch.randn(256, 8)
y = (x.sum(dim=1) > 0).long()
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
run = babysit.init(project="e2e-metrics", config={"lr": args.lr, "momentum": 0.9},
                   day="20 steps")
optimizer = torch.optim.SGD(model.parameters(), lr=run.hp["lr"], momentum=0.9)
run.attach(model=model, optimizer=optimizer)
print(f"metrics trainer: started run {run.id}", flush=True)
for step in run.loop(steps=1_000_000):
    batch = torch.randint(0, 256, (32,))
    loss = torch.nn.functional.cross_entropy(model(x[batch]), y[batch])
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    run.log(loss=loss.item())
    if step % 10 == 0:
        with torch.no_grad():
            out = model(x)
            run.log(val_loss=torch.nn.functional.cross_entropy(out, y).item(),
                    val_acc=(out.argmax(1) == y).float().mean().item())
    if step % 20 == 0:
        print(f"metrics trainer: step {step} loss {loss.item():.3f}", flush=True)
    time.sleep(args.pace)
run.finish()
