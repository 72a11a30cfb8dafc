"""Figures are built from hand-made frames in the store's shapes, without a browser."""

from __future__ import annotations

import ast
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from babysit.ui.figures import (
    STATUS_COLORS,
    compare_figure,
    describe_event,
    lineage_figure,
    run_figure,
    run_label,
    smooth,
)

T0 = 1_700_000_000.0
DAY = 200  # steps per day in these runs
REPO = Path(__file__).resolve().parents[2]


def rows(name: str, steps, values, *, branch: int = 0, superseded: bool = False) -> pd.DataFrame:
    steps = np.asarray(steps, dtype=np.int64)
    return pd.DataFrame({
        "step": steps, "day": steps // DAY + 1, "name": name,
        "value": np.asarray(values, dtype=np.float64), "time": T0 + steps * 0.5,
        "branch": branch, "superseded": superseded,
    })


def rolled_back_run() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """A run that went to step 731 on branch 0, was rolled back to day 2 (step 400), went on as branch 1."""
    s0, s1 = np.arange(0, 732), np.arange(401, 1000)
    loss0 = 2.0 * np.exp(-s0 / 300)
    metrics = pd.concat([
        rows("loss", s0[s0 <= 400], loss0[s0 <= 400]),
        rows("loss", s0[s0 > 400], loss0[s0 > 400] + 1.0, superseded=True),
        rows("loss", s1, 2.0 * np.exp(-s1 / 300) - 0.05, branch=1),
        rows("val_loss", [200, 400], [1.5, 1.1]),
        rows("val_loss", [600], [1.4], superseded=True),
        rows("val_loss", [600, 800], [0.9, 0.8], branch=1),
        rows("hp/lr", [0, 300], [0.1, 0.05]),
        rows("hp/lr", [401], [0.05], branch=1),
        rows("hp/momentum", [0], [0.9]),
    ], ignore_index=True)
    events = pd.DataFrame([
        {"id": 1, "step": 0, "day": 1, "time": T0, "kind": "start", "source": "cli",
         "detail": {}, "branch": 0, "superseded": False},
        {"id": 2, "step": 300, "day": 2, "time": T0 + 150, "kind": "nudge", "source": "ui",
         "detail": {"lr": {"old": 0.1, "new": 0.05}}, "branch": 0, "superseded": False},
        {"id": 3, "step": 731, "day": 4, "time": T0 + 365.5, "kind": "rollback", "source": "ui",
         "detail": {"to_day": 2, "to_step": 400, "from_step": 731}, "branch": 1, "superseded": False},
    ])
    checkpoints = pd.DataFrame([
        {"day": 1, "step": 200, "time": T0 + 100, "path": "c/1", "size": 10, "branch": 0,
         "superseded": False, "metrics": {"loss": 1.9}},
        {"day": 2, "step": 400, "time": T0 + 200, "path": "c/2", "size": 10, "branch": 0,
         "superseded": False, "metrics": {"loss": 1.3}},
        {"day": 3, "step": 600, "time": T0 + 300, "path": "c/3a", "size": 10, "branch": 0,
         "superseded": True, "metrics": {"loss": 2.1}},
        {"day": 3, "step": 600, "time": T0 + 400, "path": "c/3b", "size": 10, "branch": 1,
         "superseded": False, "metrics": {"loss": 0.3}},
    ])
    return metrics, events, checkpoints


def trace(fig: go.Figure, name: str) -> go.Scatter:
    found = [t for t in fig.data if t.name == name]
    assert found, f"no trace {name!r} among {[t.name for t in fig.data]}"
    return found[0]


def annotation_texts(fig: go.Figure) -> list[str]:
    return [a.text for a in fig.layout.annotations]


# --- empty and odd input ----------------------------------------------------------------------

EMPTY_METRICS = pd.DataFrame({c: [] for c in ["step", "day", "name", "value", "time", "branch", "superseded"]})


@pytest.mark.parametrize("metrics", [None, EMPTY_METRICS, pd.DataFrame()])
def test_empty_metrics_give_a_no_metrics_figure(metrics) -> None:
    for x in ("step", "day", "time"):
        fig = run_figure(metrics, None, None, x=x)
        assert "No metrics yet" in annotation_texts(fig)
        fig.to_json()


