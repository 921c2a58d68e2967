"""The mixture's pipeline steps (`snsdata.pipeline`'s registry and step protocol) over the build's records.

A mixture lists steps as the pipeline declares them (`{step: NAME, ...params}`). Record steps see each record's
text as `_text`: its content fields joined by newlines (`with_text`), not the rendered prompt, whose fixed system
text would make every record of a task look alike; for CPT they see the document instead.

- Train rows go through every step; eval rows through every step but `decontaminate` (they are the reference).
- Supervised formats run per task (the same post in two tasks is two different examples); CPT runs over all
  documents at once, so a post shared by several tasks is one document.
- `decontaminate` without an `eval` file is checked against every eval item of every task with data (the
  build's reference: every record of an eval-only task, the held-out records of the others), indexed once per
  build. A build always runs it: where the mixture does not list it, it runs after the listed steps.
- `chunk` (CPT only) cuts long documents and packs short ones (`snsdata.pipeline.chunking.prepare_cpt`) after
  sampling, packing within a task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError

from snsdata.build.formats import KEYS, field_columns
from snsdata.build.keys import hash_hex
from snsdata.build.ledger import Ledger
from snsdata.build.splits import content_fields
from snsdata.pipeline.base import to_rejects, with_row_ids
from snsdata.pipeline.chunking import prepare_cpt
from snsdata.pipeline.config import parse_steps
from snsdata.pipeline.decontam import Decontaminate, EvalIndex
from snsdata.spec.loader import SpecError, SpecIssue
from snsdata.spec.mixture import Mixture

CHUNK = "chunk"
DECONTAMINATE = "decontaminate"
TEXT = "_text"
BUILD_REFERENCE = "<build: every eval record of every task>"


class ChunkStep(BaseModel):
    """Continued-pretraining pieces: documents longer than `max_len` cut, shorter than `min_len` packed."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: Literal["chunk"] = "chunk"
    max_len: int = Field(default=2048, gt=0)
    min_len: int | None = Field(default=None, ge=0)
    unit_cap: int | None = Field(default=None, gt=0)
    separator: str = "\n\n"


@dataclass(frozen=True)
class StepPlan:
    """The validated steps of a mixture: record steps in order, and the CPT chunking if any."""

    record: list[Any]
    chunk: ChunkStep | None

    @property
    def names(self) -> list[str]:
        return [config.step for config in self.record] + ([CHUNK] if self.chunk else [])


def _located(mixture: Mixture, index: int, exc: ValidationError, prefix: int) -> list[SpecIssue]:
    issues = []
    for error in exc.errors():
        loc = [p for p in error["loc"][prefix:] if not (isinstance(p, str) and p == mixture.steps[index]["step"])]
        file, line = mixture.where("steps", index, *loc)
        key = ".".join(str(p) for p in ("steps", index, *loc))
        message = "unknown key (misspelt?)" if error["type"] == "extra_forbidden" else error["msg"]
        if error["type"] == "union_tag_invalid":
            message = f"unknown step {mixture.steps[index]['step']!r}: {error['msg']}"
        issues.append(SpecIssue(file, line, key, message))
    return issues


def plan_steps(mixture: Mixture) -> StepPlan:
    """Validate the mixture's steps against the pipeline's registry; SpecError names file, line and key."""
    record, chunk, issues = [], None, []
    for index, item in enumerate(mixture.steps):
        if item["step"] == CHUNK:
            if mixture.format != "cpt":
                file, line = mixture.where("steps", index)
                issues.append(SpecIssue(file, line, f"steps.{index}", "`chunk` cuts CPT documents: cpt mixtures only"))
                continue
            try:
                chunk = ChunkStep.model_validate(item)
            except ValidationError as exc:
                issues.extend(_located(mixture, index, exc, 0))
            continue
        own_reference = item["step"] == DECONTAMINATE and "eval" not in item
        try:
            config = parse_steps([{**item, "eval": BUILD_REFERENCE} if own_reference else item])[0]
        except ValidationError as exc:
            issues.extend(_located(mixture, index, exc, 1))
            continue
        record.append(_BuildDecontaminate.model_validate(config.model_dump()) if own_reference else config)
    if issues:
        raise SpecError(issues)
    if not any(isinstance(config, _BuildDecontaminate) for config in record):
        record.append(_BuildDecontaminate(eval=BUILD_REFERENCE))  # evaluation data never trains: always on
    return StepPlan(record, chunk)


class _BuildDecontaminate(Decontaminate):
    """Decontamination against the build's own eval records, indexed once (not read from a file per call)."""

    _index: Any = PrivateAttr(default=None)

    def index(self) -> Any:
        if self._index is None:
            raise RuntimeError("the build's eval reference was not attached to the decontaminate step")
        return self._index

    def attach(self, reference: pl.DataFrame) -> None:
        key = (self.model_dump_json(), reference.height, int(reference.hash_rows().sum()))
        if key not in _INDEXES:
            if len(_INDEXES) >= 4:
                _INDEXES.pop(next(iter(_INDEXES)))
            _INDEXES[key] = self.index_of(reference, "eval_id", TEXT)
        self._index = _INDEXES[key]


_INDEXES: dict[tuple[str, int, int], EvalIndex] = {}
"""Indexes of build references kept for the process: every build of one data root has the same eval items, so
repeated builds (tests, the loop) index them once."""


def with_text(frame: pl.DataFrame) -> pl.DataFrame:
    """Add `_text`: the task's content fields joined by newlines (all its string fields when none stands out).

    Boilerplate shared by a task's records (a candidate list, an instruction) is left out: it would make every
    train record "overlap" every eval record of its task, and every record a near duplicate of the next.
    """
    fields = content_fields(frame) or [f for f in field_columns(frame) if frame.schema[f] == pl.String]
    text = pl.concat_str([pl.col(f) for f in fields], separator="\n", ignore_nulls=True) if fields else pl.lit("")
    return frame.with_columns(_text=text)


