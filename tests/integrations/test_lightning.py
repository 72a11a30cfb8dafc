"""PyTorch Lightning under babysit: a real LightningModule, real store, real processes."""

from __future__ import annotations

import pytest

pytest.importorskip("lightning")

import lightning.pytorch as pl  # noqa: E402
from lightning.pytorch.callbacks import LearningRateMonitor  # noqa: E402

import babysit  # noqa: E402
from babysit.integrations.lightning import BabysitCallback, fit  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.integrations.conftest import (  # noqa: E402
    curve,
    half_lr,
    kill_mid_day_and_restart,
    send_and_hold,
)
from tests.integrations.trainers.pl_tiny import BATCHES, build, loaders  # noqa: E402

SCRIPT = "../integrations/trainers/pl_tiny.py"


def step_lr(step: int) -> float:
    """The module's StepLR(12, 0.5) from lr 0.05: the lr the (0-based) step ``step`` uses."""
    return 0.05 * 0.5 ** (step // 12)


class At(pl.Callback):
    """Send a command at one global step and hold the fit until babysit has read it (this
    callback runs before babysit's, so it applies at that very boundary)."""

    def __init__(self, step: int, send):
        self.step, self.send = step, send

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if trainer.global_step == self.step and self.send is not None:
            send, self.send = self.send, None
            send_and_hold(next(cb for cb in trainer.callbacks
                               if isinstance(cb, BabysitCallback)).run, send)


def fit_tiny(tmp_path, root, **kwargs):
    trainer, model = build(str(tmp_path / "out"), root=root, **kwargs)
    fit(trainer, model, *loaders())
    return trainer


def test_metrics_and_days(root, tmp_path):
    fit_tiny(tmp_path, root, epochs=2)
    c = babysit.Client(root)
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 2 * BATCHES
    loss, _ = curve(c, run_id)
    assert sorted(loss) == list(range(2 * BATCHES))     # Lightning's own 0-based steps
    val, _ = curve(c, run_id, "val_loss")
    assert sorted(val) == [BATCHES - 1, 2 * BATCHES - 1]
    days = c.checkpoints(run_id)
    assert list(days["step"]) == [BATCHES, 2 * BATCHES]
    effective = c.run(run_id).effective     # what SGD uses, after StepLR
    assert effective["momentum"] == 0.9 and effective["lr"] == step_lr(effective["step"])
    folder = root / "runs" / str(run_id) / "day0001.b0.pl"
    assert [p.name for p in folder.iterdir()] == ["lightning.ckpt"]
    c.close()


@pytest.mark.parametrize("how", ["scale", "absolute"])
def test_nudge_halves_the_lr_lightning_logs_under_a_step_schedule(root, tmp_path, how):
    c = babysit.Client(root)
    at = At(15, half_lr(c, step_lr(15), how))
    fit_tiny(tmp_path, root, epochs=4, callbacks=[at, LearningRateMonitor("step")])
    run_id = int(c.runs().iloc[0]["id"])
    assert c.events(run_id).query("kind == 'nudge'").iloc[0]["step"] == 15
    lr, _ = curve(c, run_id, "lr-SGD")
    assert sorted(lr) == list(range(4 * BATCHES))
    for step in range(4 * BATCHES):
        factor = 0.5 if step >= 15 else 1.0
        assert lr[step] == pytest.approx(factor * step_lr(step), rel=1e-12), step
    c.close()


def test_rollback_to_day_1_replays_the_superseded_curve_exactly(root, tmp_path):
    c = babysit.Client(root)
    at = At(28, lambda run_id: c.rollback(run_id, day=1, wait=False))
    fit_tiny(tmp_path, root, epochs=4, callbacks=[at])
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.branch == 1 and record.step == 4 * BATCHES
    assert record.reproducible
    assert c.events(run_id).query("kind == 'rollback'").iloc[0]["step"] == BATCHES
    loss, old = curve(c, run_id)
    assert sorted(old) == list(range(BATCHES, 28))
    assert sorted(loss) == list(range(4 * BATCHES))
    for step in old:
        assert loss[step] == old[step], step                # bit for bit, on CPU
    val, old_val = curve(c, run_id, "val_loss")
    # the superseded epochs' validations, and one Lightning ran when the fit was stopped
    assert sorted(old_val) == [15, 23, 27]
    assert val[15] == old_val[15] and val[23] == old_val[23]
    c.close()


@pytest.mark.slow
def test_fork_starts_from_the_days_weights_with_the_new_lr(trainers, tmp_path):
    c = trainers.client
    proc, parent = trainers.start("--out", str(tmp_path / "out"), "--pace", "0.05",
                                  script=SCRIPT)
    wait_for(lambda: c.store.checkpoint(parent, 2), 120, "day 2")
    child = c.fork(parent, day=1, lr=0.02)
    wait_for(lambda: c.run(child).status in ("finished", "crashed"), 180, "the fork to end")
    assert c.run(child).status == "finished", c.run(child).error
    assert proc.wait(timeout=180) == 0
    loss_parent, _ = curve(c, parent)
    loss_child, _ = curve(c, child)
    assert min(loss_child) == BATCHES
    assert loss_child[BATCHES] == loss_parent[BATCHES]   # the same weights, data and RNG
    lr_child, _ = curve(c, child, "lr")
    assert lr_child[BATCHES] == pytest.approx(0.02, rel=1e-6)     # self.log keeps float32
    assert lr_child[12] == pytest.approx(0.01, rel=1e-6)   # the schedule goes on from there
    assert c.checkpoints(child)["day"].tolist()[0] == 1


@pytest.mark.slow
def test_sigkill_then_restart_resumes_from_the_last_day(trainers, tmp_path):
    # the trainer stops for good mid epoch 3, so the kill lands there, not wherever a race
    # with the day boundary left it
    proc, run_id = trainers.start("--out", str(tmp_path / "out"), "--pace", "0.05",
                                  script=SCRIPT, env={"TINY_HANG_AT": str(2 * BATCHES + 4)})
    record, (live, old) = kill_mid_day_and_restart(trainers, proc, run_id, day=2,
                                                   step=2 * BATCHES + 2)
    assert record.step == 4 * BATCHES and record.reproducible
    assert sorted(live) == list(range(4 * BATCHES))
    assert min(old) == 2 * BATCHES and max(old) >= 2 * BATCHES + 2
    for step in old:
        assert live[step] == old[step], step


def test_a_rollback_to_a_day_inside_an_epoch_is_marked_not_reproducible(root, tmp_path):
    c = babysit.Client(root)
    at = At(12, lambda run_id: c.rollback(run_id, day=1, wait=False))
    fit_tiny(tmp_path, root, epochs=2, day="5 steps", callbacks=[at])
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.branch == 1
    assert not record.reproducible
    reason = c.events(run_id).query("kind == 'not_reproducible'").iloc[0]["detail"]
    assert "inside an epoch" in str(reason)
    c.close()


def test_exploit_goes_on_from_the_donors_day_exactly(root, tmp_path):
    c = babysit.Client(root)
    trainer, model = build(str(tmp_path / "donor"), root=root, epochs=2, name="donor")
    fit(trainer, model, *loaders())
    donor = next(cb for cb in trainer.callbacks if isinstance(cb, BabysitCallback)).run.id
    at = At(BATCHES + 4, lambda run_id: c.exploit(run_id, donor, day=1, wait=False))
    trainer, model = build(str(tmp_path / "out"), root=root, epochs=3, lr=0.2, callbacks=[at],
                           name="target")
    fit(trainer, model, *loaders())
    run_id = next(cb for cb in trainer.callbacks if isinstance(cb, BabysitCallback)).run.id
    record = c.run(run_id)
    assert record.status == "finished" and record.branch == 1 and record.step == 3 * BATCHES
    exploit = c.events(run_id).query("kind == 'exploit'").iloc[0]
    assert exploit["step"] == BATCHES and exploit["detail"]["from_run"] == donor
    theirs, _ = curve(c, donor)
    live, old = curve(c, run_id)
    assert sorted(old) == list(range(BATCHES, BATCHES + 4))
    for step in range(BATCHES, 2 * BATCHES):
        assert live[step] == theirs[step], step     # the donor's weights, optimizer, RNG
    c.close()