def test_empty_events_checkpoints_and_runs_do_not_raise() -> None:
    metrics, _, _ = rolled_back_run()
    empty_events = pd.DataFrame(columns=["id", "step", "day", "time", "kind", "source", "detail", "branch", "superseded"])
    empty_ckpt = pd.DataFrame(columns=["day", "step", "time", "path", "size", "branch", "superseded", "metrics"])
    for x in ("step", "day", "time"):
        run_figure(metrics, empty_events, empty_ckpt, x=x, smoothing=0.5, log_y=True).to_json()
    assert "No loss yet" in annotation_texts(compare_figure({}, "loss", None))
    assert "No loss yet" in annotation_texts(compare_figure({1: EMPTY_METRICS}, "loss", pd.DataFrame()))
    assert "No runs yet" in annotation_texts(lineage_figure(None))
    assert "No runs yet" in annotation_texts(lineage_figure(pd.DataFrame(columns=["id", "status"])))


def test_all_nan_metric_and_unknown_names_do_not_raise() -> None:
    metrics = rows("loss", range(10), [np.nan] * 10)
    fig = run_figure(metrics, None, None, metric_names=["loss", "nope"], hp_names=["nope"])
    assert len(trace(fig, "nan / inf").x) == 10
    assert "No metrics yet" in annotation_texts(run_figure(metrics, None, None, metric_names=["nope"]))


def test_bad_arguments_are_refused_with_the_value() -> None:
    metrics, _, _ = rolled_back_run()
    with pytest.raises(ValueError, match="'week'"):
        run_figure(metrics, x="week")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="1.5"):
        run_figure(metrics, smoothing=1.5)


# --- the run figure ---------------------------------------------------------------------------

def test_nudge_event_marker_says_what_changed() -> None:
    metrics, events, checkpoints = rolled_back_run()
    fig = run_figure(metrics, events, checkpoints)
    nudge = trace(fig, "nudge")
    assert list(nudge.x) == [300]
    text = nudge.hovertext[0]
    assert "lr 0.1 → 0.05" in text and "(ui, " in text
    assert datetime.fromtimestamp(T0 + 150).strftime("%H:%M:%S") in text
    assert "rollback to the end of day 2 (step 400) from step 731" in trace(fig, "rollback").hovertext[0]
    assert trace(fig, "nudge").marker.symbol != trace(fig, "rollback").marker.symbol


def test_superseded_rows_are_a_faded_dashed_trace_in_the_same_group() -> None:
    metrics, events, checkpoints = rolled_back_run()
    fig = run_figure(metrics, events, checkpoints)
    live = trace(fig, "loss")
    dead = trace(fig, "loss (branch 0, rolled back)")
    assert dead.line.dash == "dash" and live.line.dash in (None, "solid")
    assert dead.line.color == live.line.color
    assert dead.legendgroup == live.legendgroup and dead.showlegend is False
    assert dead.opacity < 1
    # the dashed line leaves the live curve at the last step before the rollback's branch point
    assert dead.x[0] == 400 and dead.x[-1] == 731
    # the live curve is one line across both branches: branch 0 up to 400, then branch 1
    assert live.x[0] == 0 and live.x[-1] == 999
    assert np.all(np.diff(np.asarray(live.x)) > 0)
    at_500 = list(live.x).index(500)
    assert live.y[at_500] == pytest.approx(2.0 * np.exp(-500 / 300) - 0.05)  # branch 1's value


def test_day_lines_come_from_live_checkpoints() -> None:
    metrics, events, checkpoints = rolled_back_run()
    fig = run_figure(metrics, events, checkpoints)
    lines = trace(fig, "days")
    assert list(lines.x) == [200, 200, None, 400, 400, None, 600, 600, None]
    assert list(lines.y) == [0, 1, None] * 3 and lines.yaxis == "y4"  # the full height of the top row
    assert trace(fig, "days (hp)").yaxis == "y5" and fig.layout.yaxis5.overlaying == "y2"
    labels = trace(fig, "day labels")
    assert list(labels.text) == ["day 1", "day 2", "day 3"] and list(labels.x) == [200, 400, 600]
    assert labels.legendgroup == lines.legendgroup

    by_day = run_figure(metrics, events, checkpoints, x="day")
    assert list(trace(by_day, "day labels").x) == [1.0, 2.0, 3.0]
    by_time = run_figure(metrics, events, checkpoints, x="time")
    expected = np.datetime64(datetime.fromtimestamp(T0 + 400).replace(microsecond=0), "ms")
    assert np.datetime64(trace(by_time, "day labels").x[2]) == expected  # the live day 3, not the abandoned one
    assert "days" not in [t.name for t in run_figure(metrics, events, None).data]


