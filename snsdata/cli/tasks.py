"""`snsdata validate`, `tasks list|show`, `render`, `schema`: the spec language from the terminal."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import polars as pl
import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from snsdata.cli.app import app
from snsdata.readers import DataNotFound, SourceError, data_found, default_data_root, read_task, read_work
from snsdata.render import RenderError, render_messages, render_target
from snsdata.spec import CAPABILITIES, SpecError, TaskSpec, load_catalogue, resolve_specs
from snsdata.spec.loader import spec_json_schema
from snsdata.spec.searchpath import SHIPPED, Resolved

console = Console()
err_console = Console(stderr=True)

tasks_app = typer.Typer(help="List and inspect task specs.", no_args_is_help=True)
app.add_typer(tasks_app, name="tasks")

DataRoot = Annotated[
    Path | None, typer.Option("--data-root", help="Folder holding the data (default: the shipped samples).")
]


def _fail_on_specs(exc: SpecError) -> typer.Exit:
    for issue in exc.issues:
        err_console.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
    return typer.Exit(1)


def _catalogue(paths: list[Path] | None = None) -> dict[str, TaskSpec]:
    """The given spec files/folders, or the search path (shipped catalogue + user folders)."""
    try:
        return load_catalogue(paths or None)
    except SpecError as exc:
        raise _fail_on_specs(exc) from None


def _resolved() -> Resolved:
    try:
        return resolve_specs()
    except SpecError as exc:
        raise _fail_on_specs(exc) from None


def _spec(task_id: str) -> TaskSpec:
    specs = _catalogue()
    if task_id not in specs:
        err_console.print(f"[red]error[/red] unknown task {task_id!r}; `snsdata tasks list` shows the ids")
        raise typer.Exit(1)
    return specs[task_id]


def _read(spec: TaskSpec, data_root: Path | None) -> pl.DataFrame:
    try:
        return read_task(spec, data_root).frame.collect()
    except (DataNotFound, SourceError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


_STYLES = {"error": "red", "warning": "yellow", "known": "cyan", "info": "dim"}


@app.command()
def validate(
    paths: Annotated[list[Path] | None, typer.Argument(help="Spec files or folders (default: the catalogue).")] = None,
    data_root: DataRoot = None,
) -> None:
    """Validate task specs; with --data-root also read every task's data and self-check its gold answers.

    Records a spec declares as known-bad (`source.known_bad`) are listed as known, not as errors. Large files
    are streamed; a progress bar shows on a terminal.
    """
    specs = _catalogue(paths)
    problems = known = 0
    if data_root is not None:
        from snsdata.build.checks import check_task_data

        columns = [TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=err_console, transient=True, disable=not err_console.is_terminal) as bar:
            for spec in specs.values():
                task = bar.add_task(f"validate {spec.id}", total=read_work(spec, data_root) or None)
                lines = check_task_data(spec, data_root, progress=lambda n, task=task: bar.advance(task, n))
                bar.remove_task(task)
                for line in lines:
                    problems += line.is_error
                    known += line.level == "known"
                    style = _STYLES[line.level]
                    console.print(f"[{style}]{line.level}[/{style}] {spec.id}: {escape(line.message)}",
                                  highlight=False, soft_wrap=True)
    if problems:
        console.print(f"{len(specs)} specs valid; {problems} data problem(s)")
        raise typer.Exit(1)
    known_note = f"; {known} declared known-bad record(s) set aside" if known else ""
    console.print(f"[green]ok[/green] {len(specs)} task specs valid{known_note}")


@tasks_app.command("list")
def tasks_list(
    data_root: DataRoot = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per task.")] = False,
) -> None:
    """Every task grouped by capability: languages, output format, reward type, data availability, origin."""
    resolved = _resolved()
    specs = resolved.specs
    root = data_root or default_data_root()
    rows = [
        {
            "id": spec.id,
            "origin": resolved.origin(spec.id),
            "capability": spec.capability,
            "languages": spec.languages,
            "output": spec.output.format,
            "reward": spec.reward.type,
            "availability": spec.source.availability,
            "data_found": data_found(spec, root),
        }
        for spec in specs.values()
    ]
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
        return
    for capability in CAPABILITIES:
        group = [row for row in rows if row["capability"] == capability]
        if not group:
            continue
        table = Table(title=f"{capability} ({len(group)} tasks)", title_justify="left")
        table.add_column("id", no_wrap=True)
        for column in ("languages", "output", "reward", "availability", "data"):
            table.add_column(column)
        for row in group:
            found = "[green]found[/green]" if row["data_found"] else "[dim]not found[/dim]"
            name = f"{row['id']} *" if row["origin"] != SHIPPED else row["id"]
            table.add_row(name, ",".join(row["languages"]), row["output"], row["reward"], row["availability"], found)
        console.print(table)
    found = sum(row["data_found"] for row in rows)
    own = [row for row in rows if row["origin"] != SHIPPED]
    for row in own:
        console.print(f"* {row['id']}: {row['origin']}", highlight=False, soft_wrap=True)
    mine = f" ({len(own)} from your spec folders, marked *)" if own else ""
    console.print(f"{len(rows)} tasks{mine}; data found for {found} under {root}", highlight=False, soft_wrap=True)


@tasks_app.command("show")
def tasks_show(task_id: str) -> None:
    """The fully resolved spec of one task (after `extends:` and template files)."""
    spec = _spec(task_id)
    typer.echo(json.dumps(spec.model_dump(mode="json", exclude_none=True), ensure_ascii=False, indent=2))


@app.command()
def render(
    task_id: str,
    data_root: DataRoot = None,
    n: Annotated[int, typer.Option("-n", help="How many records.")] = 3,
    split: Annotated[str | None, typer.Option(help="Only this split.")] = None,
    seed: Annotated[int, typer.Option(help="Few-shot seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of {record_id, messages, target}.")] = False,
) -> None:
    """Show the chat messages and target of the first N records of a task."""
    spec = _spec(task_id)
    frame = _read(spec, data_root)
    pool = None
    if spec.prompt.few_shot.split:
        pool = frame.filter(pl.col("split") == spec.prompt.few_shot.split).to_dicts()
    if split:
        frame = frame.filter(pl.col("split") == split)
    out = []
    try:
        for record in frame.head(n).to_dicts():
            out.append({"record_id": record["record_id"],
                        "messages": render_messages(spec, record, pool, seed),
                        "target": render_target(spec, record)})
    except RenderError as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False)
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps(out, ensure_ascii=False, indent=1))
        return
    for item in out:
        console.rule(f"{task_id} {item['record_id']}")
        for message in item["messages"]:
            console.print(f"[bold]{message['role']}[/bold]", highlight=False)
            console.print(message["content"], markup=False, highlight=False)
        console.print("[bold]target[/bold]", highlight=False)
        console.print(item["target"], markup=False, highlight=False)


@app.command()
def schema(out: Annotated[Path | None, typer.Option(help="Write to this file instead of stdout.")] = None) -> None:
    """The JSON Schema of a task spec (committed as docs/task_spec.schema.json for editors)."""
    text = json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n"
    if out:
        out.write_text(text, encoding="utf-8")
    else:
        typer.echo(text, nl=False)
