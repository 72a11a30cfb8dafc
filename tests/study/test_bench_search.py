"""benchmarks/bench_search.py runs end to end on a tiny budget and returns well-formed results.

Not a benchmark: it keeps the script from rotting when the study API changes.
"""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("optuna")

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "bench_search.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_search", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_search"] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the benchmark does; more threads only contend on tiny batches
    yield module
    torch.set_num_threads(threads)
    del sys.modules["bench_search"]


def test_every_method_spends_the_budget_and_reports_a_monotone_curve(bench, tmp_path):
    trials, steps, day = 4, 20, 10
    result = bench.run(bench.METHODS, seeds=[0], trials=trials, steps=steps, day=day)
    budget = trials * steps
    assert result["points"] == list(range(day, budget + 1, day))
    assert set(result["results"]) == set(bench.METHODS)
    for method, per_seed in result["results"].items():
        r = per_seed["0"]
        # Equal compute: nobody goes over; the methods that cannot run out use it all.
        assert r["steps"] <= budget, method
        if method in ("uniform", "log", "tpe", "pbt", "optuna_bs"):
            assert r["steps"] == budget, method
        spent = [e[0] for e in r["evaluations"]]
        assert spent == sorted(spent) and spent[-1] == r["steps"], method
        curve = r["curve"]
        assert len(curve) == len(result["points"])
        finite = [v for v in curve if v is not None]
        assert finite and all(a >= b for a, b in zip(finite, finite[1:], strict=False)), method
        assert r["best_val"] == finite[-1] == min(e[1] for e in r["evaluations"] if e[1] is not None)
        assert math.isfinite(r["best_test"])
        assert bench.LOG_SPACE.contains(r["best_config"]), (method, r["best_config"])
    # PBT: a population of 4 in lock step, 2 days; after day 1 the worst copies the best.
    pbt = result["results"]["pbt"]["0"]
    assert pbt["exploits"] == 1
    assert [e[0] for e in pbt["evaluations"]] == [10, 20, 30, 40, 50, 60, 70, 80]
    # The grid on 4 trials is 2 x 2 on the linear space: exactly 4 trials of 2 days.
    assert result["results"]["grid"]["0"]["trials"] == 4
    # The whole result is strict JSON (a diverged loss is null, not NaN).
    path = tmp_path / "r.json"
    path.write_text(json.dumps(result, allow_nan=False))
    assert json.loads(path.read_text())["settings"]["budget"] == budget
    text = bench.table(result)
    assert all(bench.LABELS[m] in text for m in bench.METHODS)


def test_pbt_exploit_copies_weights_without_sharing_the_optimizer_state(bench):
    task = bench.Task.make()
    budget = bench.Budget(10_000)
    a = bench.Member(task, {"lr": 0.1, "momentum": 0.9}, seed=1)
    b = bench.Member(task, {"lr": 0.001, "momentum": 0.5}, seed=2)
    a.train(5, budget)
    b.train(5, budget)
    bench.exploit(b, a, {"lr": 0.05, "momentum": 0.8})
    for pa, pb in zip(a.net.parameters(), b.net.parameters(), strict=True):
        assert torch.equal(pa, pb)
        assert a.opt.state[pa]["momentum_buffer"] is not b.opt.state[pb]["momentum_buffer"]
    assert b.opt.param_groups[0]["lr"] == 0.05 and b.opt.param_groups[0]["momentum"] == 0.8
    assert a.opt.param_groups[0]["lr"] == 0.1
    # Training on from the copy moves the loser alone.
    before = [p.clone() for p in a.net.parameters()]
    b.train(3, budget)
    assert all(torch.equal(p, q) for p, q in zip(before, a.net.parameters(), strict=True))


def test_bad_settings_name_the_value(bench):
    with pytest.raises(ValueError, match="steps must be a multiple of day.*steps=30"):
        bench.run(["log"], seeds=[0], trials=2, steps=30, day=20)
    with pytest.raises(ValueError, match="'sgd'"):
        bench.run(["sgd"], seeds=[0], trials=2, steps=20, day=20)
