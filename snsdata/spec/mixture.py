"""Mixtures: which tasks one training stage takes, in what proportions, how it splits, samples and filters.

A mixture is data like a task spec: `mixtures/NAME.yaml` in the shipped catalogue or in a user spec folder of the
search path (`snsdata.spec.searchpath`), validated strictly, errors naming file, line and key path. A mixture can
`extends:` another one (by name or file) and change a few keys (`load_mixture`). `snsdata.build` turns a mixture plus
a data root into a build directory.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator

from snsdata.spec.loader import MIXTURES_DIR, SpecError, SpecIssue, merge_overrides, specs_root
from snsdata.spec.models import Capability, OutputFormat, TaskSpec
from snsdata.spec.yaml_loader import KeyPath, Located, SpecYamlError, load_located

Format = Literal["sft", "dpo", "rl", "cpt"]
Origin = Literal["sns", "general"]
EMPTY_TARGET = "empty_target"
"""`balance.by` value meaning "is the gold answer empty" (CHLW's `[]`, MRC's unanswerable) instead of a field."""
GOLD_CLASS = "gold_class"
"""`balance.by` value meaning "the gold's class as the task's reward reads it": the label of a label task, enum
fields of a JSON answer, else empty vs non-empty (a list, an extraction, a tagged answer list). One rule with it
covers every task of a mixture."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def origin_of(spec: TaskSpec) -> Origin:
    """General data is the `general` capability; everything else is SNS data."""
    return "general" if spec.capability == "general" else "sns"


def has_rationale(spec: TaskSpec) -> bool:
    """Specs whose gold can carry a rationale: a `target.rationale_field` (with its `rationale_template`). A tag
    alone does not make a target carry a reason."""
    return spec.target.rationale_field is not None


class Select(_Strict):
    """Which tasks a component takes. Every criterion given must hold; an empty selector takes every task."""

    ids: list[str] = Field(default_factory=list)
    """Tasks named here must have data: a named task whose data is missing is an error, not a skip."""
    capabilities: list[Capability] = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    """Any of these tags."""
    languages: list[str] = Field(default_factory=list)
    """Any of these languages."""
    origin: Origin | None = None
    output_formats: list[OutputFormat] = Field(default_factory=list)
    """Any of these output formats (`label` for DPO pairs from candidates)."""
    rationale: bool | None = None
    weak: bool | None = None
    """Only (or never) the weak tasks of a diagnosis (stage 2); needs `targeted` in the mixture."""
    exclude_ids: list[str] = Field(default_factory=list)
    exclude_tags: list[str] = Field(default_factory=list)

    def matches(self, spec: TaskSpec, weak_tasks: Iterable[str] = ()) -> bool:
        checks = [
            not self.ids or spec.id in self.ids,
            not self.capabilities or spec.capability in self.capabilities,
            not self.tags or bool(set(self.tags) & set(spec.tags)),
            not self.languages or bool(set(self.languages) & set(spec.languages)),
            self.origin is None or origin_of(spec) == self.origin,
            not self.output_formats or spec.output.format in self.output_formats,
            self.rationale is None or has_rationale(spec) == self.rationale,
            self.weak is None or (spec.id in set(weak_tasks)) == self.weak,
            spec.id not in self.exclude_ids,
            not set(self.exclude_tags) & set(spec.tags),
        ]
        return all(checks)


class RawText(_Strict):
    """Plain documents for continued pretraining, from files under the data root (skipped when absent)."""

    paths: list[str] = Field(min_length=1)
    format: Literal["txt", "jsonl", "parquet"]
    """`txt`: one document per non-empty line; `jsonl`/`parquet`: one per row, text in `field`."""
    field: str = "text"
    origin: Origin = "general"


class Component(_Strict):
    """One part of a mixture: tasks (`select`) or raw text (`raw`), with a share of the total or a count."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    select: Select | None = None
    raw: RawText | None = None
    share: float | None = Field(default=None, gt=0, le=1)
    """Fraction of (total - counted components); the shares of a mixture sum to 1."""
    count: int | None = Field(default=None, ge=0)
    """Absolute number of train rows."""
    temperature: float | None = Field(default=None, gt=0)
    """Overrides the mixture's temperature for sampling among this component's tasks."""
    max_upsample: float | None = Field(default=None, ge=1)
    target: Literal["gold", "soft_label"] = "gold"
    """`soft_label`: SFT targets are the stage-1 model's own answers from `--soft-labels` (RedOne 2.0 stage 2)."""
    text_fields: list[str] | None = None
    """CPT only: record fields whose values (joined by blank lines) are the document; default: prompt + target."""
    require_rationale: bool = False
    """Only train rows that carry a rationale (in the data, or from `--rollouts`) are drawn; the task's other train
    rows are dropped (step `rationale`). Its `share` is the rationale share the mixture declares, checked after
    sampling; a shortfall is reported, never filled with rationale-free rows or scaled away."""

    @model_validator(mode="after")
    def _one_source(self) -> Component:
        if (self.select is None) == (self.raw is None):
            raise ValueError("a component has exactly one of `select` (tasks) or `raw` (text files)")
        if self.require_rationale and self.select is None:
            raise ValueError("`require_rationale` needs a `select` of tasks")
        if self.share is not None and self.count is not None:
            raise ValueError("a component has a `share` or a `count`, not both")
        return self


