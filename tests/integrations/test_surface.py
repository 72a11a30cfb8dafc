"""The integrations drive a run through the trainer's public surface only (issue 12): the Run's
``state`` / ``drive`` / ``take_start`` / ``day_saved`` / ``end``, the LoopState's fields and
methods, and the public functions of babysit.trainer's modules; never a private name of theirs,
so the trainer can change its insides without breaking them."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import babysit
from babysit.trainer import commands, knobs, resume
from babysit.trainer.run import Run
from babysit.trainer.state import LoopState

INTEGRATIONS = Path(babysit.__file__).parent / "integrations"
#: names that hold a Run, a LoopState or a trainer module in the integrations' code
TRAINER_SIDE = {"run", "loop", "state", "commands", "knobs", "resume", "ckpt"}


def private_reaches(source: str) -> list[str]:
    """``x._name`` where ``x`` (or ``something.x``) is one of TRAINER_SIDE."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") \
                or node.attr.startswith("__") and node.attr.endswith("__"):
            continue
        owner = node.value
        name = owner.id if isinstance(owner, ast.Name) else \
            owner.attr if isinstance(owner, ast.Attribute) else None
        if name in TRAINER_SIDE:
            found.append(f"line {node.lineno}: {ast.unparse(node)}")
    return sorted(found)


def test_the_check_sees_a_private_reach():
    assert private_reaches("self.run._state.step\nloop._reported\n") == [
        "line 1: self.run._state", "line 2: loop._reported"]
    assert private_reaches("self._restore = run.state\nrun.__exit__(None, None, None)") == []


def test_integrations_use_only_public_names_of_the_trainer():
    files = sorted(INTEGRATIONS.glob("*.py"))
    assert {f.name for f in files} >= {"_common.py", "huggingface.py", "lightning.py"}
    found = {f.name: private_reaches(f.read_text()) for f in files}
    assert not any(found.values()), found


def test_the_public_surface_is_there_and_documented():
    for owner, names in ((Run, ["state", "drive", "starts_from_checkpoint", "take_start",
                                "day_saved", "end"]),
                         (LoopState, ["where", "event", "arm_day", "current", "effective",
                                      "trace_hp", "mark_not_reproducible"]),
                         (commands, ["apply", "reject", "load", "set_hp", "rollback_target",
                                     "exploit_target", "exploit_detail", "where_from", "land",
                                     "record_jump", "on_diverged"]),
                         (resume, ["load_start", "record_start"]),
                         (knobs, ["unwrap", "fingerprint"])):
        for name in names:
            attr = getattr(owner, name)
            doc = (attr.fget if isinstance(attr, property) else attr).__doc__
            assert doc and doc.strip(), f"{getattr(owner, '__name__', owner)}.{name} has no docstring"


def test_drive_take_start_and_end_on_a_real_run(tmp_path):
    import torch

    from babysit.errors import InvalidValue
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.5)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    run = babysit.init(project="surface", config={"lr": 0.1, "batch": 4}, root=tmp_path)
    try:
        assert run.take_start() is None and not run.starts_from_checkpoint   # a new run
        with pytest.warns(UserWarning, match="the optimizer was given 0.3"):
            run.drive([opt, None], [sched])
        state = run.state
        assert state.optimizers == [opt] and state.schedulers == [sched]
        assert state.plain_optimizers == [opt]
        assert run.hp["lr"] == 0.3          # the optimizer is the truth, as with attach()
        opt.step()
        sched.step()
        run.drive([opt], [sched])           # a fit entered again: the hp are not re-read
        assert run.hp["lr"] == 0.3 and opt.param_groups[0]["lr"] == 0.15
        run.end(InvalidValue("boom"))
        run.end()                           # safe to call twice
    finally:
        run.finish()
    record = babysit.Client(tmp_path).run(run.id)
    assert record.status == "crashed" and "boom" in record.error
