"""Diagnosis of a stage-1 rollout log: per-task figures, the weak tasks, and their failure samples.

RedOne 2.0 reads the per-task rewards of exploratory RL to decide where targeted SFT is needed. This module turns a
log (see `snsdata.loop.logs`) into that decision, by rules declared up front so that a run is reproducible and the
choice can be argued about. `stage2` consumes the written file (`weak_tasks`, `failures`).

Every figure is judged against what the gold answers earn on the same records (`gold_reward`): a task is weak
relative to its own ceiling, and a rollout that earns what its record's gold earns passes whatever the threshold,
so a perfect model is never weak and its answers never become failure samples.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import polars as pl
import yaml
from pydantic import BaseModel, ConfigDict, Field

from snsdata.build.inputs import sha256_file
from snsdata.loop.logs import read_log
from snsdata.loop.records import RecordSource, attach_records, score_rows

SCHEMA_VERSION = "snsdata.diagnosis/1"


class WeakRules(BaseModel):
    """How weak tasks are chosen; a task is weak when any enabled rule fires (the reasons are recorded)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metric: Literal["mean_reward", "pass_rate"] = "mean_reward"
    """The per-task figure the rules compare: the mean reward relative to the gold's (`relative_mean_reward`),
    or the pass rate."""
    pass_threshold: float = 0.5
    """A rollout passes when its reward is at least this, or at least what its record's gold earns; a record
    fails when its mean reward is below both."""
    task_pass_thresholds: dict[str, float] = Field(default_factory=dict)
    """Per-task overrides of `pass_threshold` (metric rewards such as BLEU live on other scales)."""
    below: float | None = 0.5
    """Absolute rule: weak when the metric is below this. None turns the rule off."""
    max_drop: float | None = 0.05
    """Baseline rule: weak when the metric fell by more than this against the baseline log. None: off."""
    bottom_k: int = Field(default=0, ge=0)
    """Per capability, the k tasks with the lowest metric are weak. 0: off."""
    min_count: int = Field(default=1, ge=1)
    """Tasks with fewer scored rows are reported but never chosen: too little evidence."""
    max_failures: int | None = Field(default=None, ge=1)
    """Keep at most this many failure samples per weak task, worst first. None: all."""


def load_rules(path: str | Path | None = None, **overrides: Any) -> WeakRules:
    """Rules from a YAML file (keys of `WeakRules`), then CLI overrides that are not None."""
    data: dict[str, Any] = {}
    if path is not None:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    data.update({key: value for key, value in overrides.items() if value is not None})
    return WeakRules.model_validate(data)


TOLERANCE = 1e-6
"""Float slack when a rollout is compared with its gold (an embedding cosine of identical texts rounds below 1)."""


def _threshold(rules: WeakRules) -> pl.Expr:
    """Each row's pass threshold: its task's override, else the default; never above what the record's gold earns
    (a row without a known gold is held to the threshold alone)."""
    declared = pl.col("task_id").replace_strict(rules.task_pass_thresholds, default=rules.pass_threshold,
                                                return_dtype=pl.Float64)
    return pl.min_horizontal(declared, pl.col("gold_reward").fill_null(1.0) - TOLERANCE)


def gold_rewards(scored: pl.DataFrame, source: RecordSource) -> pl.DataFrame:
    """Add `gold_reward`: what the record's own gold answer earns by the task's reward (null without a record).

    Scored once per distinct (task, record), in one batch per task."""
    from snsdata.rewards import get_scorer

    specs = source.specs
    known = scored.filter(pl.col("record").is_not_null() & pl.col("task_id").is_in(list(specs)))
    distinct = known.select("task_id", "record").unique(maintain_order=True)
    parts = []
    for (task_id,), group in distinct.group_by("task_id", maintain_order=True):
        spec = specs[str(task_id)]
        records = [json.loads(r) for r in group["record"].to_list()]
        golds = []
        for record in records:
            try:
                golds.append(spec.render_target(record))
            except Exception:
                golds.append(None)
        rewards = get_scorer(str(task_id), "fixed", specs)([g or "" for g in golds], records)
        rewards = [r if g is not None else None for r, g in zip(rewards, golds, strict=True)]
        parts.append(group.with_columns(gold_reward=pl.Series(rewards, dtype=pl.Float64)))
    schema = {"task_id": pl.String, "record": pl.String, "gold_reward": pl.Float64}
    table = pl.concat(parts) if parts else pl.DataFrame(schema=schema)
    return scored.join(table, on=["task_id", "record"], how="left", nulls_equal=False)