def test_x_by_day_and_time() -> None:
    metrics, events, checkpoints = rolled_back_run()
    by_day = run_figure(metrics, events, checkpoints, x="day")
    x = np.asarray(trace(by_day, "loss").x)
    assert x[0] == 0.0 and x[200] == pytest.approx(1.0) and x[100] == pytest.approx(0.5)
    assert x[-1] == pytest.approx(999 / 200)  # past the last checkpoint: at the last day's pace
    assert trace(by_day, "nudge").x[0] == pytest.approx(1.5)

    by_time = run_figure(metrics, events, checkpoints, x="time")
    xt = np.asarray(trace(by_time, "loss").x)
    assert xt.dtype.kind == "M"
    assert xt[0] == np.datetime64(datetime.fromtimestamp(T0), "ms")
    assert by_time.layout.xaxis2.type == "date"


def test_day_axis_without_checkpoints_uses_the_metrics_day_column() -> None:
    metrics, _, _ = rolled_back_run()
    x = np.asarray(trace(run_figure(metrics, None, None, x="day"), "loss").x)
    assert x[200] == pytest.approx(1.0) and x[400] == pytest.approx(2.0)


def test_log_y_sets_the_axis_type() -> None:
    metrics, events, checkpoints = rolled_back_run()
    assert run_figure(metrics, events, checkpoints, log_y=True).layout.yaxis.type == "log"
    assert run_figure(metrics, events, checkpoints).layout.yaxis.type == "linear"


def test_hp_schedule_is_step_lines_held_to_the_last_step_lr_on_log() -> None:
    metrics, events, checkpoints = rolled_back_run()
    fig = run_figure(metrics, events, checkpoints)
    lr = trace(fig, "lr")
    assert lr.line.shape == "hv"
    assert list(lr.x) == [0, 300, 401, 999] and list(lr.y) == [0.1, 0.05, 0.05, 0.05]
    assert fig.layout[lr.yaxis.replace("y", "yaxis")].type == "log"
    momentum = trace(fig, "momentum")
    assert list(momentum.x) == [0, 999] and momentum.yaxis != lr.yaxis
    only_momentum = run_figure(metrics, events, checkpoints, hp_names=["momentum"])
    assert [t.name for t in only_momentum.data if t.name in ("lr", "momentum")] == ["momentum"]


def test_smoothing_changes_the_values_and_keeps_the_raw_curve_faint() -> None:
    metrics, events, checkpoints = rolled_back_run()
    noisy = metrics.copy()
    noise = np.random.default_rng(0).standard_normal(len(noisy)) * 0.1
    noisy["value"] = noisy["value"] + np.where(noisy["name"] == "loss", noise, 0.0)
    plain = trace(run_figure(noisy, events, checkpoints), "loss")
    fig = run_figure(noisy, events, checkpoints, smoothing=0.9)
    smoothed, raw = trace(fig, "loss"), trace(fig, "loss (raw)")
    np.testing.assert_array_equal(raw.y, plain.y)
    assert raw.opacity < 0.5 and raw.showlegend is False
    assert not np.allclose(smoothed.y, plain.y)
    assert np.std(np.diff(smoothed.y)) < np.std(np.diff(plain.y)) / 3


def test_smooth_matches_tensorboard() -> None:
    values = [1.0, 4.0, float("nan"), 2.0, float("inf"), 3.0, 3.5]
    weight = 0.6
    expected, last, n = [], 0.0, 0
    for v in values:  # TensorBoard's resmoothDataset, line for line
        if not np.isfinite(v):
            expected.append(v)
            continue
        last = last * weight + (1 - weight) * v
        n += 1
        expected.append(last / (1 - weight**n))
    np.testing.assert_allclose(smooth(values, weight), expected)
    np.testing.assert_array_equal(smooth(values, 0.0), values)


