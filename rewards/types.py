"""What a scorer reports per sample and in total: failures are counted, never folded silently into a score."""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass(frozen=True, slots=True)
class ScoreDetail:
    """One sample's reward and how it was reached.

    `score` is in [0, 1], or None when the reward does not apply (the gold answer does not parse, a record lacks
    the fields the reward reads, or scoring failed: see `error`). `parse_ok` is False when the completion did not
    parse into the output format (it then usually scores 0). `parts` holds a composite's part scores, then its
    gate's, in declaration order.

    `score` is the shaped reward a trainer optimises; `task_score` is the task's own metric, from the reward's
    correctness parts only (no echo or over-return penalty, no shaping gate, no overlong penalty). They are
    equal for every reward that is not a composite with shaping; trainers log the two apart.
    """

    score: float | None
    parse_ok: bool = True
    gold_ok: bool = True
    timed_out: bool = False
    error: str | None = None
    parts: tuple[float | None, ...] = ()
    task_score: float | None = None


@dataclass
class ScoreStats:
    """Running counts over everything a scorer (or a reward callable) has scored."""

    samples: int = 0
    scored: int = 0
    not_applicable: int = 0
    parse_failures: int = 0
    gold_failures: int = 0
    errors: int = 0
    timeouts: int = 0
    reward_sum: float = 0.0
    task_score_sum: float = 0.0
    """Sum of `task_score` over the scored samples (the raw task metric beside the shaped reward)."""

    def add(self, detail: ScoreDetail) -> None:
        self.samples += 1
        if detail.score is None:
            self.not_applicable += 1
        else:
            self.scored += 1
            self.reward_sum += detail.score
            self.task_score_sum += detail.task_score if detail.task_score is not None else detail.score
        self.parse_failures += not detail.parse_ok
        self.gold_failures += not detail.gold_ok
        self.errors += detail.error is not None
        self.timeouts += detail.timed_out

    def merge(self, other: ScoreStats) -> None:
        for name, value in asdict(other).items():
            setattr(self, name, getattr(self, name) + value)

    @property
    def mean_reward(self) -> float:
        return self.reward_sum / self.scored if self.scored else 0.0

    @property
    def mean_task_score(self) -> float:
        return self.task_score_sum / self.scored if self.scored else 0.0

    @property
    def parse_rate(self) -> float:
        return 1.0 - self.parse_failures / self.samples if self.samples else 0.0
