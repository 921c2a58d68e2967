"""`snsdata decontaminate`: the build's contamination check over a corpus of your own (docs/pipeline.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.table import Table

from snsdata.cli.app import app
from snsdata.pipeline.base import DUPLICATE_OF, REASON, ROW
from snsdata.pipeline.decontam import EvalIndex, decontaminate
from snsdata.pipeline.io import BatchWriter, InputError, scan_input

console = Console(stderr=True)
_ID, _TEXT, _BENCHMARK = "eval_id", "_text", "benchmark"


def _against_file(path: Path, id_column: str, text_column: str) -> pl.DataFrame:
    """A file of eval items as reference rows: ids prefixed by the file name, which is also their benchmark."""
    frame = scan_input(path, text_column).collect()
    if id_column not in frame.columns:
        raise InputError(f"{path}: no column {id_column!r} (columns: {', '.join(frame.columns)}); pick one with "
                         "--against-id-column")
    return frame.select(eval_id=pl.format("{}:{}", pl.lit(path.name), pl.col(id_column).cast(pl.String)),
                        benchmark=pl.lit(path.name), _text=pl.col(text_column))


def _outputs(input_path: Path, out: Path | None, removed: Path | None) -> tuple[Path, Path]:
    stem = input_path.name.removesuffix(input_path.suffix)
    return (out or input_path.with_name(f"{stem}.clean{input_path.suffix}"),
            removed or input_path.with_name(f"{stem}.removed.jsonl"))


@app.command("decontaminate")
def decontaminate_command(
    input_path: Annotated[Path, typer.Argument(metavar="INPUT", help="Parquet or JSONL file of training rows.")],
    against: Annotated[list[Path] | None, typer.Option(
        "--against", metavar="FILE", help="Eval items of your own (Parquet/JSONL with an id and a text column); "
                                          "repeatable.")] = None,
    data_root: Annotated[Path | None, typer.Option(
        help="Check against every eval item of the catalogue's tasks with data here (default: the shipped "
             "samples), as a build does.")] = None,
    no_catalogue: Annotated[bool, typer.Option("--no-catalogue", help="Only the --against files.")] = False,
    mixture: Annotated[str, typer.Option(help="Whose split decides the catalogue's held-out eval records.")]
    = "stage1",
    text_column: Annotated[str, typer.Option("--text-column", help="INPUT's text column.")] = "text",
    against_id_column: Annotated[str, typer.Option(help="Id column of the --against files.")] = "id",
    against_text_column: Annotated[str, typer.Option(help="Text column of the --against files.")] = "text",
    near_threshold: Annotated[float, typer.Option(min=0.01, max=1.0, help="Char 5-gram Jaccard of a near copy.")]
    = 0.8,
    out: Annotated[Path | None, typer.Option(help="Clean rows, every column, input order [default: "
                                                  "INPUT.clean.<ext>].")] = None,
    removed: Annotated[Path | None, typer.Option(help="Removed rows: input position, reason, eval ids, the row "
                                                      "[default: INPUT.removed.jsonl].")] = None,
) -> None:
    """Remove rows that share a 13-word / 25-CJK-character n-gram with, or nearly copy (char 5-gram Jaccard >=
    0.8), any eval item: every benchmark item of the catalogue (all records of eval-only tasks, both directions
    of a translation pair) and every held-out record, plus your own files."""
    from snsdata.build.builder import catalogue_reference

    parts = [] if no_catalogue else [catalogue_reference(data_root, mixture).select(_ID, _BENCHMARK, _TEXT)]
    parts += [_against_file(path, against_id_column, against_text_column) for path in against or []]
    if not parts:
        raise InputError("nothing to check against: drop --no-catalogue or give --against FILE")
    reference = pl.concat(parts)
    frame = scan_input(input_path, text_column)
    index = EvalIndex.build(reference, _ID, _TEXT, near_threshold=near_threshold)
    result = decontaminate(frame, reference, text_column=text_column, index=index)
    kept, dropped = pl.collect_all([result.result.kept, result.result.rejected])
    clean, removed_path = _outputs(input_path, out, removed)
    with BatchWriter(clean, frame.collect_schema()) as writer:
        writer.write(kept.drop(ROW))
    columns = [c for c in dropped.columns if not c.startswith("__")]
    report = dropped.select(row=pl.col(ROW), reason=pl.col(REASON), eval_ids=pl.col(DUPLICATE_OF).str.split(","),
                            record=pl.struct(columns) if columns else pl.lit(None))
    with BatchWriter(removed_path) as writer:
        writer.write(report)
    hits = report.select("row", eval_id="eval_ids").explode("eval_id").join(
        reference.select(_ID, _BENCHMARK), on=_ID, how="inner")
    table = Table(title="rows removed per benchmark")
    for column in ("benchmark", "items hit", "rows removed"):
        table.add_column(column, justify="left" if column == "benchmark" else "right")
    for bench, items, rows in hits.group_by(_BENCHMARK).agg(
            pl.col(_ID).n_unique(), pl.col("row").n_unique()).sort(_BENCHMARK).iter_rows():
        table.add_row(bench, f"{items:,}", f"{rows:,}")
    console.print(table)
    console.print(f"checked {kept.height + dropped.height:,} rows against {reference.height:,} eval items: kept "
                  f"{kept.height:,} -> {clean}; removed {dropped.height:,} -> {removed_path}", highlight=False,
                  soft_wrap=True)
