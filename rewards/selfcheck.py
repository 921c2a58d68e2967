"""Gold self-check: every record's own gold target, scored by its task's reward, must earn full marks.

This is the check that would have caught SNS-Bench's postprocessor cutting gold labels at "end": a parser or
normaliser that cannot read the gold answer caps the task's reward, and RL would train against it silently.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from snsdata.rewards.scorer import FULL_MARKS, Scorer
from snsdata.spec.models import TaskSpec


class GoldFailure(NamedTuple):
    """A record whose gold target is not worth full marks: `score` None means the gold did not parse."""

    record: str | int
    """The record's `record_id`, else its index in the input."""
    score: float | None

    def __str__(self) -> str:
        if self.score is None:
            return f"record {self.record}: the gold target does not parse, so the reward does not apply"
        return f"record {self.record}: the gold target scores {self.score:.4f}, not 1"


def gold_check(spec: TaskSpec, records: Sequence[Mapping[str, Any]]) -> list[GoldFailure]:
    """Records whose rendered gold target, scored in fixed mode by the task's own reward, is below full marks."""
    records = list(records)
    if not records:
        return []
    targets = []
    for record in records:
        try:
            targets.append(spec.render_target(dict(record)))
        except Exception:
            targets.append(None)
    scores = Scorer(spec)([t or "" for t in targets], records)
    failures = []
    for index, (record, target, value) in enumerate(zip(records, targets, scores, strict=True)):
        if target is None or value is None or value < FULL_MARKS:
            record_id = record.get("record_id")
            failures.append(GoldFailure(record_id if isinstance(record_id, str) else index, value))
    return failures
