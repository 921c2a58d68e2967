"""The backends on what `snsdata build` really writes (shipped samples, a few records per task)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import httpx
import polars as pl
import pyarrow.parquet as pq
import pytest
from test_backend_exports import VERL_FILE, check_sharegpt, load_like_verl

from snsdata.backends.llamafactory import export_llamafactory
from snsdata.backends.server import TaskScorers, create_server
from snsdata.backends.trl import build_format, load_dataset, read_specs
from snsdata.backends.verl import export_verl


@pytest.fixture(scope="module")
def real(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("real")
    out = {}
    for mixture in ("stage1", "stage2", "dpo"):
        out[mixture] = root / mixture
        command = ["build", "--mixture", mixture, "--out", str(out[mixture]), "--max-per-task", "12"]
        subprocess.run([sys.executable, "-m", "snsdata", *command], check=True, capture_output=True)
    return out


def test_each_build_loads_for_its_trainer(real: dict[str, Path]) -> None:
    expected = {"stage1": ("rl", {"prompt", "task_id", "record"}), "stage2": ("sft", {"prompt", "completion"}),
                "dpo": ("dpo", {"prompt", "chosen", "rejected"})}
    for mixture, (fmt, columns) in expected.items():
        assert build_format(real[mixture]) == fmt
        dataset = load_dataset(real[mixture])
        assert len(dataset) and columns <= set(dataset.column_names)


def test_verl_gold_answers_beat_empty_ones(real: dict[str, Path], tmp_path: Path) -> None:
    result = export_verl(real["stage1"], tmp_path / "verl")
    rows = pq.read_table(result["files"]["train"]).to_pylist()
    compute_score = load_like_verl(VERL_FILE)
    args = {"data_sources": [r["data_source"] for r in rows], "ground_truths": [None] * len(rows),
            "extra_infos": [r["extra_info"] for r in rows], "specs": str(result["specs"])}
    gold = compute_score(solution_strs=[r["reward_model"]["ground_truth"] for r in rows], **args)
    empty = compute_score(solution_strs=[""] * len(rows), **args)
    per_task: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for row, g, e in zip(rows, gold, empty, strict=True):
        assert g["reward_applies"] == 1.0
        per_task[row["data_source"]].append((g["score"], e["score"]))
    assert len(per_task) > 5
    for task, pairs in per_task.items():
        assert sum(g for g, _ in pairs) > sum(e for _, e in pairs), task


def test_llamafactory_accepts_real_sft_and_dpo_rows(real: dict[str, Path], tmp_path: Path) -> None:
    for mixture in ("stage2", "dpo"):
        entries = export_llamafactory(real[mixture], tmp_path, name=mixture)
        for entry in entries.values():
            for line in (tmp_path / entry["file_name"]).read_text().splitlines():
                check_sharegpt(entry, json.loads(line))


def test_server_scores_real_rows_by_record_id(real: dict[str, Path]) -> None:
    rows = pl.read_parquet(real["stage1"] / "data" / "train.parquet").head(200).to_dicts()
    items = [{"task_id": r["task_id"], "record_id": r["record_id"], "completion": "Answer: 1"} for r in rows]
    reference = TaskScorers(read_specs(real["stage1"])).score(
        [(r["task_id"], "Answer: 1", {**json.loads(r["record"]), "record_id": r["record_id"]}) for r in rows])
    with create_server(real["stage1"], workers=2) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/score", json={"items": items}).json()["rewards"] == reference
