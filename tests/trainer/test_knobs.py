"""Optimizer knobs on real torch optimizers and schedulers: a nudge applied at step k is measured
against an unnudged twin for every later step, so a ×0.5 computed from a configured value (or a
schedule that overwrites the nudge at its next step) goes red."""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch.optim import lr_scheduler as S

from babysit.errors import InvalidValue
from babysit.trainer import knobs

N = 40          # steps in all
K = 13          # the step at whose start the nudge applies: every schedule has moved the lr by then
LR = 0.05       # the configured lr of group 0
PLATEAU = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8] + [0.8] * (N - 6)   # ReduceLROnPlateau's metric


def close(x: float, y: float) -> bool:
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=0.0)


def sgd(lrs: tuple[float, ...] = (LR,), momentum: float = 0.9, **kw: Any) -> torch.optim.SGD:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(2))], "lr": lr} for lr in lrs]
    return torch.optim.SGD(groups, lr=lrs[0], momentum=momentum, **kw)


def warmup_cosine(warmup: int, total: int) -> Callable[[int], float]:
    """Hugging Face's get_cosine_schedule_with_warmup lambda, written out."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * 2.0 * 0.5 * progress)))
    return f


def warmup_linear(warmup: int, total: int) -> Callable[[int], float]:
    """Hugging Face's get_linear_schedule_with_warmup lambda, written out."""
    def f(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        return max(0.0, (total - step) / max(1, total - warmup))
    return f


def hf(name: str) -> Callable[[torch.optim.Optimizer], Any]:
    def make(opt: torch.optim.Optimizer) -> Any:
        optimization = pytest.importorskip("transformers.optimization")
        return getattr(optimization, name)(opt, 5, N + 20)
    return make


def lists(opt: torch.optim.Optimizer, top: float) -> list[float]:
    """Per-group bounds in the ratio of the groups' lrs (discriminative schedules)."""
    first = opt.param_groups[0]["lr"]
    return [top * g["lr"] / first for g in opt.param_groups]


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer], Any]] = {
    "StepLR": lambda o: S.StepLR(o, step_size=7, gamma=0.5),
    "MultiStepLR": lambda o: S.MultiStepLR(o, milestones=[5, 12, 20], gamma=0.3),
    "ExponentialLR": lambda o: S.ExponentialLR(o, gamma=0.93),
    "CosineAnnealingLR": lambda o: S.CosineAnnealingLR(o, T_max=15, eta_min=1e-3),
    "CosineAnnealingLR-eta0": lambda o: S.CosineAnnealingLR(o, T_max=30),
    "CosineAnnealingWarmRestarts": lambda o: S.CosineAnnealingWarmRestarts(
        o, T_0=8, T_mult=2, eta_min=1e-3),
    "OneCycleLR": lambda o: S.OneCycleLR(o, max_lr=lists(o, 0.1), total_steps=N + 20),
    "CyclicLR": lambda o: S.CyclicLR(o, base_lr=lists(o, 0.01), max_lr=lists(o, 0.1),
                                     step_size_up=5, mode="triangular2"),
    "LambdaLR-warmup-cosine": lambda o: S.LambdaLR(o, warmup_cosine(5, N + 10)),
    "LambdaLR-warmup-linear": lambda o: S.LambdaLR(o, warmup_linear(5, N + 10)),
    "HF-cosine-with-warmup": hf("get_cosine_schedule_with_warmup"),
    "HF-linear-with-warmup": hf("get_linear_schedule_with_warmup"),
    "MultiplicativeLR": lambda o: S.MultiplicativeLR(o, lambda epoch: 0.97),
    "PolynomialLR": lambda o: S.PolynomialLR(o, total_iters=N + 5, power=2.0),
    "LinearLR": lambda o: S.LinearLR(o, start_factor=1.0, end_factor=0.1, total_iters=30),
    "ConstantLR": lambda o: S.ConstantLR(o, factor=0.5, total_iters=20),
    "ReduceLROnPlateau": lambda o: S.ReduceLROnPlateau(o, factor=0.5, patience=2, min_lr=1e-3),
    "SequentialLR-warmup-cosine": lambda o: S.SequentialLR(
        o, [S.LinearLR(o, start_factor=0.1, total_iters=6),
            S.CosineAnnealingLR(o, T_max=30, eta_min=1e-4)], milestones=[6]),
    "ChainedScheduler": lambda o: S.ChainedScheduler(
        [S.ExponentialLR(o, gamma=0.95), S.MultiStepLR(o, milestones=[10, 20], gamma=0.5)]),
}