def test_nonfinite_values_are_red_crosses_at_the_top() -> None:
    metrics, events, checkpoints = rolled_back_run()
    loss = metrics["name"] == "loss"
    metrics.loc[loss & (metrics["step"] == 650) & metrics["superseded"], "value"] = np.nan
    metrics.loc[loss & (metrics["step"] == 900), "value"] = np.inf
    fig = run_figure(metrics, events, checkpoints, log_y=True)
    crosses = trace(fig, "nan / inf")
    assert list(crosses.x) == [900, 650]
    assert crosses.marker.symbol == "x"
    assert all(y > 0.9 for y in crosses.y) and crosses.yaxis == "y4"
    assert fig.layout.yaxis4.range == (0, 1) and fig.layout.yaxis4.overlaying == "y"
    assert "loss: inf at step 900" in crosses.hovertext[0]
    assert "nan at step 650 (rolled back)" in crosses.hovertext[1]
    # the curve itself has a gap there, not an inf that would wreck the y range
    live = trace(fig, "loss")
    assert np.isnan(np.asarray(live.y)[list(live.x).index(900)])


def test_long_run_is_downsampled_keeping_its_spike_and_json_small() -> None:
    n = 100_000
    loss = 1.0 + 0.01 * np.random.default_rng(1).standard_normal(n)
    loss[77_777] = 30.0
    metrics = rows("loss", np.arange(n), loss)
    fig = run_figure(metrics, None, None, max_points=1500)
    live = trace(fig, "loss")
    assert len(live.x) <= 1500 and 77_777 in list(live.x) and max(live.y) == 30.0
    assert len(fig.to_json()) < 200_000
    assert len(trace(run_figure(metrics, None, None, max_points=None), "loss").x) == n


def test_val_metrics_are_markers_and_lines_in_their_train_colour() -> None:
    metrics, events, checkpoints = rolled_back_run()
    fig = run_figure(metrics, events, checkpoints)
    val, loss = trace(fig, "val_loss"), trace(fig, "loss")
    assert val.mode == "lines+markers" and loss.mode == "lines"
    assert val.line.color == loss.line.color
    assert [t.name for t in fig.data][:2] == ["loss", "loss (branch 0, rolled back)"]


# --- compare and lineage ----------------------------------------------------------------------

def runs_frame() -> pd.DataFrame:
    return pd.DataFrame([
        {"id": 1, "project": "p", "name": "base", "status": "running", "day": 5, "step": 999,
         "hp": {"lr": 0.1, "momentum": 0.9}, "parent_id": None, "parent_day": None,
         "heartbeat_age": 1.0, "created": T0},
        {"id": 3, "project": "p", "name": "fork", "status": "paused", "day": 5, "step": 999,
         "hp": {"momentum": 0.9, "lr": 0.05}, "parent_id": 1, "parent_day": 2,
         "heartbeat_age": 30.0, "created": T0 + 500},
        {"id": 4, "project": "p", "name": "fork of fork", "status": "diverged", "day": 4, "step": 700,
         "hp": '{"lr": 0.5}', "parent_id": 3, "parent_day": 3, "heartbeat_age": 99.0,
         "created": T0 + 600},
        {"id": 5, "project": "p", "name": "other", "status": "finished", "day": 9, "step": 1800,
         "hp": {}, "parent_id": None, "parent_day": None, "heartbeat_age": None, "created": T0 + 10},
    ])


def test_compare_legend_shows_each_runs_hyperparameters() -> None:
    metrics, _, _ = rolled_back_run()
    fork = rows("loss", np.arange(401, 900), np.linspace(1.0, 0.5, 499))
    fig = compare_figure({1: metrics, 3: fork, "baseline": fork}, "loss", runs_frame())
    names = [t.name for t in fig.data]
    assert names == ["#1 lr=0.1 m=0.9", "#3 lr=0.05 m=0.9", "baseline"]
    # only live rows, aligned by step; the fork starts where it forked
    first = trace(fig, "#1 lr=0.1 m=0.9")
    assert first.x[-1] == 999
    assert first.y[list(first.x).index(600)] == pytest.approx(2.0 * np.exp(-2) - 0.05)  # not branch 0's
    assert trace(fig, "#3 lr=0.05 m=0.9").x[0] == 401
    assert len({t.line.color for t in fig.data}) == 3


