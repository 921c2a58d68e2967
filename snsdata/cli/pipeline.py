"""`snsdata filter`, `snsdata dedup`, `snsdata train-quality`: parse arguments, call one function, print."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from snsdata.cli.app import app
from snsdata.pipeline.files import FileRun, dedup_file, filter_file, train_quality_file
from snsdata.pipeline.io import InputError, is_parquet
from snsdata.spec.loader import SpecError

console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    console.print(f"[red]error:[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(code=1)  # invalid input (snsdata.cli.app: 2 is for usage errors)


@contextmanager
def _progress(input_path: Path, label: str) -> Iterator[Callable[[int], None]]:
    """A rich progress bar over input rows (with a total when the file is Parquet, whose footer knows it)."""
    total = None
    try:
        if input_path.is_file() and is_parquet(input_path):
            total = pl.scan_parquet(input_path).select(pl.len()).collect().item()
    except (InputError, pl.exceptions.PolarsError, OSError):
        total = None  # the command itself reports what is wrong with the file
    columns = [TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda rows: bar.advance(task, rows)


def _report(run: FileRun, out: Path, rejects: Path | None) -> None:
    table = Table(title="rows per step")
    for column in ("step", "in", "kept", "rejected"):
        table.add_column(column, justify="left" if column == "step" else "right")
    for count in run.counts:
        table.add_row(count.step, f"{count.rows_in:,}", f"{count.kept:,}", f"{count.rejected:,}")
    console.print(table)
    kept = run.counts[-1].kept if run.counts else 0
    console.print(f"kept {kept:,} rows -> {out}" + (f"; rejects -> {rejects}" if rejects else ""))
    if run.null_text_kept:
        console.print(f"{run.null_text_kept:,} kept rows have null text (nothing to compare; passed through)")


@app.command("filter")
def filter_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Parquet or JSONL file.")],
    out: Annotated[Path, typer.Option("--out", help="Kept rows (.parquet or .jsonl), every column, input order.")],
    config: Annotated[Path | None, typer.Option("--config", help="Pipeline YAML (a list of steps).")] = None,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Dropped rows with step and reason.")] = None,
    text_column: Annotated[str | None, typer.Option("--text-column", help="Text column [default: text].")] = None,
) -> None:
    """Run rule / fastText filters (and any other pipeline steps) over a file."""
    try:
        with _progress(input_path, "filter") as advance:
            run = filter_file(input_path, out, config=config, rejects=rejects, text_column=text_column,
                              progress=advance)
    except (InputError, SpecError, FileNotFoundError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _report(run, out, rejects)


@app.command("dedup")
def dedup_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Parquet or JSONL file.")],
    out: Annotated[Path, typer.Option("--out", help="Kept rows (.parquet or .jsonl), every column, input order.")],
    text_column: Annotated[str, typer.Option("--text-column", help="Column holding the text.")] = "text",
    threshold: Annotated[float, typer.Option("--threshold", min=0.0, max=1.0, help="Jaccard to drop at.")] = 0.8,
    ngram: Annotated[int, typer.Option("--ngram", min=1, help="Shingle size (characters, or words).")] = 5,
    word_ngrams: Annotated[bool, typer.Option("--word-ngrams", help="Shingle words instead of characters.")] = False,
    rejects: Annotated[Path | None, typer.Option("--rejects", help="Dropped rows, reason, duplicate_of.")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Hash seed (same seed, same output).")] = 0,
) -> None:
    """Remove exact and near-duplicate rows (MinHash LSH, verified Jaccard); each cluster keeps its first row."""
    try:
        with _progress(input_path, "dedup") as advance:
            run = dedup_file(input_path, out, text_column=text_column, threshold=threshold, ngram=ngram,
                             word_ngrams=word_ngrams, rejects=rejects, seed=seed, progress=advance)
    except (InputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    _report(run, out, rejects)


@app.command("train-quality")
def train_quality_command(
    positive: Annotated[Path, typer.Option("--positive", help="Parquet/JSONL of good texts.")],
    negative: Annotated[Path, typer.Option("--negative", help="Parquet/JSONL of bad texts.")],
    out: Annotated[Path, typer.Option("--out", help="Where to save the fastText model (.bin).")],
    text_column: Annotated[str, typer.Option("--text-column", help="Column holding the text.")] = "text",
    seed: Annotated[int, typer.Option("--seed", help="Training seed (same seed, same model).")] = 0,
) -> None:
    """Train the fastText quality classifier used by the `quality` step."""
    try:
        pos, neg = train_quality_file(positive, negative, out, text_column=text_column, seed=seed)
    except (InputError, ValueError, RuntimeError) as exc:
        raise _fail(str(exc)) from None
    console.print(f"trained on {pos:,} positive and {neg:,} negative texts -> {out}")
