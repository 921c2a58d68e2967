"""The local runner: steps in order, rows counted in and out of every step, every dropped row kept.

Every read is a slice query of a Parquet scan or an in-memory frame (an input that is neither, such as
JSONL, is first streamed to Parquet in a temporary directory), so memory holds a few batches however long
the input. Consecutive row-local steps run batch by batch; a global step (dedup) gets its whole input as a
scan, returns its verdicts on the rows it drops, and the runner applies them batch by batch. Between stages
kept rows are spilled to Parquet. After every step the runner checks rows in = kept + rejected.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import polars as pl

from snsdata.frames import REJECT_SCHEMA, empty_rejects
from snsdata.pipeline.base import (
    REASON,
    ROW,
    StepConfig,
    slice_batches,
    to_rejects,
    user_columns,
    with_row_ids,
)
from snsdata.pipeline.config import PipelineConfig, parse_steps
from snsdata.pipeline.io import BatchWriter
from snsdata.pipeline.parallel import ordered_map

Sink = Callable[[pl.DataFrame], None]
Progress = Callable[[int], None]


@dataclass
class StepCount:
    """Rows into one step, and how many it kept and rejected."""

    step: str
    rows_in: int = 0
    kept: int = 0
    rejected: int = 0


class PipelineResult(NamedTuple):
    """kept rows (input columns, input order), rejects (REJECT_SCHEMA), per-step counts."""

    kept: pl.DataFrame
    rejects: pl.DataFrame
    counts: list[StepCount]


def _configs(steps: PipelineConfig | Sequence[StepConfig | dict[str, Any]],
             text_column: str | None) -> tuple[list[StepConfig], str]:
    if isinstance(steps, PipelineConfig):
        return list(steps.steps), text_column or steps.text_column
    return parse_steps(steps), text_column or "text"


def _stages(configs: list[StepConfig]) -> list[list[int]]:
    """Step indices grouped into runs of row-local steps; each global step is a stage of its own."""
    stages: list[list[int]] = []
    for index, config in enumerate(configs):
        if config.scope == "row" and stages and configs[stages[-1][0]].scope == "row":
            stages[-1].append(index)
        else:
            stages.append([index])
    return stages


def _batches(frame: pl.LazyFrame, batch_size: int) -> Iterator[pl.DataFrame]:
    """Batches carrying ROW: the frame's own, or numbered here (a row index on the frame would stop slices
    from reaching the reader)."""
    numbered = ROW in frame.collect_schema()
    for offset, batch in slice_batches(frame, batch_size):
        if batch.height:
            yield batch if numbered else batch.with_row_index(ROW, offset=offset)


def _check(count: StepCount) -> None:
    if count.rows_in != count.kept + count.rejected:
        raise RuntimeError(f"step {count.step!r} lost rows: {count.rows_in} in, {count.kept} kept, "
                           f"{count.rejected} rejected")


class _Run:
    """One execution: the steps, where kept rows and rejects go, and the counts."""

    def __init__(self, configs: list[StepConfig], text_column: str, on_kept: Sink, on_rejects: Sink,
                 batch_size: int, source: str, progress: Progress | None, workers: int):
        self.configs = configs
        # a global first step reads the input first, so it is the one to report progress
        first_reads = bool(configs) and configs[0].scope == "global"
        self.steps = [config.build(text_column, progress if first_reads and index == 0 else None)
                      for index, config in enumerate(configs)]
        self.counts = [StepCount(config.step) for config in configs]
        self.on_kept = on_kept
        self.on_rejects = on_rejects
        self.batch_size = batch_size
        self.source = source
        self.progress = progress
        self.workers = workers

    def _reject(self, index: int, rejects: pl.DataFrame) -> None:
        self.counts[index].rejected += rejects.height
        if rejects.height:
            self.on_rejects(rejects)

    def _through(self, indices: list[int], batch: pl.DataFrame) -> list[tuple[int, pl.DataFrame, pl.DataFrame]]:
        """One batch through the steps: (rows in, kept, rejects) per step. Touches no shared state, so
        batches can go through on several threads."""
        trace = []
        current = batch
        for index in indices:
            result = self.steps[index](current.lazy())
            kept, rejects = pl.collect_all([result.kept, to_rejects(result.rejected, self.source)])
            trace.append((current.height, kept, rejects))
            current = kept
        return trace

    def row_stage(self, indices: list[int], frame: pl.LazyFrame, out: Sink, report: bool) -> None:
        """Row-local steps over the batches (on worker threads, results taken in order); kept rows of the
        last step go to `out`."""
        batches = _batches(frame, self.batch_size)
        for batch, trace in ordered_map(partial(self._through, indices), batches, self.workers):
            for index, (rows_in, kept, rejects) in zip(indices, trace, strict=True):
                self.counts[index].rows_in += rows_in
                self.counts[index].kept += kept.height
                self._reject(index, rejects)
            final = trace[-1][1] if trace else batch
            if final.height:
                out(final)
            if report and self.progress:
                self.progress(batch.height)
        for index in indices:
            _check(self.counts[index])

    def global_stage(self, index: int, frame: pl.LazyFrame, rows_in: int, out: Sink) -> None:
        """A whole-input step; its verdicts split the input batch by batch, kept rows going to `out`."""
        count = self.counts[index]
        count.rows_in = rows_in
        verdicts = self.steps[index](with_row_ids(frame)).verdicts
        if verdicts is None:
            raise TypeError(f"global step {count.step!r} returned no verdicts")
        verdicts = verdicts.sort(ROW)
        for batch in _batches(frame, self.batch_size):
            # only the verdicts in this batch's ROW range take part in its join
            rows = batch.get_column(ROW)
            first = verdicts.get_column(ROW).search_sorted(rows.min(), side="left")
            stop = verdicts.get_column(ROW).search_sorted(rows.max(), side="right")
            marked = batch.join(verdicts.slice(first, stop - first), on=ROW, how="left", maintain_order="left")
            dropped = marked.get_column(REASON).is_not_null()
            self._reject(index, to_rejects(marked.filter(dropped).lazy(), self.source).collect())
            kept = batch.filter(~dropped)
            count.kept += kept.height
            if kept.height:
                out(kept)
        _check(count)


class _Spill:
    """Batches written as numbered Parquet parts in a folder, read back as one scan in order."""

    def __init__(self, folder: Path):
        folder.mkdir()
        self.folder = folder
        self.rows = 0
        self.parts = 0

    def write(self, batch: pl.DataFrame) -> None:
        batch.write_parquet(self.folder / f"part-{self.parts:08d}.parquet")
        self.parts += 1
        self.rows += batch.height

    def scan(self, fallback: pl.Schema) -> pl.LazyFrame:
        """The parts in order (steps keep the columns, so an empty spill takes the input's schema)."""
        if not self.parts:
            return pl.LazyFrame(schema=fallback)
        return pl.scan_parquet([self.folder / f"part-{i:08d}.parquet" for i in range(self.parts)])


def execute(frame: pl.LazyFrame, configs: list[StepConfig], text_column: str, on_kept: Sink, on_rejects: Sink, *,
            batch_size: int = 100_000, source: str = "pipeline", rescannable: bool = False,
            progress: Progress | None = None, workers: int = 2) -> list[StepCount]:
    """Run the steps over `frame`, handing kept batches (input columns only) and reject batches to the sinks.

    `rescannable` says `frame` is cheap to slice and read again (a Parquet scan, an in-memory frame);
    otherwise it is first streamed to Parquet. `progress` hears the input rows as they are read.
    Row-local batches go through the steps on `workers` threads; the output is the same for any number.
    """
    schema = with_row_ids(frame).collect_schema()
    columns = user_columns(schema)
    if text_column not in columns:
        raise ValueError(f"no column {text_column!r} in the input (columns: {', '.join(columns)})")
    run = _Run(configs, text_column, on_kept, on_rejects, batch_size, source, progress, workers)

    def emit(batch: pl.DataFrame) -> None:
        on_kept(batch.select(columns))

    stages = _stages(configs) or [[]]
    with tempfile.TemporaryDirectory(prefix="snsdata-pipeline-") as tmp:
        current, rows = frame, None
        if not rescannable:
            current = _streamed_to_parquet(frame, Path(tmp) / "input.parquet")
        for number, indices in enumerate(stages):
            last = number == len(stages) - 1
            spill = None if last else _Spill(Path(tmp) / f"stage-{number}")
            out = emit if spill is None else spill.write
            if indices and configs[indices[0]].scope == "global":
                if rows is None:
                    rows = current.select(pl.len()).collect().item()
                run.global_stage(indices[0], current, rows, out)
            else:
                run.row_stage(indices, current, out, report=number == 0)
            if spill is not None:
                current, rows = spill.scan(schema), spill.rows
    return run.counts


def _streamed_to_parquet(frame: pl.LazyFrame, path: Path) -> pl.LazyFrame:
    """`frame` written to `path` by Polars' streaming sink (bounded memory), as a scan that slices cheaply."""
    frame.sink_parquet(path, compression="zstd", compression_level=1)
    return pl.scan_parquet(path)


def run_pipeline(frame: pl.LazyFrame | pl.DataFrame, steps: PipelineConfig | Sequence[StepConfig | dict[str, Any]],
                 text_column: str | None = None, *, batch_size: int = 100_000, source: str = "pipeline",
                 workers: int = 2) -> PipelineResult:
    """Run a pipeline in memory: kept rows, rejects in REJECT_SCHEMA, and per-step counts."""
    configs, column = _configs(steps, text_column)
    in_memory = isinstance(frame, pl.DataFrame)
    frame = frame.lazy()
    kept: list[pl.DataFrame] = []
    rejects: list[pl.DataFrame] = []
    counts = execute(frame, configs, column, kept.append, rejects.append, batch_size=batch_size, source=source,
                     rescannable=in_memory, workers=workers)
    schema = {name: dtype for name, dtype in frame.collect_schema().items() if name != ROW}
    kept_frame = pl.concat(kept) if kept else pl.DataFrame(schema=schema)
    reject_frame = pl.concat(rejects) if rejects else empty_rejects()
    return PipelineResult(kept_frame, reject_frame.cast(REJECT_SCHEMA), counts)


def run_pipeline_to_files(frame: pl.LazyFrame, steps: PipelineConfig | Sequence[StepConfig | dict[str, Any]],
                          out: str | Path, rejects: str | Path | None = None, text_column: str | None = None, *,
                          batch_size: int = 100_000, source: str = "pipeline", rescannable: bool = False,
                          progress: Progress | None = None, workers: int = 2) -> list[StepCount]:
    """Run a pipeline streaming kept rows to `out` and rejects to `rejects` (Parquet or JSONL by suffix)."""
    configs, column = _configs(steps, text_column)
    schema = {name: dtype for name, dtype in frame.collect_schema().items() if name != ROW}
    with BatchWriter(out, schema) as kept_writer:
        if rejects is None:
            return execute(frame, configs, column, kept_writer.write, lambda _: None, batch_size=batch_size,
                           source=source, rescannable=rescannable, progress=progress, workers=workers)
        with BatchWriter(rejects, REJECT_SCHEMA) as reject_writer:
            return execute(frame, configs, column, kept_writer.write, reject_writer.write, batch_size=batch_size,
                           source=source, rescannable=rescannable, progress=progress, workers=workers)
