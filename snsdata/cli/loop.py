"""`snsdata diagnose` and `snsdata soft-label`: the RedOne 2.0 loop between stage-1 RL and stage-2 SFT."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from snsdata.cli.app import app

console = Console()
err_console = Console(stderr=True)


def _fmt(value: Any, signed: bool = False) -> str:
    if value is None:
        return "–"
    return f"{value:+.3f}" if signed else f"{value:.3f}" if isinstance(value, float) else str(value)


FrozenSpecs = typer.Option("--build", help="A build directory whose frozen specs (specs.json) read, render and score "
                                            "its tasks, over the search path's: no spec folder needed for them.",
                            exists=True, file_okay=False)


def _with_frozen(build: Path | None) -> dict[str, Any] | None:
    """The search path's specs with a build's frozen ones over them (None: the search path alone)."""
    if build is None:
        return None
    from snsdata.spec import load_catalogue
    from snsdata.spec.searchpath import frozen_specs

    return {**load_catalogue(), **frozen_specs(build)}


def diagnosis_table(diagnosis: dict[str, Any]) -> Table:
    """The per-task figures, weak tasks first in red with the reason they were chosen."""
    has_baseline = any("delta_mean_reward" in f for f in diagnosis["tasks"].values())
    table = Table(title=f"Diagnosis: {len(diagnosis['weak_tasks'])} weak of {len(diagnosis['tasks'])} tasks",
                  title_justify="left")
    table.add_column("task", no_wrap=True)
    table.add_column("capability")
    for name in ("rows", "records", "mean reward", "pass rate", "parse fail", "failures"):
        table.add_column(name, justify="right")
    if has_baseline:
        table.add_column("Δ mean", justify="right")
        table.add_column("Δ pass", justify="right")
    table.add_column("weak because")
    ordered = sorted(diagnosis["tasks"].items(), key=lambda item: (not item[1]["weak"], item[0]))
    for task_id, f in ordered:
        cells = [task_id, f["capability"], str(f["count"]), str(f["records"]), _fmt(f["mean_reward"]),
                 _fmt(f["pass_rate"]), _fmt(f["parse_failure_rate"]), str(f["failures"])]
        if has_baseline:
            cells += [_fmt(f.get("delta_mean_reward"), True), _fmt(f.get("delta_pass_rate"), True)]
        cells.append("; ".join(f["reasons"]))
        table.add_row(*cells, style="red" if f["weak"] else None)
    return table


@app.command()
def diagnose(
    log: Annotated[Path, typer.Argument(help="Rollout or prediction log (.parquet or .jsonl).")],
    baseline: Annotated[Path | None, typer.Option(help="A log of the same tasks to compare against.")] = None,
    out: Annotated[Path, typer.Option(help="Diagnosis JSON (what `build --mixture stage2 --diagnosis` reads).")]
    = Path("diagnosis.json"),
    html: Annotated[Path | None, typer.Option(help="Also write a self-contained HTML report here.")] = None,
    build: Annotated[Path | None, typer.Option(
        help="Build directory the run used: records for unscored rows, frozen specs, prompt -> record id.")] = None,
    rules: Annotated[Path | None, typer.Option(help="YAML of weak-task rules (keys of WeakRules).")] = None,
    metric: Annotated[str | None, typer.Option(help="mean_reward (default) or pass_rate.")] = None,
    pass_threshold: Annotated[float | None, typer.Option(help="Reward that counts as a pass (default 0.5).")] = None,
    below: Annotated[float | None, typer.Option(help="Weak when the metric is below this (default 0.5).")] = None,
    max_drop: Annotated[float | None, typer.Option(help="Weak when the metric fell more than this against "
                                                        "--baseline (default 0.05).")] = None,
    bottom_k: Annotated[int | None, typer.Option(help="Weak: the k lowest tasks of each capability (default 0).")]
    = None,
    min_count: Annotated[int | None, typer.Option(help="Tasks with fewer scored rows are never weak (default 1).")]
    = None,
    max_failures: Annotated[int | None, typer.Option(help="At most this many failure samples per weak task.")]
    = None,
    from_step: Annotated[int | None, typer.Option(help="Only rollouts from this trainer step on.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the diagnosis JSON instead of the table.")] = False,
) -> None:
    """Per-task rewards of a stage-1 log, the weak tasks by declared rules, and their failure samples."""
    from pydantic import ValidationError
    from yaml import YAMLError

    from snsdata.loop.diagnose import diagnose as run_diagnose
    from snsdata.loop.diagnose import load_rules, write_diagnosis
    from snsdata.loop.logs import LogError
    from snsdata.loop.report import write_html

    try:
        weak_rules = load_rules(rules, metric=metric, pass_threshold=pass_threshold, below=below,
                                max_drop=max_drop, bottom_k=bottom_k, min_count=min_count,
                                max_failures=max_failures)
        result = run_diagnose(log, weak_rules, baseline_path=baseline, build_dir=build, from_step=from_step)
    except (LogError, FileNotFoundError, ValidationError, YAMLError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    write_diagnosis(result, out)
    if html is not None:
        write_html(result, html)
    if as_json:
        typer.echo(json.dumps(result, ensure_ascii=False, indent=1))
        return
    console.print(diagnosis_table(result))
    if result["unscored_rows"]:
        console.print(f"[yellow]warning[/yellow] {result['unscored_rows']} row(s) had no reward and no record to "
                      "score against (give --build, or log a `record` column)", highlight=False)
    console.print(f"weak tasks: {', '.join(result['weak_tasks']) or 'none'}; wrote {out}"
                  + (f" and {html}" if html else ""), highlight=False)


@app.command("soft-label")
def soft_label(
    model: Annotated[Path, typer.Option(help="The stage-1 model (a local transformers checkpoint).")],
    mixture: Annotated[str, typer.Option(help="Mixture whose `target: soft_label` prompts are answered.")]
    = "stage2",
    out: Annotated[Path, typer.Option(help="Soft-label JSONL (appended to; an existing file is resumed).")]
    = Path("soft_labels.jsonl"),
    data_root: Annotated[Path | None, typer.Option(help="Data root, the same the stage-2 build uses.")] = None,
    diagnosis: Annotated[Path | None, typer.Option(help="The diagnosis the stage-2 build uses, if any.")] = None,
    max_per_task: Annotated[int | None, typer.Option(help="Read limit per task, as given to the build.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts per generation batch (and per file append).")] = 8,
    max_new_tokens: Annotated[int, typer.Option(help="Answer length limit; longer answers are marked truncated.")]
    = 512,
    temperature: Annotated[float, typer.Option(help="0 = greedy.")] = 0.0,
    top_p: Annotated[float, typer.Option(help="Nucleus sampling (with temperature > 0).")] = 1.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    engine: Annotated[str, typer.Option(help="auto (vLLM with a GPU, else transformers), transformers or vllm.")]
    = "auto",
    max_batches: Annotated[int | None, typer.Option(help="Stop after this many batches; run again to go on.")]
    = None,
    build: Annotated[Path | None, FrozenSpecs] = None,
) -> None:
    """Answer the general-data prompts of stage 2 with the stage-1 model: the soft labels stage 2 trains on."""
    from snsdata.build import BuildError
    from snsdata.loop.softlabel import GenerationSettings
    from snsdata.loop.softlabel import soft_label as run_soft_label
    from snsdata.spec import SpecError

    settings = GenerationSettings(max_new_tokens=max_new_tokens, temperature=temperature, top_p=top_p, seed=seed,
                                  batch_size=batch_size)
    try:
        run = run_soft_label(model, mixture, out, data_root=data_root, diagnosis=diagnosis,
                             max_per_task=max_per_task, settings=settings, engine=engine, max_batches=max_batches,
                             on_batch=lambda done, total: err_console.print(f"batch {done}/{total}",
                                                                             highlight=False),
                             catalogue=_with_frozen(build))
    except (SpecError, BuildError, ValueError, OSError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    left = run.prompts - run.already_done - run.generated
    console.print(f"{run.generated} soft label(s) written to {run.path} ({run.already_done} already there, "
                  f"{left} left, {run.truncated} hit --max-new-tokens)", highlight=False)


@app.command("pairs")
def pairs(
    out: Annotated[Path, typer.Option(help="Pairs file (.parquet or .jsonl) for `build --mixture dpo --pairs`.")],
    mixture: Annotated[str, typer.Option(help="The dpo mixture the pairs go into.")] = "dpo",
    predictions: Annotated[Path | None, typer.Option(help="Model predictions (a log with record_id or prompt, "
                                                          "completion, optional reward).")] = None,
    annotations: Annotated[Path | None, typer.Option(help="JSONL of record_id or prompt, chosen, rejected "
                                                          "(subjective tasks).")] = None,
    data_root: Annotated[Path | None, typer.Option(help="Data root, the same the dpo build uses.")] = None,
    max_per_task: Annotated[int | None, typer.Option(help="Read limit per task, as given to the build.")] = None,
    threshold: Annotated[float, typer.Option(help="A prediction is rejected-worthy below this reward.")] = 0.5,
    max_pairs_per_task: Annotated[int | None, typer.Option(help="At most this many prediction pairs per task.")]
    = None,
    seed: Annotated[int, typer.Option(help="Seed of the order the per-task cap keeps pairs in.")] = 0,
    build: Annotated[Path | None, FrozenSpecs] = None,
) -> None:
    """DPO pairs from model errors (gold vs a wrong prediction) and from annotations, for the dpo build."""
    from snsdata.build import BuildError
    from snsdata.loop.logs import LogError
    from snsdata.loop.pairs import extra_pairs
    from snsdata.spec import SpecError

    if predictions is None and annotations is None:
        err_console.print("[red]error[/red] give --predictions, --annotations or both")
        raise typer.Exit(1)
    try:
        made, skipped = extra_pairs(mixture, predictions=predictions, annotations=annotations, data_root=data_root,
                                    max_per_task_records=max_per_task, threshold=threshold,
                                    max_pairs_per_task=max_pairs_per_task, seed=seed, catalogue=_with_frozen(build))
    except (SpecError, BuildError, LogError, ValueError, OSError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix == ".parquet":
        made.write_parquet(out)
    else:
        made.write_ndjson(out)
    table = Table(title=f"{made.height} pairs -> {out}", title_justify="left")
    for column in ("task", "source", "pairs"):
        table.add_column(column, justify="right" if column == "pairs" else "left")
    for task_id, source, count in made.group_by("task_id", "pair_source").len().sort("task_id").iter_rows():
        table.add_row(task_id, source, str(count))
    console.print(table)
    for reason, count in skipped.group_by("reason").len().sort("len", descending=True).iter_rows():
        console.print(f"[yellow]skipped[/yellow] {count}: {reason}", highlight=False)