def task_figures(scored: pl.DataFrame, rules: WeakRules) -> pl.DataFrame:
    """Per task: rows, scored rows, distinct records, mean reward, the gold's mean reward on the same rows and the
    ratio of the two, pass rate, parse-failure rate, failing records."""
    rows = scored.with_columns(_threshold=_threshold(rules))
    valid = pl.col("reward").is_not_null()
    gold = pl.col("gold_reward").fill_null(1.0).filter(valid).mean()
    per_task = rows.group_by("task_id").agg(
        count=pl.len(),
        scored=valid.sum(),
        records=pl.col("record_id").drop_nulls().n_unique(),
        mean_reward=pl.col("reward").mean(),
        gold_mean_reward=gold,
        relative_mean_reward=pl.when(gold > 0).then(pl.col("reward").mean() / gold),
        pass_rate=(pl.col("reward") >= pl.col("_threshold")).filter(valid).mean(),
        parse_failure_rate=pl.col("parse_failed").filter(valid).mean(),
    )
    failing = failure_samples(scored, rules).group_by("task_id").agg(failures=pl.len())
    return (per_task.join(failing, on="task_id", how="left")
            .with_columns(pl.col("failures").fill_null(0), pl.col("scored").cast(pl.Int64))
            .sort("task_id"))


def failure_samples(scored: pl.DataFrame, rules: WeakRules) -> pl.DataFrame:
    """Records whose mean reward over their rollouts is below the pass threshold (and below what their gold
    earns), worst first per task."""
    return (scored.filter(pl.col("reward").is_not_null() & pl.col("record_id").is_not_null())
            .group_by("task_id", "record_id").agg(reward=pl.col("reward").mean(), rollouts=pl.len(),
                                                  gold_reward=pl.col("gold_reward").max())
            .filter(pl.col("reward") < _threshold(rules))
            .drop("gold_reward")
            .sort("task_id", "reward", "record_id"))


def _figure(rules: WeakRules) -> str:
    """The column the rules compare: the mean reward relative to the gold's, or the pass rate."""
    return "relative_mean_reward" if rules.metric == "mean_reward" else "pass_rate"


def choose_weak(figures: pl.DataFrame, rules: WeakRules, has_baseline: bool) -> dict[str, list[str]]:
    """Task id -> reasons it is weak (only weak tasks appear), by the declared rules."""
    reasons: dict[str, list[str]] = {}
    figure = _figure(rules)
    eligible = figures.filter((pl.col("scored") >= rules.min_count) & pl.col(figure).is_not_null())
    for row in eligible.to_dicts():
        value = row[figure]
        if rules.below is not None and value < rules.below - TOLERANCE:
            reasons.setdefault(row["task_id"], []).append(f"{figure} {value:.3f} < {rules.below}")
        base = row.get(f"baseline_{figure}")
        if has_baseline and rules.max_drop is not None and base is not None and base - value > rules.max_drop:
            reasons.setdefault(row["task_id"], []).append(
                f"{figure} fell {base - value:.3f} against the baseline (> {rules.max_drop})")
    if rules.bottom_k:
        ranked = eligible.filter(pl.col(figure) < 1 - TOLERANCE).sort(figure, "task_id").with_columns(
            rank=pl.col("task_id").cum_count().over("capability"))
        for row in ranked.filter(pl.col("rank") <= rules.bottom_k).to_dicts():
            reasons.setdefault(row["task_id"], []).append(
                f"bottom {rules.bottom_k} of {row['capability']} by {figure}")
    return reasons


