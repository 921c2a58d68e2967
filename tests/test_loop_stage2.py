"""The RedOne 2.0 loop end to end: stage-1 build -> rollouts -> diagnose -> stage-2 build with the diagnosis."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from snsdata.cli import app
from snsdata.readers import default_data_root
from snsdata.rewards import catalogue
from snsdata.spec.mixture import load_mixture

FAILING = ("cold_topic_zh", "wnut17_entity_surfaces_en")
"""Not among stage 2's default weak tasks: if they come out weak, the diagnosis decided it. Benchmark tasks
(SNS-Bench) never train, so the loop runs on the shipped samples' trainable tasks."""
PASSING = ("cold_offensive_zh", "cold_offense_type_zh")
MAX_PER_TASK = "16"


@pytest.fixture(scope="module")
def data_root() -> Path:
    """The shipped samples (COLDataset, WNUT17; general data is generated): small enough for a quick build."""
    return default_data_root()


def run(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_failing_tasks_become_stage2_failure_samples(data_root: Path, tmp_path: Path) -> None:
    stage1 = tmp_path / "stage1"
    run("build", "--mixture", "stage1", "--data-root", str(data_root), "--max-per-task", MAX_PER_TASK,
        "--out", str(stage1))
    train = pl.read_parquet(stage1 / "data" / "train.parquet").unique(["task_id", "record_id"])
    specs = catalogue()
    rows, expected_failures, seen = [], {}, set()
    for row in train.filter(pl.col("task_id").is_in(FAILING + PASSING)).sort("task_id", "record_id").to_dicts():
        gold = specs[row["task_id"]].render_target(json.loads(row["record"]))
        # Failing tasks get one right record (so they are not trivially empty); passing tasks one wrong record.
        first_of_task = row["task_id"] not in seen
        seen.add(row["task_id"])
        wrong = (not first_of_task) if row["task_id"] in FAILING else first_of_task
        if wrong:
            expected_failures.setdefault(row["task_id"], set()).add(row["record_id"])
        for _ in range(2):  # a group of two rollouts per prompt
            rows.append({"task_id": row["task_id"], "prompt": row["prompt"],
                         "completion": "I would rather not say." if wrong else gold})
    log = tmp_path / "rollouts.parquet"
    pl.DataFrame(rows).write_parquet(log)  # no record ids, no rewards: the build resolves and scores them

    diagnosis = tmp_path / "diagnosis.json"
    run("diagnose", str(log), "--build", str(stage1), "--out", str(diagnosis))
    found = json.loads(diagnosis.read_text(encoding="utf-8"))
    assert found["weak_tasks"] == sorted(FAILING)
    assert {t: set(ids) for t, ids in found["failures"].items()} == {t: expected_failures[t] for t in FAILING}
    assert all(found["tasks"][t]["failures"] == 1 for t in PASSING)

    stage2 = tmp_path / "stage2"
    run("build", "--mixture", "stage2", "--data-root", str(data_root), "--max-per-task", MAX_PER_TASK,
        "--diagnosis", str(diagnosis), "--out", str(stage2))
    built = pl.read_parquet(stage2 / "data" / "train.parquet")
    sns = built.filter(pl.col("origin") == "sns")
    assert set(sns["task_id"].unique()) == set(FAILING)
    failures = built.filter(pl.col("target_kind") == "failure_sample")
    assert set(failures["task_id"].unique()) == set(FAILING)
    for task in FAILING:
        assert set(failures.filter(pl.col("task_id") == task)["record_id"]) == expected_failures[task]
    weight = load_mixture("stage2").targeted.failure_weight
    assert failures["weight"].unique().to_list() == [weight]
    assert built.filter(pl.col("target_kind") != "failure_sample")["weight"].unique().to_list() == [1.0]
    passing_failures = set().union(*(expected_failures[t] for t in PASSING))
    assert not passing_failures & set(built["record_id"])
    manifest = json.loads((stage2 / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"]["diagnosis"]["path"] == str(diagnosis)
