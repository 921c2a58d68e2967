"""`snsdata eval`: corpus metrics of a prediction file against a task's records."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, cast

import typer
from rich.console import Console
from rich.table import Table

from snsdata.cli.app import app
from snsdata.rewards.api import evaluate, evaluate_baselines
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
        import polars as pl

        from snsdata.readers import select_where

        records = load_records(data)
        if spec.source.where and records:
            # The reader's own selection: e.g. RedTrans files hold both directions, one spec per direction.
            frame = pl.DataFrame(records, infer_schema_length=None).with_row_index("_index")
            try:
                kept = select_where(spec, frame)["_index"].to_list()
            except Exception as exc:
                raise _fail(f"{data}: the spec's `where` ({spec.source.where}) cannot be applied: {exc}") from None
            records = [records[i] for i in kept]
            if not records:
                raise _fail(f"{data}: no record matches the spec's `where` ({spec.source.where})")
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


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    return f"{value:.4f}" if isinstance(value, float) else str(value)


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
    """Score a prediction file: one line per record in order, or keyed by `record_id`. Beside the model's
    figures: what trivial answers (empty, the majority gold, every candidate at once) score on the same records,
    under their own key (`baselines`)."""
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
        trivial = evaluate_baselines(task, records, compat=cast(Compat, compat), specs=catalogue)
    except (EvalInputError, ValueError) as exc:
        raise _fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({**metrics, "baselines": trivial}, ensure_ascii=False))
        return
    table = Table(title=f"{task} ({compat}, {len(records)} records)")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name in trivial:
        table.add_column(f"baseline: {name}", justify="right", style="dim")
    for name, value in metrics.items():
        table.add_row(name, _cell(value), *(_cell(trivial[b].get(name)) for b in trivial))
    console.print(table)


@app.command("audit")
def audit_command(
    task: Annotated[list[str] | None, typer.Option("--task", help="Task id (repeatable; default: every task).")] = None,
    data_root: Annotated[
        list[Path] | None,
        typer.Option("--data-root", help="Read records from here (repeatable; default: the shipped samples)."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print every task's audit as one JSON list.")] = False,
    markdown: Annotated[
        Path | None, typer.Option("--markdown", help="Also write the audit page (docs/reward_audit.md) here.")
    ] = None,
    max_rows: Annotated[int, typer.Option("--max-rows", min=1, help="Rows audited per task.")] = 200,
    seed: Annotated[int, typer.Option("--seed", help="Balancing and sampling seed.")] = 0,
    specs: Annotated[
        list[Path] | None, typer.Option("--specs", help="Spec folders (or files) added to the search path, as the "
                                                        "global `snsdata --specs` does.")
    ] = None,
) -> None:
    """Try every reward with the answers an RL policy would find (empty, skeletons, every label, the majority
    label, a copy of the input, padding) and with harmless variants of the gold; exit 1 on any flag."""
    import shlex
    import sys

    from snsdata.audit import audit, document, summary

    catalogue = _specs(specs)
    unknown = sorted(set(task or []) - set(catalogue))
    if unknown:
        raise _fail(f"unknown task(s) {', '.join(unknown)}; `snsdata tasks list` shows the ids")
    roots: list[Path | None] = list(data_root) if data_root else [None]
    results = audit(catalogue, roots, task or None, seed=seed, max_rows=max_rows)
    counts = summary(results)
    if markdown is not None:
        command = "snsdata " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        markdown.write_text(document(results, command), encoding="utf-8")
    if as_json:
        typer.echo(json.dumps([r.to_dict() for r in results], ensure_ascii=False))
    else:
        table = Table(title=f"reward audit ({len(results)} task audits)")
        for column in ("task", "data", "rows", "chance", "gold", "best degenerate (ceiling)", "status"):
            table.add_column(column)
        for r in results:
            degenerate = [p for p in r.policies if p.kind == "degenerate" and p.mean is not None]
            top = max(degenerate, key=lambda p: (p.mean, p.name), default=None)
            best = f"{top.name} {top.mean:.3f} ({top.ceiling:.3f})" if top and top.ceiling is not None else "–"
            gold = f"{r.gold_mean:.3f}" if r.gold_mean is not None else "–"
            style = "red" if r.flags else "green" if r.status == "ok" else "yellow"
            table.add_row(r.task_id, r.data or "–", str(r.rows), f"{r.chance:.3f}", gold, best,
                          f"[{style}]{r.status}[/{style}]")
        console.print(table)
        for r in results:
            for flag in r.flags:
                console.print(f"[red]flag[/red] {r.task_id} ({r.data}): {flag}", highlight=False)
        console.print(", ".join(f"{v} {k}" for k, v in counts.items()))
    if counts["flags"]:
        raise typer.Exit(1)
