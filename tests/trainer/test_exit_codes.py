"""babysit wraps sys.exit only while a run is open, to learn a code atexit is never told."""

from __future__ import annotations

import sys

import pytest

import babysit
from babysit.trainer.run import _exit_codes


def test_sys_exit_is_put_back_when_the_last_run_closes(tmp_path):
    original = sys.exit
    a = babysit.init(project="p", root=tmp_path / "s", day="5 steps")
    assert sys.exit is not original
    b = babysit.init(project="p", root=tmp_path / "s", day="5 steps")
    a.finish()
    assert sys.exit is not original          # b is still open
    b.finish()
    assert sys.exit is original


def test_the_wrapper_still_exits_and_remembers_the_code_at_that_step(tmp_path):
    run = babysit.init(project="p", root=tmp_path / "s", day="5 steps")
    try:
        for step in run.loop(steps=10):
            if step == 3:
                with pytest.raises(SystemExit) as info:
                    sys.exit(7)
                assert info.value.code == 7
                assert _exit_codes.code_at(run.step) == (7,)
        # a code caught at another step does not count at the end
        assert _exit_codes.code_at(run.step) is None
    finally:
        run.finish()