def step(opt: torch.optim.Optimizer, sched: Any, t: int) -> None:
    opt.step()
    if isinstance(sched, S.ReduceLROnPlateau):
        sched.step(PLATEAU[t])
    else:
        sched.step()


def lrs(opt: torch.optim.Optimizer) -> list[float]:
    return [float(g["lr"]) for g in opt.param_groups]


def twins(name: str, nudge: Callable[[torch.optim.Optimizer, Any], dict], *, k: int = K,
          group_lrs: tuple[float, ...] = (LR,)) -> tuple[list, list, dict]:
    """Run a nudged and an unnudged twin; return both lr histories and the nudge's detail."""
    a_opt, b_opt = sgd(group_lrs), sgd(group_lrs)
    a, b = SCHEDULES[name](a_opt), SCHEDULES[name](b_opt)
    seen_a, seen_b, detail = [], [], {}
    for t in range(N):
        if t == k:
            assert lrs(a_opt) == lrs(b_opt)
            detail = nudge(a_opt, a)
        seen_a.append(lrs(a_opt))
        seen_b.append(lrs(b_opt))
        step(a_opt, a, t)
        step(b_opt, b, t)
    return seen_a, seen_b, detail


@pytest.mark.parametrize("k", [3, K])
@pytest.mark.parametrize("name", list(SCHEDULES))
def test_scale_halves_the_live_lr_and_the_schedule_continues_halved(name, k):
    seen, twin, detail = twins(name, lambda o, s: knobs.apply([o], [s], "lr", scale=0.5), k=k)
    if k == K:   # the schedule has moved: ×0.5 of the configured lr would be a different number
        assert twin[k][0] != LR
    assert seen[:k] == twin[:k]
    assert seen[k][0] == 0.5 * twin[k][0]                 # exactly half of what it was
    assert detail == {"old": twin[k][0], "new": seen[k][0], "op": "scale", "arg": 0.5,
                      "groups": [[twin[k][0], seen[k][0]]]}
    for t in range(k, N):
        assert close(seen[t][0], 0.5 * twin[t][0]), (t, seen[t][0], twin[t][0])


@pytest.mark.parametrize("name", list(SCHEDULES))
def test_an_absolute_lr_is_exact_and_the_schedule_continues_from_it(name):
    seen, twin, detail = twins(name, lambda o, s: knobs.apply([o], [s], "lr", value=0.0123))
    factor = 0.0123 / twin[K][0]
    assert seen[K][0] == 0.0123
    assert detail["old"] == twin[K][0] and detail["new"] == 0.0123 and detail["op"] == "set"
    for t in range(K + 1, N):
        assert close(seen[t][0], factor * twin[t][0]), (t, seen[t][0], twin[t][0])


TWO_GROUPS = ["StepLR", "CosineAnnealingLR-eta0", "CosineAnnealingWarmRestarts", "OneCycleLR",
              "CyclicLR", "LambdaLR-warmup-cosine", "ReduceLROnPlateau",
              "SequentialLR-warmup-cosine", "ChainedScheduler"]


@pytest.mark.parametrize("name", TWO_GROUPS)
def test_two_groups_keep_their_ratio(name):
    seen, twin, detail = twins(name, lambda o, s: knobs.apply([o], [s], "lr", scale=0.5),
                               group_lrs=(LR, LR / 10))
    assert detail["groups"] == [[twin[K][0], seen[K][0]], [twin[K][1], seen[K][1]]]
    for t in range(K, N):
        for g in (0, 1):
            assert close(seen[t][g], 0.5 * twin[t][g]), (t, g, seen[t], twin[t])


