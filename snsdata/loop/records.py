"""Where a log row's record comes from, and scoring the rows a trainer did not score.

Decision (documented in docs/redone2_loop.md): a row's record is its own `record` column when the log has one;
otherwise it is looked up by `record_id` in the build directory the run trained or predicted on (the `rl` format
carries each record as JSON, and `specs.json` the frozen specs). A row with no record id is matched to its build row
by the hash of its prompt. Reading the raw data root again is deliberately not offered: the build directory is what
the model saw, and the record ids of a log only mean something against it.
"""

from __future__ import annotations

import json
from functools import cached_property
from pathlib import Path

import polars as pl

from snsdata.loop.logs import LogError, fill_task_ids, prompt_hash
from snsdata.spec import TaskSpec
from snsdata.spec.searchpath import frozen_specs


class RecordSource:
    """Records and task capabilities for a log: from a build directory when given, else the task catalogue."""

    def __init__(self, build_dir: str | Path | None = None):
        self.build_dir = Path(build_dir) if build_dir is not None else None
        if self.build_dir is not None and not (self.build_dir / "manifest.json").is_file():
            raise FileNotFoundError(f"{self.build_dir}: not a build directory (no manifest.json)")

    @cached_property
    def specs(self) -> dict[str, TaskSpec]:
        """The build's frozen specs (what the run was scored with) when there is a build, else the search path's."""
        if self.build_dir is not None and (self.build_dir / "specs.json").is_file():
            return frozen_specs(self.build_dir)
        from snsdata.rewards import catalogue

        return catalogue()

    @cached_property
    def rows(self) -> pl.DataFrame:
        """`task_id, record_id, prompt_hash, build_record` of every build row (empty without a build)."""
        schema = {"task_id": pl.String, "record_id": pl.String, "prompt_hash": pl.String, "build_record": pl.String}
        if self.build_dir is None:
            return pl.DataFrame(schema=schema)
        frames = []
        for path in sorted((self.build_dir / "data").glob("*.parquet")):
            frame = pl.read_parquet(path)
            prompts = frame["prompt"] if "prompt" in frame.columns else (
                frame["messages"].list.slice(0, frame["messages"].list.len() - 1)
                if "messages" in frame.columns else None)
            frames.append(pl.DataFrame({
                "task_id": frame["task_id"],
                "record_id": frame["record_id"],
                "prompt_hash": [None] * frame.height if prompts is None
                else [prompt_hash(p) for p in prompts.to_list()],
                "build_record": frame["record"] if "record" in frame.columns else [None] * frame.height,
            }, schema=schema))
        return pl.concat(frames).unique(["task_id", "record_id"], keep="first") if frames \
            else pl.DataFrame(schema=schema)


def attach_records(log: pl.DataFrame, source: RecordSource) -> pl.DataFrame:
    """Fill missing record ids (by prompt hash) and missing records (by record id) from the build directory."""
    build = source.rows
    log = fill_task_ids(log, build)
    if log["task_id"].null_count():
        raise LogError(f"{log['task_id'].null_count()} row(s) have no task_id and a record_id the build does not "
                       "hold (give --build with the build directory the run used)")
    if build.is_empty():
        return log
    missing_id = log["record_id"].is_null() & log["prompt"].is_not_null()
    if missing_id.any():
        hashes = pl.Series([prompt_hash(p) if m else None
                            for p, m in zip(log["prompt"].to_list(), missing_id.to_list(), strict=True)],
                           dtype=pl.String)
        by_hash = build.select("task_id", "prompt_hash", _rid="record_id").unique(["task_id", "prompt_hash"])
        log = (log.with_columns(prompt_hash=hashes)
               .join(by_hash, on=["task_id", "prompt_hash"], how="left")
               .with_columns(record_id=pl.coalesce("record_id", "_rid")).drop("prompt_hash", "_rid"))
    return (log.join(build.select("task_id", "record_id", "build_record"), on=["task_id", "record_id"], how="left")
            .with_columns(record=pl.coalesce("record", "build_record")).drop("build_record"))


def score_rows(log: pl.DataFrame, source: RecordSource) -> pl.DataFrame:
    """Add `parse_failed`; fill null rewards by scoring against each row's record (null where none is known).

    Rows a trainer already scored keep their reward (it is what the policy was trained on); they are still parsed
    when their record is known, so the parse-failure rate covers them too. Unknown task ids stay unscored.
    """
    from snsdata.rewards import get_scorer

    specs = source.specs
    rewards = log["reward"].to_list()
    failed: list[bool | None] = [None] * log.height
    indexed = log.with_row_index("_row").filter(pl.col("record").is_not_null() & pl.col("task_id").is_in(list(specs)))
    for (task_id,), group in indexed.group_by("task_id"):
        scorer = get_scorer(str(task_id), "fixed", specs)
        details = scorer.details(group["completion"].to_list(), [json.loads(r) for r in group["record"].to_list()])
        for row, detail in zip(group["_row"].to_list(), details, strict=True):
            failed[row] = not detail.parse_ok
            if rewards[row] is None:
                rewards[row] = detail.score
    return log.with_columns(reward=pl.Series(rewards, dtype=pl.Float64),
                            parse_failed=pl.Series(failed, dtype=pl.Boolean))
