"""One stage's dataset from a mixture: read, split, filter, render, target, balance, sample, format, write.

The order matters and is fixed: splits come before any filter so that decontamination knows every eval record;
rendering uses the split seed (not the sampling seed), so a record's prompt is the same in every stage and
soft labels keyed by prompt hash find it; sampling comes last, so quotas count rows that can really be used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from snsdata.build import steps as pipeline_steps
from snsdata.build.formats import (
    COLUMNS,
    KEYS,
    PAIR_COLUMNS,
    add_rejected,
    cpt_text,
    field_columns,
    format_rows,
    has_rationale,
    prompt_hash,
    render_frame,
)
from snsdata.build.inputs import Diagnosis, SoftLabels, read_diagnosis, read_soft_labels, sha256_file
from snsdata.build.keys import hash_hex, hash_u64
from snsdata.build.ledger import Ledger
from snsdata.build.negatives import Predicted, cap_pairs, read_predictions
from snsdata.build.rationales import RATIONALE_STEP, Rationales, rationale_summary
from snsdata.build.rationales import attach as attach_rationales
from snsdata.build.rationales import collect as collect_rationales
from snsdata.build.sampling import allocate, balance, draw
from snsdata.build.splits import EVAL, LEAK, TRAIN, assign_splits, fixed_roles
from snsdata.pipeline.base import DUPLICATE_OF, REASON
from snsdata.pipeline.decontam import EvalIndex, flag_contaminated
from snsdata.readers import DataNotFound, SourceError, data_found, default_data_root, read_task
from snsdata.spec import SpecError, TaskSpec, load_catalogue
from snsdata.spec.errors import InvalidInput
from snsdata.spec.mixture import (
    EMPTY_TARGET,
    Component,
    Mixture,
    Splits,
    check_against_catalogue,
    load_mixture,
    origin_of,
)
from snsdata.spec.models import GeneratedSource


class BuildError(InvalidInput):
    """A build that cannot run as asked (a named task without data, a bad input file); says what to do."""


@dataclass
class Reporter:
    """Terminal lines and progress bars (silent without a console)."""

    console: Console | None = None
    lines: list[str] = field(default_factory=list)

    def say(self, message: str, style: str = "") -> None:
        self.lines.append(message)
        if self.console is not None:
            self.console.print(message, style=style or None, markup=False, highlight=False, soft_wrap=True)

    def progress(self) -> Progress:
        return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        console=self.console, transient=True,
                        disable=self.console is None or not self.console.is_terminal)


@dataclass
class Targeting:
    """Stage 2's weak tasks and failure samples, and where they came from."""

    weak_tasks: list[str]
    failures: dict[str, list[str]]
    source: str
    weight: float


@dataclass
class Prepared:
    """A mixture read, split, filtered and (where needed) rendered: per task rows with `_split`, `_pinned` and,
    once rendered, `_prompt`, `_target`; raw-text rows apart. The build adds targets, samples and formats."""

    mixture: Mixture
    specs: dict[str, TaskSpec]
    plan: dict[str, Component]
    frames: dict[str, pl.DataFrame]
    raw: dict[str, pl.DataFrame]
    ledger: Ledger
    targeting: Targeting | None
    skipped: list[dict[str, str]]
    inputs: dict[str, Any]
    steps: pipeline_steps.StepPlan
    rationales: Rationales | None = None
    reference: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=REFERENCE_SCHEMA))
    """The eval items training rows were checked against (`eval_reference`)."""


def _plan(mixture: Mixture, specs: dict[str, TaskSpec], root: Path, weak: list[str],
          report: Reporter) -> tuple[dict[str, Component], list[dict[str, str]]]:
    """Each task goes to the first component that selects it; tasks without data are skipped unless named."""
    plan: dict[str, Component] = {}
    skipped = []
    for component in mixture.components:
        if component.select is None:
            continue
        for task_id, spec in specs.items():
            if task_id in plan or not component.select.matches(spec, weak):
                continue
            if not data_found(spec, root):
                if task_id in component.select.ids:
                    raise BuildError(f"{mixture.name}: component {component.name!r} names task {task_id}, whose "
                                     f"data is not under {root}; point --data-root at it (`snsdata tasks list "
                                     f"--data-root DIR` shows what is found)")
                skipped.append({"task_id": task_id, "component": component.name,
                                "reason": f"data not under the data root ({spec.source.availability})"})
                continue
            plan[task_id] = component
    if skipped:
        by_kind: dict[str, int] = {}
        for item in skipped:
            kind = specs[item["task_id"]].source.availability
            by_kind[kind] = by_kind.get(kind, 0) + 1
        listed = ", ".join(f"{count} {kind}" for kind, count in sorted(by_kind.items()))
        report.say(f"skip {len(skipped)} task(s) whose data is not under {root} ({listed}; ids in the manifest's "
                   "`skipped`; `snsdata tasks list --data-root DIR` shows what a folder holds)", "yellow")
    return plan, skipped


def _targeting(mixture: Mixture, diagnosis: Path | None, specs: dict[str, TaskSpec],
               report: Reporter) -> Targeting | None:
    if mixture.targeted is None:
        if diagnosis is not None:
            raise BuildError(f"{mixture.name} has no `targeted` block: --diagnosis applies to stage 2 mixtures")
        return None
    if diagnosis is None:
        report.say(f"no --diagnosis: targeting the default weak tasks of {mixture.name} "
                   f"({', '.join(mixture.targeted.default_weak_tasks)}), with no failure samples", "yellow")
        return Targeting(sorted(mixture.targeted.default_weak_tasks), {}, "default", mixture.targeted.failure_weight)
    found: Diagnosis = read_diagnosis(diagnosis, set(specs))
    report.say(f"diagnosis {diagnosis}: weak tasks {', '.join(found.weak_tasks) or '(none)'}")
    return Targeting(found.weak_tasks, {t: ids for t, ids in found.failures.items() if t in found.weak_tasks},
                     "diagnosis", mixture.targeted.failure_weight)


