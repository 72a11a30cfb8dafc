"""The study package's docstring examples run, and docs/study.md covers every name users type."""

from __future__ import annotations

import doctest
import importlib
from pathlib import Path

import pytest

from babysit.study.space import SCALES
from babysit.study.strategies import STRATEGIES

DOC = Path(__file__).resolve().parents[2] / "docs" / "study.md"
MODULES = [
    "babysit.study",
    "babysit.study.space",
    "babysit.study.param",
    "babysit.study.strategies",
    "babysit.study.pbt",
    "babysit.study.stopping",
    "babysit.study.importance",
    "babysit.study.specs",
    "babysit.study.retest",
    "babysit.study.objective",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0
    assert result.failed == 0


@pytest.mark.parametrize(
    "word",
    [
        *SCALES,
        *STRATEGIES,
        "Patience",
        "SuccessiveHalving",
        "ASHA",
        "Threshold",
        "WallTime",
        "MedianRule",
    ],
)
def test_docs_name_every_scale_strategy_and_rule_in_code_style(word):
    assert f"`{word}" in DOC.read_text(), f"docs/study.md does not document `{word}`"


@pytest.mark.parametrize(
    "phrase", ["narrow_to", "x1.2", "x0.8", "resample_probability", "quantile", "SpaceError"]
)
def test_docs_explain(phrase):
    assert phrase in DOC.read_text(), f"docs/study.md does not mention {phrase}"
