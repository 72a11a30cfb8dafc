"""The Hugging Face Trainer under babysit: real tiny GPT-2, real store, real processes."""

from __future__ import annotations

import pytest

pytest.importorskip("transformers")

from transformers import TrainerCallback  # noqa: E402

import babysit  # noqa: E402
from babysit.integrations.huggingface import BabysitCallback, train  # noqa: E402
from tests.conftest import wait_for  # noqa: E402
from tests.integrations.conftest import (  # noqa: E402
    curve,
    half_lr,
    kill_mid_day_and_restart,
    send_and_hold,
)
from tests.integrations.trainers.hf_tiny import build  # noqa: E402

BASE_LR, WARMUP, STEPS = 1e-3, 5, 40


def linear(step: int, total: int = STEPS) -> float:
    """transformers' linear schedule with warmup: the lr the (0-based) step ``step`` uses."""
    if step < WARMUP:
        return BASE_LR * step / WARMUP
    return BASE_LR * max(0.0, (total - step) / (total - WARMUP))


def babysit_callback(trainer) -> BabysitCallback:
    return next(cb for cb in trainer.callback_handler.callbacks if isinstance(cb, BabysitCallback))


def train_at(tmp_path, at: At, **build_kwargs):
    """Build the tiny Trainer with ``at`` among its callbacks and train it under babysit."""
    trainer = build(str(tmp_path / "out"), callbacks=[at], **build_kwargs)
    at.trainer = trainer
    train(trainer)
    return trainer


class At(TrainerCallback):
    """Send a command at one global step and hold the Trainer until babysit has read it, so it
    applies at that very step boundary (this callback runs before babysit's)."""

    def __init__(self, step: int, send):
        self.step, self.send, self.trainer = step, send, None

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == self.step and self.send is not None:
            send, self.send = self.send, None
            send_and_hold(babysit_callback(self.trainer).run, send)


def test_metrics_days_and_safe_day_folders(root, tmp_path):
    trainer = build(str(tmp_path / "out"), steps=20, day="10 steps", root=root)
    train(trainer)
    c = babysit.Client(root)
    run = c.runs().iloc[0]
    assert run["status"] == "finished" and run["step"] == 20
    names = set(c.metrics(int(run["id"]))["name"])
    assert {"loss", "learning_rate", "grad_norm", "epoch", "hp/lr"} <= names
    loss, _ = curve(c, int(run["id"]))
    assert sorted(loss) == list(range(20))      # the Trainer's global step G is babysit's G - 1
    days = c.checkpoints(int(run["id"]))
    assert list(days["day"]) == [1, 2] and list(days["step"]) == [10, 20]
    effective = c.run(int(run["id"])).effective       # what AdamW uses, after the schedule
    assert effective["momentum"] == 0.9 and effective["weight_decay"] == 0.01
    assert effective["lr"] == pytest.approx(linear(effective["step"], total=20), abs=1e-12)
    folder = root / "runs" / str(run["id"]) / "day0001.b0.hf"
    files = {p.name for p in folder.iterdir()}
    assert {"model.safetensors", "optimizer.pt", "scheduler.pt", "rng_state.pth",
            "trainer_state.json"} <= files
    assert "training_args.bin" not in files         # a pickle that resuming never reads
    assert not list((tmp_path / "out").glob("checkpoint-*"))    # the user's folder is theirs
    c.close()


@pytest.mark.parametrize("how", ["scale", "absolute"])
def test_nudge_halves_the_lr_the_trainer_logs_under_warmup_and_decay(root, tmp_path, how):
    c = babysit.Client(root)
    at = At(12, half_lr(c, linear(12), how))
    train_at(tmp_path, at, steps=STEPS, root=root)
    run_id = int(c.runs().iloc[0]["id"])
    nudge = c.events(run_id).query("kind == 'nudge'").iloc[0]
    assert nudge["step"] == 12
    lr, _ = curve(c, run_id, "learning_rate")
    for step in range(STEPS):
        factor = 0.5 if step >= 12 else 1.0
        assert lr[step] == pytest.approx(factor * linear(step), rel=1e-9, abs=1e-15), step
    c.close()


