"""A tiny real Lightning trainer: an MLP with dropout, SGD + StepLR, shuffled random data.

Run as a script (a fork or restart starts it again) or import ``build`` in a test.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import lightning.pytorch as pl
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from babysit.integrations.lightning import BabysitCallback, fit

BATCHES = 8     # batches per epoch
HANG_AT = int(os.environ.get("TINY_HANG_AT", "0"))


class Tiny(pl.LightningModule):
    def __init__(self, lr: float = 0.05, pace: float = 0.0):
        super().__init__()
        self.lr, self.pace = lr, pace
        self.net = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 2))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("loss", loss)
        self.log("lr", self.optimizers().param_groups[0]["lr"])
        if self.pace:
            time.sleep(self.pace)
        # TINY_HANG_AT (not inherited by a restart): stop here for good, so a test can kill
        # the process at a known step
        while HANG_AT and self.global_step >= HANG_AT:
            time.sleep(1)
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.cross_entropy(self.net(x), y))

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=self.lr, momentum=0.9)
        sched = torch.optim.lr_scheduler.StepLR(opt, step_size=12, gamma=0.5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def loaders() -> tuple[DataLoader, DataLoader]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(BATCHES * 16, 8, generator=gen)
    y = (x[:, :4].sum(1) > 0).long()
    return (DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True),
            DataLoader(TensorDataset(x[:32], y[:32]), batch_size=16))


def build(root_dir: str, *, epochs: int = 4, day: str = "1 epoch", pace: float = 0.0,
          callbacks: list | None = None, project: str = "pl-tiny", lr: float = 0.05,
          **callback_kwargs):
    torch.manual_seed(0)
    model = Tiny(lr=lr, pace=pace)
    trainer = pl.Trainer(
        max_epochs=epochs, accelerator="cpu", devices=1, default_root_dir=root_dir,
        logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, log_every_n_steps=1, num_sanity_val_steps=0,
        callbacks=[*(callbacks or []), BabysitCallback(day=day, project=project, **callback_kwargs)])
    return trainer, model


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--day", default="1 epoch")
    parser.add_argument("--pace", type=float, default=0.0)
    opts = parser.parse_args()
    trainer, model = build(opts.out, epochs=opts.epochs, day=opts.day, pace=opts.pace)
    train_loader, val_loader = loaders()
    fit(trainer, model, train_loader, val_loader)
    sys.exit(0)