def test_compare_log_y_smoothing_and_nonfinite() -> None:
    a = rows("loss", range(100), np.linspace(2, 1, 100))
    a.loc[50, "value"] = np.nan
    fig = compare_figure({1: a}, "loss", runs_frame(), log_y=True, smoothing=0.5)
    assert fig.layout.yaxis.type == "log"
    assert "nan at step 50" in trace(fig, "nan / inf").hovertext[0]
    plain = compare_figure({1: a}, "loss", runs_frame())
    assert not np.allclose(np.asarray(fig.data[0].y)[:50], np.asarray(plain.data[0].y)[:50])


def test_run_label() -> None:
    assert run_label({"id": 3, "hp": {"momentum": 0.9, "lr": 0.05}}) == "#3 lr=0.05 m=0.9"
    assert run_label({"id": 4, "hp": '{"lr": 3e-05, "weight_decay": 0.0001}'}) == "#4 lr=3e-05 wd=0.0001"


def test_lineage_edges_match_runs_with_a_parent() -> None:
    runs = runs_frame()
    fig = lineage_figure(runs)
    labels = trace(fig, "fork days")
    assert len(labels.x) == runs["parent_id"].notna().sum() == 2
    assert sorted(labels.text) == ["end of day 2", "end of day 3"]
    edges = trace(fig, "forks")
    assert list(edges.x).count(None) == 2
    ids = sorted(i for t in fig.data if t.customdata is not None for i in t.customdata)
    assert ids == [1, 3, 4, 5]
    assert trace(fig, "diverged").marker.color == STATUS_COLORS["diverged"]
    # a fork sits one generation right of its parent, below it
    x = {t.customdata[i]: (t.x[i], t.y[i]) for t in fig.data if t.customdata is not None for i in range(len(t.x))}
    assert x[3][0] == x[1][0] + 1 and x[4][0] == x[3][0] + 1 and x[3][1] < x[1][1]


def test_lineage_survives_a_missing_parent_and_a_cycle() -> None:
    runs = runs_frame()
    runs.loc[runs["id"] == 3, "parent_id"] = 42  # parent not in this view
    fig = lineage_figure(runs)
    assert len(trace(fig, "fork days").x) == 1  # only #4 -> its parent #3 remains an edge
    hover = [h for t in fig.data if t.customdata is not None for h in t.hovertext]
    assert any("forked from #42 (not shown)" in h for h in hover)

    loop = pd.DataFrame({"id": [1, 2], "status": ["running", "running"], "parent_id": [2, 1], "parent_day": [1, 1]})
    fig = lineage_figure(loop)
    assert sorted(trace(fig, "running").customdata) == [1, 2]


def test_describe_event_kinds() -> None:
    assert describe_event("fork", {"child": 7, "day": 2}, "ui") == "fork child #7 at the end of day 2 (ui)"
    assert describe_event("diverged", {"metric": "loss", "value": float("nan")}, "monitor") == "diverged loss = nan (monitor)"
    assert describe_event("nudge", '{"momentum": {"old": 0.9, "new": 0.8}}', "api") == "nudge momentum 0.9 → 0.8 (api)"
    assert describe_event("pause", None, None) == "pause"
    day_before = describe_event("stop", {}, "cli", T0, ref_time=T0 + 86_400 * 2)
    assert datetime.fromtimestamp(T0).strftime("%Y-%m-%d") in day_before


@pytest.mark.parametrize("module", ["__init__.py", "downsample.py", "figures.py", "fmt.py", "frames.py",
                                    "plotting.py", "compare_figures.py", "lineage_figures.py"])
def test_figure_modules_do_not_import_streamlit(module: str) -> None:
    # Read the source rather than import: the package must import where Streamlit is absent.
    tree = ast.parse((REPO / "babysit" / "ui" / module).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert not {name for name in imported if name.split(".")[0] == "streamlit"}


def test_the_compare_legend_shows_the_lr_the_optimizer_uses_not_the_configured_one():
    from babysit.ui.fmt import run_label
    run = {"id": 4, "hp": {"lr": 0.05, "momentum": 0.9, "batch_size": 64},
           "effective": {"lr": 0.0125, "momentum": 0.9, "groups": [{"lr": 0.0125}]}}
    assert run_label(run) == "#4 lr=0.0125 m=0.9 bs=64"
    assert run_label({"id": 4, "hp": {"lr": 0.05}, "effective": {}}) == "#4 lr=0.05"