class Balance(_Strict):
    """Class balancing of a task's train rows, so that a constant answer cannot farm reward (CHLW's 70% empty
    golds, a skewed binary label, the most frequent answer of a generated task)."""

    select: Select
    by: str
    """A field of the record (the label), `empty_target` (gold empty vs not) or `gold_class` (the reward's class
    of the gold: the label, the answer of an exact-answer task, else empty vs not)."""
    max_ratio: float | None = Field(default=None, ge=1)
    """Each class keeps at most max_ratio x the smallest class's rows. Default 1 when `max_lead` is not set."""
    max_lead: float | None = Field(default=None, gt=0, le=1)
    """No class keeps more than an even share of the task's kept rows (1/K for K classes) plus this: two classes
    end at most (0.5 + lead) : (0.5 - lead), and an open answer (a number) at most `lead` plus a sliver. A
    constant answer then earns at most chance + lead."""

    @property
    def ratio(self) -> float | None:
        """The max_ratio in force (1 when neither cap is set)."""
        return self.max_ratio if self.max_ratio is not None or self.max_lead is not None else 1.0

    def describe(self) -> str:
        caps = [f"max_ratio {self.ratio:g}"] if self.ratio is not None else []
        caps += [f"max_lead {self.max_lead:g}"] if self.max_lead is not None else []
        return f"{self.by} ({', '.join(caps)})"


class GroupBy(_Strict):
    """Records whose normalised values of these fields agree form one group, assigned to one split whole."""

    select: Select
    fields: list[str] = Field(min_length=1)


class Splits(_Strict):
    """Train/eval assignment. Keep it equal across the mixtures of one model, so eval sets agree between stages."""

    seed: int = 0
    """Separate from the sampling seed: `--seed` reshuffles sampling without moving records between splits."""
    eval_share: float = Field(default=0.1, ge=0, lt=1)
    """Share of groups held out, for tasks whose source has a single split."""
    eval_splits: list[str] = Field(default_factory=lambda: ["test", "eval", "val", "validation", "dev"])
    """Source splits that are evaluation splits (for tasks with several splits)."""
    eval_max_per_task: int | None = Field(default=200, ge=0)
    group_by: list[GroupBy] = Field(default_factory=list)


class Targeted(_Strict):
    """RedOne 2.0 stage 2: the weak tasks (from `--diagnosis`, else these defaults) and their failure weight."""

    default_weak_tasks: list[str] = Field(min_length=1)
    failure_weight: float = Field(default=1.0, gt=0)
    """SFT `weight` of a failure sample named by the diagnosis file."""


class PairCaps(_Strict):
    """DPO: caps on the train pairs of one task, so that one large task (or one kind of negative) cannot fill the
    preference stage. Rows over a cap are dropped in a seeded order and counted (`rejects`, step `pairs`)."""

    max_per_task: int | None = Field(default=None, ge=1)
    """Train pairs per task, every kind together."""
    max_per_source: int | None = Field(default=None, ge=1)
    """Train pairs per task and `pair_source` (ordinal, confusion, similar_label, predictions)."""


