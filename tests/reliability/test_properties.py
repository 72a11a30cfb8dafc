"""Bad input everywhere (hypothesis): NaN, inf, negative, zero, huge, strings, booleans, None,
unknown keys, unknown runs and missing days thrown at the Client, the CLI and the dashboard's
handlers. Each is refused with an error that shows the offending value, and nothing changes:
no command row, no new run, the run row as it was. Then conflicting commands sent at once.

One real trainer (a strict run) serves the whole module.
"""

from __future__ import annotations

import contextlib
import io
import math
import re
import threading

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import babysit
from babysit import cli
from babysit.errors import BabysitError
from babysit.ui import actions
from tests.conftest import Trainers, wait_for
from tests.reliability.conftest import Forked

pytestmark = [pytest.mark.reliability, pytest.mark.slow]
SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])
KEYS = ("lr", "momentum", "weight_decay", "clip")     # what the strict tiny run knows


@pytest.fixture(scope="module")
def live(tmp_path_factory, zygote):
    root = tmp_path_factory.mktemp("properties") / "store"
    root.mkdir()
    trainers = Trainers(root)
    _, run_id = Forked(trainers, zygote).start("--pace", "0.02", "--day", "20 steps", "--strict")
    wait_for(lambda: len(trainers.client.checkpoints(run_id)) >= 2, 60, "day 1")
    yield trainers.client, run_id
    trainers.cleanup()


def snapshot(c: babysit.Client, run_id: int) -> tuple:
    """What a refused input must leave as it was."""
    count = c.store.read(lambda conn: conn.exec_driver_sql(
        "select (select count(*) from commands), (select count(*) from runs)").one())
    r = c.store.get_run(run_id)
    return tuple(count), r.status, r.hp, r.config, r.branch, r.strict


def refused(c, run_id, call, error=BabysitError):
    """Run ``call``; it must raise ``error`` and change nothing. Returns the message."""
    before = snapshot(c, run_id)
    with pytest.raises(error) as info:
        call()
    assert snapshot(c, run_id) == before
    return str(info.value)


# ---------------------------------------------------------------------------- bad values
_ALWAYS_BAD = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
    st.integers(max_value=-1),
    st.floats(min_value=1e15, exclude_min=True, allow_infinity=False),
    st.integers(min_value=10**15 + 1),
    st.text(max_size=20),
    st.booleans(),
    st.none(),
    st.lists(st.floats(), max_size=2),
)


@st.composite
def bad_nudge(draw) -> tuple[str, object]:
    key = draw(st.sampled_from(KEYS))
    extra = {"lr": st.sampled_from([0, 0.0, -0.0]),
             "momentum": st.floats(min_value=1, max_value=1e15)}.get(key, _ALWAYS_BAD)
    return key, draw(st.one_of(_ALWAYS_BAD, extra))


unknown_keys = st.from_regex(r"[a-z_][a-z0-9_]{0,15}", fullmatch=True).filter(
    lambda k: k not in KEYS)
bad_keys = st.one_of(st.text(max_size=10).filter(lambda k: not k[:1].isalpha() and k[:1] != "_"),
                     st.integers(), st.none())
def _whole(text: str) -> bool:
    """Whether the dashboard would take this text as a day (a whole number >= 0)."""
    try:
        return int(text.strip()) >= 0
    except ValueError:
        return False


bad_days = st.one_of(st.integers(max_value=-1), st.floats(),
                     st.text(max_size=5).filter(lambda t: not _whole(t)), st.booleans())
missing_days = st.integers(min_value=10**6, max_value=2**70)


def unknown_runs(live_id: int):
    return st.one_of(
        st.integers(min_value=live_id + 1), st.integers(max_value=0),
        st.text(max_size=12).filter(lambda t: t.strip() not in (str(live_id), f"tiny-{live_id}")),
        st.none(), st.floats(), st.booleans())


# ------------------------------------------------------------------------------- Client
@SETTINGS
@given(bad=bad_nudge())
def test_client_refuses_bad_values(live, bad):
    c, run_id = live
    key, value = bad
    message = refused(c, run_id, lambda: c.nudge(run_id, {key: value}, wait=False),
                      babysit.InvalidValue)
    assert repr(value) in message and key in message
    message = refused(c, run_id, lambda: c.rollback(run_id, 0, hp={key: value}, wait=False),
                      babysit.InvalidValue)
    assert repr(value) in message
    message = refused(c, run_id, lambda: c.fork(run_id, 0, hp={key: value}),
                      babysit.InvalidValue)
    assert repr(value) in message


@SETTINGS
@given(key=st.one_of(unknown_keys, bad_keys))
def test_client_refuses_unknown_and_malformed_keys(live, key):
    c, run_id = live
    message = refused(c, run_id, lambda: c.nudge(run_id, {key: 0.1}, wait=False),
                      babysit.InvalidValue)
    assert repr(key) in message


