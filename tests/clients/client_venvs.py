"""Running the trainers' venvs from the tests, and the reference they are held to (snsdata's own scores).

A test skips when its trainer's venv is absent, except in CI (`CI=true`), where that fails: CI installs every
venv (`tools/setup_clients.sh`), so a skip there would hide a broken setup."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from snsdata.rewards.api import get_scorer
from snsdata.rewards.types import ScoreDetail
from snsdata.spec.searchpath import frozen_specs

REPO = Path(__file__).resolve().parents[2]
VENVS = Path(os.environ.get("SNSDATA_CLIENT_VENVS", REPO / ".venv-clients"))
if not VENVS.is_absolute():
    VENVS = REPO / VENVS
DRIVERS = Path(__file__).resolve().parent / "drivers"
DRIVER_TIMEOUT_S = 600
"""A bound, not a measurement: a driver that hangs (a server that never answers) fails instead of stalling CI."""


def client_python(name: str) -> Path:
    """The python of trainer `name`'s venv; skip without it (fail in CI)."""
    python = VENVS / name / "bin" / "python"
    if not python.is_file():
        message = f"{VENVS / name} is absent: run `bash tools/setup_clients.sh`"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return python


def client_env() -> dict[str, str]:
    """The drivers' environment: no hub access, no telemetry."""
    return {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false", "RAY_USAGE_STATS_ENABLED": "0"}


def run_in(python: Path, args: Sequence[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run `python args...` in a trainer's venv; a failure shows the end of its output."""
    done = subprocess.run([str(python), *args], capture_output=True, text=True, env=client_env(), cwd=cwd,
                          timeout=DRIVER_TIMEOUT_S, check=False)
    assert done.returncode == 0, f"{python} {' '.join(args)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-6000:]}"
    return done


def run_driver(name: str, request: Mapping[str, Any], tmp_path: Path) -> dict[str, Any]:
    """Run drivers/<name>_driver.py in the venv of `name` on `request`; its JSON answer."""
    python = client_python(name)
    request_file, answer_file = tmp_path / f"{name}_request.json", tmp_path / f"{name}_answer.json"
    request_file.write_text(json.dumps(request, ensure_ascii=False))
    run_in(python, [str(DRIVERS / f"{name}_driver.py"), str(request_file), str(answer_file)], cwd=tmp_path)
    return json.loads(answer_file.read_text())


def snsdata_details(build: Path, items: Sequence[tuple[str, str, Mapping[str, Any]]]) -> list[ScoreDetail]:
    """snsdata's own reward details (shaped score, task metric, timed out) of (task id, completion, record) items,
    with the specs the build froze, each task's items as one batch."""
    specs = frozen_specs(build)
    details: list[ScoreDetail] = [ScoreDetail(None)] * len(items)
    by_task: dict[str, list[int]] = {}
    for index, (task_id, _, _) in enumerate(items):
        by_task.setdefault(task_id, []).append(index)
    for task_id, rows in by_task.items():
        scorer = get_scorer(task_id, specs=specs)
        found = scorer.details([items[i][1] for i in rows], [items[i][2] for i in rows])
        for row, detail in zip(rows, found, strict=True):
            details[row] = detail
    return details


def completions_for(rows: Sequence[Mapping[str, Any]]) -> dict[str, list[str]]:
    """What an RL policy answers, per record id: the gold, the gold after a reasoning block, nothing, and another
    record's gold of the same task (a wrong answer where the two differ)."""
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row)
    out = {}
    for task_rows in by_task.values():
        for index, row in enumerate(task_rows):
            other = task_rows[(index + 1) % len(task_rows)]["gold"]
            out[row["record_id"]] = [row["gold"], f"<think>\nThe answer follows.\n</think>\n{row['gold']}", "",
                                     other]
    return out