def _cap(frame: pl.DataFrame, limit: int | None, seed: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """At most `limit` records of a task (seeded by record id), for quick builds; the rest are returned apart."""
    if limit is None or frame.height <= limit:
        return frame, frame.clear()
    ranked = frame.with_columns(_pinned=pl.lit(False))
    ranked = draw(ranked, limit, seed).drop("_pinned")
    return ranked.filter(pl.col("_copies") > 0).drop("_copies"), ranked.filter(pl.col("_copies") == 0).drop("_copies")


def _read(specs: dict[str, TaskSpec], root: Path, plan: dict[str, Component], ledger: Ledger,
          max_per_task: int | None, split_seed: int,
          report: Reporter) -> tuple[dict[str, pl.DataFrame], dict[str, pl.DataFrame], dict]:
    """Read every task with data (selected ones are counted; the others only serve splits and decontamination).

    Returns the records capped to `max_per_task` (what the build splits and uses), all records (what
    decontamination checks against: a benchmark item capped away is still a benchmark item) and the input files.
    """
    frames, full, files = {}, {}, {}
    available = [s for s in specs.values() if data_found(s, root)]
    with report.progress() as progress:
        bar = progress.add_task("read", total=len(available))
        for spec in available:
            progress.update(bar, description=f"read {spec.id}")
            try:
                frame, rejects, counts = _read_task(spec, root)
            except (DataNotFound, SourceError) as exc:
                if spec.id in plan:
                    raise BuildError(str(exc)) from None
                report.say(f"cannot read {spec.id} (not in this mixture; its records take no part in splits or "
                           f"decontamination): {exc}", "yellow")
                progress.advance(bar)
                continue
            full[spec.id] = frame
            frame, over = _cap(frame, max_per_task, split_seed)
            frames[spec.id] = frame
            if spec.id in plan:
                ledger.count(spec.id, "read", sum(c["read"] for c in counts.values()))
                ledger.count(spec.id, "excluded", sum(c["excluded"] for c in counts.values()))
                ledger.add_prepared(rejects)
                ledger.count(spec.id, "parsed", frame.height + over.height)
                ledger.add("limit", over, f"over --max-per-task {max_per_task}")
                ledger.count(spec.id, "limit", frame.height)
                files[spec.id] = _input_files(spec, root)
            progress.advance(bar)
    return frames, full, files


_READ_CACHE: dict[tuple[Any, ...], tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, int]]]] = {}
_READ_CACHE_SIZE = 64


def _read_task(spec: TaskSpec, root: Path) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, dict[str, int]]]:
    """`read_task`, collected, and kept for the life of the process while the files are unchanged.

    A build reads every task of the catalogue (splits and decontamination need them all), so repeated builds in
    one process (tests, the loop) would otherwise re-read the same files.
    """
    stamps = []
    for rel in _source_paths(spec):
        stat = (root / rel).stat() if (root / rel).is_file() else None
        stamps.append((rel, stat.st_size, stat.st_mtime_ns) if stat else (rel, None, None))
    key = (spec.model_dump_json(), str(root.resolve()), tuple(stamps))
    if key not in _READ_CACHE:
        result = read_task(spec, root)
        if len(_READ_CACHE) >= _READ_CACHE_SIZE:
            _READ_CACHE.pop(next(iter(_READ_CACHE)))
        _READ_CACHE[key] = (result.frame.collect(), result.rejects, result.counts)
    return _READ_CACHE[key]


def _source_paths(spec: TaskSpec) -> list[str]:
    """Every file a task reads, relative to the data root (none for generated sources)."""
    source = spec.source
    if isinstance(source, GeneratedSource):
        return sorted([source.train] if isinstance(source.train, str) else source.train or [])
    paths = set()
    values = [*source.splits.values(), *([source.train] if source.train is not None else [])]
    for value in values:
        for rel in [value] if isinstance(value, str) else value:
            if source.reader == "tweeteval":
                paths.update({f"{rel}_text.txt", f"{rel}_labels.txt"})
            else:
                paths.add(rel)
    for label_map in source.label_maps.values():
        if label_map.file:
            paths.add(label_map.file)
    return sorted(paths)


def _input_files(spec: TaskSpec, root: Path) -> list[dict[str, str]] | dict[str, Any]:
    source = spec.source
    found = [{"path": rel, "sha256": sha256_file(root / rel)} for rel in _source_paths(spec) if (root / rel).is_file()]
    if isinstance(source, GeneratedSource):
        return {"generator": source.generator, "params": source.params, "splits": source.splits,
                **({"train": found} if found else {})}
    return found