@pytest.mark.parametrize("name", TWO_GROUPS)
def test_absolute_lr_on_two_groups_sets_group_0_and_keeps_the_ratio(name):
    seen, twin, detail = twins(name, lambda o, s: knobs.apply([o], [s], "lr", value=0.0123),
                               group_lrs=(LR, LR / 10))
    factor = 0.0123 / twin[K][0]
    assert seen[K][0] == 0.0123 and close(seen[K][1], twin[K][1] * factor)
    for t in range(K, N):
        for g in (0, 1):
            assert close(seen[t][g], factor * twin[t][g]), (t, g, seen[t], twin[t])


# a shared cosine floor (eta_min > 0) can't move for one group: refused, tested below
ONE_GROUP = [n for n in TWO_GROUPS if n not in ("CosineAnnealingWarmRestarts",
                                                "SequentialLR-warmup-cosine")]


@pytest.mark.parametrize("name", ONE_GROUP)
def test_group_1_alone_changes_only_group_1_and_its_schedule(name):
    seen, twin, detail = twins(name, lambda o, s: knobs.apply([o], [s], "lr", scale=0.5, group=1),
                               group_lrs=(LR, LR / 10))
    assert detail["old"] == twin[K][1] and detail["new"] == seen[K][1] == 0.5 * twin[K][1]
    assert detail["groups"][0] == [twin[K][0], twin[K][0]]
    for t in range(K, N):
        assert seen[t][0] == twin[t][0]
        assert close(seen[t][1], 0.5 * twin[t][1]), (t, seen[t], twin[t])


def snapshot(opt: torch.optim.Optimizer, sched: Any) -> tuple:
    return (knobs.fingerprint([opt]), repr(opt.param_groups), repr(sched.state_dict()))


def test_one_group_of_a_shared_cosine_floor_is_refused_and_nothing_changes():
    opt = sgd((LR, LR / 10))
    sched = S.CosineAnnealingLR(opt, T_max=15, eta_min=1e-3)
    for t in range(K):
        step(opt, sched, t)
    before = snapshot(opt, sched)
    with pytest.raises(InvalidValue, match="eta_min=0.001"):
        knobs.apply([opt], [sched], "lr", scale=0.5, group=1)
    assert snapshot(opt, sched) == before
    knobs.apply([opt], [sched], "lr", scale=0.5)          # every group: the floor moves too
    assert sched.eta_min == 0.5e-3


def test_zero_lr_during_warmup_scale_stays_zero_and_says_so_absolute_still_works():
    seen, twin, detail = twins("LambdaLR-warmup-cosine",
                               lambda o, s: knobs.apply([o], [s], "lr", scale=0.5), k=0)
    assert seen[0] == twin[0] == [0.0]
    assert detail["old"] == detail["new"] == 0.0
    assert "is 0 at this step" in detail["note"] and "schedule is scaled ×0.5" in detail["note"]
    for t in range(1, N):
        assert close(seen[t][0], 0.5 * twin[t][0])

    seen, twin, detail = twins("LambdaLR-warmup-cosine",
                               lambda o, s: knobs.apply([o], [s], "lr", value=0.01), k=0)
    assert seen[0] == [0.01] and detail["new"] == 0.01
    assert "not rescaled" in detail["note"]
    assert seen[1:] == twin[1:]      # no factor to scale a schedule by: it goes on as it was


