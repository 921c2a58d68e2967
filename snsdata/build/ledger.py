"""Where every row went: counts per task after each step, and every dropped row in the shared rejects shape."""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from snsdata.build.formats import field_columns
from snsdata.frames import REJECT_SCHEMA

NOT_DRAWN_SCHEMA = {"task_id": pl.String, "record_id": pl.String, "source": pl.String, "split": pl.String,
                    "reason": pl.String}


def reject_rows(frame: pl.DataFrame, step: str | pl.Expr, reason: str | pl.Expr,
                duplicate_of: pl.Expr | None = None) -> pl.DataFrame:
    """Dropped rows as REJECT_SCHEMA: the record's fields kept as JSON, the source as `task:split`."""
    fields = field_columns(frame)
    row = pl.struct(fields).struct.json_encode() if fields else pl.lit("{}")
    source = pl.format("{}:{}", "task_id", "split") if "split" in frame.columns else pl.col("task_id")
    return frame.select(
        "task_id",
        "record_id",
        source=source,
        step=pl.lit(step) if isinstance(step, str) else step,
        reason=pl.lit(reason) if isinstance(reason, str) else reason,
        duplicate_of=duplicate_of if duplicate_of is not None else pl.lit(None, dtype=pl.String),
        row=row,
    ).cast(REJECT_SCHEMA)


@dataclass
class Ledger:
    """Counts and rejects of the tasks a build takes (tasks read only as split or decontamination reference are
    not counted)."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    rejects: list[pl.DataFrame] = field(default_factory=list)
    undrawn: list[pl.DataFrame] = field(default_factory=list)
    """Rows that passed every filter but that sampling did not draw (`not_drawn.parquet`): not rejects."""

    def count(self, task_id: str, step: str, rows: int) -> None:
        self.counts.setdefault(task_id, {})[step] = rows

    def add(self, step: str | pl.Expr, rows: pl.DataFrame, reason: str | pl.Expr,
            duplicate_of: pl.Expr | None = None) -> None:
        if not rows.is_empty():
            self.rejects.append(reject_rows(rows, step, reason, duplicate_of))

    def not_drawn(self, rows: pl.DataFrame, split: str, quota: int, available: int) -> None:
        """Usable rows left out because the split's quota (`quota` of `available` rows) was met by others."""
        if not rows.is_empty():
            reason = f"not drawn: {split} quota {quota} of {available} rows"
            self.undrawn.append(rows.select("task_id", "record_id", source=pl.format("{}:{}", "task_id", "split"),
                                            split=pl.lit(split), reason=pl.lit(reason)))

    def not_drawn_table(self) -> pl.DataFrame:
        """Every undrawn row, sorted like the rejects."""
        if not self.undrawn:
            return pl.DataFrame(schema=NOT_DRAWN_SCHEMA)
        return pl.concat(self.undrawn).cast(NOT_DRAWN_SCHEMA).sort(["task_id", "split", "record_id"])

    def add_prepared(self, rejects: pl.DataFrame) -> None:
        """Rejects already in REJECT_SCHEMA (from a reader or a pipeline step)."""
        if not rejects.is_empty():
            self.rejects.append(rejects.select(list(REJECT_SCHEMA)).cast(REJECT_SCHEMA))

    def rejected_by(self, steps: list[str]) -> pl.DataFrame:
        """Rows rejected per (task_id, step) for the given steps."""
        if not self.rejects:
            return pl.DataFrame(schema={"task_id": pl.String, "step": pl.String, "len": pl.UInt32})
        return pl.concat(self.rejects).filter(pl.col("step").is_in(steps)).group_by("task_id", "step").len()

    def table(self) -> pl.DataFrame:
        """All rejects, sorted so that the file is the same whatever order the steps ran in."""
        if not self.rejects:
            return pl.DataFrame(schema=REJECT_SCHEMA)
        return pl.concat(self.rejects).sort(["task_id", "step", "record_id", "source"], nulls_last=True,
                                            maintain_order=True)
