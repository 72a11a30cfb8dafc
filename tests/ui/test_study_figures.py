"""The Study page's figures, built from hand-made frames in the Client's shapes, no browser."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from plotly.colors import sample_colorscale

from babysit.study.space import Param, Space
from babysit.ui.study_figures import (
    COLORSCALE,
    NO_VALUE_COLOR,
    family_tree_figure,
    hp_axis,
    hp_scatter_figure,
    importance_figure,
    objective_colors,
    parallel_figure,
    study_curves_figure,
)

SPACE = Space.from_dict({
    "lr": {"scale": "log", "low": 1e-4, "high": 1.0},
    "momentum": {"scale": "one_minus_log", "low": 0.9, "high": 0.999},
    "batch_size": {"scale": "pow2", "low": 16, "high": 256},
    "dropout": {"scale": "linear", "low": 0.0, "high": 0.5},
    "opt": {"choices": ["sgd", "adam"]},
})
DARK, PALE = (sample_colorscale(COLORSCALE, [t])[0] for t in (0.0, 1.0))


def study_runs() -> pd.DataFrame:
    return pd.DataFrame({
        "id": [1, 2, 3, 4],
        "name": ["a", "b", "c", "d"],
        "status": ["finished", "finished", "running", "crashed"],
        "lr": [1e-3, 1e-2, 0.1, 0.5],
        "momentum": [0.9, 0.99, 0.999, 0.95],
        "batch_size": [16, 64, 256, 32],
        "dropout": [0.0, 0.1, 0.5, 0.2],
        "opt": ["sgd", "adam", "adam", "sgd"],
        "objective": [0.9, 0.2, 0.5, math.nan],
        "day": [4, 4, 2, 1],
        "parent": [None, None, None, None],
    })


def curve(values, steps=None) -> pd.DataFrame:
    steps = np.arange(len(values)) * 100 if steps is None else np.asarray(steps)
    return pd.DataFrame({"step": steps, "day": steps // 100 + 1, "name": "val_loss",
                         "value": np.asarray(values, dtype=float), "superseded": False})


# ----------------------------------------------------------------------------- colours


def test_colour_is_dark_for_the_best_run_whatever_the_direction():
    assert objective_colors([0.2, 0.9, math.nan], "min") == [DARK, PALE, NO_VALUE_COLOR]
    assert objective_colors([0.2, 0.9], "max") == [PALE, DARK]
    assert objective_colors([0.5], "min") != [NO_VALUE_COLOR]       # one run is still coloured


def test_one_run_that_blew_up_does_not_wash_out_the_colours():
    values = [0.10, 0.12, 0.15, 0.2, 0.25, 60.0]
    colors = objective_colors(values, "min")
    assert colors[0] == DARK and colors[5] == PALE
    assert len(set(colors)) == 6                   # the five sane runs stay apart
    # the scale ends at Tukey's upper fence, q3 + 1.5 IQR = 0.2375 + 1.5 * 0.11, not at 60
    fig = hp_scatter_figure(pd.DataFrame({"id": range(6), "lr": [0.01] * 6, "objective": values}),
                            SPACE["lr"])
    assert (fig.data[0].marker.cmin, fig.data[0].marker.cmax) == pytest.approx((0.1, 0.4025))


def test_curves_are_coloured_by_final_objective_with_a_colour_bar():
    runs = study_runs()
    curves = {1: curve([1.5, 1.1, 0.9]), 2: curve([1.4, 0.5, 0.2]), 3: curve([1.2, 0.5]),
              4: curve([1.3, math.nan])}
    fig = study_curves_figure(curves, runs, "val_loss", "min")
    lines = {t.name: t for t in fig.data if t.name and t.name.startswith("#")}
    assert lines["#2"].line.color == DARK            # best (0.2)
    assert lines["#1"].line.color == PALE            # worst (0.9)
    assert lines["#4"].line.color == NO_VALUE_COLOR  # no finite objective
    assert lines["#2"].line.width > lines["#1"].line.width
    assert fig.data[-2].name == "#2"                 # the best drawn on top of the others
    bar = [t for t in fig.data if t.marker is not None and t.marker.showscale]
    assert len(bar) == 1 and bar[0].marker.colorbar.title.text == "final val_loss"
    assert (bar[0].marker.cmin, bar[0].marker.cmax) == (0.2, 0.9)
    assert "best: #2 b" in fig.layout.title.text

    # with a best column (best day-end value) the highlight follows it; colours stay final
    by_best = study_curves_figure(curves, runs.assign(best=[0.1, 0.2, 0.5, math.nan]), "val_loss")
    lines = {t.name: t for t in by_best.data if t.name and t.name.startswith("#")}
    assert lines["#1"].line.width > lines["#2"].line.width and lines["#1"].line.color == PALE
    assert "best: #1 a (val_loss 0.1)" in by_best.layout.title.text

    flipped = study_curves_figure(curves, runs, "val_loss", "max")
    lines = {t.name: t for t in flipped.data if t.name and t.name.startswith("#")}
    assert lines["#1"].line.color == DARK and lines["#2"].line.color == PALE


def test_log_y_axes_label_their_ticks_in_full():
    runs = pd.DataFrame({"id": [1, 2], "lr": [0.01, 0.1], "objective": [0.15, 60.0]})
    fig = hp_scatter_figure(runs, SPACE["lr"], log_y=True)
    assert fig.layout.yaxis.type == "log"
    assert list(fig.layout.yaxis.ticktext) == ["0.2", "0.5", "1", "2", "5", "10", "20", "50"]
    assert list(fig.layout.yaxis.tickvals)[2:4] == pytest.approx([1, 2])
    curves = study_curves_figure({1: curve([0.3, 0.2, 0.15])}, runs, "val_loss", log_y=True)
    assert list(curves.layout.yaxis.ticktext) == ["0.2", "0.3"]
    assert hp_scatter_figure(runs, SPACE["lr"]).layout.yaxis.type == "linear"


def test_curves_are_downsampled_and_keep_spikes():
    values = np.full(20_000, 0.5)
    values[12_345] = 9.0
    fig = study_curves_figure({1: curve(values, np.arange(20_000))},
                              pd.DataFrame({"id": [1], "objective": [0.5]}), "val_loss",
                              max_points=300)
    line = fig.data[0]
    assert len(line.x) <= 300
    assert 9.0 in list(line.y)


def test_curves_skip_rolled_back_rows_and_other_metrics():
    df = pd.concat([curve([1.0, 0.8]), curve([5.0, 6.0]).assign(superseded=True),
                    curve([3.0, 3.0]).assign(name="loss")])
    fig = study_curves_figure({1: df}, pd.DataFrame({"id": [1], "objective": [0.8]}), "val_loss")
    assert list(fig.data[0].y) == [1.0, 0.8]
    empty = study_curves_figure({}, None, "val_loss")
    assert empty.layout.annotations[0].text == "No val_loss yet"


# ----------------------------------------------------------------------------- scales


def test_hp_axis_ticks_are_in_the_users_units():
    lr = hp_axis(SPACE["lr"])
    assert lr.range == (-4.0, 0.0) and lr.position(1e-2) == pytest.approx(-2.0)
    assert lr.ticktext == ("0.0001", "0.001", "0.01", "0.1", "1")
    momentum = hp_axis(SPACE["momentum"])
    assert momentum.ticktext == ("0.9", "0.99", "0.999")
    assert [momentum.position(b) for b in (0.9, 0.99)] == pytest.approx([1.0, 2.0])
    batch = hp_axis(SPACE["batch_size"])
    assert batch.ticktext == ("16", "32", "64", "128", "256") and batch.position(64) == 6
    narrow = hp_axis(Param("lr", "log", 0.01, 0.05))       # under a decade: 1-2-5 ticks
    assert narrow.ticktext == ("0.01", "0.02", "0.05")
    assert hp_axis(SPACE["opt"]).ticktext == ("sgd", "adam")


def test_hp_scatter_log_axis_for_log_params():
    fig = hp_scatter_figure(study_runs(), SPACE["lr"], "val_loss", "min")
    assert fig.layout.xaxis.type == "log"
    assert tuple(fig.layout.xaxis.range) == pytest.approx((-4.16, 0.16))
    assert list(fig.data[0].x) == [1e-3, 1e-2, 0.1]        # the NaN run is left out
    assert [c[0] for c in fig.data[0].customdata] == [1, 2, 3]
    assert fig.data[0].customdata[1][1] == 1e-2
    assert fig.layout.dragmode == "select"
    assert list(fig.data[0].marker.color) == [0.9, 0.2, 0.5]      # coloured by objective


def test_hp_scatter_one_minus_log_is_one_minus_beta_on_a_log_axis_labelled_in_beta():
    fig = hp_scatter_figure(study_runs(), SPACE["momentum"], "val_loss", "min")
    xaxis = fig.layout.xaxis
    assert xaxis.type == "log"
    assert list(fig.data[0].x) == pytest.approx([0.1, 0.01, 0.001])
    assert list(xaxis.ticktext) == ["0.9", "0.99", "0.999"]
    assert list(xaxis.tickvals) == pytest.approx([0.1, 0.01, 0.001])
    assert xaxis.range[0] > xaxis.range[1]             # reversed: the largest beta on the right
    assert fig.data[0].customdata[1][1] == 0.99        # selections give back beta itself


def test_hp_scatter_pow2_linear_and_choice_axes():
    batch = hp_scatter_figure(study_runs(), SPACE["batch_size"])
    assert batch.layout.xaxis.type == "log"
    assert list(batch.layout.xaxis.ticktext) == ["16", "32", "64", "128", "256"]
    dropout = hp_scatter_figure(study_runs(), SPACE["dropout"])
    assert dropout.layout.xaxis.type in (None, "linear", "-")
    opt = hp_scatter_figure(study_runs(), SPACE["opt"])
    assert opt.layout.xaxis.type == "category" and list(opt.data[0].x) == ["sgd", "adam", "adam"]


def test_parallel_coordinates_plot_log10_with_readable_ticks():
    fig = parallel_figure(study_runs(), SPACE, "val_loss", "min")
    dims = {d.label: d for d in fig.data[0].dimensions}
    assert list(dims) == ["lr (log)", "momentum (log of 1-β)", "batch_size (log2)", "dropout",
                          "opt", "val_loss"]
    assert list(dims["lr (log)"].values) == pytest.approx([-3, -2, -1])   # runs 1-3: finite
    assert list(dims["lr (log)"].ticktext) == ["0.0001", "0.001", "0.01", "0.1", "1"]
    assert list(dims["momentum (log of 1-β)"].values) == pytest.approx([1, 2, 3])
    assert list(dims["batch_size (log2)"].values) == [4, 6, 8]
    assert list(dims["opt"].values) == [0, 1, 1] and list(dims["opt"].ticktext) == ["sgd", "adam"]
    assert list(dims["val_loss"].values) == [0.9, 0.2, 0.5]
    assert fig.data[0].line.showscale and list(fig.data[0].line.color) == [0.9, 0.2, 0.5]
    logged = parallel_figure(study_runs().assign(objective=[0.01, 1.0, 0.1, 5.0]), SPACE, "loss",
                             log_y=True).data[0].dimensions[-1]
    assert logged.label == "loss (log)"
    assert list(logged.values) == pytest.approx([-2, 0, -1, math.log10(5)])
    assert list(logged.ticktext) == ["0.01", "0.1", "1"]
    assert parallel_figure(study_runs().assign(objective=math.nan), SPACE) \
        .layout.annotations[0].text == "No run has a finite objective yet"


# ----------------------------------------------------------------------------- family tree


def exploit(run_id, from_run, from_day, day, **detail) -> dict:
    return {"run_id": run_id, "kind": "exploit", "step": day * 100, "day": day,
            "source": "autopilot",
            "detail": {"from_run": from_run, "from_day": from_day, **detail}}


def test_family_tree_draws_an_edge_per_exploit_event():
    runs = study_runs()
    events = pd.DataFrame([
        exploit(1, 2, 2, 3, explore={"lr": {"old": 1e-3, "new": 0.012}}, reason="bottom 25%"),
        exploit(4, 3, 1, 2),
        {"run_id": 2, "kind": "nudge", "step": 5, "day": 1, "source": "ui", "detail": {}},
        exploit(3, 99, 1, 2),                 # a source outside the study: no edge
    ])
    fig = family_tree_figure(runs, events)
    by_name = {t.name: t for t in fig.data}
    edges = by_name["exploits"]
    # rows are runs in id order drawn downwards: run 1 at y=0, run 2 at y=-1, ...
    segments = [(edges.x[i], edges.x[i + 1], edges.y[i], edges.y[i + 1])
                for i in range(0, len(edges.x), 3)]
    assert segments == [(2, 2, -1, 0), (1, 1, -2, -3)]
    assert list(edges.marker.symbol) == ["circle", "arrow", "circle"] * 2   # head at the target
    assert edges.marker.angleref == "previous"
    hover = edges.hovertext[1]
    assert "#1 copied #2's day 2 weights (autopilot)" in hover
    assert "lr 0.001 → 0.012" in hover and "bottom 25%" in hover
    assert "forks" not in by_name


def test_family_tree_spreads_exploits_of_the_same_day():
    events = pd.DataFrame([exploit(1, 2, 2, 3), exploit(4, 3, 2, 3)])
    edges = {t.name: t for t in family_tree_figure(study_runs(), events).data}["exploits"]
    assert list(edges.x[:2]) == pytest.approx([1.94, 1.94])
    assert list(edges.x[3:5]) == pytest.approx([2.06, 2.06])


def test_family_tree_shows_forks_inside_the_study_and_colours_runs():
    runs = study_runs().assign(parent_id=[None, 1, None, None], parent_day=[None, 2, None, None])
    fig = family_tree_figure(runs, pd.DataFrame())
    by_name = {t.name: t for t in fig.data}
    assert list(by_name["forks"].x[:2]) == [2, 2] and list(by_name["forks"].y[:2]) == [0, -1]
    nodes = by_name["run"]
    assert list(nodes.customdata) == [1, 2, 3, 4]
    assert nodes.marker.color[1] == DARK and nodes.marker.color[3] == NO_VALUE_COLOR
    assert family_tree_figure(None, None).layout.annotations[0].text == "No runs yet"


def test_importance_bars_most_important_on_top():
    fig = importance_figure({"lr": 0.7, "momentum": 0.25, "opt": 0.05})
    assert list(fig.data[0].y) == ["opt", "momentum", "lr"]
    assert list(fig.data[0].text) == ["5%", "25%", "70%"]
    assert importance_figure({}).layout.annotations[0].text == "No importance yet"