@SETTINGS
@given(data=st.data())
def test_client_refuses_unknown_runs_and_days(live, data):
    c, run_id = live
    run = data.draw(unknown_runs(run_id), label="run")
    for call in (lambda: c.nudge(run, lr=0.1, wait=False), lambda: c.pause(run, wait=False),
                 lambda: c.resume(run, wait=False), lambda: c.stop(run, wait=False),
                 lambda: c.rollback(run, 0, wait=False), lambda: c.fork(run, 0),
                 lambda: c.restart(run)):
        assert repr(run) in refused(c, run_id, call, babysit.UnknownRun)
    day = data.draw(st.one_of(bad_days, missing_days), label="day")
    error = babysit.UnknownDay if isinstance(day, int) and not isinstance(day, bool) and \
        day >= 0 else babysit.InvalidValue
    for call in (lambda: c.rollback(run_id, day, wait=False), lambda: c.fork(run_id, day)):
        assert repr(day) in refused(c, run_id, call, error)
    source = data.draw(st.text(max_size=8).filter(lambda s: s not in babysit.client.SOURCES),
                       label="source")
    message = refused(c, run_id, lambda: c.pause(run_id, source=source, wait=False),
                      babysit.InvalidValue)
    assert repr(source) in message


def test_commands_that_conflict_with_the_runs_state_are_refused(live):
    c, run_id = live
    assert "not paused" in refused(c, run_id, lambda: c.resume(run_id), babysit.InvalidValue)
    assert "at least one" in refused(c, run_id, lambda: c.nudge(run_id, {}, wait=False),
                                     babysit.InvalidValue)
    assert "restart" in refused(c, run_id, lambda: c.restart(run_id), babysit.RunNotLive)


# ---------------------------------------------------------------------------------- CLI
def run_cli(c, *argv: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(["--root", str(c.store.root), *argv])
        except SystemExit as exit_:          # argparse: a malformed command line
            code = exit_.code
    return code, err.getvalue()


def shown(text: str) -> list[str]:
    """How a value typed as text can be named: as typed, or as the number it parsed to."""
    forms = [repr(text.strip()), text.strip()]
    with contextlib.suppress(ValueError, OverflowError):
        forms.append(repr(float(text)))
        forms.append(repr(int(text)))
    return forms


def acceptable(key: str, text: str) -> bool:
    """An independent statement of what a typed value may be (a finite number >= 0 below
    10**15; lr > 0; momentum < 1), to tell the bad inputs from the good ones."""
    try:
        value: float = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            return False
    if not math.isfinite(value) or not 0 <= value <= 1e15:
        return False
    return not ((key == "lr" and value == 0) or (key == "momentum" and value >= 1))


@st.composite
def typed_bad(draw, separators: bool = True) -> tuple[str, str]:
    """(key, text typed for it) where the text is not an acceptable value for the key."""
    key = draw(st.sampled_from(KEYS))
    text = draw(st.one_of(
        st.sampled_from(["nan", "inf", "-inf", "1e999", "-1", "-0.5", "abc", "", "true", "None",
                         "0x10", "1" + "0" * 30, "1e16", "0", "1", "1.5"]),
        st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=8)))
    if acceptable(key, text) or (not separators and re.search(r"[\s,;]", text)):
        return key, "nan"
    return key, text


@SETTINGS
@given(bad=typed_bad())
def test_cli_refuses_bad_values(live, bad):
    c, run_id = live
    key, text = bad
    before = snapshot(c, run_id)
    for argv in (["nudge", str(run_id), f"{key}={text}", "--no-wait"],
                 ["rollback", str(run_id), "0", f"{key}={text}", "--no-wait"],
                 ["fork", str(run_id), "--day", "0", f"{key}={text}"]):
        code, err = run_cli(c, *argv)
        assert code == 2, (argv, err)
        assert err.startswith("babysit: error:") and any(f in err for f in shown(text)), err
    assert snapshot(c, run_id) == before


@settings(SETTINGS, max_examples=20)
@given(data=st.data())
def test_cli_refuses_unknown_runs_and_days(live, data):
    c, run_id = live
    before = snapshot(c, run_id)
    name = data.draw(st.from_regex(r"[A-Za-z][A-Za-z0-9_-]{0,10}", fullmatch=True).filter(
        lambda n: n != f"tiny-{run_id}"), label="run")
    for argv in (["nudge", name, "lr=0.1"], ["pause", name], ["resume", name], ["stop", name],
                 ["rollback", name, "0"], ["fork", name], ["restart", name],
                 ["metrics", name], ["events", name], ["checkpoints", name]):
        code, err = run_cli(c, *argv)
        assert code == 2 and repr(name) in err, (argv, err)
    day = data.draw(st.one_of(st.integers(min_value=10**6, max_value=10**12),
                              st.integers(max_value=-1)), label="day")
    for argv in (["rollback", str(run_id), str(day), "--no-wait"],
                 ["fork", str(run_id), "--day", str(day)]):
        code, err = run_cli(c, *argv)
        assert code == 2 and str(day) in err, (argv, err)
    code, err = run_cli(c, "rollback", str(run_id), "yesterday")
    assert code == 2 and "'yesterday'" in err
    assert snapshot(c, run_id) == before


