"""Reward declarations: what a spec may ask of `snsdata.rewards`, validated before anything is scored.

The scoring itself lives in `rewards/`; this module only fixes the vocabulary (names of normalisers, metrics,
pattern checks) so that a misspelt name fails at `snsdata validate`, not inside a trainer.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

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


def _compiled(pattern: str) -> re.Pattern[str]:
    """Declared patterns are checked with `re` (the scorer runs them with the compatible `regex` module)."""
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regular expression {pattern!r}: {exc}") from None


class Extraction(_Strict):
    """Pull the answer out of a chatty completion with a regex before comparing."""

    pattern: str
    group: int | str = 1
    which: Literal["first", "last"] = "last"

    @model_validator(mode="after")
    def _group_exists(self) -> Extraction:
        compiled = _compiled(self.pattern)
        known = isinstance(self.group, int) and 0 <= self.group <= compiled.groups
        if not known and self.group not in compiled.groupindex:
            raise ValueError(f"extract.pattern has no group {self.group!r}")
        return self


class _Params(_Strict):
    empty_match: float = Field(default=1.0, ge=0.0, le=1.0)
    """Score when prediction and gold are both empty (an empty list, no text). Lower it where an always-empty
    answer would farm reward on a mostly-empty task."""


class _TokenParams(_Params):
    tokenize: Literal["auto", "char", "whitespace"] = "auto"
    """`auto`: CJK characters one by one, other words whole, punctuation dropped."""


class _FuzzyParams(_Params):
    threshold: float = Field(default=0.8, ge=0.0, le=1.0)
    """Minimum similarity (rapidfuzz ratio, 0-1) for two items to match; matched pairs earn their similarity."""


class BleuParams(_Params):
    tokenize: Literal["13a", "zh", "intl", "char", "none"] = "13a"
    lowercase: bool = False


class ChrfParams(_Params):
    beta: int = Field(default=2, ge=1)
    lowercase: bool = False


class AnlsParams(_Params):
    threshold: float = Field(default=0.5, ge=0.0, le=1.0)
    """Similarities below this score 0 (standard ANLS uses 0.5; 0 keeps the raw similarity)."""


class AbsErrParams(_Strict):
    range: float | None = Field(default=None, gt=0)
    """Width of the value scale; default: max - min of the spec's numeric `output.labels`."""


class FieldAccParams(_Params):
    fields: list[str] | None = None
    """Fields compared (default: every field of the gold object)."""


class NdcgParams(_Params):
    k: int = Field(default=10, ge=1)
    graded: bool = False
    """Gold order is relevance order (first = most relevant); otherwise every gold item is equally relevant."""


class OptionParams(_Params):
    key: str = "Option"
    """Field of each answer object that names the option; plain strings in the list count as options."""
    tag: str | None = None
    """Read the list inside the last `<tag>...</tag>` (else the last JSON list in the answer)."""
    threshold: float = Field(default=1.0, ge=0.0, le=1.0)
    """1 matches options exactly (after normalisation); lower values match them fuzzily."""


METRIC_PARAMS: dict[str, type[BaseModel]] = {
    "accuracy": _Strict,
    "set_f1": _Params,
    "soft_set_f1": _FuzzyParams,
    "token_f1": _TokenParams,
    "entity_f1": _Params,
    "span_f1": _TokenParams,
    "bleu": BleuParams,
    "chrf": ChrfParams,
    "chrf++": ChrfParams,
    "rouge_1": _TokenParams,
    "rouge_2": _TokenParams,
    "rouge_l": _TokenParams,
    "anls": AnlsParams,
    "embed_cosine": _Params,
    "abs_err": AbsErrParams,
    "field_acc": FieldAccParams,
    "ndcg": NdcgParams,
    "option_f1": OptionParams,
}
"""The parameters each metric accepts, with their defaults; unknown or ill-typed parameters fail validation."""


class ExactMatchReward(_Strict):
    type: Literal["exact_match"] = "exact_match"
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think", "strip"])
    extract: Extraction | None = None
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    """Canonical answer -> other spellings that count as it (compared after normalisation)."""
    choose_from_candidates: bool = False
    """Score 0 unless the answer is one of the record's candidates (output.candidates_field, else labels)."""
    ordered: bool = False
    """List answers (labels, spans) must match in order (a taxonomy path); default: as sets."""


class MetricReward(_Strict):
    type: Literal["metric"] = "metric"
    metric: MetricName
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think", "strip"])
    extract: Extraction | None = None
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    """Canonical item -> other spellings that count as it (e.g. entity-type names)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Metric-specific knobs (METRIC_PARAMS), e.g. {tokenize: zh} for BLEU, {empty_match: 0.5} for set_f1."""

    @model_validator(mode="after")
    def _params_known(self) -> MetricReward:
        metric_params(self)
        return self


def metric_params(reward: MetricReward) -> BaseModel:
    """The reward's metric parameters, validated and with defaults filled in."""
    try:
        return METRIC_PARAMS[reward.metric].model_validate(reward.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: "
            f"{'unknown parameter' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"params of metric {reward.metric!r}: {problems}") from None


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
    """IFEval-style instructions read from the record: {instruction_ids: FIELD, kwargs: FIELD, prompt: FIELD}
    (`prompt` optional; only `combination:repeat_prompt` reads it)."""

    @model_validator(mode="after")
    def _exactly_one(self) -> PatternCheck:
        set_fields = [name for name, value in self if value is not None]
        if len(set_fields) != 1:
            raise ValueError(f"a pattern check sets exactly one constraint, got {set_fields or 'none'}")
        return self

    @field_validator("must_match", "must_not_match")
    @classmethod
    def _regex_compiles(cls, value: str | None) -> str | None:
        if value is not None:
            _compiled(value)
        return value

    @field_validator("json_schema")
    @classmethod
    def _schema_valid(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            try:
                jsonschema.validators.validator_for(value).check_schema(value)
            except jsonschema.SchemaError as exc:
                raise ValueError(f"invalid JSON schema: {exc.message}") from None
        return value

    @field_validator("required_tags")
    @classmethod
    def _tags_named(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or not all(re.fullmatch(r"<?[\w:.-]+>?", t) for t in value)):
            raise ValueError("required_tags lists tag names such as Result or <Result>")
        return value

    @field_validator("ifeval_from_fields")
    @classmethod
    def _ifeval_keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is not None:
            unknown = set(value) - {"instruction_ids", "kwargs", "prompt"}
            if unknown or not {"instruction_ids", "kwargs"} <= set(value):
                raise ValueError("ifeval_from_fields maps instruction_ids and kwargs (and optionally prompt) "
                                 f"to record fields; got {sorted(value)}")
        return value


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

    @model_validator(mode="after")
    def _cache_within(self) -> OverlongPenalty:
        if self.cache_tokens > self.max_tokens:
            raise ValueError("overlong.cache_tokens cannot exceed max_tokens")
        return self


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
