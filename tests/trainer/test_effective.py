"""Effective values, nudges computed on them, param groups and typos, in one process: the loop
body posts a command and waits until the writer has fetched it, so it applies at a known step."""

from __future__ import annotations

import warnings

import pytest
import torch

import babysit
from babysit.store import Store
from babysit.trainer import knobs
from babysit.trainer.state import effective_of
from tests.conftest import wait_for


def _post(run, kind: str, args: dict) -> int:
    """Post a command as the Python client would, and wait until the trainer has it."""
    command = run.store.post_command(run.id, kind, args, "python")
    wait_for(lambda: any(c.id == command for c in run._state.outbox.commands), 20,
             "the writer to fetch the command")
    return command


def _model_and_opt(groups: int = 1, lr: float = 0.05):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.Linear(4, 1))
    params = model.parameters() if groups == 1 else [
        {"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": lr / 10}]
    return model, torch.optim.SGD(params, lr=lr, momentum=0.9)


def _train(model, opt, sched, run, steps, at=None):
    """Train ``steps`` steps; ``at[step]()`` runs inside the body of that step. Returns the lr
    of every group as each step's update used it."""
    used = {}
    for step in run.loop(steps=steps):
        loss = model(torch.ones(2, 4)).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        used[step] = [g["lr"] for g in opt.param_groups]
        opt.step()
        if sched is not None:
            sched.step()
        run.log(loss=loss.item())
        run.hp["clip"]                      # read every step
        if at and step in at:
            at[step]()
    return used


def test_effective_of_a_fingerprint_is_knobs_effective():
    _, opt = _model_and_opt(groups=2)
    adam = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters(), lr=1e-3, weight_decay=0.1)
    for opts in ([opt], [opt, adam], []):
        assert effective_of(knobs.fingerprint(opts)) == knobs.effective(opts)


def test_effective_values_and_reads_reach_the_store(tmp_path):
    run = babysit.init(project="p", config={"lr": 0.05, "clip": 1.0, "batch_size": 8},
                       root=tmp_path, day="100 steps")
    model, opt = _model_and_opt()
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=10, gamma=0.5)
    run.attach(model=model, optimizer=opt, scheduler=sched)
    run.hp["batch_size"]                    # read once, before the loop
    store = Store.open(tmp_path)

    def check():   # at step 24 the schedule has halved the lr twice
        want = {"lr": 0.0125, "momentum": 0.9, "weight_decay": 0.0}
        effective = wait_for(lambda: (e := store.get_run(run.id).effective).get("lr") == 0.0125
                             and e, 10, "the effective lr after two decays")
        assert {k: effective[k] for k in want} == want
        assert effective["groups"] == [want]
        assert effective["reads"]["batch_size"] == 0 and effective["reads"]["clip"] >= 20
        assert "lr" not in effective["reads"]      # applied through the optimizer
        assert store.get_run(run.id).hp["lr"] == 0.05   # configured, untouched

    with run:
        _train(model, opt, sched, run, 30, {24: check})
    final = store.get_run(run.id).effective
    assert final["step"] == 30 and final["lr"] == 0.05 * 0.125
    assert final["reads"] == {"batch_size": 0, "clip": 29}
    hp_lr = store.metrics(run.id, ["hp/lr"])
    assert hp_lr.set_index("step").value.to_dict() == {0: 0.05, 10: 0.025, 20: 0.0125,
                                                       30: 0.00625}
    store.close()


def test_a_warmup_does_not_become_the_configured_lr(tmp_path):
    run = babysit.init(project="p", config={"lr": 0.05}, root=tmp_path)
    model, opt = _model_and_opt()
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / 10))
    with warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        run.attach(model=model, optimizer=opt, scheduler=sched)
    assert not [w for w in warned if "babysit" in str(w.message)]
    assert run.hp["lr"] == 0.05 and opt.param_groups[0]["lr"] == 0.0
    run.finish()


