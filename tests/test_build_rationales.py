"""Stage 3's rationales: correct, reasoned stage-1 rollouts become rationale-bearing targets; a shortfall is said."""

from __future__ import annotations

import json
import random
from pathlib import Path

import polars as pl
from typer.testing import CliRunner

from snsdata.build import build, prepare
from snsdata.build.rationales import reasoning_of
from snsdata.cli import app
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import Component, Mixture, Select, load_mixture

FIXTURE = Path(__file__).parent / "fixtures" / "rollouts" / "stage1_rollouts.jsonl"
SPECS = load_catalogue()


def _fixture_rows() -> list[dict]:
    return [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def test_reasoning_is_a_think_block_a_reason_field_or_the_text_before_the_answer() -> None:
    cot, explain = SPECS["note_query_relevance_cot"], SPECS["cold_offensive_explain_zh"]
    assert reasoning_of(cot, "<think>the note answers the query directly</think><score>3</score>", "") \
        == "the note answers the query directly"
    assert reasoning_of(cot, "The note answers the query directly. <score>3</score>", "<score>3</score>") \
        == "The note answers the query directly."
    assert reasoning_of(explain, '{"reason": "贬低了某个群体", "label": "冒犯"}', "") == "贬低了某个群体"
    plain = SPECS["cold_offensive_zh"]
    assert reasoning_of(plain, "帖子贬低了某个群体，所以是冒犯", "冒犯") == "帖子贬低了某个群体，所以是"
    assert reasoning_of(cot, "<score>3</score>", "<score>3</score>") == ""


def test_stage3_with_the_rollout_fixture_meets_its_declared_share(tmp_path: Path) -> None:
    declared = load_mixture("stage3").rationale_share
    assert declared == 0.4
    result = build("stage3", out=tmp_path / "a", total=200, rollouts=FIXTURE)
    summary = result.manifest["rationales"]
    assert not summary["shortfall"] and summary["share"] >= declared
    with_reason = result.train.filter(pl.col("has_rationale"))
    assert with_reason.height == summary["train_rows_with_rationale"] >= declared * result.train.height
    # The rationale is the reason of the record's correct, reasoned rollout; it rides in the record.
    reasons = {json.loads(r)["reason"] for r in with_reason["record"].to_list()}
    assert all(len(r) >= 20 for r in reasons) and all(r.startswith("帖子") for r in reasons)
    rollouts = summary["rollouts"]
    assert rollouts["rows"] == len(_fixture_rows()) and rollouts["records_with_rationale"] == 60
    assert rollouts["skipped"] == {
        "another rollout of the record is used": 60,
        "eval record (held out, or an eval-only task): never a training target": 5,
        "no reasoning of at least 20 characters": 65,
        "not correct (correctness below the pass threshold 0.5)": 60,
        "task's target has no rationale field": 5,
    }
    # Rollouts on eval records never become training targets.
    evals = {r["record_id"] for r in _fixture_rows()[-10:-5]}
    assert not evals & set(with_reason["record_id"].to_list())
    assert not result.eval.filter(pl.col("record_id").is_in(list(evals)) & pl.col("has_rationale")).height
    # The rationale component holds rationale rows only; the task's other train rows are counted, not drawn.
    dropped = result.rejects.filter(pl.col("step") == "rationale")
    assert dropped.height and set(dropped["task_id"].to_list()) == {"cold_offensive_explain_zh"}
    assert result.manifest["totals"]["balanced"]
    assert result.manifest["inputs"]["rollouts"]["sha256"]
    again = build("stage3", out=tmp_path / "b", total=200, rollouts=FIXTURE)
    assert again.manifest["outputs"] == result.manifest["outputs"]


def test_sft_targets_carry_the_rationale_where_the_prompt_asks_for_one(tmp_path: Path) -> None:
    mixture = Mixture(name="explain", description="rationale targets", format="sft", components=[
        Component(name="explain", select=Select(ids=["cold_offensive_explain_zh"]), require_rationale=True)])
    result = build(mixture, out=tmp_path / "sft", rollouts=FIXTURE)
    targets = [json.loads(m[-1]["content"]) for m in result.train["messages"].to_list()]
    assert len(targets) == 60 and all(set(t) == {"reason", "label"} and len(t["reason"]) >= 20 for t in targets)


def test_too_few_rationales_are_reported_as_a_shortfall(tmp_path: Path) -> None:
    """A tiny random model's log (the smoke loop's): no correct, reasoned answer, so no rationale."""
    rng = random.Random(0)
    frame = prepare("stage1").frames["cold_offensive_explain_zh"].filter(pl.col("_split") == "train")
    log = tmp_path / "rollouts.jsonl"
    with log.open("w", encoding="utf-8") as out:
        for step, record_id in enumerate(frame["record_id"].to_list()):
            noise = "".join(rng.choice("的了是在冒犯非{}\"label: ") for _ in range(16))
            out.write(json.dumps({"task_id": "cold_offensive_explain_zh", "record_id": record_id,
                                  "completion": noise, "reward": 0.0, "step": step}, ensure_ascii=False) + "\n")
    run = CliRunner().invoke(app, ["build", "--mixture", "stage3", "--rollouts", str(log), "--out",
                                   str(tmp_path / "s3")])
    assert run.exit_code == 0, run.output
    manifest = json.loads((tmp_path / "s3" / "manifest.json").read_text(encoding="utf-8"))
    summary = manifest["rationales"]
    assert summary["shortfall"] and summary["train_rows_with_rationale"] == 0 and summary["declared_share"] == 0.4
    assert "SHORTFALL" in summary["message"] and "0 record(s) with a correct, reasoned rollout" in summary["message"]
    assert "SHORTFALL" in run.output
    assert not pl.read_parquet(tmp_path / "s3" / "data" / "train.parquet")["has_rationale"].any()


def test_rollouts_apply_to_sft_and_rl_mixtures_only() -> None:
    run = CliRunner().invoke(app, ["build", "--mixture", "dpo", "--rollouts", str(FIXTURE), "--out", "/nonexistent"])
    assert run.exit_code == 1 and "rollouts give rationale-bearing targets to sft and rl mixtures" in run.output
