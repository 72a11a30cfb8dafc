"""The Run page's small multiples as plain functions: panels, hyperparameter rows, days."""

from __future__ import annotations

import numpy as np
import pandas as pd

from babysit.ui import prefs
from babysit.ui.panels import group_panels, panels_figure, thin_days


def rows(name, steps, values, *, branch=0, superseded=False) -> pd.DataFrame:
    steps = np.asarray(steps)
    return pd.DataFrame({"step": steps, "name": name, "value": np.asarray(values, float),
                         "time": 1.7e9 + steps, "day": steps // 100 + 1, "branch": branch,
                         "superseded": superseded})


def metrics() -> pd.DataFrame:
    s = np.arange(0, 300)
    return pd.concat([
        rows("loss", s, 2.0 / (1 + s)), rows("val_loss", s[::50], 2.5 / (1 + s[::50])),
        rows("val_acc", s[::50], np.linspace(0.1, 0.9, 6)),
        rows("hp/lr", s, np.where(s < 150, 0.1, 0.05)), rows("hp/momentum", s, 0.9),
        rows("hp/batch_size", s, 64),
    ], ignore_index=True)


def axes_of(fig, name: str) -> str:
    return next(t.yaxis for t in fig.data if t.name == name)


def test_one_panel_per_metric_each_with_its_own_axis():
    fig = panels_figure(metrics(), log_y={"loss"})
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["loss", "val_loss", "val_acc", "lr", "1 − momentum"]  # bs never changed
    used = {axes_of(fig, n) for n in ("loss", "val_loss", "val_acc")}
    assert len(used) == 3                                 # val_acc is not on the loss axis
    assert fig.layout.yaxis.type == "log" and fig.layout.yaxis2.type == "linear"
    assert {t.xaxis for t in fig.data} == {"x"}           # one shared x axis
    domains = [fig.layout[f"yaxis{i}" if i > 1 else "yaxis"].domain for i in range(1, 6)]
    assert all(a[0] >= b[1] for a, b in zip(domains, domains[1:], strict=False))  # no overlap


def test_hp_rows_lr_log_momentum_one_minus_beta_with_nudges():
    events = pd.DataFrame({"kind": ["nudge"], "step": [150], "time": [1.7e9 + 150],
                           "source": ["ui"], "superseded": [False],
                           "detail": [{"lr": {"old": 0.1, "new": 0.05}}]})
    fig = panels_figure(metrics(), events, panels=["loss"])
    lr_axis = fig.layout.yaxis2
    assert lr_axis.type == "log"
    momentum = next(t for t in fig.data if t.name == "momentum")
    assert np.allclose(momentum.y, 0.1) and fig.layout.yaxis3.type == "log"   # 1 − 0.9
    marker = next(t for t in fig.data if t.name == "lr nudges")
    assert list(marker.y) == [0.05] and marker.yaxis == "y2"


def test_live_branch_only_until_asked():
    old = rows("loss", np.arange(200, 400), 5.0, branch=0, superseded=True)
    df = pd.concat([metrics(), old], ignore_index=True)
    live = panels_figure(df, panels=["loss"], hp=[])
    assert max(max(t.x) for t in live.data if t.name and t.name.startswith("loss")) == 299
    both = panels_figure(df, panels=["loss"], hp=[], show_superseded=True)
    assert any("rolled back" in (t.name or "") for t in both.data)


def test_picker_order_is_the_panel_order():
    fig = panels_figure(metrics(), panels=["val_acc", "loss"], hp=[])
    assert [a.text for a in fig.layout.annotations] == ["val_acc", "loss"]


def test_families_and_day_thinning():
    assert group_panels(["val_acc", "train/acc", "loss", "val_loss", "train/loss"]) == [
        ("loss", ["loss"]), ("train", ["train/loss", "train/acc"]),
        ("val", ["val_loss", "val_acc"])]
    days = [(d, d * 10) for d in range(1, 71)]
    assert len(thin_days(days, 40)) <= 40 and thin_days(days, 40)[-1] == (70, 700)
    checkpoints = pd.DataFrame({"day": range(0, 71), "step": [d * 4 for d in range(71)],
                                "time": 0.0, "branch": 0, "superseded": False})
    fig = panels_figure(metrics(), checkpoints=checkpoints, panels=["loss"], hp=[])
    labels = next(t for t in fig.data if t.mode == "text")
    assert len(labels.text) <= 12 and all(t.startswith("day ") for t in labels.text)
    assert 20 <= len(fig.layout.shapes) <= 40      # lines thinned, never a hatch
    assert fig.layout.shapes[-1].x0 == 280          # the last day always drawn
    # the legend names the days with a dotted line like theirs, not plotly's "Aa" of a text
    # trace; a click on it toggles the labels (one legend group)
    keys = [t for t in fig.data if t.name == "days" and t.showlegend is not False]
    assert len(keys) == 1 and keys[0].mode == "lines" and keys[0].line.dash == "dot"
    assert labels.showlegend is False and labels.legendgroup == keys[0].legendgroup == "days"


def test_panel_choice_remembered_per_project(tmp_path):
    assert prefs.load_panels(tmp_path, "a") is None
    prefs.save_panels(tmp_path, "a", ["val_acc", "loss"])
    prefs.save_panels(tmp_path, "b", ["loss"])
    assert prefs.load_panels(tmp_path, "a") == ["val_acc", "loss"]
    prefs.save_panels(tmp_path, "a", [])
    assert prefs.load_panels(tmp_path, "a") is None and prefs.load_panels(tmp_path, "b") == ["loss"]
    (tmp_path / prefs.FILE).write_text("{not json")
    assert prefs.load_panels(tmp_path, "b") is None
    prefs.save_panels(tmp_path / "missing", "a", ["loss"])
    assert not (tmp_path / "missing").exists()
