"""`snsdata eval`: corpus metrics of a prediction file against a task's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from snsdata.cli.app import app
from snsdata.rewards.api import evaluate
from snsdata.rewards.files import EvalInputError, align, load_predictions, load_records
from snsdata.rewards.scorer import Compat
from snsdata.spec import SpecError, TaskSpec, load_catalogue
from snsdata.spec.searchpath import add_spec_folders

console = Console()
err_console = Console(stderr=True)


def _fail(message: str) -> typer.Exit:
    err_console.print(f"[red]error[/red] {message}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _specs(paths: list[Path] | None) -> dict[str, TaskSpec]:
    """The search path's specs; `eval --specs` adds folders to it, like the global `snsdata --specs`."""
    add_spec_folders(paths or [])
    try:
        return load_catalogue()
    except SpecError as exc:
        raise _fail(str(exc)) from None


def _records(spec: TaskSpec, data: Path | None, data_root: Path | None, split: str | None) -> list[dict[str, Any]]:
    if data is not None:
        records = load_records(data)
    else:
        from snsdata.readers import DataNotFound, SourceError, read_task

        try:
            records = read_task(spec, data_root, purpose="eval").frame.collect().to_dicts()  # known-bad kept
        except (DataNotFound, SourceError) as exc:
            raise _fail(str(exc)) from None
    if split is not None:
        records = [r for r in records if r.get("split") == split]
        if not records:
            raise _fail(f"no records of split {split!r} for {spec.id}")
    return records


@app.command("eval")
def eval_command(
    task: Annotated[str, typer.Option("--task", help="Task id.")],
    predictions: Annotated[Path, typer.Option("--predictions", help="JSONL with a `prediction` per line.")],
    data: Annotated[Path | None, typer.Option("--data", help="Records as a JSON list or JSONL file.")] = None,
    data_root: Annotated[
        Path | None, typer.Option("--data-root", help="Read the task's records from here (default: samples).")
    ] = None,
    split: Annotated[str | None, typer.Option("--split", help="Only records of this split.")] = None,
    compat: Annotated[str, typer.Option("--compat", help="official (benchmark tasks only) or fixed.")] = "fixed",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of metric -> value.")] = False,
    specs: Annotated[
        list[Path] | None, typer.Option("--specs", help="Spec folders (or files) added to the search path, as the "
                                                        "global `snsdata --specs` does.")
    ] = None,
) -> None:
    """Score a prediction file: one line per record in order, or keyed by `record_id`."""
    if data is not None and data_root is not None:
        raise _fail("give --data or --data-root, not both")
    if compat not in ("official", "fixed"):
        raise _fail(f"--compat is 'official' or 'fixed', not {compat!r}")
    catalogue = _specs(specs)
    if task not in catalogue:
        raise _fail(f"unknown task {task!r}; `snsdata tasks list` shows the ids")
    spec = catalogue[task]
    try:
        records = _records(spec, data, data_root, split)
        aligned = align(load_predictions(predictions), records, str(predictions))
        metrics = evaluate(task, records, aligned, compat=cast(Compat, compat), specs=catalogue)
    except (EvalInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps(metrics, ensure_ascii=False))
        return
    table = Table(title=f"{task} ({compat}, {len(records)} records)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in metrics.items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    console.print(table)
