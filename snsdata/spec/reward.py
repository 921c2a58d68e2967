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
    "over_return",
]

Role = Literal["correctness", "shaping"]
"""What a part of a composite reward stands for. `correctness`: the task's own metric (a wrong label, spans not in
the input); `shaping`: a penalty that steers the policy without being the task's metric (echoing the source,
returning more items than asked, a rewrite that drops the post's content). Trainers log both (`ScoreDetail`)."""

Equivalence = Literal["string", "math", "reasoning_gym"]


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
    """An empty answer to an empty gold is right and scores 1; class imbalance (mostly-empty golds) is fixed by
    balancing the data (`balance: by: gold_class`), never by discounting correct answers."""


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


class EmbedParams(_Params):
    floor: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Cosine that counts as no similarity: scores are (cos - floor) / (1 - floor), clipped to [0, 1]. MiniLM gives
    unrelated short texts of one domain 0.1-0.4, so a floor keeps such answers from earning anything."""


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
    "embed_cosine": EmbedParams,
    "abs_err": AbsErrParams,
    "field_acc": FieldAccParams,
    "ndcg": NdcgParams,
    "option_f1": OptionParams,
    "over_return": _Params,
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
    equivalence: Equivalence = "string"
    """How the answer is compared with the gold: `string` (the normalised values are equal), `math` (equal as
    exact rationals when both read as numbers, fractions or LaTeX fractions, else as normalised LaTeX), or
    `reasoning_gym` (the generating dataset's own `score_answer` on the record gives full marks)."""
    spans_from: list[str] = Field(default_factory=list)
    """Extraction: record fields every predicted item must occur in (after normalisation); an item found in
    none of them is wrong (correctness)."""


class MetricReward(_Strict):
    type: Literal["metric"] = "metric"
    metric: MetricName
    normalize: list[Normalizer] = Field(default_factory=lambda: ["strip_think", "strip"])
    extract: Extraction | None = None
    aliases: dict[str, list[str]] = Field(default_factory=dict)
    """Canonical item -> other spellings that count as it (e.g. entity-type names)."""
    params: dict[str, Any] = Field(default_factory=dict)
    """Metric-specific knobs (METRIC_PARAMS), e.g. {tokenize: zh} for BLEU, {k: 10} for nDCG."""
    spans_from: list[str] = Field(default_factory=list)
    """Extraction: record fields every predicted item must occur in (after normalisation); an item found in
    none of them counts as a wrong item (correctness: it can match nothing)."""

    @model_validator(mode="after")
    def _params_known(self) -> MetricReward:
        metric_params(self)
        return self


def metric_params(reward: MetricReward) -> BaseModel:
    """The reward's metric parameters, validated and with defaults filled in."""
    if "empty_match" in reward.params:
        raise ValueError(
            f"params of metric {reward.metric!r}: empty_match was removed: an empty answer to an empty gold is "
            "right and scores 1; balance empty and non-empty golds in the mixture (balance: by: gold_class) "
            "instead of discounting correct answers")
    try:
        return METRIC_PARAMS[reward.metric].model_validate(reward.params)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'params'}: "
            f"{'unknown parameter' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in exc.errors()
        )
        raise ValueError(f"params of metric {reward.metric!r}: {problems}") from None


class EchoCheck(_Strict):
    """How much of a record field (a translation's source) the answer repeats."""

    field: str
    n: int = Field(default=3, ge=1, le=8)
    """Character n-grams of letters, digits and CJK characters, case-folded (punctuation and spaces left out)."""
    script: Literal["cjk", "latin"] | None = None
    """Count only the field's n-grams of this script (a Chinese source's Chinese, not the Latin names a
    translation keeps)."""
    free: float = Field(default=0.3, ge=0.0, lt=1.0)
    """Share of the field's n-grams the answer may repeat at no cost (names, hashtags, numbers); above it the
    score falls linearly to 0 at a full copy."""


class ScriptShare(_Strict):
    """The answer is written in the expected script: its letters of `script` make up at least `min` of all
    its letters (Latin and CJK; digits, punctuation and emoji do not count)."""

    script: Literal["cjk", "latin"]
    min: float = Field(default=0.5, gt=0.0, le=1.0)


class ContentKept(_Strict):
    """The answer keeps a record field's content (a rewrite keeps its post): the share of the field's character
    n-grams found in the answer, scored min(1, share / min). Character n-grams serve Chinese and English alike
    (no English-only embedder)."""

    field: str
    n: int = Field(default=3, ge=1, le=8)
    min: float = Field(default=0.8, gt=0.0, le=1.0)


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
    echo_of: EchoCheck | None = None
    script_share: ScriptShare | None = None
    keeps_content: ContentKept | None = None

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
    weight: float = Field(default=1.0, gt=0.0)
    """Correctness parts: weight in the weighted mean. Shaping parts: how much of the reward the part can take
    away (at most 1): the reward is multiplied by 1 - weight x (1 - part score)."""
    role: Role = "correctness"
    reward: RewardSpec

    @model_validator(mode="after")
    def _shaping_weight(self) -> CompositePart:
        if self.role == "shaping" and self.weight > 1:
            raise ValueError("a shaping part's weight is the share of the reward it can take away: at most 1")
        return self


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
    """Correctness parts averaged by weight (the task's metric, `ScoreDetail.task_score`), times the gate, times
    each shaping part's factor, plus the overlong penalty (the shaped reward, `ScoreDetail.score`)."""

    type: Literal["composite"] = "composite"
    parts: list[CompositePart] = Field(min_length=1)
    gate: RewardSpec | None = None
    """A format reward that multiplies the result (0 if the format is wrong)."""
    gate_role: Role = "correctness"
    """Whether a wrong format makes the task's answer wrong (`correctness`: the benchmark cannot read it) or is
    only steered against (`shaping`: the raw task metric ignores the gate)."""
    overlong: OverlongPenalty | None = None
    """DAPO's overlong punishment, always shaping."""

    @model_validator(mode="after")
    def _has_correctness(self) -> CompositeReward:
        if not any(part.role == "correctness" for part in self.parts):
            raise ValueError("a composite reward needs at least one correctness part (the task's own metric)")
        return self


RewardSpec = Annotated[
    ExactMatchReward | MetricReward | PatternReward | SandboxReward | CompositeReward,
    Field(discriminator="type"),
]

CompositePart.model_rebuild()
CompositeReward.model_rebuild()

REWARD_TYPES = ("exact_match", "metric", "sandbox", "pattern", "composite")