@pytest.mark.parametrize("scheduler", ["step", "warmup_cosine"])
def test_relative_lr_nudge_halves_what_the_optimizer_uses(tmp_path, scheduler):
    run = babysit.init(project="p", config={"lr": 0.05, "clip": 1.0}, root=tmp_path,
                       day="100 steps")
    model, opt = _model_and_opt()
    if scheduler == "step":
        make = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=10, gamma=0.5)  # noqa: E731
    else:
        import math

        def factor(s):
            return (s + 1) / 10 if s < 10 else 0.5 * (1 + math.cos(math.pi * (s - 10) / 100))
        make = lambda o: torch.optim.lr_scheduler.LambdaLR(o, factor)  # noqa: E731
    sched = make(opt)
    run.attach(model=model, optimizer=opt, scheduler=sched)
    command = {}
    with run:
        used = _train(model, opt, sched, run, 40,
                      {14: lambda: command.setdefault("id", _post(run, "nudge",
                                                                  {"scale": {"lr": 0.5}}))})
    # the schedule untouched, simulated beside it
    _, twin = _model_and_opt()
    twin_sched = make(twin)
    plain = []
    for _ in range(40):
        plain.append(twin.param_groups[0]["lr"])
        twin.step()
        twin_sched.step()
    store = Store.open(tmp_path)
    applied = store.get_command(command["id"])
    assert applied.status == "applied" and applied.step == 15
    event = store.events(run.id).query("kind == 'nudge'").iloc[-1]
    assert event.source == "python" and event.step == 15
    assert event.detail == {"lr": {"old": plain[15], "new": plain[15] * 0.5, "op": "scale",
                                   "arg": 0.5, "groups": [[plain[15], plain[15] * 0.5]]}}
    assert used[14][0] == plain[14]
    for step in range(15, 40):              # what the optimizer used: half, schedule kept
        assert used[step][0] == pytest.approx(plain[step] * 0.5, rel=1e-12), step
    assert store.get_run(run.id).hp["lr"] == plain[15] * 0.5    # the value the nudge produced
    store.close()


def test_lr_nudges_keep_the_groups_ratio_or_target_one_group(tmp_path):
    run = babysit.init(project="p", config={"lr": 0.05, "clip": 1.0}, root=tmp_path,
                       day="100 steps")
    model, opt = _model_and_opt(groups=2)
    run.attach(model=model, optimizer=opt)
    ids = {}
    with run:
        used = _train(model, opt, None, run, 20, {
            4: lambda: ids.setdefault("all", _post(run, "nudge", {"scale": {"lr": 0.5}})),
            9: lambda: ids.setdefault("one", _post(run, "nudge",
                                                   {"hp": {"lr": 0.001}, "group": 1})),
            14: lambda: ids.setdefault("abs", _post(run, "nudge", {"hp": {"lr": 0.1}}))})
    assert used[4] == [0.05, 0.005]
    assert used[5] == [0.025, 0.0025]           # both halved: the ratio survives
    assert used[10] == [0.025, 0.001]           # group 1 only
    assert used[15] == [0.1, pytest.approx(0.004)]   # group 0 set, group 1 moved alike
    store = Store.open(tmp_path)
    events = store.events(run.id).query("kind == 'nudge'").detail.tolist()
    assert events[0]["lr"]["groups"] == [[0.05, 0.025], [0.005, 0.0025]]
    assert events[1]["lr"] == {"old": 0.0025, "new": 0.001, "op": "set", "arg": 0.001,
                               "groups": [[0.025, 0.025], [0.0025, 0.001]]}
    assert store.get_run(run.id).hp["lr"] == 0.1
    assert store.get_run(run.id).effective["groups"][1]["lr"] == pytest.approx(0.004)
    store.close()


def test_a_typo_is_refused_with_the_known_keys_and_new_adds_a_key(tmp_path):
    run = babysit.init(project="p", config={"lr": 0.05, "clip": 1.0}, root=tmp_path,
                       day="100 steps")
    model, opt = _model_and_opt()
    run.attach(model=model, optimizer=opt)
    ids = {}
    with run:
        _train(model, opt, None, run, 12, {
            3: lambda: ids.setdefault("typo", _post(run, "nudge", {"hp": {"lrr": 0.1}})),
            5: lambda: ids.setdefault("bad", _post(run, "nudge", {"scale": {"lr": "half"}})),
            7: lambda: ids.setdefault("new", _post(run, "nudge",
                                                   {"hp": {"dropout": 0.1}, "new": True}))})
        assert run.hp["dropout"] == 0.1
    store = Store.open(tmp_path)
    typo = store.get_command(ids["typo"])
    assert typo.status == "rejected" and "'lrr'" in typo.error and "'clip'" in typo.error
    assert "new=True" in typo.error
    assert store.get_command(ids["bad"]).status == "rejected"
    assert store.get_command(ids["new"]).status == "applied"
    record = store.get_run(run.id)
    assert record.hp == {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0, "clip": 1.0,
                         "dropout": 0.1}
    rejected = store.events(run.id).query("kind == 'rejected'")
    assert len(rejected) == 2 and opt.param_groups[0]["lr"] == 0.05
    store.close()
