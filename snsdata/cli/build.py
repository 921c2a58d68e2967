"""`snsdata build`, `snsdata report`, `snsdata mixtures`: training stages from the terminal."""

from __future__ import annotations

import json
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
    mixture: Annotated[str, typer.Option("--mixture", "-m", help="A mixture name (shipped or in a spec folder's "
                                                                 "mixtures/; `snsdata mixtures`) or a YAML file.")],
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
    predictions: Annotated[Path | None, typer.Option(
        help="Model predictions (dpo): wrong ones, scored below --pair-threshold, become rejected answers.",
        exists=True, dir_okay=False)] = None,
    annotations: Annotated[Path | None, typer.Option(
        help="Preference annotations for subjective tasks (dpo): JSONL with chosen and rejected.",
        exists=True, dir_okay=False)] = None,
    pair_threshold: Annotated[float, typer.Option(help="A prediction below this reward is wrong.")] = 0.5,
    max_pairs_per_task: Annotated[int | None, typer.Option(
        help="Cap on train pairs per task (dpo), instead of the mixture's `pairs.max_per_task`.")] = None,
    rollouts: Annotated[Path | None, typer.Option(
        help="Stage-1 rollout log (sft, rl; stage 3): correct rollouts with reasoning give records rationales.",
        exists=True, dir_okay=False)] = None,
    pass_threshold: Annotated[float | None, typer.Option(
        help="A rollout is correct at this correctness reward or above (default 0.5, or --rules').")] = None,
    rules: Annotated[Path | None, typer.Option(
        help="The `snsdata diagnose` rules YAML: its pass_threshold and task_pass_thresholds judge --rollouts.",
        exists=True, dir_okay=False)] = None,
) -> None:
    """Build one training stage's dataset from a mixture into a build directory (docs/build.md)."""
    import polars as pl

    from snsdata.build import BuildError, InputFileError, RolloutInput, build, read_pairs
    from snsdata.loop.logs import LogError
    from snsdata.spec import SpecError

    try:
        extra = [read_pairs(pairs)] if pairs is not None else []
        if annotations is not None:
            from snsdata.loop.pairs import extra_pairs

            made, skipped = extra_pairs(mixture, annotations=annotations, data_root=data_root,
                                        max_per_task_records=max_per_task, seed=seed or 0)
            extra.append(made)
            err_console.print(f"{made.height} pair(s) from annotations; {skipped.height} annotation(s) not paired",
                              highlight=False)
        if (rules is not None or pass_threshold is not None) and rollouts is None:
            raise BuildError("--rules and --pass-threshold judge --rollouts; give the rollout log too")
        rollout_input = None
        if rollouts is not None:
            from snsdata.loop.diagnose import load_rules

            found = load_rules(rules, pass_threshold=pass_threshold)
            rollout_input = RolloutInput(rollouts, found.pass_threshold, dict(found.task_pass_thresholds))
        result = build(mixture, data_root=data_root, out=out, seed=seed, total=total, max_per_task=max_per_task,
                       diagnosis=diagnosis, soft_labels=soft_labels,
                       extra_pairs=pl.concat(extra) if extra else None, console=err_console,
                       rollouts=rollout_input, predictions=predictions, pair_threshold=pair_threshold,
                       max_pairs_per_task=max_pairs_per_task)
    except SpecError as exc:
        _print_issues(exc)
        raise typer.Exit(1) from None
    except (BuildError, InputFileError, LogError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    totals = result.manifest["totals"]
    console.print(f"{result.out}: {totals['train_rows']} train, {totals['eval_rows']} eval rows; "
                  f"{totals['rows_rejected']} rejected, {totals['rows_not_drawn']} not drawn, "
                  f"{totals['rows_excluded']} excluded of {totals['rows_in']} "
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
def mixtures_command(
    as_json: Annotated[bool, typer.Option("--json", help="A JSON list of {name, format, total, origin, extends}.")]
    = False,
) -> None:
    """The mixtures of the search path (shipped and your folders'): name, format, total, recipe, origin."""
    from snsdata.spec import SpecError
    from snsdata.spec.mixture import load_mixture
    from snsdata.spec.searchpath import SHIPPED, mixture_files

    try:
        found = mixture_files()
    except SpecError as exc:
        _print_issues(exc)
        raise typer.Exit(1) from None
    rows, failed = [], False
    for name, entry in found.items():
        try:
            mixture = load_mixture(name)
        except SpecError as exc:
            _print_issues(exc)
            failed = True
            continue
        rows.append({"name": name, "format": mixture.format, "total": mixture.total, "origin": entry.origin,
                     "extends": list(mixture.bases), "recipe": mixture.recipe or mixture.description})
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=1))
    else:
        table = Table(title="mixtures", title_justify="left")
        for column in ("name", "format", "total", "recipe"):
            table.add_column(column)
        for row in rows:
            mark = " *" if row["origin"] != SHIPPED else ""
            table.add_row(row["name"] + mark, row["format"], str(row["total"] or "all"), row["recipe"])
        console.print(table)
        for row in rows:
            if row["origin"] != SHIPPED:
                extends = f" (extends {', '.join(row['extends'])})" if row["extends"] else ""
                console.print(f"* {row['name']}: {row['origin']}{extends}", highlight=False, soft_wrap=True)
    if failed:
        raise typer.Exit(1)


def _print_issues(exc: Exception) -> None:
    for issue in getattr(exc, "issues", [exc]):
        err_console.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