def test_rollback_to_day_1_replays_the_superseded_curve_exactly(root, tmp_path):
    c = babysit.Client(root)
    at = At(25, lambda run_id: c.rollback(run_id, day=1, wait=False))
    train_at(tmp_path, at, steps=30, day="10 steps", root=root)
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.branch == 1 and record.step == 30
    rollback = c.events(run_id).query("kind == 'rollback'").iloc[0]
    assert rollback["step"] == 10
    for name in ("loss", "grad_norm", "learning_rate"):
        live, old = curve(c, run_id, name)
        assert sorted(old) == list(range(10, 25)), name
        assert sorted(live) == list(range(30)), name
        for step in range(10, 25):
            assert live[step] == old[step], (name, step)    # bit for bit, on CPU
    days = c.checkpoints(run_id)
    assert list(days["day"]) == [1, 2, 3] and list(days["branch"]) == [0, 1, 1]
    c.close()


@pytest.mark.slow
def test_fork_starts_from_the_days_weights_with_the_new_lr(trainers, tmp_path):
    c = trainers.client
    proc, parent = trainers.start("--out", str(tmp_path / "out"), "--steps", "40",
                                  "--pace", "0.05", script="../integrations/trainers/hf_tiny.py")
    wait_for(lambda: c.store.checkpoint(parent, 2), 120, "day 2")
    child = c.fork(parent, day=1, lr=4e-4)
    wait_for(lambda: c.run(child).status in ("finished", "crashed"), 180, "the fork to end")
    assert c.run(child).status == "finished", c.run(child).error
    assert proc.wait(timeout=180) == 0
    loss_parent, _ = curve(c, parent)
    loss_child, _ = curve(c, child)
    assert min(loss_child) == 10
    assert loss_child[10] == loss_parent[10]        # the same weights, data and RNG at day 1
    lr_child, _ = curve(c, child, "learning_rate")
    assert lr_child[10] == pytest.approx(4e-4, rel=1e-9)
    assert lr_child[20] == pytest.approx(4e-4 * linear(20) / linear(10), rel=1e-9)
    assert c.checkpoints(child)["day"].tolist()[0] == 1    # its own copy of the fork's day


@pytest.mark.slow
def test_sigkill_then_restart_resumes_from_the_last_day(trainers, tmp_path):
    c = trainers.client
    # the trainer stops for good at step 24 (mid day 3), so the kill lands there, not
    # wherever a race with the day boundary left it
    proc, run_id = trainers.start("--out", str(tmp_path / "out"), "--steps", "40",
                                  "--pace", "0.05", script="../integrations/trainers/hf_tiny.py",
                                  env={"TINY_HANG_AT": "24"})
    record, (live, old) = kill_mid_day_and_restart(trainers, proc, run_id, day=2, step=22)
    assert record.step == 40
    events = c.events(run_id)
    assert (events["kind"].isin(["restart", "restarted"])).any()
    assert sorted(live) == list(range(40))
    assert min(old) == 20 and max(old) >= 22                # what the killed process did after day 2
    for step in old:
        assert live[step] == old[step], step                # replayed bit for bit


def test_pause_resume_and_stop_at_step_boundaries(root, tmp_path):
    import threading
    import time
    c = babysit.Client(root)
    seen: dict[str, int] = {}

    def resume_later(run_id: int) -> None:
        wait_for(lambda: c.run(run_id).status == "paused", 30, "the pause")
        time.sleep(0.3)         # the rows logged before the pause reach the store
        seen["paused_at"] = int(c.metrics(run_id, ["loss"])["step"].max())
        time.sleep(0.5)
        seen["after_wait"] = int(c.metrics(run_id, ["loss"])["step"].max())
        c.resume(run_id, wait=False)

    def pause(run_id: int) -> None:
        c.pause(run_id, wait=False)
        threading.Thread(target=resume_later, args=(run_id,), daemon=True).start()

    at_pause = At(5, pause)
    at_stop = At(15, lambda run_id: c.stop(run_id, wait=False))
    trainer = build(str(tmp_path / "out"), steps=STEPS, callbacks=[at_pause, at_stop], root=root)
    at_pause.trainer = at_stop.trainer = trainer
    train(trainer)
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    # paused at the boundary after 5 steps, before the Trainer logs the 5th (babysit step 4)
    assert seen["paused_at"] == seen["after_wait"] == 3
    assert record.status == "stopped" and record.step == 15
    events = c.events(run_id).set_index("kind")
    assert events.loc["pause", "step"] == events.loc["resume", "step"] == 5
    assert events.loc["stop", "step"] == 15
    c.close()


