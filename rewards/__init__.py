"""Rewards for snsdata tasks: parsing, normalisers, metrics, the four reward types and their composition.

A trainer imports this package alone (it depends on `snsdata.spec` and light libraries only):

    from snsdata.rewards import score, evaluate, get_scorer
    score("note_gender", "Yes", record)                   # one sample, in [0, 1] or None
    get_scorer("note_gender")(completions, records)       # a batch
    evaluate("note_gender", records, predictions)         # corpus metrics of a prediction file
"""

from snsdata.rewards.api import catalogue, evaluate, get_scorer, score
from snsdata.rewards.scorer import Scorer
from snsdata.rewards.selfcheck import GoldFailure, gold_check
from snsdata.rewards.types import ScoreDetail, ScoreStats

__all__ = [
    "GoldFailure",
    "ScoreDetail",
    "ScoreStats",
    "Scorer",
    "catalogue",
    "evaluate",
    "get_scorer",
    "gold_check",
    "score",
]