# ------------------------------------------------------------------------ the dashboard
@SETTINGS
@given(bad=typed_bad(separators=False))
def test_ui_handlers_refuse_bad_values(live, bad):
    c, run_id = live
    name, text = bad
    message = refused(c, run_id, lambda: actions.set_value(c, run_id, name, text, timeout=1),
                      babysit.InvalidValue)
    assert any(f in message for f in shown(text)), message
    message = refused(c, run_id, lambda: actions.rollback(
        c, run_id, 0, confirmed=True, overrides=f"{name}={text}"), babysit.InvalidValue)
    assert any(f in message for f in shown(text)), message
    message = refused(c, run_id, lambda: actions.fork(c, run_id, 0, f"{name}={text}"),
                      babysit.InvalidValue)
    assert any(f in message for f in shown(text)), message


@SETTINGS
@given(factor=st.one_of(st.sampled_from([0, 0.0, -1, math.nan, math.inf, -math.inf]),
                        st.floats(max_value=0), st.text(max_size=4), st.booleans(), st.none()),
       day=bad_days, direction=st.text(max_size=6).filter(lambda d: d not in ("more", "less")))
def test_ui_buttons_refuse_bad_input(live, factor, day, direction):
    c, run_id = live
    assert repr(factor) in refused(c, run_id, lambda: actions.lr_times(c, run_id, factor),
                                   babysit.InvalidValue)
    assert repr(day) in refused(c, run_id, lambda: actions.rollback(c, run_id, day,
                                                                    confirmed=True))
    assert repr(day) in refused(c, run_id, lambda: actions.fork(c, run_id, day))
    assert repr(direction) in refused(c, run_id, lambda: actions.momentum_nudge(
        c, run_id, direction), babysit.InvalidValue)
    refused(c, run_id, lambda: actions.rollback(c, run_id, 0, confirmed=False),
            babysit.InvalidValue)


@SETTINGS
@given(run=st.integers(min_value=1000))
def test_ui_handlers_refuse_unknown_runs(live, run):
    c, run_id = live
    for call in (lambda: actions.pause(c, run), lambda: actions.resume(c, run),
                 lambda: actions.stop(c, run), lambda: actions.lr_times(c, run, 2.0),
                 lambda: actions.set_value(c, run, "lr", "0.1"),
                 lambda: actions.rollback(c, run, 0, confirmed=True),
                 lambda: actions.fork(c, run, 0)):
        assert repr(run) in refused(c, run_id, call, babysit.UnknownRun)


# ------------------------------------------------------------------ conflicting commands
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(kinds=st.lists(st.sampled_from(["pause", "resume", "nudge"]), min_size=2, max_size=4),
       paused=st.booleans())
def test_conflicting_commands_sent_at_once_end_consistently(live, kinds, paused):
    """Sent from several threads at once: each is applied or refused with a reason, and the
    run ends in the state that applying them in the order the trainer read them gives."""
    c, run_id = live
    if paused:
        c.pause(run_id)
    first_id = c.store.read(lambda conn: conn.exec_driver_sql(
        "select coalesce(max(id), 0) from commands").scalar())
    start = c.run(run_id).status
    barrier = threading.Barrier(len(kinds))
    errors: list[BaseException] = []

    def send(i: int, kind: str) -> None:
        barrier.wait()
        try:
            if kind == "nudge":
                c.nudge(run_id, lr=0.01 + i / 1000, timeout=30)
            else:
                getattr(c, kind)(run_id, timeout=30)
        except (babysit.InvalidValue, babysit.CommandRejected) as exc:
            errors.append(exc)       # refused at the client, or by the trainer: with a reason
        except BaseException as exc:  # anything else fails the test
            errors.append(AssertionError(f"{kind}: {type(exc).__name__}: {exc}"))

    threads = [threading.Thread(target=send, args=(i, k)) for i, k in enumerate(kinds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not [e for e in errors if isinstance(e, AssertionError)], errors
    posted = [c.store.get_command(i) for i in range(first_id + 1, first_id + 1 + len(kinds))
              if _exists(c, i)]
    assert len(posted) + len(errors) >= len(kinds)       # every send was posted or refused
    status, lr = start, None
    for command in posted:                             # in the order the trainer read them
        assert command.status in ("applied", "rejected"), command
        if command.kind == "pause":
            expect = "applied" if status == "running" else "rejected"
            status = "paused" if expect == "applied" else status
        elif command.kind == "resume":
            expect = "applied" if status == "paused" else "rejected"
            status = "running" if expect == "applied" else status
        else:
            expect, lr = "applied", command.args["hp"]["lr"]
        assert command.status == expect, (command, status)
        event(f"{command.kind} {command.status}")
        if expect == "rejected":
            assert command.error
    assert c.run(run_id).status == status
    if lr is not None:
        assert c.run(run_id).hp["lr"] == lr
    if status == "paused":
        c.resume(run_id)


def _exists(c, command_id: int) -> bool:
    try:
        c.store.get_command(command_id)
    except LookupError:
        return False
    return True