def test_momentum_scale_1m_on_sgd_and_adam_steps_on_one_minus_beta():
    opt = sgd(momentum=0.9)
    detail = knobs.apply([opt], [], "momentum", scale_1m=0.5)
    assert detail == {"old": 0.9, "new": 1 - 0.1 * 0.5, "op": "scale_1m", "arg": 0.5,
                      "groups": [[0.9, 1 - 0.1 * 0.5]]}
    assert opt.param_groups[0]["momentum"] == 1 - 0.1 * 0.5

    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, betas=(0.9, 0.999))
    knobs.apply([adam], [], "momentum", scale_1m=2)
    assert adam.param_groups[0]["betas"] == (1 - 0.1 * 2, 0.999)     # beta2 untouched
    knobs.apply([adam], [], "momentum", value=0.95)
    assert adam.param_groups[0]["betas"] == (0.95, 0.999)
    adam.step()                                                        # still a valid optimizer
    with pytest.raises(InvalidValue, match=r"\[0, 1\)"):
        knobs.apply([adam], [], "momentum", scale_1m=30)              # 1 - 0.05 * 30 < 0
    with pytest.raises(InvalidValue, match="momentum must lie in"):
        knobs.apply([adam], [], "momentum", value=1.0)
    assert adam.param_groups[0]["betas"] == (0.95, 0.999)


def test_momentum_cycled_by_one_cycle_continues_on_one_minus_beta():
    a_opt, b_opt = sgd(), sgd()
    a, b = SCHEDULES["OneCycleLR"](a_opt), SCHEDULES["OneCycleLR"](b_opt)
    for t in range(N):
        if t == K:
            before = a_opt.param_groups[0]["momentum"]
            assert before != 0.9      # the cycle moved it: a configured value would be wrong
            knobs.apply([a_opt], [a], "momentum", scale_1m=0.5)
            assert a_opt.param_groups[0]["momentum"] == 1 - (1 - before) * 0.5
        if t >= K:
            ma, mb = a_opt.param_groups[0]["momentum"], b_opt.param_groups[0]["momentum"]
            assert math.isclose(1 - ma, 0.5 * (1 - mb), rel_tol=1e-9), (t, ma, mb)
            assert a_opt.param_groups[0]["lr"] == b_opt.param_groups[0]["lr"]
        step(a_opt, a, t)
        step(b_opt, b, t)


def test_momentum_cycled_by_cyclic_lr_moves_its_bounds():
    opt = sgd()
    sched = S.CyclicLR(opt, base_lr=0.01, max_lr=0.1, step_size_up=5)
    for t in range(7):
        step(opt, sched, t)
    knobs.apply([opt], [sched], "momentum", scale_1m=0.5)
    assert sched.base_momentums == [1 - (1 - 0.8) * 0.5] and sched.max_momentums == [0.95]
    live = opt.param_groups[0]["momentum"]
    assert 0.9 < live < 0.95
    factor = (1 / (1 - 0.9) + 1 / (1 - live)) / 2    # fine for the live value, not the 0.9 bound
    before = snapshot(opt, sched)
    with pytest.raises(InvalidValue, match="base_momentum"):
        knobs.apply([opt], [sched], "momentum", scale_1m=factor)
    assert snapshot(opt, sched) == before


def test_weight_decay_keeps_a_no_decay_group_at_zero():
    opt = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(2))]},
                             {"params": [torch.nn.Parameter(torch.zeros(2))], "weight_decay": 0.0}],
                            lr=1e-3, weight_decay=0.01)
    assert knobs.apply([opt], [], "weight_decay", value=0.1)["groups"] == [[0.01, 0.1], [0.0, 0.0]]
    assert knobs.apply([opt], [], "weight_decay", scale=0.5)["groups"] == [[0.1, 0.05], [0.0, 0.0]]
    detail = knobs.apply([opt], [], "weight_decay", value=0.02, group=1)
    assert detail["old"] == 0.0 and detail["new"] == 0.02 and "was 0" in detail["note"]
    assert [g["weight_decay"] for g in opt.param_groups] == [0.05, 0.02]


def test_groups_of_several_optimizers_are_one_flat_list():
    sgd_opt = sgd((LR,))
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-3)
    s1, s2 = S.StepLR(sgd_opt, 5, 0.5), S.LambdaLR(adam, lambda e: 1.0 / (1 + e))
    for t in range(K):
        step(sgd_opt, s1, t)
        step(adam, s2, t)
    sgd_before, adam_before = sgd_opt.param_groups[0]["lr"], adam.param_groups[0]["lr"]
    detail = knobs.apply([sgd_opt, adam], [s1, s2], "lr", scale=0.5, group=1)
    assert detail["groups"] == [[sgd_before, sgd_before], [adam_before, adam_before * 0.5]]
    assert s1.base_lrs == [LR] and s2.base_lrs == [0.5e-3]
    step(adam, s2, K)
    assert close(adam.param_groups[0]["lr"], 0.5e-3 / (1 + K + 1))
    with pytest.raises(InvalidValue, match=r"0\.\.1"):
        knobs.apply([sgd_opt, adam], [s1, s2], "lr", scale=0.5, group=2)


