"""Hard negatives for DPO pairs: per record, the wrong option a model is most likely to confuse with the gold.

A uniformly random wrong option is mostly an easy one (RedOne's pairs "from correct and incorrect options" teach
little when the rejected answer is absurd). Per record, among the options that differ from the gold:

- `ordinal` (tasks whose `output.ordered` labels are levels of one scale): the nearest other level;
- `confusion` (a confusion matrix from `--predictions`): the wrong label the model predicts most often for this
  record's gold label;
- `similar_label` (otherwise): the wrong label most similar to the gold: all-MiniLM-L6-v2 cosine for English
  labels, Jaccard of character 1- and 2-grams where either label has a CJK character (MiniLM reads English only).

Ties go to the next criterion, then to a seeded hash of (seed, task, record, option), so the same seed picks the
same negatives. Similarities are rounded to 6 decimals before ranking, so float noise between machines cannot
reorder them. The model's own wrong answers (`--predictions`) come before all of these (the build's `_dpo_pairs`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import xxhash

from snsdata.spec.models import TaskSpec

ORDINAL, CONFUSION, SIMILAR, PREDICTIONS = "ordinal", "confusion", "similar_label", "predictions"
KINDS = (PREDICTIONS, ORDINAL, CONFUSION, SIMILAR)
"""`pair_source` values of the pairs the build makes itself (extra pairs bring their own, e.g. `annotations`)."""

_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")

Confusion = Mapping[str, Mapping[tuple[str, str], int]]
"""task id -> (gold label, predicted wrong label), labels folded as the task compares them -> predictions."""


def _grams(text: str) -> set[str]:
    chars = re.sub(r"\s+", "", text)
    return set(chars) | {chars[i:i + 2] for i in range(len(chars) - 1)}


def ngram_similarity(a: str, b: str) -> float:
    """Jaccard of the character 1- and 2-grams (whitespace ignored): 冒犯 / 非冒犯 share 3 of 5."""
    left, right = _grams(a), _grams(b)
    union = left | right
    return len(left & right) / len(union) if union else 0.0


class LabelSimilarity:
    """Similarity of two labels, rounded to 6 decimals: MiniLM cosine when both are English (each label embedded
    once, all in one batch), else character n-grams."""

    def __init__(self, labels: list[str]):
        english = sorted({label for label in labels if not _CJK.search(label)})
        self.vectors: dict[str, Any] = {}
        if len(english) > 1:
            from snsdata.rewards.embedding import embed

            self.vectors = dict(zip(english, embed(english), strict=True))

    def __call__(self, a: str, b: str) -> float:
        if a in self.vectors and b in self.vectors:
            return round(float(self.vectors[a] @ self.vectors[b]), 6)
        return round(ngram_similarity(a, b), 6)


def _tie(seed: int, task_id: str, record_id: str, option: str) -> int:
    return xxhash.xxh3_64_intdigest(f"{seed}\x1f{task_id}\x1f{record_id}\x1f{option}".encode())


def hardest(gold: str, wrong: list[str], *, levels: list[str] | None, confusion: Mapping[tuple[str, str], int],
            similarity: Callable[[str, str], float], fold: dict[str, str], key: tuple[int, str, str]
            ) -> tuple[str, str]:
    """The hardest wrong option for one record and the kind of negative it is (`ordinal`, `confusion`,
    `similar_label`). `gold` and `wrong` are in the record's spelling, `fold` maps them to the compared form,
    `levels` (folded) are the ordered labels, `key` is (seed, task id, record id) for ties."""
    seed, task_id, record_id = key
    gold_folded = fold[gold]
    position = {level: i for i, level in enumerate(levels or [])}

    def rank(option: str) -> tuple[float, ...]:
        folded = fold[option]
        distance = (abs(position[folded] - position[gold_folded])
                    if gold_folded in position and folded in position else 0)
        return (distance, -confusion.get((gold_folded, folded), 0), -similarity(gold, option),
                _tie(seed, task_id, record_id, option))

    choice = min(wrong, key=rank)
    if levels and gold_folded in position and fold[choice] in position:
        kind = ORDINAL
    elif confusion.get((gold_folded, fold[choice]), 0) > 0:
        kind = CONFUSION
    else:
        kind = SIMILAR
    return choice, kind


@dataclass
class Predicted:
    """What `--predictions` brings a DPO build: per record the model's own worst wrong answer (`_own`), the
    model's label confusions per task, and the predictions that gave neither (by reason)."""

    path: Path
    own: pl.DataFrame
    confusion: dict[str, dict[tuple[str, str], int]]
    skipped: dict[str, int]


def read_predictions(path: str | Path, rendered: pl.DataFrame, specs: Mapping[str, TaskSpec], threshold: float,
                     seed: int) -> Predicted:
    """The model's wrong answers and confusions from a prediction log, matched to the build's rendered records
    (`snsdata.loop.pairs.rendered_records`) exactly as `snsdata pairs` matches them."""
    from snsdata.loop.logs import read_log
    from snsdata.loop.pairs import confusion_counts, prediction_pairs

    log = read_log(path)
    pairs, skipped = prediction_pairs(log, rendered, specs, threshold=threshold, seed=seed)
    # prediction_pairs orders each record's pairs worst first (lowest reward, then seeded): keep that one.
    own = pairs.unique(["task_id", "record_id"], keep="first", maintain_order=True).select(
        "task_id", "record_id", _own=pl.col("rejected").list.last().struct.field("content"))
    reasons = dict(skipped.group_by("reason").len().sort("reason").iter_rows()) if skipped.height else {}
    more = pairs.height - own.height
    if more:
        reasons["another wrong answer of the record is used"] = more
    return Predicted(Path(path), own, confusion_counts(log, rendered, specs), reasons)


def cap_pairs(frame: pl.DataFrame, max_per_task: int | None, max_per_source: int | None,
              seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """At most `max_per_source` train pairs of each `_pair_source`, then `max_per_task` in all, in seeded order
    (eval pairs are left alone: `eval_max_per_task` caps them). Returns (kept, dropped with `_reason`)."""
    from snsdata.build.sampling import draw_order
    from snsdata.build.splits import TRAIN

    train = pl.col("_split") == TRAIN
    never = pl.lit(False)
    ranked = frame.with_columns(draw_order(frame, seed)).sort("_order", "record_id")
    ranked = ranked.with_columns(_over_source=never if max_per_source is None else
                                 train & (pl.int_range(pl.len()).over("_split", "_pair_source") >= max_per_source))
    ranked = ranked.with_columns(_over_task=never if max_per_task is None else
                                 train & ~pl.col("_over_source")
                                 & (pl.int_range(pl.len()).over("_split", "_over_source") >= max_per_task))
    ranked = ranked.with_columns(_reason=pl.when("_over_source").then(
        pl.format("over the cap of {} pairs per source ({})", pl.lit(max_per_source), "_pair_source")
    ).when("_over_task").then(pl.lit(f"over the cap of {max_per_task} pairs per task")))
    over = pl.col("_over_source") | pl.col("_over_task")
    helpers = ["_order", "_over_source", "_over_task"]
    return ranked.filter(~over).drop(*helpers, "_reason"), ranked.filter(over).drop(helpers)
