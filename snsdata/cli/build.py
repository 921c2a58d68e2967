"""`snsdata build`, `snsdata report`, `snsdata mixtures`: training stages from the terminal."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from snsdata.cli.app import app

console = Console()
err_console = Console(stderr=True)

@app.command("build")
def build_command(
    mixture: Annotated[str, typer.Option("--mixture", "-m", help="A shipped mixture name or a mixture YAML file.")],
    data_root: Annotated[Path | None, typer.Option(help="Folder holding the data (default: the shipped samples).")]
    = None,
    out: Annotated[Path | None, typer.Option(help="Build directory (default: builds/<mixture>).")] = None,
    seed: Annotated[int | None, typer.Option(help="Sampling seed (default: the mixture's).")] = None,
    total: Annotated[int | None, typer.Option(help="Train rows, instead of the mixture's total.")] = None,
    max_per_task: Annotated[int | None, typer.Option(help="Read at most N records per task (quick builds).")]
    = None,
    diagnosis: Annotated[Path | None, typer.Option(help="Stage-1 diagnosis JSON (stage 2: weak tasks, failures).",
                                                   exists=True, dir_okay=False)] = None,
    soft_labels: Annotated[Path | None, typer.Option(help="Soft-label JSONL (stage 2: stage-1 answers).",
                                                     exists=True, dir_okay=False)] = None,
    pairs: Annotated[Path | None, typer.Option(help="Extra DPO pairs, Parquet or JSONL (dpo mixtures).",
                                               exists=True, dir_okay=False)] = None,
) -> None:
    """Build one training stage's dataset from a mixture into a build directory (docs/build.md)."""
    from snsdata.build import BuildError, InputFileError, build, read_pairs
    from snsdata.spec import SpecError

    try:
        result = build(mixture, data_root=data_root, out=out, seed=seed, total=total, max_per_task=max_per_task,
                       diagnosis=diagnosis, soft_labels=soft_labels,
                       extra_pairs=read_pairs(pairs) if pairs is not None else None, console=err_console)
    except SpecError as exc:
        for issue in exc.issues:
            err_console.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except (BuildError, InputFileError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    totals = result.manifest["totals"]
    console.print(f"{result.out}: {totals['train_rows']} train, {totals['eval_rows']} eval rows; "
                  f"{totals['rows_rejected']} rejected, {totals['rows_excluded']} excluded of {totals['rows_in']} "
                  f"read", highlight=False, soft_wrap=True)


@app.command("report")
def report_command(
    build_dir: Annotated[Path, typer.Argument(help="A build directory.", exists=True, file_okay=False)],
    out: Annotated[Path | None, typer.Option(help="HTML file (default: BUILD_DIR/report.html).")] = None,
) -> None:
    """A self-contained HTML page: filter funnel, composition by task and capability, length histograms."""
    from snsdata.build.report import write_report

    if not (build_dir / "manifest.json").is_file():
        err_console.print(f"[red]error[/red] {build_dir} is not a build directory (no manifest.json)")
        raise typer.Exit(1)
    console.print(str(write_report(build_dir, out)), highlight=False)


@app.command("mixtures")
def mixtures_command() -> None:
    """The shipped mixtures: name, format, recipe."""
    from snsdata.spec.mixture import list_mixtures, load_mixture

    table = Table(title="mixtures (task_specs/mixtures/)", title_justify="left")
    for column in ("name", "format", "total", "recipe"):
        table.add_column(column)
    for name in list_mixtures():
        mixture = load_mixture(name)
        table.add_row(name, mixture.format, str(mixture.total or "all"), mixture.recipe or mixture.description)
    console.print(table)
