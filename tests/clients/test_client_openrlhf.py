"""OpenRLHF 0.11.2's own prompt dataset and remote-reward client on `snsdata export --to openrlhf` of a stage-1
build, against `snsdata serve-rewards` on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from client_venvs import completions_for, run_driver, snsdata_details

from snsdata.backends.verl import verl_frame

pytestmark = pytest.mark.slow  # each starts a trainer's venv; CI runs them (tools/setup_clients.sh)

SERVER_START_S = 120
"""A bound on the server's start (its worker pools), not a measurement."""


@pytest.fixture(scope="module")
def reward_server(openrlhf_venv: Path, builds: dict[str, Path],
                  tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`snsdata serve-rewards` on a free loopback port; its URL once every pool has a worker ready."""
    log = tmp_path_factory.mktemp("server") / "serve-rewards.log"
    with log.open("w") as sink:
        server = subprocess.Popen([sys.executable, "-m", "snsdata", "serve-rewards", "--build",
                                   str(builds["stage1"]), "--host", "127.0.0.1", "--port", "0", "--workers", "1",
                                   "--sandbox-workers", "1"], stdout=sink, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while " at http://127.0.0.1:" not in log.read_text():
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        url = log.read_text().split(" at ", 1)[1].split()[0]
        while httpx.get(f"{url}/health").json()["status"] != "ok":
            assert time.monotonic() < deadline, "the reward server's pools did not start"
            time.sleep(0.2)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=60)


@pytest.fixture(scope="module")
def orl_run(openrlhf_venv: Path, builds: dict[str, Path], tokenizer_dir: Path, reward_server: str,
            tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("openrlhf")
    export = subprocess.run([sys.executable, "-m", "snsdata", "export", "--build", str(builds["stage1"]), "--to",
                             "openrlhf", "--out", str(out / "data")], check=True, capture_output=True, text=True)
    printed = next(line for line in export.stdout.splitlines() if line.startswith("OpenRLHF:"))
    flags = printed.removeprefix("OpenRLHF:").replace("http://127.0.0.1:PORT", reward_server).split()
    rows = [json.loads(line) for line in (out / "data" / "train.jsonl").read_text().splitlines()]
    gold = {r["extra_info"]["record_id"]: r["reward_model"]["ground_truth"]
            for r in verl_frame(builds["stage1"], "train").to_dicts()}
    labels = [json.loads(r["label"]) for r in rows]
    completions = completions_for([{"task_id": label["task_id"], "record_id": label["record_id"],
                                    "gold": gold[label["record_id"]]} for label in labels])
    answer = run_driver("openrlhf", {"flags": flags, "data": str(out / "data" / "train.jsonl"),
                                     "tokenizer": str(tokenizer_dir), "completions": completions}, out)
    return {"answer": answer, "rows": rows, "labels": labels, "completions": completions}


def test_prompt_dataset_reads_every_row_with_its_task_as_datasource(orl_run: dict, tokenizer_dir: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    loaded = orl_run["answer"]["rows"]
    assert len(loaded) == len(orl_run["rows"]) > 0
    for row, label, got in zip(orl_run["rows"], orl_run["labels"], loaded, strict=True):
        assert got["datasource"] == label["task_id"]  # OpenRLHF splits its eval metrics by it
        assert got["label"] == row["label"]
        assert got["prompt"] == tokenizer.apply_chat_template(row["input"], tokenize=False,
                                                              add_generation_prompt=True)


def test_remote_reward_client_gets_snsdatas_own_scores(orl_run: dict, builds: dict[str, Path]) -> None:
    labels = {label["record_id"]: label for label in orl_run["labels"]}
    scored = orl_run["answer"]["scores"]
    assert len(scored) == sum(len(orl_run["completions"][label["record_id"]]) for label in orl_run["labels"])
    items = [(labels[s["record_id"]]["task_id"], orl_run["completions"][s["record_id"]][s["completion"]],
              {**labels[s["record_id"]]["record"], "record_id": s["record_id"]}) for s in scored]
    expected = [d.score for d in snsdata_details(builds["stage1"], items)]
    # The client swallows a failed request (logs it, reward None): None here means the server refused the query.
    mismatches = [(item[0], item[1][:60], s, e) for item, s, e in zip(items, scored, expected, strict=True)
                  if s["reward"] != [0.0 if e is None else e]
                  or s["extra_logs"] != {"reward_applies": [float(e is not None)]}]
    assert not mismatches
    assert len({item[0] for item in items}) >= 10
    assert any(e == 1.0 for e in expected) and any(e == 0.0 for e in expected)
