"""The two frame shapes that flow between readers, pipeline steps and builders."""

from __future__ import annotations

import polars as pl

# Every record frame starts with these columns; the task's fields follow.
KEY_COLUMNS = ("task_id", "record_id", "split")

# Every dropped row, whatever dropped it, lands in one table of this shape (`rejects.parquet`).
REJECT_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "record_id": pl.String(),
    "source": pl.String(),  # file (and line/row) or pipeline input the row came from
    "step": pl.String(),  # "read", "where", a pipeline step name, "dedup", "decontaminate", "sample" ...
    "reason": pl.String(),
    "duplicate_of": pl.String(),  # record id of the kept row, for duplicates; null otherwise
    "row": pl.String(),  # the dropped row as JSON, so nothing is lost
}


def empty_rejects() -> pl.DataFrame:
    """A rejects table with no rows, for steps that dropped nothing."""
    return pl.DataFrame(schema=REJECT_SCHEMA)
