"""verl 0.9.1's own config, `RLHFDataset` and reward-loop worker on `snsdata export --to verl` of a stage-1 build."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from client_venvs import client_python, completions_for, run_driver, run_in, snsdata_scores

pytestmark = pytest.mark.slow  # each starts a trainer's venv; CI runs them (tools/setup_clients.sh)

REPO = Path(__file__).resolve().parents[2]


def printed_overrides(output: str) -> list[str]:
    """The overrides `snsdata export --to verl` prints, one per line after its header, joined by `\\`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("verl overrides"))
    overrides = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        overrides.append(line.strip().removesuffix("\\").strip())
    return overrides


@pytest.fixture(scope="module")
def verl_run(builds: dict[str, Path], tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    python = client_python("verl")
    out = tmp_path_factory.mktemp("verl")
    # The export runs where verl is installed, as a user runs it: it prints the overrides for that verl.
    export = run_in(python, ["-m", "snsdata", "export", "--build", str(builds["stage1"]), "--to", "verl",
                             "--out", str(out / "data")])
    overrides = printed_overrides(export.stdout)
    rows = [row for split in ("train", "eval") for row in pq.read_table(out / "data" / f"{split}.parquet").to_pylist()]
    completions = completions_for([{"task_id": r["extra_info"]["task_id"], "record_id": r["extra_info"]["record_id"],
                                    "gold": r["reward_model"]["ground_truth"]} for r in rows])
    answer = run_driver("verl", {"overrides": overrides, "tokenizer": str(tokenizer_dir),
                                 "completions": completions}, out)
    return {"answer": answer, "rows": rows, "completions": completions, "overrides": overrides}


def test_the_printed_overrides_point_verl_at_this_checkouts_reward(verl_run: dict) -> None:
    overrides = dict(o.lstrip("+").split("=", 1) for o in verl_run["overrides"])
    assert Path(overrides["reward.custom_reward_function.path"]) == REPO / "backends" / "verl.py"
    assert verl_run["answer"]["reward_manager"]


def test_rlhf_dataset_holds_every_exported_row_as_written(verl_run: dict) -> None:
    splits = verl_run["answer"]["splits"]
    exported = {(r["extra_info"]["split"], r["extra_info"]["index"]): r for r in verl_run["rows"]}
    loaded = [row for split in ("train", "eval") for row in splits[split]["rows"]]
    assert [splits[s]["length"] for s in ("train", "eval")] == [
        sum(r["extra_info"]["split"] == s for r in verl_run["rows"]) for s in ("train", "eval")]
    assert len(loaded) == len(exported) > 0
    for row in loaded:
        source = exported[row["extra_info"]["split"], row["extra_info"]["index"]]
        assert row["index"] == source["extra_info"]["index"]
        assert row["raw_prompt"] == source["prompt"]
        assert row["data_source"] == source["data_source"] == "snsdata/" + source["extra_info"]["task_id"]
        assert row["reward_model"] == source["reward_model"]
        assert {k: row["extra_info"][k] for k in source["extra_info"]} == source["extra_info"]


def test_reward_loop_scores_equal_snsdatas_own(verl_run: dict, builds: dict[str, Path]) -> None:
    rows = {r["extra_info"]["record_id"]: r for r in verl_run["rows"]}
    scored = verl_run["answer"]["scores"]
    assert len(scored) == sum(len(verl_run["completions"][r["extra_info"]["record_id"]]) for r in verl_run["rows"])
    assert all(s["decoded"] for s in scored), "verl's decoded response differs from the completion"
    items = []
    for s in scored:
        info = rows[s["record_id"]]["extra_info"]
        record = {**json.loads(info["record"]), "record_id": info["record_id"]}
        items.append((info["task_id"], verl_run["completions"][s["record_id"]][s["completion"]], record))
    expected = snsdata_scores(builds["stage1"], items)
    mismatches = [(item[0], item[1][:60], s["reward_score"], e) for item, s, e in zip(items, scored, expected,
                                                                                      strict=True)
                  if s["reward_score"] != (0.0 if e is None else e)
                  or s["reward_extra_info"]["reward_applies"] != float(e is not None)]
    assert not mismatches
    assert len({item[0] for item in items}) >= 10  # every kind of reward the build holds, sandboxed code included
    assert {json.loads(r["extra_info"]["reward"])["type"] for r in rows.values()} >= {
        "exact_match", "metric", "sandbox", "composite"}
    assert any(e == 1.0 for e in expected) and any(e == 0.0 for e in expected)