class Poison(TrainerCallback):
    """At one step, put a NaN into the weights: the next loss is NaN (a divergence)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step == self.step:
            self.step = -1
            import torch
            with torch.no_grad():
                next(model.parameters()).fill_(float("nan"))


def test_the_guard_rolls_back_to_the_last_good_day_and_halves_the_lr(root, tmp_path):
    trainer = build(str(tmp_path / "out"), steps=30, day="10 steps", callbacks=[Poison(15)],
                    root=root, nan_filter=False, guard=babysit.Guard(policy="rollback"))
    train(trainer)
    c = babysit.Client(root)
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 30 and record.branch == 1
    events = c.events(run_id)
    diverged = events.query("kind == 'diverged'").iloc[0]
    assert diverged["step"] == 16           # at the boundary after the step whose loss was NaN
    rollback = events.query("kind == 'rollback'").iloc[0]
    assert rollback["step"] == 10 and rollback["source"] == "guard"
    lr, _ = curve(c, run_id, "learning_rate")
    assert lr[12] == pytest.approx(0.5 * linear(12, total=30), rel=1e-9)
    loss, _ = curve(c, run_id)
    assert all(value == value for value in loss.values())       # no NaN on the live branch
    assert c.checkpoints(run_id)["branch"].tolist() == [0, 1, 1]
    c.close()


def test_a_tampered_day_folder_is_refused_and_training_goes_on(root, tmp_path):
    c = babysit.Client(root)

    def tamper_and_roll_back(run_id: int) -> None:
        folder = root / "runs" / str(run_id) / "day0001.b0.hf"
        (folder / "extra.pth").write_bytes(b"not listed in the manifest")
        c.rollback(run_id, day=1, wait=False)

    at = At(15, tamper_and_roll_back)
    train_at(tmp_path, at, steps=20, day="10 steps", root=root)
    run_id = int(c.runs().iloc[0]["id"])
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 20 and record.branch == 0
    rejected = c.events(run_id).query("kind == 'rejected'").iloc[0]
    assert "does not list" in str(rejected["detail"])
    c.close()


def test_a_day_of_one_epoch(root, tmp_path):
    trainer = build(str(tmp_path / "out"), steps=40, day="1 epoch", root=root)
    train(trainer)      # 256 sequences, batch 8: an epoch is 32 steps
    c = babysit.Client(root)
    run_id = int(c.runs().iloc[0]["id"])
    days = c.checkpoints(run_id)
    assert list(days["day"]) == [1] and list(days["step"]) == [32]
    c.close()


def test_the_users_own_checkpoints_are_left_alone(root, tmp_path):
    # the user saves every 10 steps and keeps 1; babysit's days are every 5 steps
    trainer = build(str(tmp_path / "out"), steps=20, day="5 steps", save_steps=10, root=root)
    train(trainer)
    assert sorted(p.name for p in (tmp_path / "out").glob("checkpoint-*")) == ["checkpoint-20"]
    c = babysit.Client(root)
    run_id = int(c.runs().iloc[0]["id"])
    days = c.checkpoints(run_id)
    assert list(days["step"]) == [5, 10, 15, 20]
    for day in (2, 4):      # the days that were also the user's checkpoints are copies
        folder = root / "runs" / str(run_id) / f"day000{day}.b0.hf"
        assert (folder / "model.safetensors").is_file()
    c.close()


def test_a_day_of_wall_time(root, tmp_path):
    trainer = build(str(tmp_path / "out"), steps=12, day="0.5s", pace=0.1, root=root)
    train(trainer)
    c = babysit.Client(root)
    days = c.checkpoints(int(c.runs().iloc[0]["id"]))
    assert len(days) >= 2 and days["step"].is_monotonic_increasing
    c.close()


def test_a_paused_run_rolls_back_with_an_override_and_stays_paused(root, tmp_path):
    import threading
    c = babysit.Client(root)
    seen: dict[str, object] = {}

    def later(run_id: int) -> None:
        wait_for(lambda: c.run(run_id).status == "paused", 30, "the pause")
        c.rollback(run_id, day=1, lr=2e-4, wait=True)
        record = c.run(run_id)
        seen["status"], seen["branch"], seen["step"] = record.status, record.branch, record.step
        c.resume(run_id, wait=False)

    def pause(run_id: int) -> None:
        c.pause(run_id, wait=False)
        threading.Thread(target=later, args=(run_id,), daemon=True).start()

    at = At(15, pause)
    train_at(tmp_path, at, steps=30, day="10 steps", root=root)
    run_id = int(c.runs().iloc[0]["id"])
    assert seen == {"status": "paused", "branch": 1, "step": 10}   # waited, rolled back
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 30
    lr, old = curve(c, run_id, "learning_rate")
    assert lr[10] == pytest.approx(2e-4, rel=1e-9)                  # the override, exactly
    assert lr[20] == pytest.approx(2e-4 * linear(20, 30) / linear(10, 30), rel=1e-9)
    assert max(old) == 14
    c.close()


def _donor(root, tmp_path, **kwargs) -> int:
    """A finished run with days at steps 10 and 20, to exploit."""
    trainer = build(str(tmp_path / "donor"), steps=20, day="10 steps", root=root, name="donor",
                    **kwargs)
    train(trainer)
    return babysit_callback(trainer).run.id


def test_exploit_goes_on_from_the_donors_day_exactly(root, tmp_path):
    c = babysit.Client(root)
    donor = _donor(root, tmp_path)
    at = At(15, lambda run_id: c.exploit(run_id, donor, day=1, wait=False, reason="pbt"))
    trainer = train_at(tmp_path, at, steps=20, day="10 steps", lr=3e-3, root=root, name="target")
    run_id = babysit_callback(trainer).run.id
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 20 and record.branch == 1
    exploit = c.events(run_id).query("kind == 'exploit'").iloc[0]
    assert exploit["step"] == 10
    detail = exploit["detail"]
    assert detail["from_run"] == donor and detail["from_day"] == 1 and detail["from_step"] == 10
    assert detail["rewound_from_step"] == 15 and detail["reason"] == "pbt"
    for name in ("loss", "grad_norm", "learning_rate"):
        theirs, _ = curve(c, donor, name)
        live, old = curve(c, run_id, name)
        assert sorted(old) == list(range(10, 15)), name     # its own steps since: superseded
        assert sorted(live) == list(range(20)), name
        for step in range(10, 20):
            assert live[step] == theirs[step], (name, step)     # the donor's state, bit for bit
    lr, _ = curve(c, run_id, "learning_rate")
    assert lr[9] == pytest.approx(3 * linear(9, total=20), rel=1e-9)    # its own lr before
    days = c.checkpoints(run_id)
    assert list(days["day"]) == [1, 2] and list(days["branch"]) == [0, 1]
    c.close()


def test_an_exploit_of_a_misfit_donor_is_rejected_before_anything_is_loaded(root, tmp_path):
    c = babysit.Client(root)
    donor = _donor(root, tmp_path, width=16)     # another model: the HF Trainer would half-load it
    at = At(15, lambda run_id: c.exploit(run_id, donor, day=1, wait=False))
    trainer = train_at(tmp_path, at, steps=20, day="10 steps", root=root, name="target")
    run_id = babysit_callback(trainer).run.id
    record = c.run(run_id)
    assert record.status == "finished" and record.step == 20 and record.branch == 0
    events = c.events(run_id)
    assert events.query("kind == 'exploit'").empty
    rejected = events.query("kind == 'rejected'").iloc[0]
    assert rejected["step"] == 15
    error = rejected["detail"]["error"]
    assert f"run {donor}'s day 1 does not fit" in error and "c_proj.bias is [16] there, [32] here" in error
    live, old = curve(c, run_id)
    assert sorted(live) == list(range(20)) and not old
    c.close()
