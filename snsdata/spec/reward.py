"""Reward declarations: what a spec may ask of `snsdata.rewards`, validated before anything is scored.

The scoring itself lives in `rewards/`; this module only fixes the vocabulary (names of normalisers, metrics,
pattern checks) so that a misspelt name fails at `snsdata validate`, not inside a trainer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Normalizer = Literal[
    "strip",
    "casefold",
    "whitespace",
    "punctuation",
    "strip_think",
    "strip_markdown",
    "strip_answer_prefix",
    "fullwidth",
]

MetricName = Literal[
    "accuracy",
    "set_f1",
    "soft_set_f1",
    "token_f1",
    "entity_f1",
    "span_f1",
    "bleu",
    "chrf",
    "chrf++",
    "rouge_1",
    "rouge_2",
    "rouge_l",
    "anls",
    "embed_cosine",
    "abs_err",
    "field_acc",
    "ndcg",
    "option_f1",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Extraction(_Strict):
    """Pull the answer out of a chatty completion with a regex before comparing."""

    pattern: str
    group: int | str = 1
    which: Literal["first", "last"] = "last"


class ExactMatchReward(_Strict):
    type: Literal["exact_match"] = "exact_match"
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think", "strip"])
    extract: Extraction | None = None
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    choose_from_candidates: bool = False
    """Score 0 unless the answer is one of the record's candidates (output.candidates_field)."""


class MetricReward(_Strict):
    type: Literal["metric"] = "metric"
    metric: MetricName
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think", "strip"])
    extract: Extraction | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    """Metric-specific knobs, e.g. {tokenize: zh} for BLEU, {empty_match: 1.0} for set_f1."""


class PatternCheck(_Strict):
    """One verifiable constraint. Exactly one of the fields is set."""

    must_match: str | None = None
    must_not_match: str | None = None
    valid_json: bool | None = None
    json_schema: dict[str, Any] | None = None
    required_tags: list[str] | None = None
    min_chars: int | None = None
    max_chars: int | None = None
    min_words: int | None = None
    max_words: int | None = None
    forbid_script: Literal["cjk", "latin"] | None = None
    require_script: Literal["cjk", "latin"] | None = None
    ifeval_from_fields: dict[str, str] | None = None
    """IFEval-style instructions read from the record: {instruction_ids: FIELD, kwargs: FIELD}."""

    @model_validator(mode="after")
    def _exactly_one(self) -> PatternCheck:
        set_fields = [name for name, value in self if value is not None]
        if len(set_fields) != 1:
            raise ValueError(f"a pattern check sets exactly one constraint, got {set_fields or 'none'}")
        return self


class PatternReward(_Strict):
    type: Literal["pattern"] = "pattern"
    checks: list[PatternCheck] = Field(min_length=1)
    aggregate: Literal["all", "mean"] = "all"
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think"])


class SandboxReward(_Strict):
    type: Literal["sandbox"] = "sandbox"
    language: Literal["python"] = "python"
    mode: Literal["function", "stdio"] = "function"
    tests_field: str = "test"
    entry_point_field: str | None = "entry_point"
    prompt_field: str | None = None
    """Field with code to prepend to the completion (HumanEval's signature and docstring)."""
    timeout_s: float = 10.0
    memory_mb: int = 1024


class CompositePart(_Strict):
    weight: float = 1.0
    reward: RewardSpec


class OverlongPenalty(_Strict):
    """DAPO's soft overlong punishment: linear from 0 to -1 over the last `cache_tokens` before `max_tokens`."""

    max_tokens: int = Field(gt=0)
    cache_tokens: int = Field(gt=0)


class CompositeReward(_Strict):
    type: Literal["composite"] = "composite"
    parts: list[CompositePart] = Field(min_length=1)
    gate: RewardSpec | None = None
    """A format reward that multiplies the weighted sum (0 if the format is wrong)."""
    overlong: OverlongPenalty | None = None


RewardSpec = Annotated[
    ExactMatchReward | MetricReward | PatternReward | SandboxReward | CompositeReward,
    Field(discriminator="type"),
]

CompositePart.model_rebuild()
CompositeReward.model_rebuild()

REWARD_TYPES = ("exact_match", "metric", "sandbox", "pattern", "composite")
