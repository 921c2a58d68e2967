"""The step protocol: a step maps a LazyFrame to the rows it keeps and the rows it drops, with reasons.

Steps are pure functions of their input frame and parameters (no global state), so a distributed engine can
later run the row-local ones per batch. A step never drops a row silently: every dropped row comes back in
`rejected`, carrying the step name, a reason and, for duplicates, the id of the kept row.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal

import polars as pl
from pydantic import BaseModel, ConfigDict

from snsdata.frames import REJECT_SCHEMA

# Internal columns start with "__" and never reach the user's output.
ROW = "__row"  # position of the row in the pipeline input, added by the runner and the file commands
REASON = "__reason"
STEP = "__step"
DUPLICATE_OF = "__duplicate_of"
SCRATCH = "__scratch"  # a rule's expensive per-row measure, computed once (see RuleConfig.scratch)
INTERNAL_PREFIX = "__"


@dataclass(frozen=True)
class StepResult:
    """What a step returns: kept rows (input columns) and rejected rows (input columns + STEP, REASON,
    DUPLICATE_OF). Every input row is in exactly one of the two.

    `verdicts`, which every global step gives, are its decisions on the rows it drops (ROW, REASON, STEP,
    DUPLICATE_OF): small next to the input, so a runner can apply them to the input batch by batch instead of
    reading `kept` and `rejected` as two more whole-input queries.
    """

    kept: pl.LazyFrame
    rejected: pl.LazyFrame
    verdicts: pl.DataFrame | None = None


Step = Callable[[pl.LazyFrame], StepResult]


def user_columns(schema: pl.Schema | dict[str, pl.DataType]) -> list[str]:
    """The columns that belong to the data, not to the pipeline's bookkeeping."""
    return [name for name in schema if not name.startswith(INTERNAL_PREFIX)]


def with_row_ids(frame: pl.LazyFrame) -> pl.LazyFrame:
    """Add ROW (0-based input position) unless the frame already carries it."""
    if ROW in frame.collect_schema():
        return frame
    return frame.with_row_index(ROW)


def slice_batches(frame: pl.LazyFrame, batch_size: int) -> Iterator[tuple[int, pl.DataFrame]]:
    """(offset, rows) of `frame` in batches, each read by its own slice query.

    Memory then holds the batches the caller holds, however slowly it consumes them, where Polars'
    `collect_batches` keeps reading ahead of a slow consumer. Cheap only where a slice reaches the reader:
    Parquet scans and in-memory frames, not frames behind a row index, join or filter.
    """
    total = frame.select(pl.len()).collect().item()
    for offset in range(0, total, batch_size):
        yield offset, frame.slice(offset, batch_size).collect()


def id_expr(schema: pl.Schema | dict[str, pl.DataType]) -> pl.Expr:
    """A row's id as text: `record_id` when the frame has one, else its input position (ROW)."""
    if "record_id" in schema:
        return pl.col("record_id").cast(pl.String)
    return pl.col(ROW).cast(pl.String)


def null_text_reason(text_column: str) -> pl.Expr:
    """Reason for rows whose text is null: no rule can judge them, so they are rejected explicitly."""
    return pl.when(pl.col(text_column).is_null()).then(pl.lit(f"{text_column} is null"))


def split_by_reason(frame: pl.LazyFrame, reason: pl.Expr, step: str) -> StepResult:
    """The common shape of a filter: a String expression that is null for rows to keep and a reason otherwise.

    The reason column is computed once; kept and rejected are two filters of that one annotated frame, which
    `pl.collect_all` evaluates together.
    """
    annotated = frame.with_columns(reason.alias(REASON)).with_columns(
        pl.when(pl.col(REASON).is_not_null()).then(pl.lit(step)).alias(STEP),
        pl.lit(None, dtype=pl.String).alias(DUPLICATE_OF),
    )
    kept = annotated.filter(pl.col(REASON).is_null()).drop(REASON, STEP, DUPLICATE_OF)
    return StepResult(kept, annotated.filter(pl.col(REASON).is_not_null()))