def build_index(plan: StepPlan) -> EvalIndex:
    """The index of the build's own decontamination step (every build has one)."""
    return next(c.index() for c in plan.record if isinstance(c, _BuildDecontaminate))


def attach_reference(plan: StepPlan, reference: pl.DataFrame) -> None:
    """Give the build's decontamination steps the eval items (`eval_id, _text`)."""
    for step in plan.record:
        if isinstance(step, _BuildDecontaminate):
            step.attach(reference.select("eval_id", TEXT))


def _run(frame: pl.DataFrame, text: str, configs: list[Any], ledger: Ledger, source: str) -> pl.DataFrame:
    """The steps over `frame` in order; returns its kept rows (all its columns) and files the rejects with the
    full rows.

    Each step is applied through the pipeline's step protocol (`config.build(text)(frame) -> StepResult`), its
    rejected rows collected before they are turned into rejects: collecting `to_rejects(result.rejected)` lazily,
    as the runner does, makes Polars 2.1 panic after an earlier step (`binview ... i < self.len()`; reported).
    """
    for config in configs:
        if frame.is_empty():
            break
        result = config.build(text)(with_row_ids(frame.select(*KEYS, text).lazy()))
        rejected = result.rejected.collect()
        if rejected.height:
            rejects = to_rejects(rejected.lazy(), source).collect()
            why = rejects.select("task_id", "record_id", _step="step", _reason="reason", _dup="duplicate_of")
            dropped = frame.join(why, on=["task_id", "record_id"], how="inner", maintain_order="left")
            ledger.add(pl.col("_step"), dropped.drop(text), pl.col("_reason"), duplicate_of=pl.col("_dup"))
            frame = frame.join(rejects.select("task_id", "record_id"), on=["task_id", "record_id"], how="anti",
                               maintain_order="left")
    return frame


def _count(ledger: Ledger, frames: dict[str, pl.DataFrame], names: list[str], before: dict[str, int]) -> None:
    """Rows of each task after each step, from the rows it had and the rejects each step filed."""
    rejected = ledger.rejected_by(names)
    lookup = {(t, s): n for t, s, n in rejected.iter_rows()}
    for task_id in frames:
        rows = before[task_id]
        for name in dict.fromkeys(names):
            rows -= lookup.get((task_id, name), 0)
            ledger.count(task_id, f"step:{name}", rows)


def run_record_steps(plan: StepPlan, frames: dict[str, pl.DataFrame], ledger: Ledger,
                     report: Any) -> dict[str, pl.DataFrame]:
    """Per task, train rows through every record step and eval rows through all but decontamination."""
    if not plan.record:
        return frames
    names = [c.step for c in plan.record]
    eval_configs = [c for c in plan.record if c.step != DECONTAMINATE]
    before = {t: f.height for t, f in frames.items()}
    out = {}
    with report.progress() as progress:
        bar = progress.add_task("steps", total=len(frames))
        for task_id, frame in frames.items():
            progress.update(bar, description=f"steps {task_id}")
            frame = with_text(frame)
            parts = [_run(frame.filter(pl.col("_split") == split), TEXT, configs, ledger, f"{task_id}:{split}")
                     for split, configs in (("train", plan.record), ("eval", eval_configs))]
            out[task_id] = pl.concat(parts, how="vertical_relaxed").drop(TEXT)
            progress.advance(bar)
    _count(ledger, out, names, before)
    return out


def run_document_steps(plan: StepPlan, frames: dict[str, pl.DataFrame], ledger: Ledger) -> dict[str, pl.DataFrame]:
    """CPT: the record steps over every task's documents (`_doc`) together, train and eval apart."""
    if not plan.record or not frames:
        return frames
    names = [c.step for c in plan.record]
    eval_configs = [c for c in plan.record if c.step != DECONTAMINATE]
    before = {t: f.height for t, f in frames.items()}
    columns = [*KEYS, "_split", "_doc"]
    union = pl.concat([f.select(columns) for f in frames.values()])
    kept = [_run(union.filter(pl.col("_split") == split), "_doc", configs, ledger, f"documents:{split}")
            for split, configs in (("train", plan.record), ("eval", eval_configs))]
    survivors = pl.concat(kept).select("task_id", "record_id")
    out = {t: f.join(survivors, on=["task_id", "record_id"], how="semi", maintain_order="left")
           for t, f in frames.items()}
    _count(ledger, out, names, before)
    return out


def chunk_documents(chunk: ChunkStep, rows: pl.DataFrame) -> pl.DataFrame:
    """CPT rows (`task_id, record_id, capability, origin, text`) cut and packed into pieces of at most
    `max_len` characters; packing stays within a task. A piece's record id hashes its sources."""
    if rows.is_empty():
        return rows
    pieces = prepare_cpt(rows.lazy(), "text", max_len=chunk.max_len, min_len=chunk.min_len,
                         unit_cap=chunk.unit_cap, separator=chunk.separator, pack_within="task_id").collect()
    first = pieces.select(pl.col("source_ids").list.first().alias("record_id"), "part", "source_ids", "text")
    meta = rows.select("task_id", "record_id", "capability", "origin").unique("record_id", keep="first",
                                                                              maintain_order=True)
    keyed = first.join(meta, on="record_id", how="left", maintain_order="left")
    source_key = pl.format("{}#{}", pl.col("source_ids").list.join(","), pl.col("part"))
    ids = hash_hex(keyed.select(source_key).to_series(), "chunk\x1f")
    return keyed.with_columns(record_id=ids).select("task_id", "record_id", "capability", "origin", "text")
