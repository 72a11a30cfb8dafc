"""Names are text, never markup: the escaping helpers, and every figure built from hostile names
(run, metric, hyperparameter and study names, config values, event reasons) holds no live tag
and no template placeholder of theirs. The browser test checks the rendered DOM."""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd
import pytest

from babysit.study.space import Param, Space
from babysit.ui import compare_figures, figures, panels, study_figures
from babysit.ui.text import md, plain, plot, shorten

IMAGE = "![t](http://127.0.0.1:9/track.png)"
LINK = '<a href="http://127.0.0.1:9/x">click</a>'
JS_LINK = "[click](javascript:alert(1))"
AUTOLINK = "see http://127.0.0.1:9/x or www.example.com or a@b.co"
TEMPLATE = "acc %{customdata} %{y}"
TERMINAL = "\x1b[2J\x1b[31mred\x07"
HOSTILE = [IMAGE, LINK, JS_LINK, AUTOLINK, TEMPLATE, TERMINAL, "x" * 100_000]
# what plotly would turn into markup: our own tags are <br> and <extra></extra> only
LIVE_TAG = re.compile(r"<(?!br>|extra>|/extra>)[a-zA-Z/]")


@pytest.mark.parametrize("value", HOSTILE)
def test_md_leaves_no_markdown_construct(value):
    out = md(value)
    # every punctuation character is escaped: no [, (, !, <, :, @ or . can start anything
    assert not re.search(r"(?<!\\)[!\[\]()<>:@.*_`$|#~]", out.replace("\\\\", ""))
    assert "\x1b" not in out and "\n" not in out
    # it reads as the text itself (with an invisible word joiner inside URLs: no autolink)
    assert re.sub(r"\\(.)", r"\1", out).replace("\u2060", "") == plain(value)
    assert not re.search(r"https?://|www\.|@\w", re.sub(r"\\(.)", r"\1", out))


@pytest.mark.parametrize("value", HOSTILE)
def test_plot_leaves_no_tag_and_no_placeholder(value):
    out = plot(value)
    assert "<" not in out and ">" not in out and "%{" not in out and "\x1b" not in out


def test_shorten_and_plain():
    assert shorten("x" * 100_000, 80) == "x" * 79 + "…"
    assert plain("a\x1b[31mb\r\nc") == "a␛[31mb c"


def strings(node: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string in a figure's JSON with where it sits."""
    if isinstance(node, str):
        return [(path, node)]
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in strings(v, f"{path}.{k}")]
    if isinstance(node, list | tuple):
        return [s for i, v in enumerate(node) for s in strings(v, f"{path}[{i}]")]
    return []


def assert_inert(fig) -> None:
    found = strings(fig.to_plotly_json())
    for where, text in found:
        if where.endswith(("legendgroup", "uid", "uirevision", ".type", "mode")) \
                or ".customdata" in where:
            continue           # never drawn as text (templates use customdata only as a number)
        assert not LIVE_TAG.search(text), (where, text[:200])
        if "hovertemplate" in where or "texttemplate" in where:
            assert set(re.findall(r"%\{([^}]*)\}", text)) <= {"y:.4g", "x", "y", "x:.3f",
                                                               "customdata:.4g"}, text
        assert "\x1b" not in text, where
    drawn = " ".join(t for _, t in found)
    assert "&lt;a href" in drawn or "&lt;" in drawn     # the names are there, as text


def test_run_compare_and_lineage_figures_hold_no_markup_from_names():
    rows = []
    for name in [LINK, TEMPLATE, f"hp/{LINK}", "loss"]:
        rows += [{"step": s, "day": 1, "name": name, "value": v, "time": float(s),
                  "branch": 0, "superseded": False} for s, v in ((0, 1.0), (1, math.nan), (2, 0.5))]
    metrics = pd.DataFrame(rows)
    events = pd.DataFrame({"step": [1], "day": [1], "kind": [LINK], "source": [IMAGE],
                           "time": [1.0], "superseded": [False],
                           "detail": [{"reason": LINK, LINK: {"old": 1, "new": 2}}]})
    assert_inert(figures.run_figure(metrics, events))
    runs = pd.DataFrame({"id": [1, 2], "name": [IMAGE, LINK], "status": [LINK, "running"],
                         "hp": [{LINK: "x" * 100_000, "lr": 0.1}, {"lr": TEMPLATE}],
                         "parent_id": [None, 1], "parent_day": [None, 1], "day": [1, 1],
                         "step": [2, 2], "created": [0.0, 1.0], "heartbeat_age": [1.0, 1.0]})
    compare = figures.compare_figure({1: metrics, 2: metrics}, LINK, runs)
    assert_inert(compare)
    assert max(len(t.name) for t in compare.data) < 400         # a 100 kB value is cut short
    assert_inert(figures.compare_figure({1: metrics}, TEMPLATE, runs))
    assert_inert(figures.lineage_figure(runs))
    # the pages' own figures: one panel per metric (titles), the compare panels (legend, hover)
    assert_inert(panels.panels_figure(metrics, events))
    assert_inert(panels.panels_figure(metrics, events, panels=[LINK, TEMPLATE], hp=[LINK]))
    assert_inert(compare_figures.compare_panels_figure({1: metrics, 2: metrics},
                                                       [LINK, TEMPLATE], runs))


def test_study_figures_hold_no_markup_from_names():
    space = Space([Param(LINK, "choice", choices=(IMAGE, LINK)),
                   Param("lr", "log", 1e-4, 1.0)])
    runs = pd.DataFrame({"id": [1, 2], "name": [IMAGE, TEMPLATE], "status": [LINK, "finished"],
                         LINK: [IMAGE, LINK], "lr": [0.1, 0.01], "objective": [0.5, 0.2],
                         "best": [0.5, 0.2], "day": [2, 2], "parent_id": [None, None],
                         "parent_day": [None, None]})
    curves = {i: pd.DataFrame({"step": [0, 100], "day": [1, 2], "name": LINK,
                               "value": [1.0, v], "superseded": False})
              for i, v in ((1, 0.5), (2, 0.2))}
    assert_inert(study_figures.study_curves_figure(curves, runs, LINK))
    assert_inert(study_figures.parallel_figure(runs, space, LINK))
    for param in space:
        assert_inert(study_figures.hp_scatter_figure(runs, param, LINK))
    events = pd.DataFrame({"run_id": [2], "kind": ["exploit"], "day": [2], "step": [100],
                           "source": [IMAGE], "detail": [{"from_run": 1, "from_day": 1,
                                                          "reason": LINK,
                                                          "explore": {LINK: {"old": 1,
                                                                             "new": 2}}}]})
    assert_inert(study_figures.family_tree_figure(runs, events))
    assert_inert(study_figures.importance_figure({LINK: 0.7, "lr": 0.3}))