def joined(*parts: str | pl.Expr) -> pl.Expr:
    """Literal pieces and expressions (as text) joined into one String expression.

    Used instead of `pl.format`, which panics in Polars 2.1's streaming engine on some filtered frames
    ("assertion failed: i < self.len()" in binview), while concat_str does not.
    """
    return pl.concat_str([pl.lit(part) if isinstance(part, str) else part.cast(pl.String) for part in parts])


def first_reason(reasons: list[pl.Expr | None]) -> pl.Expr:
    """The first non-null reason among several checks (None = check switched off), so a row is rejected for
    the first rule it breaks."""
    active = [reason for reason in reasons if reason is not None]
    if not active:
        return pl.lit(None, dtype=pl.String)
    return active[0] if len(active) == 1 else pl.coalesce(active)


def to_rejects(rejected: pl.LazyFrame, source: str) -> pl.LazyFrame:
    """Rejected rows in REJECT_SCHEMA: the keys, where the row came from, why, and the row itself as JSON."""
    schema = rejected.collect_schema()
    data = user_columns(schema)
    task = pl.col("task_id").cast(pl.String) if "task_id" in schema else pl.lit(None, dtype=pl.String)
    where = joined(f"{source} row ", pl.col(ROW)) if ROW in schema else pl.lit(source)
    row = pl.struct(data).struct.json_encode() if data else pl.lit("{}")
    return rejected.select(
        task.alias("task_id"),
        id_expr(schema).alias("record_id"),
        where.alias("source"),
        pl.col(STEP).cast(pl.String).alias("step"),
        pl.col(REASON).cast(pl.String).alias("reason"),
        pl.col(DUPLICATE_OF).cast(pl.String).alias("duplicate_of"),
        row.alias("row"),
    ).cast(REJECT_SCHEMA)


class StepConfig(BaseModel, ABC):
    """A step as declared in YAML: `step` names it, the other keys are its parameters (unknown keys fail).

    `scope` says how the runner may execute it: "row" steps judge each row alone and run batch by batch;
    "global" steps (dedup) need the whole input at once.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    step: str
    scope: ClassVar[Literal["row", "global"]] = "row"

    @abstractmethod
    def build(self, text_column: str, progress: Callable[[int], None] | None = None) -> Step:
        """The step function for frames whose text is in `text_column`; a global step may report the rows it
        has read to `progress`."""


class RuleConfig(StepConfig):
    """A rule filter: one Polars expression giving a reason (String) for rows to drop, null for rows to keep.

    A rule whose measure is an expensive function of the text (a model, a numpy pass) returns it from
    `scratch`; it is computed once into the SCRATCH column, which `reason` reads, and dropped afterwards.
    """

    @abstractmethod
    def reason(self, text: pl.Expr) -> pl.Expr:
        """Reason to drop the row, or null; `text` is never null here (null text is rejected first)."""

    def scratch(self, text: pl.Expr) -> pl.Expr | None:
        """An expensive per-row measure to compute once (None: the rule has none)."""
        return None

    def build(self, text_column: str, progress: Callable[[int], None] | None = None) -> Step:
        # both expressions are made once here (a model or an index is loaded once), then reused per batch
        measure = self.scratch(pl.col(text_column))
        reason = first_reason([null_text_reason(text_column), self.reason(pl.col(text_column))])
        return partial(_run_rule, measure=measure, reason=reason, step=self.step)


def _run_rule(frame: pl.LazyFrame, measure: pl.Expr | None, reason: pl.Expr, step: str) -> StepResult:
    if measure is not None:
        frame = frame.with_columns(measure.alias(SCRATCH))
    result = split_by_reason(frame, reason, step)
    if measure is None:
        return result
    return StepResult(result.kept.drop(SCRATCH), result.rejected.drop(SCRATCH))
