"""Real-client tests: each trainer's own released code, in its own venv (`tools/setup_clients.sh`), run by a driver
script (`drivers/`) on what `snsdata build` and `snsdata export` write; what it reports is compared here with
snsdata's own scores and rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from client_venvs import client_python
from tiny_model import make_tiny_model


@pytest.fixture(scope="session")
def verl_venv() -> Path:
    """verl's venv python, asked for before the builds, so that a missing venv skips at once."""
    return client_python("verl")


@pytest.fixture(scope="session")
def llamafactory_venv() -> Path:
    return client_python("llamafactory")


@pytest.fixture(scope="session")
def openrlhf_venv() -> Path:
    return client_python("openrlhf")


@pytest.fixture(scope="session")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Builds of the shipped samples, a few records per task, as a user makes them."""
    root = tmp_path_factory.mktemp("client_builds")
    out = {}
    for mixture in ("stage1", "stage2", "dpo", "cpt"):
        out[mixture] = root / mixture
        command = ["build", "--mixture", mixture, "--out", str(out[mixture]), "--max-per-task", "8"]
        subprocess.run([sys.executable, "-m", "snsdata", *command], check=True, capture_output=True)
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory, builds: dict[str, Path]) -> Path:
    """A tiny Qwen-style chat model and byte-level tokenizer, trained here on the builds' own text (no hub)."""
    import polars as pl

    corpus = []
    for build in builds.values():
        frame = pl.read_parquet(build / "data" / "*.parquet")
        corpus += [json.dumps(row, ensure_ascii=False) for row in frame.head(64).to_dicts()]
    path = tmp_path_factory.mktemp("tiny_qwen")
    make_tiny_model(path, corpus, vocab_size=2000)
    return path


