"""Pydantic models of a task spec. A spec is data: every behaviour it names is a registry entry elsewhere."""

from __future__ import annotations

from functools import cached_property
from typing import Annotated, Any, Literal

from jinja2 import Template
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from snsdata.spec.reward import RewardSpec
from snsdata.spec.templating import environment
from snsdata.spec.where import DESCRIPTION as WHERE_DESCRIPTION
from snsdata.spec.where import WhereError, parse_where

Capability = Literal[
    "content_understanding",
    "information_extraction",
    "semantic_matching",
    "user_behavior",
    "dialogue",
    "translation",
    "general",
]
CAPABILITIES: tuple[str, ...] = Capability.__args__  # type: ignore[attr-defined]

OutputFormat = Literal["label", "labels", "spans", "json", "text", "code", "number"]
Availability = Literal["local", "sample", "public", "user", "generated"]
Use = Literal["train", "eval", "both"]
BENCHMARK_TAG = "benchmark"
"""Tasks tagged so read a benchmark's items (SNS-Bench, SNS-TransBench, General-Bench sets, or sets built from a
benchmark's test items): they evaluate and never train (`TaskSpec.eval_only`)."""
TRAIN_SOURCE_SPLIT = "train"
"""The split name of the records read from `source.train` (a user's own training data for the task)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LabelMap(_Strict):
    """Map raw label values (ids) to names, inline or from a file such as TweetEval's `mapping.txt`."""

    values: dict[str, str] | None = None
    file: str | None = None
    """Path relative to the data root; lines `id<TAB>name[<TAB>...]` (or one name per line, ids from 0)."""

    @model_validator(mode="after")
    def _one_source(self) -> LabelMap:
        if (self.values is None) == (self.file is None):
            raise ValueError("a label map has exactly one of `values` or `file`")
        return self


def _where_parses(value: str | None) -> str | None:
    if value is not None:
        try:
            parse_where(value)
        except WhereError as exc:
            raise ValueError(f"invalid `where`: {exc}") from None
    return value


def _train_split_free(source: Any) -> Any:
    if source.train is not None and TRAIN_SOURCE_SPLIT in source.splits:
        raise ValueError(f"`train` files are read as split {TRAIN_SOURCE_SPLIT!r}: rename the split of that name in "
                         "`splits` (or list its files under `train`)")
    return source


Scalar = str | int | float | bool


class Prefix(_Strict):
    """Matches a text field that starts with this text (e.g. the first words of a note)."""

    prefix: str = Field(min_length=1)


class Contains(_Strict):
    """Matches a text field that contains this text anywhere."""

    contains: str = Field(min_length=1)


class KnownBad(_Strict):
    """A record of the source that is known to be wrong and cannot be fixed here (a benchmark's own error).

    It is kept when the task is evaluated (the benchmark scores it as it is), left out of training and RL rows
    with `reason` in the rejects (step `known_bad`), and reported as known by `snsdata validate`. Identify it by
    `match` (field values as the templates see them: a stable key that survives a change of the id hashing)
    and/or `record_id` (the id snsdata computes today, without a `-N` duplicate suffix); a record that either
    identifies is declared.
    """

    reason: str = Field(min_length=1)
    match: dict[str, Scalar | Prefix | Contains] | None = Field(default=None, min_length=1)
    """Field -> the value it equals, `{prefix: text}` it starts with or `{contains: text}`; every entry must
    hold."""
    record_id: str | None = Field(default=None, pattern=r"^[0-9a-f]{16}$")

    @model_validator(mode="after")
    def _identified(self) -> KnownBad:
        if self.match is None and self.record_id is None:
            raise ValueError("a known-bad record is identified by `match` (field values) and/or `record_id`")
        return self


class _SourceBase(_Strict):
    splits: dict[str, str | list[str]] = Field(min_length=1)
    """Split name -> path(s) relative to the data root."""
    where: str | None = Field(default=None, description=WHERE_DESCRIPTION)
    """Row selection: a column expression over the fields (snsdata.spec.where; docs/writing_a_task.md)."""
    label_maps: dict[str, LabelMap] = Field(default_factory=dict)
    availability: Availability = "local"
    origin: str | None = None
    """Where the public data lives (repository, paper, licence)."""
    example: dict[str, Any] | None = None
    """A hand-written record in the expected schema, for public or user-supplied data."""
    known_bad: list[KnownBad] = Field(default_factory=list, description=(
        "Records of the source known to be wrong (a benchmark's own errors): kept when the task is evaluated, left "
        "out of training and RL rows with their reason in the rejects (step `known_bad`), listed as known by "
        "`snsdata validate`. Each: {reason, match: {field: value | {prefix: text} | {contains: text}}, record_id}."))

    train: str | list[str] | None = None
    """Training records of this task from outside its benchmark (your own data, in the same format as the
    splits), relative to the data root: read as split `train`, always trained on, eval-only task or not."""

    _check_where = field_validator("where")(_where_parses)
    @model_validator(mode="after")
    def _train_split_free(self) -> Any:
        return _train_split_free(self)

    def provided_fields(self) -> set[str]:
        raise NotImplementedError


