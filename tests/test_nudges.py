"""Relative nudges against a real trainer with a schedule: what the optimizer used, as the trainer
logged it (``used_lr0``, ``used_lr1``: each group's lr as its update used it)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from tests.conftest import wait_for

pytestmark = pytest.mark.slow


def warmup_cosine(step: int, warmup: int = 10, total: int = 400) -> float:
    """tests/trainers/tiny.py's --scheduler warmup_cosine, to simulate it here."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * min(step - warmup, total) / total))


def plain_schedule(scheduler: str, lr: float, steps: int, groups: int = 1) -> list[list[float]]:
    """The lr of each group at each step, as the schedule alone would give it."""
    params = [{"params": [torch.zeros(1, requires_grad=True)]}]
    if groups == 2:
        params.append({"params": [torch.zeros(1, requires_grad=True)], "lr": lr / 10})
    opt = torch.optim.SGD(params, lr=lr, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5) \
        if scheduler == "step" else torch.optim.lr_scheduler.LambdaLR(opt, warmup_cosine)
    out = []
    for _ in range(steps):
        out.append([g["lr"] for g in opt.param_groups])
        opt.step()
        sched.step()
    return out


def _nudge(c, run_id: int, args: dict):
    """What ``c.nudge(run, scale={"lr": 0.5})`` posts (source python), waited for."""
    return c.wait(c.store.post_command(run_id, "nudge", args, "python"), 60)


def _used(c, run_id: int, group: int = 0):
    return c.metrics(run_id, [f"used_lr{group}"]).set_index("step").value


@pytest.mark.parametrize("scheduler,how", [("step", "store"), ("warmup_cosine", "python"),
                                           ("step", "cli")])
def test_lr_x05_halves_the_lr_the_optimizer_uses_at_the_applying_step(trainers, scheduler, how):
    """×0.5 posted as the raw command, through ``c.nudge(run, scale=...)`` and through
    ``babysit nudge RUN lr*=0.5``: the optimizer's own lr halves at the applying step."""
    _, run_id = trainers.start("--pace", "0.02", "--scheduler", scheduler, "--lr", "0.1",
                               "--log-lr")
    c = trainers.client
    trainers.wait_step(run_id, 25)          # the schedule has moved the lr away from 0.1
    if how == "store":
        n = _nudge(c, run_id, {"scale": {"lr": 0.5}}).step
    elif how == "python":
        n = c.nudge(run_id, scale={"lr": 0.5}, timeout=60).step
    else:
        out = subprocess.run([sys.executable, "-m", "babysit", "nudge", str(run_id), "lr*=0.5"],
                             env=trainers.env(), capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        n = int(c.events(run_id).query("kind == 'nudge'").iloc[-1].step)
        assert f"step {n}" in out.stdout, out.stdout      # the trainer's account, not a guess
    trainers.wait_step(run_id, n + 25)
    used = _used(c, run_id)
    plain = [lrs[0] for lrs in plain_schedule(scheduler, 0.1, int(used.index.max()) + 500)]
    assert plain[n] != 0.1
    for step in range(n):
        assert used[step] == plain[step], step
    for step in used.index[used.index >= n]:
        assert used[step] == pytest.approx(plain[step] * 0.5, rel=1e-9), step
    assert used[n] == plain[n] * 0.5
    event = c.events(run_id).query("kind == 'nudge'").iloc[-1]
    assert (event.step, event.source) == (n, {"store": "python"}.get(how, how))
    assert event.detail["lr"] == {"old": plain[n], "new": plain[n] * 0.5, "op": "scale",
                                  "arg": 0.5, "groups": [[plain[n], plain[n] * 0.5]]}
    # hp/<lr> shows the effective lr; runs.hp the value the nudge produced; runs.effective now
    traced = c.metrics(run_id, ["hp/lr"]).set_index("step").value
    for step, value in traced.items():
        if step in used.index:      # a point traced at a boundary whose step is not logged yet
            assert value == used[step], step
    assert c.run(run_id).hp["lr"] == plain[n] * 0.5
    latest = int(used.index.max())
    wait_for(lambda: c.run(run_id).effective.get("step", 0) > latest, 10, "a newer effective")
    effective = c.run(run_id).effective
    assert effective["lr"] == pytest.approx(plain[effective["step"]] * 0.5, rel=1e-9)
    assert effective["reads"]["clip"] >= latest


def test_lr_nudges_scale_every_group_or_only_the_one_targeted(trainers):
    _, run_id = trainers.start("--pace", "0.02", "--scheduler", "step", "--groups", "2",
                               "--log-lr")
    c = trainers.client
    trainers.wait_step(run_id, 15)
    first = _nudge(c, run_id, {"scale": {"lr": 0.5}}).step
    trainers.wait_step(run_id, first + 3)
    second = _nudge(c, run_id, {"scale": {"lr": 2.0}, "group": 1}).step
    trainers.wait_step(run_id, second + 15)
    g0, g1 = _used(c, run_id, 0), _used(c, run_id, 1)
    plain = plain_schedule("step", 0.05, int(g0.index.max()) + 1, groups=2)
    for step in g0.index:
        f0 = 0.5 if step >= first else 1.0
        f1 = f0 * (2.0 if step >= second else 1.0)
        assert g0[step] == pytest.approx(plain[step][0] * f0, rel=1e-9), step
        assert g1[step] == pytest.approx(plain[step][1] * f1, rel=1e-9), step
    assert g1[first] / g0[first] == pytest.approx(0.1)          # the ratio survived
    assert g1[second] / g0[second] == pytest.approx(0.2)        # group 1 alone doubled
    events = c.events(run_id).query("kind == 'nudge'")
    assert [len(d["lr"]["groups"]) for d in events.detail] == [2, 2]
    old, new = events.detail.iloc[1]["lr"]["groups"][0]
    assert old == new                                            # group 0 untouched