class Mixture(_Strict):
    """One stage's dataset: format, components with shares or counts, sampling, splits, pipeline steps."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    description: str
    recipe: str | None = None
    """Which paper and stage this reproduces (free text)."""
    format: Format
    seed: int = 0
    total: int | None = Field(default=None, gt=0)
    """Train rows. With a total every component has a share or a count; without, every selected record once."""
    temperature: float = Field(default=1.0, gt=0)
    """Task i of a component is drawn in proportion to n_i^(1/T): 1 = natural sizes, larger = flatter."""
    max_upsample: float = Field(default=1.0, ge=1)
    """No task is repeated more than this many times over (whole copies plus a seeded remainder)."""
    splits: Splits = Field(default_factory=Splits)
    steps: list[dict[str, Any]] = Field(default_factory=list)
    """Pipeline steps in order, as `snsdata.pipeline` declares them: `{step: NAME, ...params}` (a bare name is a
    step with no parameters); `chunk` (CPT) is the build's. Checked against the pipeline's registry at build."""
    balance: list[Balance] = Field(default_factory=list)
    targeted: Targeted | None = None
    pairs: PairCaps = Field(default_factory=PairCaps)
    """DPO only: caps on pairs per task and per pair source."""
    components: list[Component] = Field(min_length=1)

    _source: str = PrivateAttr(default="<memory>")
    _bases: tuple[str, ...] = PrivateAttr(default=())
    _lines: dict[KeyPath, tuple[str, int]] = PrivateAttr(default_factory=dict)

    @field_validator("steps", mode="before")
    @classmethod
    def _step_names(cls, value: Any) -> Any:
        """A bare step name is a step with no parameters."""
        if isinstance(value, list):
            return [{"step": item} if isinstance(item, str) else item for item in value]
        return value

    @field_validator("steps")
    @classmethod
    def _named(cls, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for item in value:
            if not isinstance(item.get("step"), str):
                raise ValueError(f"a step is a mapping with a `step:` name, got {item!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Mixture:
        names = [c.name for c in self.components]
        if len(set(names)) != len(names):
            raise ValueError(f"component names repeat: {sorted(n for n in set(names) if names.count(n) > 1)}")
        shares = [c.share for c in self.components if c.share is not None]
        if self.total is None and shares:
            raise ValueError("components with a `share` need the mixture's `total`")
        if self.total is not None:
            loose = [c.name for c in self.components if c.share is None and c.count is None]
            if loose:
                raise ValueError(f"with a `total`, every component has a `share` or a `count` (not: {loose})")
            if shares and abs(sum(shares) - 1) > 1e-6:
                raise ValueError(f"component shares sum to {sum(shares):g}, not 1")
            counted = sum(c.count or 0 for c in self.components)
            if counted > self.total:
                raise ValueError(f"component counts ({counted}) exceed the total ({self.total})")
        if self.format != "cpt" and any(c.raw for c in self.components):
            raise ValueError("raw-text components (`raw`) have no prompt: only a `cpt` mixture takes them")
        if self.format != "sft" and any(c.target == "soft_label" for c in self.components):
            raise ValueError("soft-label targets (`target: soft_label`) are SFT targets: use format `sft`")
        if self.format != "dpo" and (self.pairs.max_per_task or self.pairs.max_per_source):
            raise ValueError("`pairs` caps DPO pairs: only a `dpo` mixture takes them")
        if self.format not in ("sft", "rl") and any(c.require_rationale for c in self.components):
            raise ValueError("`require_rationale` components hold rationale-bearing targets: use format `sft` or `rl`")
        uses_weak = any(c.select and c.select.weak is not None for c in self.components)
        if uses_weak and self.targeted is None:
            raise ValueError("a component selects `weak` tasks but the mixture declares no `targeted` block")
        return self

    @property
    def rationale_share(self) -> float | None:
        """The share of train rows that must carry a rationale (the `require_rationale` components' shares of the
        total), or None when the mixture declares none."""
        shares = [c.share for c in self.components if c.require_rationale and c.share is not None]
        return sum(shares) if shares else None

    @property
    def source(self) -> str:
        """The file this mixture was loaded from."""
        return self._source

    @property
    def bases(self) -> tuple[str, ...]:
        """The files it `extends:`, nearest first (empty for a mixture that extends nothing)."""
        return self._bases

    def where(self, *path: str | int) -> tuple[str, int]:
        """File and line of a key path (for errors found after loading, e.g. an unknown task id)."""
        return Located(None, self._lines).where(tuple(path)) if self._lines else (self._source, 0)


def mixtures_root() -> Path:
    """The shipped `task_specs/mixtures/` folder."""
    return specs_root() / MIXTURES_DIR


def list_mixtures(root: Path | None = None) -> list[str]:
    """Names of the mixtures in a folder, default: of the search path (shipped + user folders)."""
    if root is not None:
        return sorted(p.stem for p in root.glob("*.yaml"))
    from snsdata.spec.searchpath import mixture_files

    return list(mixture_files())


def _issues(located: Located, exc: ValidationError) -> list[SpecIssue]:
    issues = []
    for error in exc.errors():
        loc = tuple(error["loc"])
        file, line = located.where(loc)
        message = "unknown key (misspelt?)" if error["type"] == "extra_forbidden" else error["msg"]
        issues.append(SpecIssue(file, line, ".".join(str(p) for p in loc), message))
    return issues


def _find(name: str) -> Path:
    from snsdata.spec.searchpath import SHIPPED, find_mixture, mixture_files

    found = find_mixture(name)
    if found is None:
        known = mixture_files().values()
        shipped = ", ".join(m.name for m in known if m.origin == SHIPPED)
        yours = ", ".join(m.name for m in known if m.origin != SHIPPED)
        raise SpecError([SpecIssue(name, 0, "", f"no mixture file or mixture of that name on the search path "
                                                f"(shipped: {shipped}" + (f"; yours: {yours})" if yours else ")"))])
    return found.path


def _base_file(located: Located, path: Path) -> Path:
    """What `extends:` names: a YAML file relative to this one, or a mixture name on the search path (the shipped
    mixture when the name is this file's own, so `mixtures/stage2.yaml` can extend the shipped `stage2`)."""
    from snsdata.spec.searchpath import find_mixture, shipped_mixture

    ref = located.data["extends"]
    file, line = located.where(("extends",))
    if not isinstance(ref, str) or not ref:
        raise SpecError([SpecIssue(file, line, "extends", "a mixture name or a YAML file path")])
    if ref.endswith((".yaml", ".yml")):
        base = (path.parent / ref).resolve()
        if not base.is_file():
            raise SpecError([SpecIssue(file, line, "extends", f"base mixture file {ref!r} not found at {base}")])
        return base
    found = find_mixture(ref)
    base = found.path.resolve() if found is not None else None
    if base == path:
        base = shipped_mixture(ref)
    if base is None:
        raise SpecError([SpecIssue(file, line, "extends", f"no mixture named {ref!r} to extend (other than this "
                                                          "file); `snsdata mixtures` lists them")])
    return base.resolve()


def _components_by_name(base: Located, override: Located) -> tuple[list[Any], dict[KeyPath, Any]]:
    """`components:` given as a mapping patches the base's components by name: a mapping merges into the component
    of that name (a new name appends a component), `null` removes it. Returns the list and its key-path lines."""
    patches = override.data["components"]
    components = base.data.get("components")
    components = components if isinstance(components, list) else []
    old_index = {c.get("name"): i for i, c in enumerate(components) if isinstance(c, dict)}
    for name, patch in patches.items():
        where = override.where(("components", name))
        if patch is None and name not in old_index:
            raise SpecError([SpecIssue(*where, f"components.{name}", f"the base has no component {name!r} "
                                                                      f"to remove (it has: {sorted(old_index)})")])
        if patch is not None and not isinstance(patch, dict):
            raise SpecError([SpecIssue(*where, f"components.{name}", "a mapping of the keys to change, or null "
                                                                      "to remove the component")])
        if isinstance(patch, dict) and patch.get("name", name) != name:
            raise SpecError([SpecIssue(*override.where(("components", name, "name")), f"components.{name}.name",
                                       "a component patched by name keeps its name")])
    merged: list[Any] = []
    lines: dict[KeyPath, Any] = {}

    def place(old: KeyPath, new_index: int, source: dict[KeyPath, Any]) -> None:
        """Carry the lines of one component from its old key path to its place in the merged list."""
        for key, at in source.items():
            if key[: len(old)] == old:
                lines[("components", new_index, *key[len(old):])] = at

    for i, component in enumerate(components):
        name = component.get("name") if isinstance(component, dict) else None
        patch = patches.get(name, {})
        if patch is None:
            continue
        place(("components", i), len(merged), base.lines)
        place(("components", name), len(merged), override.lines)
        merged.append(merge_overrides(component, patch))
    for name, patch in patches.items():
        if name not in old_index:
            place(("components", name), len(merged), override.lines)
            lines[("components", len(merged), "name")] = override.where(("components", name))
            merged.append({"name": name, **patch})
    lines[("components",)] = override.where(("components",))
    return merged, lines


def _outside_components(lines: dict[KeyPath, Any]) -> dict[KeyPath, Any]:
    return {key: at for key, at in lines.items() if key[:1] != ("components",)}


def _load_located(path: Path, chain: tuple[Path, ...] = ()) -> tuple[Located, tuple[Path, ...]]:
    """The mixture file's mapping with its `extends:` chain applied; (located data, base files nearest first)."""
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise SpecError([SpecIssue(str(path), 0, "extends", f"circular extends: {cycle}")])
    try:
        located = load_located(path)
    except SpecYamlError as exc:
        raise SpecError([SpecIssue(str(path), exc.line, exc.key, str(exc))]) from None
    if not isinstance(located.data, dict):
        raise SpecError([SpecIssue(str(path), 1, "", "a mixture file is a mapping of keys")])
    located.data.setdefault("name", path.stem)  # never inherited: a mixture is known by its own name
    if "extends" not in located.data:
        return located, ()
    base_path = _base_file(located, path)
    del located.data["extends"]
    base, bases = _load_located(base_path, (*chain, path))
    own = dict(located.data)
    patches = own.pop("components", None)
    if patches is not None and not isinstance(patches, list | dict):
        raise SpecError([SpecIssue(*located.where(("components",)), "components",
                                   "a list (replaces the base's components) or a mapping by component name "
                                   "(changes those components)")])
    data = merge_overrides(base.data, own)
    if patches is None:
        lines = {**base.lines, **located.lines}
    elif isinstance(patches, list):
        data["components"] = patches
        lines = _outside_components(base.lines) | located.lines
    else:
        data["components"], component_lines = _components_by_name(base, located)
        lines = _outside_components(base.lines) | _outside_components(located.lines) | component_lines
    return Located(data, lines), (base_path, *bases)


def load_mixture(name_or_path: str | Path) -> Mixture:
    """A mixture by name on the search path (`sft_step1`, or a user folder's `mixtures/NAME.yaml`) or by path to a
    YAML file; `extends:` applied; SpecError names file, line and key path.

    `extends: NAME` (or a relative `FILE.yaml`) starts from that mixture: mappings merge key by key, lists and
    scalars replace, except `components`, which a list replaces and a mapping patches by component name (`{name:
    {share: 0.2}}` changes one key, `{name: null}` removes a component, a new name adds one). `name` is never
    inherited: it defaults to the file's stem, and a mixture found by name must carry that name.
    """
    path = Path(name_or_path)
    by_name = not path.is_file()
    if by_name:
        path = _find(str(name_or_path))
    located, bases = _load_located(path)
    if by_name and located.data.get("name") != path.stem:
        file, line = located.where(("name",))
        raise SpecError([SpecIssue(file, line, "name", f"mixture {located.data.get('name')!r} is in {path.name}: "
                                                       f"a mixture found by name carries its file's name "
                                                       f"({path.stem!r})")])
    try:
        mixture = Mixture.model_validate(located.data)
    except ValidationError as exc:
        raise SpecError(_issues(located, exc)) from None
    mixture._source = str(path)
    mixture._bases = tuple(str(b) for b in bases)
    mixture._lines = located.lines
    return mixture


def check_against_catalogue(mixture: Mixture, specs: dict[str, TaskSpec]) -> list[SpecIssue]:
    """Task ids the mixture names that the catalogue lacks, and balance/group fields no selected task has."""
    issues = []

    def unknown(ids: list[str], *path: str | int) -> None:
        for index, task_id in enumerate(ids):
            if task_id not in specs:
                file, line = mixture.where(*path, index)
                issues.append(SpecIssue(file, line, ".".join(str(p) for p in (*path, index)),
                                        f"unknown task id {task_id!r}"))

    for i, component in enumerate(mixture.components):
        if component.select:
            unknown(component.select.ids, "components", i, "select", "ids")
            unknown(component.select.exclude_ids, "components", i, "select", "exclude_ids")
    if mixture.targeted:
        unknown(mixture.targeted.default_weak_tasks, "targeted", "default_weak_tasks")
    for i, rule in enumerate(mixture.balance):
        unknown(rule.select.ids, "balance", i, "select", "ids")
        if rule.by in (EMPTY_TARGET, GOLD_CLASS):
            continue
        for spec in specs.values():
            if rule.select.matches(spec) and rule.by not in spec.source.provided_fields():
                file, line = mixture.where("balance", i, "by")
                issues.append(SpecIssue(file, line, f"balance.{i}.by",
                                        f"task {spec.id} has no field {rule.by!r}"))
    for i, group in enumerate(mixture.splits.group_by):
        unknown(group.select.ids, "splits", "group_by", i, "select", "ids")
        for spec in specs.values():
            missing = set(group.fields) - spec.source.provided_fields()
            if group.select.matches(spec) and missing:
                file, line = mixture.where("splits", "group_by", i, "fields")
                issues.append(SpecIssue(file, line, f"splits.group_by.{i}.fields",
                                        f"task {spec.id} has no field(s) {sorted(missing)}"))
    return issues
