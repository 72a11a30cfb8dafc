"""Fast tests of the pieces: day lengths, value validation, the store, checkpoints."""

from __future__ import annotations

import math
import os
import pickle

import pytest
import sqlalchemy as sa
import torch

import babysit
from babysit import checkpoint as ckpt
from babysit.day import DaySpec
from babysit.errors import CheckpointError, InvalidValue, StoreError
from babysit.hparams import check_updates, check_value, parse_assignments
from babysit.store import Store
from babysit.store import schema as S


@pytest.mark.parametrize("text,unit,amount", [
    ("200 steps", "steps", 200), ("1 step", "steps", 1), (50, "steps", 50),
    ("2 epochs", "epochs", 2), ("30s", "seconds", 30.0), ("10 min", "seconds", 600.0),
    ("24h", "seconds", 86400.0), ("1.5h", "seconds", 5400.0),
])
def test_day_lengths(text, unit, amount):
    spec = DaySpec.parse(text)
    assert (spec.unit, spec.amount) == (unit, amount)
    assert DaySpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text", ["", "0 steps", "-3 steps", "1.5 steps", "fortnight", "3 parsecs",
                                  True, None, 2.5])
def test_bad_day_lengths(text):
    with pytest.raises(InvalidValue, match="day"):
        DaySpec.parse(text)


@pytest.mark.parametrize("key,value", [
    ("lr", float("nan")), ("lr", math.inf), ("lr", -1.0), ("lr", 0), ("lr", "0.1"), ("lr", True),
    ("lr", None), ("momentum", 1.0), ("momentum", 2), ("clip", -0.5), ("clip", -math.inf),
    ("clip", 1e300),
])
def test_bad_values_name_the_value(key, value):
    with pytest.raises(InvalidValue) as info:
        check_value(key, value)
    assert key in str(info.value) and repr(value) in str(info.value)


def test_updates_are_checked_as_a_whole():
    assert check_updates({"lr": 0.1, "batch": 32}, {"lr": 0.2, "batch": 64}) == {"lr": 0.1, "batch": 32}
    with pytest.raises(InvalidValue, match="whole number"):
        check_updates({"batch": 32.5}, {"batch": 64})
    with pytest.raises(InvalidValue, match="strict"):
        check_updates({"dropout": 0.1}, {"lr": 0.1}, strict=True)
    with pytest.raises(InvalidValue, match="no momentum"):
        check_updates({"momentum": 0.9}, {}, optimizer_keys=["lr"])
    with pytest.raises(InvalidValue, match="not a number"):
        check_updates({"opt": 1.0}, {"opt": "sgd"})
    assert parse_assignments(["lr=0.05", "batch=64"]) == {"lr": 0.05, "batch": 64}
    for bad in (["lr"], ["lr=fast"], ["lr=nan"], ["=3"], ["lr=-1"]):
        with pytest.raises(InvalidValue):
            parse_assignments(bad)


def test_store_keeps_nan_and_inf_and_refuses_a_newer_schema(tmp_path):
    store = Store.open(tmp_path)
    run_id = store.create_run(project="p", name="n", config={}, hp={}, day_spec="10 steps")
    rows = [(0, 1, "loss", 1.0, 0.0, 0), (1, 1, "loss", math.nan, 0.0, 0),
            (2, 1, "loss", math.inf, 0.0, 0), (3, 1, "loss", -math.inf, 0.0, 0)]
    store.insert_metrics(run_id, rows)
    values = store.metrics(run_id).value.tolist()
    assert values[0] == 1.0 and math.isnan(values[1]) and values[2:] == [math.inf, -math.inf]
    store.add_event(run_id, 0, 1, "diverged", "trainer", {"value": math.nan}, 0)
    assert store.events(run_id).detail.iloc[0] == {"value": "nan"}
    journal = store.read(lambda c: c.exec_driver_sql("PRAGMA journal_mode").scalar())
    assert journal == "wal"
    store.close()
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'babysit.db'}")
    with engine.begin() as conn:                 # as a later babysit would have written it
        conn.execute(sa.update(S.meta).values(value=str(S.SCHEMA_VERSION + 1)))
    engine.dispose()
    with pytest.raises(StoreError, match="newer"):
        Store.open(tmp_path)
    with pytest.raises(StoreError, match="no babysit store"):
        Store.open(tmp_path / "missing", create=False)


def test_unknown_runs_are_named(tmp_path):
    client = babysit.Client(tmp_path)
    for bad in (7, "7", "nobody", "", None, 1.5):
        with pytest.raises(babysit.UnknownRun):
            client.run(bad)


def _payload():
    return {"format": ckpt.FORMAT, "step": 3, "day": 1, "branch": 0,
            "state": {"w": torch.arange(1000.0)}}


def test_checkpoint_roundtrip_and_manifest(tmp_path):
    path = tmp_path / "day0001.b0.pt"
    size, sha = ckpt.save(path, _payload())
    manifest = ckpt.verify(path, sha)
    assert manifest["size"] == size and manifest["torch"] == torch.__version__
    assert torch.equal(ckpt.load(path)["state"]["w"], torch.arange(1000.0))
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_truncated_or_flipped_checkpoints_are_rejected_before_unpickling(tmp_path):
    path = tmp_path / "day0001.b0.pt"
    ckpt.save(path, _payload())
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        ckpt.load(path)
    path.write_bytes(bytes(data[:100]))
    with pytest.raises(CheckpointError, match="bytes"):
        ckpt.load(path)
    path.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="manifest"):
        ckpt.load(path)


