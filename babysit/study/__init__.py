"""Caviar mode, the parts without processes: search spaces, strategies, PBT, stopping rules.

Nothing here launches a run or reads the store; the study orchestrator does that and calls
these pure pieces. Optuna is imported only by the Optuna strategy and `importance`.

>>> from babysit.study import Space
>>> Space.from_dict({"batch_size": {"scale": "pow2", "low": 16, "high": 256}}).grid(3)
[{'batch_size': 16}, {'batch_size': 64}, {'batch_size': 256}]
"""

from __future__ import annotations

from babysit.study.importance import importance
from babysit.study.pbt import Exploit, Op, explore, plan, select
from babysit.study.space import SCALES, Param, Space, SpaceError, check_direction, score_key
from babysit.study.stopping import (
    ASHA,
    Decision,
    MedianRule,
    Patience,
    StoppingRule,
    SuccessiveHalving,
    Threshold,
    WallTime,
)
from babysit.study.strategies import (
    STRATEGIES,
    CoarseToFineStrategy,
    GridStrategy,
    OptunaStrategy,
    RandomStrategy,
    Strategy,
    Suggestion,
    make_strategy,
)

__all__ = [
    "ASHA",
    "SCALES",
    "STRATEGIES",
    "CoarseToFineStrategy",
    "Decision",
    "Exploit",
    "GridStrategy",
    "MedianRule",
    "Op",
    "OptunaStrategy",
    "Param",
    "Patience",
    "RandomStrategy",
    "Space",
    "SpaceError",
    "StoppingRule",
    "Strategy",
    "SuccessiveHalving",
    "Suggestion",
    "Threshold",
    "WallTime",
    "check_direction",
    "explore",
    "importance",
    "make_strategy",
    "plan",
    "score_key",
    "select",
]