class TableSource(_SourceBase):
    """Row-per-record files: a JSON list, JSONL, Parquet or CSV."""

    reader: Literal["json", "jsonl", "parquet", "csv"]
    fields: dict[str, str] | list[str]
    """Field name -> column in the file (a list keeps names unchanged)."""
    optional: list[str] = Field(default_factory=list)
    """Fields that may be missing or null in a record (e.g. a rationale); others are required."""
    separator: str = ","

    @property
    def field_columns(self) -> dict[str, str]:
        return {name: name for name in self.fields} if isinstance(self.fields, list) else dict(self.fields)

    def provided_fields(self) -> set[str]:
        return set(self.field_columns)


class ConllSource(_SourceBase):
    """CoNLL token-per-line files (character per line for Chinese), turned into text plus entity spans."""

    reader: Literal["conll"]
    joiner: str = " "
    """How tokens join into `text`: '' for character-level Chinese, ' ' for English tokens."""
    strip_segmentation_digit: bool = False
    """Weibo NER `2nd_conll` tokens carry a trailing word-segmentation digit (`科0`)."""

    def provided_fields(self) -> set[str]:
        return {"text", "tokens", "tags", "entities"}


class TweetEvalSource(_SourceBase):
    """TweetEval's paired `{split}_text.txt` / `{split}_labels.txt`; split paths are the shared prefix."""

    reader: Literal["tweeteval"]

    def provided_fields(self) -> set[str]:
        return {"text", "label"}


class GeneratedSource(_Strict):
    """Records made offline by a registered generator (reasoning-gym, HumanEval, instruction constraints)."""

    reader: Literal["generated"]
    generator: str
    """Name in the `snsdata.sources` registry."""
    params: dict[str, Any] = Field(default_factory=dict)
    splits: dict[str, int] = Field(min_length=1)
    """Split name -> number of records to generate (deterministic per split and seed)."""
    fields: list[str] = Field(min_length=1)
    label_maps: dict[str, LabelMap] = Field(default_factory=dict)
    where: str | None = Field(default=None, description=WHERE_DESCRIPTION)
    """Row selection over the generated fields, the same column expression as a file source's `where`."""
    train: str | list[str] | None = None
    """Training records of this task from outside the generator (your own data: JSONL with the generated
    fields), relative to the data root: read as split `train` and always trained on."""
    availability: Availability = "generated"
    origin: str | None = None
    example: dict[str, Any] | None = None
    known_bad: list[KnownBad] = Field(default_factory=list, description=(
        "Records of the source known to be wrong (a benchmark's own errors): kept when the task is evaluated, left "
        "out of training and RL rows with their reason in the rejects (step `known_bad`), listed as known by "
        "`snsdata validate`. Each: {reason, match: {field: value | {prefix: text} | {contains: text}}, record_id}."))

    _check_where = field_validator("where")(_where_parses)
    @model_validator(mode="after")
    def _train_split_free(self) -> Any:
        return _train_split_free(self)

    def provided_fields(self) -> set[str]:
        return set(self.fields)


Source = Annotated[
    TableSource | ConllSource | TweetEvalSource | GeneratedSource, Field(discriminator="reader")
]


class FewShot(_Strict):
    k: int = Field(default=0, ge=0)
    split: str | None = None
    """Draw the k examples from this split of the task's own data (seeded, never the record itself)."""
    examples: list[dict[str, Any]] = Field(default_factory=list)
    """Inline examples, records with the same fields as the source."""
    seed: int = 0

    @model_validator(mode="after")
    def _has_pool(self) -> FewShot:
        if self.k and self.split is None and len(self.examples) < self.k:
            raise ValueError(f"few_shot.k={self.k} needs a `split` or at least {self.k} inline examples")
        return self


class Prompt(_Strict):
    system: str | None = None
    system_file: str | None = None
    user: str | None = None
    user_file: str | None = None
    few_shot: FewShot = Field(default_factory=FewShot)

    @model_validator(mode="after")
    def _one_each(self) -> Prompt:
        if self.system is not None and self.system_file is not None:
            raise ValueError("set `system` or `system_file`, not both")
        if (self.user is None) == (self.user_file is None):
            raise ValueError("set exactly one of `user` or `user_file`")
        return self