def _capabilities(task_ids: list[str], source: RecordSource) -> dict[str, str]:
    specs = source.specs
    return {task_id: specs[task_id].capability if task_id in specs else "unknown" for task_id in task_ids}


def diagnose_frames(log: pl.DataFrame, rules: WeakRules, source: RecordSource,
                    baseline: pl.DataFrame | None = None) -> dict[str, Any]:
    """The diagnosis of an already-read log (and baseline): figures, weak tasks with reasons, failure samples."""
    scored = gold_rewards(score_rows(attach_records(log, source), source), source)
    figures = task_figures(scored, rules)
    capabilities = _capabilities(figures["task_id"].to_list(), source)
    figures = figures.with_columns(capability=pl.col("task_id").replace_strict(capabilities, return_dtype=pl.String))
    if baseline is not None:
        base_scored = gold_rewards(score_rows(attach_records(baseline, source), source), source)
        base = task_figures(base_scored, rules).select(
            "task_id", baseline_mean_reward="mean_reward", baseline_relative_mean_reward="relative_mean_reward",
            baseline_pass_rate="pass_rate")
        figures = figures.join(base, on="task_id", how="left").with_columns(
            delta_mean_reward=pl.col("mean_reward") - pl.col("baseline_mean_reward"),
            delta_pass_rate=pl.col("pass_rate") - pl.col("baseline_pass_rate"),
        )
    reasons = choose_weak(figures, rules, baseline is not None)
    weak = sorted(reasons)
    samples = failure_samples(scored, rules).filter(pl.col("task_id").is_in(weak))
    if rules.max_failures is not None:
        samples = samples.group_by("task_id", maintain_order=True).head(rules.max_failures)
    failures = {task: [] for task in weak}
    failure_rewards: dict[str, dict[str, float]] = {task: {} for task in weak}
    for row in samples.to_dicts():
        failures[row["task_id"]].append(row["record_id"])
        failure_rewards[row["task_id"]][row["record_id"]] = row["reward"]
    tasks = {}
    for row in figures.to_dicts():
        task_id = row.pop("task_id")
        tasks[task_id] = {**row, "weak": task_id in reasons, "reasons": reasons.get(task_id, [])}
    unscored = scored.filter(pl.col("reward").is_null())
    return {
        "schema": SCHEMA_VERSION,
        "rules": rules.model_dump(mode="json"),
        "rows": log.height,
        "unscored_rows": unscored.height,
        "tasks": tasks,
        "weak_tasks": weak,
        "failures": failures,
        "failure_rewards": failure_rewards,
    }


def diagnose(log_path: str | Path, rules: WeakRules | None = None, *, baseline_path: str | Path | None = None,
             build_dir: str | Path | None = None, from_step: int | None = None) -> dict[str, Any]:
    """Diagnose a rollout or prediction log file; the result is what `write_diagnosis` stores.

    `from_step` keeps only rollouts logged at that trainer step or later (rows without a step are kept): early
    rollouts describe the starting model, not the one stage 2 continues from.
    """
    rules = rules or WeakRules()
    source = RecordSource(build_dir)
    log_path = Path(log_path)
    baseline = read_log(baseline_path) if baseline_path is not None else None
    log = read_log(log_path)
    if from_step is not None:
        log = log.filter(pl.col("step").is_null() | (pl.col("step") >= from_step))
    result = diagnose_frames(log, rules, source, baseline)
    inputs = {"log": {"path": str(log_path), "sha256": sha256_file(log_path)}}
    if baseline_path is not None:
        inputs["baseline"] = {"path": str(baseline_path), "sha256": sha256_file(Path(baseline_path))}
    if build_dir is not None:
        inputs["build"] = {"path": str(build_dir)}
    if from_step is not None:
        inputs["log"]["from_step"] = from_step
    return {"schema": result.pop("schema"), "inputs": inputs, **result}


def write_diagnosis(diagnosis: dict[str, Any], path: str | Path) -> Path:
    """Write the diagnosis JSON (keys `tasks`, `weak_tasks`, `failures` are what `stage2` reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(diagnosis, ensure_ascii=False, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path
