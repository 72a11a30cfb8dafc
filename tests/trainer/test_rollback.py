"""A rollback is all or nothing: a checkpoint that cannot be restored in full is a ``rejected``
event and the run goes on exactly as before (in one process, against an untouched twin)."""

from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader, TensorDataset

import babysit
from babysit import checkpoint as ckpt
from babysit.store import CheckpointRow, Store
from tests.conftest import wait_for


def _craft(run, base: dict, day: int, change) -> None:
    """Write a checkpoint made from ``base`` with ``change`` applied, with babysit's own
    checkpoint.save (so its manifest is valid), and list it as ``day`` of the run."""
    payload = {**base, "state": {k: dict(v) if isinstance(v, dict) else v
                                 for k, v in base["state"].items()}, "rng": dict(base["rng"])}
    change(payload)
    path = run._state.folder / ckpt.checkpoint_name(day, 0)
    size, sha = ckpt.save(path, payload)
    run.store.apply([CheckpointRow(run.id, day, int(base["step"]), 0, time.time(),
                                   str(path.relative_to(run.store.root)), size, sha,
                                   dict(base["hp"]), {})])


BAD = {
    "wrong shape": lambda p: p["state"]["model"].__setitem__("0.weight", torch.zeros(3, 3)),
    "no rng": lambda p: p.pop("rng"),
    # pass the up-front checks, then fail half-way through the load
    "scheduler state": lambda p: p["state"].__setitem__("scheduler", [1, 2]),
    "rng state": lambda p: p["rng"].__setitem__("torch", torch.zeros(3)),
}


def _train(tmp_path, name: str, bad: bool):
    run = babysit.init(project=name, config={"lr": 0.1, "clip": 1.0}, root=tmp_path,
                       day="10 steps")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Dropout(0.3),
                                torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.5)
    run.attach(model=model, optimizer=opt, scheduler=sched)
    data = TensorDataset(torch.randn(96, 4), torch.randn(96, 1))
    loader = DataLoader(data, batch_size=8, shuffle=True)
    seen, commands = [], []
    before = {}
    with run:
        for x, y in run.loop(loader, epochs=3):
            seen.append(float(x.sum()))
            if before:       # the first step after the refused rollbacks
                assert run.step == before["step"]
                assert run.epoch == before["epoch"] and run._state.position.batch == before["batch"]
                assert opt.param_groups[0]["lr"] == before["lr"]
                for key, value in model.state_dict().items():
                    assert torch.equal(value, before["weights"][key]), key
                assert run.hp["lr"] == before["hp"]
                before.clear()
            loss = torch.nn.functional.mse_loss(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            run.log(loss=loss.item())
            if bad and run.step == 15:
                day1 = wait_for(lambda: run.store.checkpoint(run.id, 1), 20, "day 1 listed")
                base = ckpt.load(ckpt.safe_path(run.store.root, day1.path), day1.sha256)
                for i, change in enumerate(BAD.values()):
                    _craft(run, base, 90 + i, change)
                    commands.append(run.store.post_command(run.id, "rollback",
                                                           {"day": 90 + i}, "python"))
                wait_for(lambda: len(run._state.outbox.commands) == len(BAD), 20,
                         "the writer to fetch the rollbacks")
                before.update(step=16, epoch=run.epoch, batch=run._state.position.batch + 1,
                              lr=opt.param_groups[0]["lr"], hp=run.hp["lr"],
                              weights={k: v.clone() for k, v in model.state_dict().items()})
    return run, model, seen, commands


def test_a_rollback_that_cannot_be_restored_in_full_changes_nothing(tmp_path):
    run, model, seen, commands = _train(tmp_path, "bad", bad=True)
    twin, twin_model, twin_seen, _ = _train(tmp_path, "twin", bad=False)
    store = Store.open(tmp_path)
    reasons = []
    for command in commands:
        record = store.get_command(command)
        assert record.status == "rejected" and record.step == 16
        reasons.append(record.error)
    assert "shapes" in reasons[0] and "RNG" in reasons[1]
    assert "could not be restored" in reasons[2] and "goes on as before" in reasons[2]
    assert "could not be restored" in reasons[3]
    events = store.events(run.id)
    assert events.query("kind == 'rejected'").step.tolist() == [16] * 4
    assert "rollback" not in events.kind.tolist()
    record = store.get_run(run.id)
    assert (record.status, record.step, record.branch) == ("finished", 36, 0)
    assert record.reproducible
    # the same batches, the same dropout masks, the same weights as the untouched twin
    assert seen == twin_seen
    for key, value in model.state_dict().items():
        assert torch.equal(value, twin_model.state_dict()[key]), key
    assert store.metrics(run.id, ["loss"]).value.tolist() == \
        store.metrics(twin.id, ["loss"]).value.tolist()
    store.close()