class _Payload:
    def __reduce__(self):
        return (os.system, ("touch /tmp/babysit-pwned-by-checkpoint",))


def test_a_hostile_checkpoint_never_runs_its_code(tmp_path):
    marker = "/tmp/babysit-pwned-by-checkpoint"
    if os.path.exists(marker):
        os.unlink(marker)
    path = tmp_path / "day0001.b0.pt"
    ckpt.save(path, _payload())
    torch.save({"format": ckpt.FORMAT, "evil": _Payload()}, path)   # swapped in after the fact
    # even with a manifest that matches, weights_only refuses the payload
    import hashlib
    import json
    manifest = json.loads(path.with_suffix(".json").read_text())
    manifest.update(size=path.stat().st_size, sha256=hashlib.sha256(path.read_bytes()).hexdigest())
    path.with_suffix(".json").write_text(json.dumps(manifest))
    with pytest.raises(CheckpointError, match="safely"):
        ckpt.load(path)
    assert not os.path.exists(marker)
    with open(path, "wb") as f:
        pickle.dump(_Payload(), f)
    with pytest.raises(CheckpointError):
        ckpt.load(path)
    assert not os.path.exists(marker)


@pytest.mark.parametrize("bad", ["/etc/passwd", "../x.pt", "runs/../../x.pt", "", "link/x.pt"])
def test_paths_cannot_escape_the_store_root(tmp_path, bad):
    root = tmp_path / "root"
    root.mkdir()
    (root / "link").symlink_to(tmp_path)
    with pytest.raises(CheckpointError):
        ckpt.safe_path(root, bad)
    assert ckpt.safe_path(root, "runs/1/day0001.b0.pt") == (root / "runs/1/day0001.b0.pt").resolve()


def test_in_process_run_records_days_and_metrics(tmp_path):
    run = babysit.init(project="unit", config={"lr": 0.1, "momentum": 0.9}, day="10 steps",
                       root=tmp_path)
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    run.attach(model=model, optimizer=opt)
    with run:
        for _ in run.loop(steps=35):
            run.log(loss=1.0 / (run.step + 1))
    client = babysit.Client(tmp_path)
    assert client.run(run.id).status == "finished"
    days = client.checkpoints(run.id)
    assert days.day.tolist() == [0, 1, 2, 3] and days.step.tolist() == [0, 10, 20, 30]
    assert days.metrics.iloc[1]["loss"] == pytest.approx(sum(1 / (s + 1) for s in range(10)) / 10)
    assert len(client.metrics(run.id, ["loss"])) == 35
    assert run.hp["lr"] == 0.1
    with pytest.raises(TypeError):
        run.hp["lr"] = 1.0   # nudges go through commands, not assignment
    run.finish()            # twice is fine


def test_a_v2_store_is_migrated_to_v3_in_place(tmp_path):
    """runs.resume becomes runs.start_from; effective, note and tags appear; lifecycle events
    are renamed to the past tense (start -> started, ...)."""
    path = tmp_path / "babysit.db"
    engine = sa.create_engine(f"sqlite:///{path}")
    with engine.begin() as conn:                 # the v2 layout, as babysit 0.1 wrote it
        S.metadata.create_all(conn)
        for column in ("effective", "note", "tags"):
            conn.exec_driver_sql(f"ALTER TABLE runs DROP COLUMN {column}")
        conn.exec_driver_sql("ALTER TABLE runs RENAME COLUMN start_from TO resume")
        conn.execute(sa.insert(S.meta).values(key="schema_version", value="2"))
        conn.exec_driver_sql(
            "INSERT INTO runs (project, name, status, config, hp, strict, day_spec, day, step, "
            "branch, created, reproducible, resume) VALUES ('old', 'old-1', 'crashed', '{}', "
            "'{\"lr\": 0.1}', 0, '20 steps', 3, 60, 0, 1.0, 1, '{\"path\": \"runs/1/x.pt\"}')")
        for kind in ("start", "restart", "finish", "crash", "nudge"):
            conn.exec_driver_sql(
                "INSERT INTO events (run_id, step, day, time, kind, source, detail, branch, "
                f"superseded) VALUES (1, 0, 1, 1.0, '{kind}', 'trainer', '{{}}', 0, 0)")
    engine.dispose()
    store = Store.open(tmp_path)
    run = store.get_run(1)
    assert run.start_from == {"path": "runs/1/x.pt"} and run.hp == {"lr": 0.1}
    assert (run.effective, run.note, run.tags) == ({}, "", [])
    assert store.events(1).kind.tolist() == ["started", "restarted", "finished", "crashed",
                                             "nudge"]
    new = store.create_run(project="p", name="n", config={}, hp={}, day_spec="1 steps")
    assert store.get_run(new).effective == {}
    store.close()