class Target(_Strict):
    template: str
    """Jinja2 template of the assistant completion from the record (the gold answer)."""
    rationale_field: str | None = None
    rationale_template: str | None = None
    """Completion used when the record has a non-empty rationale (explain-then-answer)."""

    @model_validator(mode="after")
    def _rationale_pair(self) -> Target:
        if (self.rationale_field is None) != (self.rationale_template is None):
            raise ValueError("`rationale_field` and `rationale_template` go together")
        return self


class Output(_Strict):
    format: OutputFormat
    candidates_field: str | None = None
    labels: list[str] | None = None
    separator: str = ","
    case_sensitive: bool = True
    json_schema: dict[str, Any] | None = None
    ordered: bool = False
    """`labels` are levels of one scale in order (a rating, negative/neutral/positive): a DPO pair's hardest wrong
    answer is then the nearest other level."""

    @model_validator(mode="after")
    def _ordered_labels(self) -> Output:
        if self.ordered and (self.format != "label" or not self.labels):
            raise ValueError("`ordered` needs `format: label` and a fixed `labels` list (the levels in order)")
        return self


class Eval(_Strict):
    official: str | None = None
    """Name of the benchmark's official evaluator in `snsdata.rewards.official`."""
    benchmark: str | None = None


class AuditAcceptance(_Strict):
    """A higher ceiling for one policy of the reward audit, with the reason it is right for this task."""

    ceiling: float = Field(ge=0.0, le=1.0)
    reason: str = Field(min_length=10)


class Audit(_Strict):
    """What the reward audit (`snsdata audit`) accepts of this task beyond its strict defaults."""

    candidates: str | None = None
    """Template rendering every answer a record offers as a JSON list (e.g. the note ids of a ranking task),
    for the "every candidate at once" policy; default: `output.candidates_field`, else `output.labels`."""
    content_fields: list[str] = Field(default_factory=list)
    """Fields holding the content an answer must carry over (a rewrite's post): the junk policy swaps their words
    in the gold and keeps the rest (what the instructions add). Default: the fields the prompt shows."""
    accept: dict[str, AuditAcceptance] = Field(default_factory=dict)
    """Policy name -> a ceiling above the default, with its reason (e.g. a task where an empty answer is a real
    class)."""


class TaskSpec(_Strict):
    """One task: data, prompt, target, output format, reward. Loaded by `snsdata.spec.load_spec`."""

    id: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    version: int = 1
    capability: Capability
    languages: list[str] = Field(min_length=1)
    description: str
    tags: list[str] = Field(default_factory=list)
    use: Use = "both"
    """What the task's records (`source.splits`) may do: `both` (held-out records evaluate, the rest train),
    `eval` (every record evaluates, none trains) or `train` (every record trains, none is held out). A task
    tagged `benchmark` is eval-only whatever this says; `source.train` records always train."""
    vars: dict[str, Any] = Field(default_factory=dict)
    """Constants every template can read (how a variant changes a prompt without copying it)."""
    source: Source
    prompt: Prompt
    target: Target
    output: Output
    reward: RewardSpec
    eval: Eval = Field(default_factory=Eval)
    audit: Audit = Field(default_factory=Audit)

    model_config = ConfigDict(extra="forbid", frozen=True, ignored_types=(cached_property,))

    @model_validator(mode="after")
    def _benchmark_never_trains(self) -> TaskSpec:
        if BENCHMARK_TAG in self.tags and self.use == "train":
            raise ValueError(f"a task tagged {BENCHMARK_TAG!r} is eval-only: `use: train` contradicts it (train on "
                             "your own data through `source.train`)")
        return self

    @property
    def eval_only(self) -> bool:
        """Whether the task's own records only evaluate: benchmark items never train (the one rule)."""
        return self.use == "eval" or BENCHMARK_TAG in self.tags

    @property
    def template_fields(self) -> set[str]:
        """Every name a template may read: the source's fields plus the spec's vars."""
        return self.source.provided_fields() | set(self.vars)

    @cached_property
    def compiled(self) -> dict[str, Template]:
        """Templates compiled once; `system`/`user` texts are resolved from files by the loader."""
        env = environment()
        sources = {"system": self.prompt.system, "user": self.prompt.user, "target": self.target.template,
                   "rationale": self.target.rationale_template}
        return {name: env.from_string(text) for name, text in sources.items() if text is not None}

    def render_target(self, record: dict[str, Any]) -> str:
        """The gold completion of one record, with its rationale when the spec and record have one."""
        context = {**self.vars, **record}
        field = self.target.rationale_field
        if field and record.get(field):
            return self.compiled["rationale"].render(context)
        return self.compiled["target"].render(context)