def _raw_rows(mixture: Mixture, root: Path, ledger: Ledger, report: Reporter) -> tuple[dict[str, pl.DataFrame], list]:
    """Raw-text components: documents from files under the data root (a missing file is skipped, said so)."""
    out, files = {}, []
    for component in mixture.components:
        if component.raw is None:
            continue
        task_id = f"raw_{component.name}"
        texts: list[str] = []
        for rel in component.raw.paths:
            path = root / rel
            if not path.is_file():
                report.say(f"skip raw text {rel}: not under {root}", "yellow")
                continue
            files.append({"path": rel, "sha256": sha256_file(path)})
            if component.raw.format == "txt":
                texts.extend(line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
            else:
                frame = pl.read_ndjson(path) if component.raw.format == "jsonl" else pl.read_parquet(path)
                texts.extend(t for t in frame[component.raw.field].cast(pl.String).to_list() if t and t.strip())
        frame = pl.DataFrame({"text": texts}, schema={"text": pl.String}).with_columns(
            task_id=pl.lit(task_id), split=pl.lit(TRAIN))
        ids = hash_hex(frame["text"], f"{task_id}\x1f")
        repeat = pl.col("record_id").cum_count().over("record_id") - 1
        frame = frame.with_columns(record_id=ids).with_columns(
            record_id=pl.when(repeat > 0).then(pl.format("{}-{}", "record_id", repeat)).otherwise("record_id"),
        ).select("task_id", "record_id", "split", "text")
        ledger.count(task_id, "read", frame.height)
        ledger.count(task_id, "excluded", 0)
        out[task_id] = frame.with_columns(_split=pl.lit(TRAIN))
    return out, files


def _apply_splits(frames: dict[str, pl.DataFrame], assigned: pl.DataFrame, plan: dict[str, Component],
                  ledger: Ledger) -> dict[str, pl.DataFrame]:
    out = {}
    for task_id in sorted(plan):
        frame = frames.get(task_id)
        if frame is None:
            continue
        joined = frame.join(assigned.select("task_id", "record_id", _split="split", _leak_of="leak_of"),
                            on=["task_id", "record_id"], how="left")
        leaks = joined.filter(pl.col("_split") == LEAK)
        ledger.add("split", leaks, pl.format("shares content with eval record {}", pl.col("_leak_of")),
                   duplicate_of=pl.col("_leak_of"))
        kept = joined.filter(pl.col("_split") != LEAK).drop("_leak_of")
        ledger.count(task_id, "split", kept.height)
        ledger.count(task_id, "split_train", kept.filter(pl.col("_split") == TRAIN).height)
        ledger.count(task_id, "split_eval", kept.filter(pl.col("_split") == EVAL).height)
        out[task_id] = kept
    return out


def _render(frames: dict[str, pl.DataFrame], specs: dict[str, TaskSpec], ledger: Ledger, seed: int,
            report: Reporter, pools: dict[str, pl.DataFrame] | None = None,
            step: str = "render") -> dict[str, pl.DataFrame]:
    """Add `_prompt` and `_target` to the given rows; rows that fail to render go to rejects (step `render`).

    Few-shot examples come from the task's train records in `pools` (default: the rows themselves), so rows drawn
    late are rendered exactly as they would have been early.
    """
    out = {}
    with report.progress() as progress:
        bar = progress.add_task("render", total=sum(f.height for f in frames.values()))
        for task_id, frame in frames.items():
            spec = specs[task_id]
            progress.update(bar, description=f"render {task_id}")
            pool = None
            if spec.prompt.few_shot.split:
                source = (pools or frames)[task_id]
                pool = source.filter((pl.col("split") == spec.prompt.few_shot.split)
                                     & (pl.col("_split") == TRAIN)).select(*KEYS, *field_columns(source)).to_dicts()
            rendered, failed = render_frame(spec, frame, pool, seed)
            ledger.add("render", failed, pl.col("_reason"))
            ledger.count(task_id, step, rendered.height)
            out[task_id] = rendered
            progress.advance(bar, frame.height)
    return out


def _early_render(mix: Mixture, plan: dict[str, Component], specs: dict[str, TaskSpec]) -> set[str]:
    """Tasks whose prompts or golds are needed before sampling; the others are rendered only where drawn.

    DPO pairs, empty-gold balancing, soft labels (matched by prompt hash) and CPT documents made of prompt + gold
    read the rendering; everything else waits, so a build renders the rows it writes, not every row it read.
    """
    early = set()
    for task_id, component in plan.items():
        spec = specs[task_id]
        rule = next((r for r in mix.balance if r.select.matches(spec)), None)
        if (mix.format == "dpo" or component.target == "soft_label" or (rule and rule.by == EMPTY_TARGET)
                or (mix.format == "cpt" and not component.text_fields)):
            early.add(task_id)
    return early


def prepare(mixture: Mixture | str | Path, *, data_root: str | Path | None = None,
            max_per_task: int | None = None, diagnosis: str | Path | None = None,
            catalogue: dict[str, TaskSpec] | None = None, console: Console | None = None) -> Prepared:
    """Read, split, filter and render every record of the mixture's tasks (what does not depend on the sampling
    seed): per task `_split`, `_prompt`, `_target`. `snsdata.loop` matches predictions and soft labels against it.
    """
    mix = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
    return _prepare(mix, data_root, max_per_task, diagnosis, catalogue, Reporter(console), render_all=True)


@dataclass(frozen=True)
class RolloutInput:
    """`--rollouts`: a stage-1 rollout log and the pass thresholds that call a rollout correct."""

    path: Path
    pass_threshold: float = 0.5
    task_pass_thresholds: dict[str, float] = field(default_factory=dict)


def _prepare(mix: Mixture, data_root: str | Path | None, max_per_task: int | None, diagnosis: str | Path | None,
             catalogue: dict[str, TaskSpec] | None, report: Reporter, render_all: bool,
             rollouts: RolloutInput | None = None) -> Prepared:
    specs = catalogue if catalogue is not None else load_catalogue()
    issues = check_against_catalogue(mix, specs)
    if issues:
        raise SpecError(issues)
    steps = pipeline_steps.plan_steps(mix)
    root = Path(data_root) if data_root is not None else default_data_root()
    targeting = _targeting(mix, Path(diagnosis) if diagnosis else None, specs, report)
    plan, skipped = _plan(mix, specs, root, targeting.weak_tasks if targeting else [], report)
    ledger = Ledger()
    all_frames, full_frames, files = _read(specs, root, plan, ledger, max_per_task, mix.splits.seed, report)
    assigned = assign_splits(all_frames, specs, mix.splits)
    frames = _apply_splits(all_frames, assigned, plan, ledger)
    rationales = None
    if rollouts is not None:  # before the record steps, so that decontamination sees the rationales too
        rationales = collect_rationales(rollouts.path, frames, specs, rollouts.pass_threshold,
                                        rollouts.task_pass_thresholds, mix.splits.seed)
        frames = attach_rationales(frames, specs, rationales)
        skipped_rollouts = ", ".join(f"{n} {reason}" for reason, n in rationales.skipped.items()) or "none"
        report.say(f"rollouts {rollouts.path}: {rationales.found.height} train record(s) get a rationale from "
                   f"{rationales.rows} rollout(s); skipped: {skipped_rollouts}")
    raw, raw_files = _raw_rows(mix, root, ledger, report)
    reference = eval_reference(full_frames, assigned, specs, mix.splits)
    pipeline_steps.attach_reference(steps, reference)
    if mix.format != "cpt":  # CPT runs its steps over documents (`build`)
        frames = pipeline_steps.run_record_steps(steps, frames, ledger, report)
    early = set(frames) if render_all else _early_render(mix, plan, specs)
    frames |= _render({t: f for t, f in frames.items() if t in early}, specs, ledger, mix.splits.seed, report)
    frames = {t: f.with_columns(_pinned=pl.lit(False)) for t, f in frames.items()}
    inputs = {"data_root": str(root), "tasks": {t: files[t] for t in sorted(files)}, "raw_text": raw_files}
    if rollouts is not None:
        inputs["rollouts"] = {"path": str(rollouts.path), "sha256": sha256_file(rollouts.path)}
    return Prepared(mix, specs, plan, frames, raw, ledger, targeting, skipped, inputs, steps, rationales, reference)


REFERENCE_SCHEMA = {"eval_id": pl.String, "task_id": pl.String, "record_id": pl.String, "benchmark": pl.String,
                    "item": pl.UInt64, pipeline_steps.TEXT: pl.String}


def eval_reference(frames: dict[str, pl.DataFrame], assigned: pl.DataFrame, specs: dict[str, TaskSpec],
                   policy: Splits) -> pl.DataFrame:
    """Every eval item of every task with data (not only the mixture's): what training rows must not contain.

    An item is a record that must evaluate (every record of an eval-only task, a task's own test split) or
    that the split put in eval; `frames` may hold more records than were split (`--max-per-task`). Columns:
    `eval_id` (task/record), `benchmark` (the spec's `eval.benchmark`, else its task id), `item` (one key for
    the same content in several tasks: the sorted lines of the text, so RedTrans' two directions of a pair are
    one item) and the text. Generated tasks that may train are left out: their eval records are disjoint from
    their train records by construction, and their question templates (a fixed sentence around new numbers)
    would match every train record of the task.
    """
    parts = []
    evals = assigned.filter(pl.col("split") == EVAL).select("task_id", "record_id", _assigned=pl.lit(True))
    for task_id in sorted(frames):
        spec = specs[task_id]
        if isinstance(spec.source, GeneratedSource) and not spec.eval_only:
            continue
        fixed_eval, _ = fixed_roles(spec, policy)
        frame = frames[task_id].join(evals, on=["task_id", "record_id"], how="left")
        frame = frame.filter(fixed_eval | pl.col("_assigned").fill_null(False)).drop("_assigned")
        if frame.is_empty():
            continue
        text = pipeline_steps.with_text(frame).get_column(pipeline_steps.TEXT)
        item = hash_u64(text.str.strip_chars().str.split("\n").list.sort().list.join("\n"), "item\x1f")
        parts.append(frame.select("task_id", "record_id").with_columns(
            eval_id=pl.format("{}/{}", "task_id", "record_id"), benchmark=pl.lit(spec.eval.benchmark or task_id),
            item=item, **{pipeline_steps.TEXT: text}).select(list(REFERENCE_SCHEMA)))
    return pl.concat(parts) if parts else pl.DataFrame(schema=REFERENCE_SCHEMA)


def catalogue_reference(data_root: str | Path | None = None, mixture: Mixture | str | Path = "stage1",
                        catalogue: dict[str, TaskSpec] | None = None) -> pl.DataFrame:
    """The eval items a build of `mixture` checks its rows against (`eval_reference`): every task of the
    catalogue with data under the root, split by the mixture's `splits` (the shipped mixtures share one)."""
    mix = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
    specs = catalogue if catalogue is not None else load_catalogue()
    root = Path(data_root) if data_root is not None else default_data_root()
    frames = {}
    for spec in specs.values():
        if data_found(spec, root):
            try:
                frames[spec.id] = _read_task(spec, root)[0]
            except (DataNotFound, SourceError) as exc:
                raise BuildError(f"cannot read the eval items of {spec.id}: {exc}") from None
    return eval_reference(frames, assign_splits(frames, specs, mix.splits), specs, mix.splits)


def soft_label_prompts(prepared: Prepared) -> pl.DataFrame:
    """Train rows of the mixture's soft-label components: `task_id, record_id, prompt_hash, prompt`.

    These are the prompts whose stage-1 answers stage 2 trains on; a soft-label file should cover all of them.
    """
    parts = []
    for task_id, frame in prepared.frames.items():
        if prepared.plan[task_id].target != "soft_label":
            continue
        train = frame.filter(pl.col("_split") == TRAIN)
        hashes = pl.Series("prompt_hash", [prompt_hash(p) for p in train["_prompt"].to_list()], dtype=pl.String)
        parts.append(train.select("task_id", "record_id", hashes, prompt="_prompt"))
    if not parts:
        return pl.DataFrame(schema={"task_id": pl.String, "record_id": pl.String, "prompt_hash": pl.String,
                                    "prompt": COLUMNS["rl"]["prompt"]})
    return pl.concat(parts).sort("task_id", "record_id")


def _sft_targets(prepared: Prepared, soft: SoftLabels | None, report: Reporter) -> list[str]:
    """SFT columns `_completion`, `_target_kind`, `_weight`, `_pinned`: gold, soft label or failure sample."""
    fallbacks = []
    targeting = prepared.targeting
    soft_tasks = [t for t in prepared.frames if prepared.plan[t].target == "soft_label"]
    if soft_tasks and soft is None:
        message = (f"no --soft-labels: the general data of {prepared.mixture.name} ({', '.join(soft_tasks)}) "
                   "trains on reference answers instead of the stage-1 model's own answers")
        report.say(message, "yellow")
        fallbacks.append(message)
    for task_id, frame in prepared.frames.items():
        failures = (targeting.failures.get(task_id, []) if targeting else [])
        failed = pl.col("record_id").is_in(failures) & (pl.col("_split") == TRAIN)
        frame = frame.with_columns(
            _pinned=failed,
            _target_kind=pl.when(failed).then(pl.lit("failure_sample")).otherwise(pl.lit("gold")),
            _weight=pl.when(failed).then(pl.lit(targeting.weight if targeting else 1.0)).otherwise(pl.lit(1.0)),
            _completion=pl.lit(None, dtype=pl.String),
        )
        if task_id in soft_tasks and soft is not None:
            frame = _join_soft(frame, soft, prepared.ledger)
        prepared.frames[task_id] = frame
        prepared.ledger.count(task_id, "target", frame.height)
    if targeting and targeting.source == "default":
        fallbacks.append(f"no --diagnosis: default weak tasks {', '.join(targeting.weak_tasks)}, no failure samples")
    return fallbacks


def _join_soft(frame: pl.DataFrame, soft: SoftLabels, ledger: Ledger) -> pl.DataFrame:
    """Train rows take the soft label of their record (or of their prompt hash); rows without one are rejected."""
    hashes = pl.Series("_prompt_hash", [prompt_hash(p) for p in frame["_prompt"].to_list()], dtype=pl.String)
    joined = (frame.with_columns(hashes)
              .join(soft.by_record, on=["task_id", "record_id"], how="left")
              .join(soft.by_prompt, left_on=["task_id", "_prompt_hash"], right_on=["task_id", "prompt_hash"],
                    how="left")
              .with_columns(_soft=pl.coalesce("_soft", "_soft_by_prompt")).drop("_soft_by_prompt", "_prompt_hash"))
    train = pl.col("_split") == TRAIN
    missing = joined.filter(train & pl.col("_soft").is_null())
    ledger.add("soft_label", missing, f"no usable soft label for this record in {soft.path.name}")
    labelled = train & pl.col("_soft").is_not_null()
    return joined.filter(~train | pl.col("_soft").is_not_null()).with_columns(
        _completion=pl.when(labelled).then(pl.col("_soft")),
        _target_kind=pl.when(labelled).then(pl.lit("soft_label")).otherwise(pl.col("_target_kind")),
    ).drop("_soft")


def _dpo_pairs(prepared: Prepared, seed: int, predicted: Predicted | None, threshold: float) -> None:
    """Each record's pair: the model's own worst wrong answer where `--predictions` has one, else the hardest
    wrong option (`snsdata.build.negatives`); then the mixture's caps per task and per pair source."""
    caps = prepared.mixture.pairs
    for task_id, frame in prepared.frames.items():
        own = predicted.own.filter(pl.col("task_id") == task_id).drop("task_id") if predicted else None
        confusion = predicted.confusion.get(task_id) if predicted else None
        if own is not None and own.height:
            frame = frame.join(own, on="record_id", how="left")
            answered = frame.filter(pl.col("_own").is_not_null()).rename({"_own": "_rejected"}).with_columns(
                _pair_source=pl.lit("predictions"))
            frame = frame.filter(pl.col("_own").is_null()).drop("_own")
        else:
            answered = None
        paired, unpaired = add_rejected(prepared.specs[task_id], frame, seed, confusion, threshold)
        if answered is not None:
            paired = pl.concat([answered.select(paired.columns), paired])
        prepared.ledger.add("pairs", unpaired, pl.col("_reason"))
        paired, over = cap_pairs(paired, caps.max_per_task, caps.max_per_source, seed)
        prepared.ledger.add("pairs", over, pl.col("_reason"))
        prepared.frames[task_id] = paired.with_columns(_pinned=pl.lit(False))
        prepared.ledger.count(task_id, "pairs", paired.height)


def _rationale_rows(prepared: Prepared) -> None:
    """`require_rationale` components keep only the train rows whose record carries a rationale."""
    for task_id, frame in prepared.frames.items():
        if not prepared.plan[task_id].require_rationale:
            continue
        spec = prepared.specs[task_id]
        drop = (pl.col("_split") == TRAIN) & ~has_rationale(spec, frame)
        prepared.ledger.add(RATIONALE_STEP, frame.filter(drop),
                            f"no rationale: component {prepared.plan[task_id].name!r} draws only rationale-bearing "
                            "rows (give stage-1 rollouts with --rollouts)")
        prepared.frames[task_id] = frame.filter(~drop)
        prepared.ledger.count(task_id, RATIONALE_STEP, prepared.frames[task_id].height)


def _documents(prepared: Prepared) -> None:
    """CPT: each record's document `_doc` (its content fields, else its user turn + gold); empty ones dropped."""
    for group, is_raw in ((prepared.frames, False), (prepared.raw, True)):
        for task_id, frame in group.items():
            text = pl.col("text") if is_raw else cpt_text(frame, prepared.plan[task_id].text_fields)
            frame = frame.with_columns(_doc=text.fill_null(""), _pinned=pl.lit(False))
            empty = pl.col("_doc").str.strip_chars().str.len_chars() == 0
            prepared.ledger.add("document", frame.filter(empty), "no text in the component's text_fields")
            group[task_id] = frame.filter(~empty)
            prepared.ledger.count(task_id, "document", group[task_id].height)


def _balance(prepared: Prepared, seed: int) -> dict[str, str]:
    """Class-balance the train rows of tasks a `balance` rule selects (first matching rule)."""
    applied = {}
    for task_id, frame in prepared.frames.items():
        spec = prepared.specs[task_id]
        rule = next((r for r in prepared.mixture.balance if r.select.matches(spec)), None)
        if rule is None:
            continue
        train, rest = frame.filter(pl.col("_split") == TRAIN), frame.filter(pl.col("_split") != TRAIN)
        kept, dropped = balance(train, rule.by, rule.ratio, seed, spec, rule.max_lead)
        prepared.ledger.add("balance", dropped, pl.col("_reason"))
        prepared.frames[task_id] = pl.concat([kept, rest], how="vertical_relaxed")
        prepared.ledger.count(task_id, "balance", prepared.frames[task_id].height)
        applied[task_id] = rule.describe()
    return applied


def _quotas(mixture: Mixture, total: int | None, sizes: dict[str, dict[str, int]],
            report: Reporter) -> tuple[dict[str, int], dict[str, Any]]:
    """Train rows per task: component quotas from shares or counts, temperature within, shares kept when capped."""
    counted = sum(c.count or 0 for c in mixture.components)
    wanted: dict[str, int] = {}
    for component in mixture.components:
        available = sizes.get(component.name, {})
        if component.count is not None:
            wanted[component.name] = component.count
        elif component.share is not None and total is not None:
            wanted[component.name] = round(component.share * (total - counted))
        else:
            wanted[component.name] = sum(available.values())

    def run(targets: dict[str, int]) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        per_task, achieved = {}, {}
        for component in mixture.components:
            available = sizes.get(component.name, {})
            temperature = component.temperature or mixture.temperature
            upsample = component.max_upsample or mixture.max_upsample
            if component.share is None and component.count is None:
                per_task[component.name] = dict(available)
            else:
                per_task[component.name] = allocate(available, targets[component.name], temperature, upsample)
            achieved[component.name] = sum(per_task[component.name].values())
        return per_task, achieved

    per_task, achieved = run(wanted)
    # A require_rationale component that falls short is reported (`_rationale_report`), not scaled to: a few
    # rationales must not shrink the whole build.
    shared = [c.name for c in mixture.components
              if c.share is not None and not c.require_rationale and sum(sizes.get(c.name, {}).values())]
    ratios = [achieved[n] / wanted[n] for n in shared if wanted[n]]
    scale = min([1.0, *ratios])
    if scale < 1.0:
        binding = min(shared, key=lambda n: achieved[n] / wanted[n] if wanted[n] else math.inf)
        report.say(f"component {binding!r} reaches {achieved[binding]} of {wanted[binding]} rows (upsampling cap); "
                   f"share components scaled by {scale:.3f} to keep their shares", "yellow")
        targets = {n: (math.floor(wanted[n] * scale) if n in shared else wanted[n]) for n in wanted}
        per_task, achieved = run(targets)
    for component in mixture.components:
        if component.share is not None and not sum(sizes.get(component.name, {}).values()):
            report.say(f"component {component.name!r} has no rows: its share stays empty", "yellow")
    summary = {name: {"requested": wanted[name], "allocated": achieved[name],
                      "tasks": dict(sorted(per_task[name].items()))} for name in wanted}
    quotas = {task: q for name in per_task for task, q in per_task[name].items()}
    return quotas, {"scale": round(scale, 6), "components": summary}


def _sample(prepared: Prepared, total: int | None, seed: int,
            report: Reporter) -> tuple[list[tuple[str, pl.DataFrame]], dict[str, Any]]:
    """Draw train rows to the quotas and eval rows up to `eval_max_per_task`; undrawn rows are `not_drawn`."""
    mixture, ledger = prepared.mixture, prepared.ledger
    frames = dict(prepared.frames)
    for task_id, frame in prepared.raw.items():
        frames[task_id] = frame.with_columns(_pinned=pl.lit(False))
    component_of = {t: c.name for t, c in prepared.plan.items()} | {
        f"raw_{c.name}": c.name for c in mixture.components if c.raw}
    sizes: dict[str, dict[str, int]] = {}
    for task_id, frame in frames.items():
        sizes.setdefault(component_of[task_id], {})[task_id] = frame.filter(pl.col("_split") == TRAIN).height
    quotas, summary = _quotas(mixture, total, sizes, report)
    eval_cap = mixture.splits.eval_max_per_task
    drawn = []
    for task_id in sorted(frames):
        frame = frames[task_id].with_columns(pl.col("_pinned").fill_null(False))
        train, test = frame.filter(pl.col("_split") == TRAIN), frame.filter(pl.col("_split") == EVAL)
        train = draw(train, quotas.get(task_id, 0), seed)
        # Eval rows are drawn with the split seed: the same eval set whatever --seed says, in every stage.
        test = draw(test, test.height if eval_cap is None else min(eval_cap, test.height), mixture.splits.seed)
        undrawn = 0
        for part, split in ((train, TRAIN), (test, EVAL)):
            quota = int(part["_copies"].sum()) if part.height else 0
            left = part.filter(pl.col("_copies") == 0)
            ledger.not_drawn(left, split, quota, part.height)
            undrawn += left.height
        ledger.count(task_id, "sample", train.filter(pl.col("_copies") > 0).height
                     + test.filter(pl.col("_copies") > 0).height)
        ledger.count(task_id, "not_drawn", undrawn)
        drawn.append((task_id, pl.concat([train, test], how="vertical_relaxed").filter(pl.col("_copies") > 0)))
    return drawn, summary


def _late_render(prepared: Prepared, drawn: list[tuple[str, pl.DataFrame]],
                 report: Reporter) -> list[tuple[str, pl.DataFrame]]:
    """Render the drawn rows of tasks not rendered before sampling, then count what is written per task."""
    cpt = prepared.mixture.format == "cpt"  # documents are made before sampling; prompts are not needed
    late = {t: f for t, f in drawn
            if not cpt and t in prepared.frames and "_prompt" not in f.columns and not f.is_empty()}
    rendered = _render(late, prepared.specs, prepared.ledger, prepared.mixture.splits.seed, report, prepared.frames,
                       step="render_drawn")
    out = []
    for task_id, frame in drawn:
        frame = rendered.get(task_id, frame)
        prepared.ledger.count(task_id, "out", frame.height)
        for split in (TRAIN, EVAL):
            rows = frame.filter(pl.col("_split") == split)["_copies"]
            prepared.ledger.count(task_id, f"out_{split}_rows", int(rows.sum()) if rows.len() else 0)
        out.append((task_id, frame))
    return out


def _format(prepared: Prepared, drawn: list[tuple[str, pl.DataFrame]], seed: int) -> dict[str, pl.DataFrame]:
    """Rows in the output format, copies expanded, in a seeded order that mixes tasks."""
    mixture = prepared.mixture
    parts: dict[str, list[pl.DataFrame]] = {TRAIN: [], EVAL: []}
    raw_components = {f"raw_{c.name}": c for c in mixture.components if c.raw}
    for task_id, frame in drawn:
        if frame.is_empty():
            continue
        expanded = frame.with_columns(_copy=pl.int_ranges(0, pl.col("_copies"))).explode("_copy")
        for split in (TRAIN, EVAL):
            rows = expanded.filter(pl.col("_split") == split)
            if rows.is_empty():
                continue
            raw = raw_components[task_id].raw if task_id in raw_components else None
            if raw is not None:
                formatted = rows.select("task_id", "record_id", capability=pl.lit("raw_text"),
                                        origin=pl.lit(raw.origin), text=pl.col("_doc"))
            else:
                formatted = format_rows(prepared.specs[task_id], rows, mixture.format)
            keys = rows.select(pl.format("{}\x1f{}\x1f{}\x1f{}", pl.lit(seed), "task_id", "record_id", "_copy"))
            order = hash_u64(keys.to_series())
            parts[split].append(formatted.with_columns(order.alias("_order")))
    out = {}
    for split, frames in parts.items():
        table = pl.concat(frames) if frames else pl.DataFrame(schema={**COLUMNS[mixture.format], "_order": pl.UInt64})
        out[split] = table.sort("_order", "task_id", "record_id").drop("_order")
    return out


def _extra_pairs(pairs: pl.DataFrame | None, specs: dict[str, TaskSpec], ledger: Ledger,
                 index: EvalIndex) -> dict[str, pl.DataFrame]:
    """Validate DPO pairs from outside (predictions, annotations), drop train pairs holding eval text (like every
    training row: an annotation may bring a prompt of its own) and give them the output columns."""
    empty = {split: pl.DataFrame(schema=COLUMNS["dpo"]) for split in (TRAIN, EVAL)}
    if pairs is None or pairs.is_empty():
        return empty
    missing = [c for c in PAIR_COLUMNS if c not in pairs.columns]
    if missing:
        raise BuildError(f"extra pairs lack column(s) {missing} (expected {list(PAIR_COLUMNS)})")
    pairs = pairs.select(list(PAIR_COLUMNS)).cast(PAIR_COLUMNS)
    unknown = sorted(set(pairs["task_id"].to_list()) - set(specs))
    if unknown:
        raise BuildError(f"extra pairs name unknown task(s): {unknown}")
    bad_split = sorted(set(pairs["split"].to_list()) - {TRAIN, EVAL})
    if bad_split:
        raise BuildError(f"extra pairs: split must be train or eval, got {bad_split}")
    capability = {t: s.capability for t, s in specs.items()}
    origin = {t: origin_of(s) for t, s in specs.items()}
    rows = pairs.with_columns(capability=pl.col("task_id").replace_strict(capability, return_dtype=pl.String),
                              origin=pl.col("task_id").replace_strict(origin, return_dtype=pl.String))
    content = pl.element().struct.field("content")
    text = pl.concat_str([pl.col(c).list.eval(content).list.join("\n") for c in ("prompt", "chosen", "rejected")],
                         separator="\n", ignore_nulls=True)
    step = pipeline_steps.DECONTAMINATE
    flagged = flag_contaminated(rows.with_columns(_text=text).lazy(), "_text", index, step).collect()
    dirty = flagged.filter((pl.col("split") == TRAIN) & pl.col(REASON).is_not_null())
    ledger.add(step, dirty.with_columns(task_id=pl.format("pairs:{}", "task_id")).select(
        *PAIR_COLUMNS, REASON, DUPLICATE_OF), pl.col(REASON), duplicate_of=pl.col(DUPLICATE_OF))
    rows = rows.join(dirty.select("task_id", "record_id", "split"), on=["task_id", "record_id", "split"], how="anti",
                     maintain_order="left")
    read = dict(pairs.group_by("task_id").len().iter_rows())
    kept = dict(rows.group_by("task_id").len().iter_rows())
    for task_id in sorted(read):
        key = f"pairs:{task_id}"
        ledger.count(key, "read", read[task_id])
        ledger.count(key, "excluded", 0)
        ledger.count(key, "out", kept.get(task_id, 0))
    return {split: rows.filter(pl.col("split") == split).select(list(COLUMNS["dpo"])).sort("task_id", "record_id")
            for split in (TRAIN, EVAL)}


def _rationale_report(summary: dict[str, Any], mix: Mixture, report: Reporter) -> None:
    """One plain line on the rationale share; a shortfall says what is missing and how to get it."""
    declared = summary["declared_share"]
    if declared is None:
        return
    line = (f"rationales: {summary['train_rows_with_rationale']} of {summary['train_rows']} train rows "
            f"({summary['share']:.1%}; {mix.name} declares {declared:.0%})")
    if not summary["shortfall"]:
        report.say(line, "green")
        return
    source = ("no --rollouts given" if summary["rollouts"] is None
              else f"{summary['rollouts']['records_with_rationale']} record(s) with a correct, reasoned rollout")
    summary["message"] = (f"{line}: SHORTFALL, {source}; the build holds fewer rationale rows than declared (rows "
                          "without one are not passed off as rationale-bearing)")
    report.say(summary["message"], "red")


@dataclass
class BuildResult:
    out: Path
    manifest: dict[str, Any]
    train: pl.DataFrame
    eval: pl.DataFrame
    rejects: pl.DataFrame


def build(mixture: Mixture | str | Path, *, data_root: str | Path | None = None, out: str | Path | None = None,
          seed: int | None = None, total: int | None = None, max_per_task: int | None = None,
          diagnosis: str | Path | None = None, soft_labels: str | Path | None = None,
          extra_pairs: pl.DataFrame | None = None, catalogue: dict[str, TaskSpec] | None = None,
          console: Console | None = None, rollouts: RolloutInput | str | Path | None = None,
          predictions: str | Path | None = None, pair_threshold: float = 0.5,
          max_pairs_per_task: int | None = None) -> BuildResult:
    """Build a mixture into a build directory (docs/build.md). The same inputs and seed give the same bytes.

    `total` overrides the mixture's total; `max_per_task` reads at most that many records per task (quick
    builds); `extra_pairs` adds DPO pairs (columns `formats.PAIR_COLUMNS`) from predictions or annotations;
    `rollouts` (a stage-1 rollout log) gives records rationales (sft and rl); `predictions` (dpo) makes the
    model's wrong answers (below `pair_threshold`) and its confusions the rejected answers;
    `max_pairs_per_task` overrides the mixture's `pairs.max_per_task`.
    """
    from snsdata.build.writer import write_build

    mix = mixture if isinstance(mixture, Mixture) else load_mixture(mixture)
    if total is not None and mix.total is None:
        raise BuildError(f"{mix.name} takes every selected record once (no `total`); --total does not apply")
    if extra_pairs is not None and mix.format != "dpo":
        raise BuildError(f"extra pairs go into a dpo mixture; {mix.name} is {mix.format}")
    if soft_labels is not None and not any(c.target == "soft_label" for c in mix.components):
        raise BuildError(f"{mix.name} has no soft-label component: --soft-labels applies to stage 2 mixtures")
    if rollouts is not None and mix.format not in ("sft", "rl"):
        raise BuildError(f"rollouts give rationale-bearing targets to sft and rl mixtures; {mix.name} is {mix.format}")
    if predictions is not None and mix.format != "dpo":
        raise BuildError(f"predictions make DPO rejected answers; {mix.name} is {mix.format}")
    if max_pairs_per_task is not None:
        if mix.format != "dpo":
            raise BuildError(f"a cap on pairs applies to dpo mixtures; {mix.name} is {mix.format}")
        mix = mix.model_copy(update={"pairs": mix.pairs.model_copy(update={"max_per_task": max_pairs_per_task})})
    if rollouts is not None and not isinstance(rollouts, RolloutInput):
        rollouts = RolloutInput(Path(rollouts))
    seed = mix.seed if seed is None else seed
    total = mix.total if total is None else total
    out = Path(out) if out is not None else Path("builds") / mix.name
    report = Reporter(console)
    prepared = _prepare(mix, data_root, max_per_task, diagnosis, catalogue, report, render_all=False,
                        rollouts=rollouts)
    soft = read_soft_labels(soft_labels) if soft_labels is not None else None
    fallbacks: list[str] = []
    predicted = None
    if predictions is not None:
        from snsdata.loop.pairs import rendered_records

        predicted = read_predictions(predictions, rendered_records(prepared), prepared.specs, pair_threshold, seed)
        report.say(f"predictions {predictions}: {predicted.own.height} record(s) get the model's own wrong answer; "
                   f"{sum(predicted.skipped.values())} prediction(s) not used")
        prepared.inputs["predictions"] = {"path": str(predictions), "sha256": sha256_file(Path(predictions)),
                                          "threshold": pair_threshold, "records_with_own_wrong_answer":
                                          predicted.own.height, "not_used": predicted.skipped}
    if mix.format == "sft":
        fallbacks = _sft_targets(prepared, soft, report)
    elif mix.format == "dpo":
        _dpo_pairs(prepared, seed, predicted, pair_threshold)
    elif mix.format == "cpt":
        _documents(prepared)
        documents = pipeline_steps.run_document_steps(prepared.steps, {**prepared.frames, **prepared.raw},
                                                      prepared.ledger)
        prepared.frames = {t: documents[t] for t in prepared.frames}
        prepared.raw = {t: documents[t] for t in prepared.raw}
    _rationale_rows(prepared)
    balanced = _balance(prepared, seed)
    drawn, sampling = _sample(prepared, total, seed, report)
    rationales = rationale_summary(drawn, prepared.specs, mix.rationale_share, prepared.rationales)
    _rationale_report(rationales, mix, report)
    drawn = _late_render(prepared, drawn, report)
    outputs = _format(prepared, drawn, seed)
    chunking = None
    if prepared.steps.chunk is not None:
        documents = {split: frame.height for split, frame in outputs.items()}
        outputs = {split: pipeline_steps.chunk_documents(prepared.steps.chunk, frame)
                   for split, frame in outputs.items()}
        chunking = {"documents": documents, "chunks": {split: frame.height for split, frame in outputs.items()}}
    extras = _extra_pairs(extra_pairs, prepared.specs, prepared.ledger,
                          pipeline_steps.build_index(prepared.steps)) if mix.format == "dpo" else None
    if extras is not None:
        outputs = {s: pl.concat([outputs[s], extras[s]]) for s in outputs}
    context = {"seed": seed, "total": total, "max_per_task": max_per_task, "soft": soft, "diagnosis": diagnosis,
               "extra_pairs": extra_pairs, "fallbacks": fallbacks, "balanced": balanced, "sampling": sampling,
               "lines": report.lines, "chunking": chunking, "rationales": rationales}
    manifest = write_build(out, prepared, outputs, context)
    totals = manifest["totals"]
    report.say(f"{mix.name}: {totals['train_rows']} train + {totals['eval_rows']} eval rows -> {out}",
               "green" if totals["balanced"] else "red")
    return BuildResult(out, manifest, outputs[TRAIN], outputs[EVAL], prepared.ledger.table())
