"""verl 0.9.1's own config, `RLHFDataset` and reward-loop worker on `snsdata export --to verl` of a stage-1 build."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from client_venvs import completions_for, run_driver, run_in, snsdata_details

pytestmark = pytest.mark.slow  # each starts a trainer's venv; CI runs them (tools/setup_clients.sh)

REPO = Path(__file__).resolve().parents[2]


def printed_overrides(output: str) -> tuple[str, list[str]]:
    """The header and the overrides `snsdata export --to verl` prints, one per line after it, joined by `\\`."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("overrides for "))
    overrides = []
    for line in lines[start + 1:]:
        if not line.startswith("  "):
            break
        overrides.append(line.strip().removesuffix("\\").strip())
    return lines[start], overrides


@pytest.fixture(scope="module")
def verl_run(verl_venv: Path, builds: dict[str, Path], tokenizer_dir: Path,
             tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("verl")
    # The export runs where verl is installed, as a user runs it: it prints the overrides for that verl.
    export = run_in(verl_venv, ["-m", "snsdata", "export", "--build", str(builds["stage1"]), "--to", "verl",
                             "--out", str(out / "data")])
    header, overrides = printed_overrides(export.stdout)
    rows = [row for split in ("train", "eval") for row in pq.read_table(out / "data" / f"{split}.parquet").to_pylist()]
    completions = completions_for([{"task_id": r["extra_info"]["task_id"], "record_id": r["extra_info"]["record_id"],
                                    "gold": r["reward_model"]["ground_truth"]} for r in rows])
    answer = run_driver("verl", {"overrides": overrides, "tokenizer": str(tokenizer_dir),
                                 "completions": completions}, out)
    return {"answer": answer, "rows": rows, "completions": completions, "overrides": overrides, "header": header}


def test_the_printed_overrides_are_the_installed_verls_and_compose(verl_run: dict) -> None:
    assert verl_run["header"] == "overrides for verl 0.9.1 (installed):"
    overrides = dict(o.lstrip("+").split("=", 1) for o in verl_run["overrides"])
    assert Path(overrides["reward.custom_reward_function.path"]) == REPO / "backends" / "verl.py"
    assert overrides["reward.custom_reward_function.name"] == "compute_score_async"
    assert verl_run["answer"]["reward_manager"] == "NaiveRewardManager"  # verl's default, which they keep


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
    expected = snsdata_details(builds["stage1"], items)
    mismatches = []
    for item, s, detail in zip(items, scored, expected, strict=True):
        applies = detail.score is not None
        task = detail.task_score if detail.task_score is not None else detail.score
        want = {"score": detail.score if applies else 0.0, "task_score": task if applies else 0.0,
                "reward_applies": float(applies), "timed_out": float(detail.timed_out)}
        if s["reward_score"] != want["score"] or s["reward_extra_info"] != want:
            mismatches.append((item[0], item[1][:60], s, want))
    assert not mismatches
    assert not any(d.timed_out for d in expected)
    assert len({item[0] for item in items}) >= 10  # every kind of reward the build holds, sandboxed code included
    assert {json.loads(r["extra_info"]["reward"])["type"] for r in rows.values()} >= {
        "exact_match", "metric", "sandbox", "composite"}
    assert any(d.score == 1.0 for d in expected) and any(d.score == 0.0 for d in expected)