def test_effective_fingerprint_and_keys():
    assert knobs.effective([]) == {} and knobs.optimizer_keys([]) == [] and knobs.groups([]) == []
    opt = sgd((LR, LR / 10), momentum=0.9, weight_decay=1e-4)
    assert knobs.effective([opt]) == {
        "lr": LR, "momentum": 0.9, "weight_decay": 1e-4,
        "groups": [{"lr": LR, "momentum": 0.9, "weight_decay": 1e-4},
                   {"lr": LR / 10, "momentum": 0.9, "weight_decay": 1e-4}]}
    adagrad = torch.optim.Adagrad([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    assert knobs.optimizer_keys([adagrad]) == ["lr", "weight_decay"]
    assert knobs.effective([adagrad])["groups"] == [{"lr": 0.1, "weight_decay": 0.0}]
    assert "momentum" not in knobs.effective([adagrad])
    adam = torch.optim.Adam([torch.nn.Parameter(torch.zeros(2))], lr=1e-3, betas=(0.8, 0.99))
    assert knobs.optimizer_keys([adam]) == ["lr", "momentum", "weight_decay"]
    assert knobs.value([adam], "momentum") == 0.8 and knobs.value([adam], "lr", 3) is None
    with pytest.raises(InvalidValue, match="no momentum"):
        knobs.apply([adagrad], [], "momentum", value=0.9)

    sched = S.StepLR(opt, step_size=2, gamma=0.5)
    first = knobs.fingerprint([opt])
    step(opt, sched, 0)
    assert knobs.fingerprint([opt]) == first          # lr unchanged: nothing to report
    step(opt, sched, 1)
    assert knobs.fingerprint([opt]) != first
    assert knobs.effective([opt])["lr"] == LR / 2


def test_bad_nudges_name_the_value_and_change_nothing():
    opt = sgd()
    sched = S.StepLR(opt, 5, 0.5)
    before = snapshot(opt, sched)
    for kwargs, match in [
        ({"value": math.nan}, "nan"), ({"value": 0.0}, "0.0"), ({"value": -1}, "-1"),
        ({"scale": 0}, "got 0"), ({"scale": math.inf}, "inf"), ({"scale": True}, "True"),
        ({"scale_1m": 0.5}, "for momentum"), ({}, "none"), ({"value": 0.1, "scale": 2}, "one of"),
        ({"scale": 0.5, "group": 1}, "got 1"), ({"scale": 0.5, "group": True}, "True"),
        ({"scale": 1e300}, r"1e\+300"), ({"value": 1e300}, "implausibly large"),
    ]:
        with pytest.raises(InvalidValue, match=match):
            knobs.apply([opt], [sched], "lr", **kwargs)
    with pytest.raises(InvalidValue, match="has no dropout"):
        knobs.apply([opt], [sched], "dropout", value=0.1)
    with pytest.raises(InvalidValue, match="no optimizer"):
        knobs.apply([], [], "lr", value=0.1)
    with pytest.raises(InvalidValue, match=r"momentum ×2 would take"):
        knobs.apply([opt], [sched], "momentum", scale=2)
    assert snapshot(opt, sched) == before


def test_a_nudge_of_several_keys_is_all_or_nothing():
    opt = sgd()
    sched = S.StepLR(opt, 5, 0.5)
    before = snapshot(opt, sched)
    with pytest.raises(InvalidValue, match="momentum"):
        knobs.nudge([opt], [sched], scale={"lr": 0.5}, scale_1m={"momentum": 30})
    assert snapshot(opt, sched) == before
    done = knobs.nudge([opt], [sched], hp={"clip": 1.0, "weight_decay": 1e-4},
                       scale={"lr": 0.5}, scale_1m={"momentum": 0.5})
    assert set(done) == {"lr", "momentum", "weight_decay"}       # clip is the caller's
    assert knobs.effective([opt]) == {"lr": LR / 2, "momentum": 0.95, "weight_decay": 1e-4,
                                      "groups": [{"lr": LR / 2, "momentum": 0.95,
                                                  "weight_decay": 1e-4}]}
    assert sched.base_lrs == [LR / 2]
    assert knobs.nudge([], [], hp={"lr": 0.1}) == {}       # no optimizer: lr is a user value


def test_a_tensor_lr_keeps_its_tensor():
    lr = torch.tensor(0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=lr, momentum=0.9)
    sched = S.ExponentialLR(opt, gamma=0.9)
    step(opt, sched, 0)
    live = opt.param_groups[0]["lr"]
    knobs.apply([opt], [sched], "lr", scale=0.5)
    assert opt.param_groups[0]["lr"] is live and float(live) == pytest.approx(0.045 * 0.5)
    step(opt, sched, 1)
    assert float(opt.param_groups[0]["lr"]) == pytest.approx(0.045 * 0.5 * 0.9)


def test_wrapped_optimizers_are_unwrapped():
    lightning = pytest.importorskip("lightning.pytorch.core.optimizer")
    opt = sgd()
    wrapped = lightning.LightningOptimizer(opt)
    assert knobs.unwrap(wrapped) is opt
    assert knobs.groups([wrapped])[0] is opt.param_groups[0]
    sched = S.StepLR(opt, 5, 0.5)
    knobs.apply([wrapped], [sched], "lr", scale=0.5)
    assert sched.base_lrs == [LR / 2] and opt.param_groups[0]["lr"] == LR / 2


def test_accelerate_wrapped_optimizer_and_scheduler():
    accelerate = pytest.importorskip("accelerate")
    from accelerate.state import AcceleratorState
    try:
        accelerator = accelerate.Accelerator(cpu=True)
        opt = sgd()
        sched = S.StepLR(opt, 5, 0.5)
        wrapped_opt, wrapped_sched = accelerator.prepare(opt, sched)
        assert type(wrapped_opt).__name__ == "AcceleratedOptimizer"
        assert knobs.unwrap(wrapped_opt) is opt
        knobs.apply([wrapped_opt], [wrapped_sched], "lr", scale=0.5)
        assert sched.base_lrs == [LR / 2] and opt.param_groups[0]["lr"] == LR / 2
    finally:
        AcceleratorState._reset_state(reset_partial_state=True)


@pytest.mark.parametrize("name", ["StepLR", "OneCycleLR", "CyclicLR", "LambdaLR-warmup-cosine",
                                  "ReduceLROnPlateau", "SequentialLR-warmup-cosine"])
def test_a_nudged_schedule_survives_a_checkpoint_round_trip(name):
    """A day's checkpoint holds the rescaled schedule: a rollback to it continues halved."""
    opt, twin_opt = sgd(), sgd()
    sched, twin = SCHEDULES[name](opt), SCHEDULES[name](twin_opt)
    for t in range(K):
        step(opt, sched, t)
        step(twin_opt, twin, t)
    knobs.apply([opt], [sched], "lr", scale=0.5)
    buffer = io.BytesIO()
    torch.save({"optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, buffer)
    buffer.seek(0)
    saved = torch.load(buffer, weights_only=True)
    restored_opt = sgd()
    restored = SCHEDULES[name](restored_opt)
    restored_opt.load_state_dict(saved["optimizer"])
    restored.load_state_dict(saved["scheduler"])
    for t in range(K, N):
        assert lrs(restored_opt) == lrs(opt), t
        assert close(lrs(restored_opt)[0], 0.5 * lrs(twin_opt)[0]), t
        for o, s in ((opt, sched), (restored_opt, restored), (twin_opt, twin)):
            step(o, s, t)
