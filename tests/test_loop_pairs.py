"""DPO pairs from model errors and from annotations."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from snsdata.build.formats import MESSAGES
from snsdata.loop.logs import normalize_log
from snsdata.loop.pairs import annotation_pairs, prediction_pairs, read_annotations
from snsdata.readers import records
from snsdata.render import render_messages, render_target
from snsdata.rewards import catalogue, get_scorer

TASKS = ("note_gender", "note_hashtag_single", "note_querycorr_topic")


@pytest.fixture(scope="module")
def rendered(shared_data: Path) -> pl.DataFrame:
    """What the build hands over: prompt, gold target and record JSON of a few records per task."""
    specs = catalogue()
    rows = []
    for task in TASKS:
        for record in records(specs[task], shared_data)[:5]:
            fields = {k: v for k, v in record.items() if k not in ("task_id", "record_id", "split")}
            rows.append({"task_id": task, "record_id": record["record_id"], "split": "train",
                         "prompt": render_messages(specs[task], record), "target": render_target(specs[task], record),
                         "record": json.dumps(fields, ensure_ascii=False)})
    return pl.DataFrame(rows, schema_overrides={"prompt": MESSAGES})


def wrong_answers(rendered: pl.DataFrame) -> pl.DataFrame:
    """Per record: the gold, gold with spaces, a wrong answer twice, another wrong answer, an empty answer."""
    rows = []
    for row in rendered.to_dicts():
        gold = row["target"]
        for completion in (gold, f"  {gold} ", "I cannot tell", "I cannot tell", "no idea at all", ""):
            rows.append({"task_id": row["task_id"], "record_id": row["record_id"], "completion": completion})
    rows.append({"task_id": "note_gender", "record_id": "no-such-record", "completion": "No"})
    return normalize_log(pl.DataFrame(rows))


def test_rejected_scores_below_threshold_and_differs_from_chosen(rendered: pl.DataFrame) -> None:
    specs = catalogue()
    pairs, skipped = prediction_pairs(wrong_answers(rendered), rendered, specs, threshold=0.5)
    assert set(pairs["pair_source"]) == {"predictions"}
    gold = dict(zip(rendered["record_id"], rendered["target"], strict=True))
    records_by_id = {r["record_id"]: json.loads(r["record"]) for r in rendered.to_dicts()}
    for task in TASKS:
        task_pairs = pairs.filter(pl.col("task_id") == task)
        assert task_pairs.height == 2 * 5  # two distinct wrong answers per record
        rejected = [r[0]["content"] for r in task_pairs["rejected"].to_list()]
        chosen = [c[0]["content"] for c in task_pairs["chosen"].to_list()]
        ids = task_pairs["record_id"].to_list()
        scores = get_scorer(task)(rejected, [records_by_id[i] for i in ids])
        assert all(s is not None and s < 0.5 for s in scores)
        assert all(c == gold[i] and r.strip() != c.strip() for c, r, i in zip(chosen, rejected, ids, strict=True))
        assert len(set(zip(ids, rejected, strict=True))) == task_pairs.height
    reasons = skipped.group_by("reason").len()
    counts = dict(zip(reasons["reason"], reasons["len"], strict=True))
    assert counts["prediction equals the gold"] == 2 * 15
    assert counts["empty prediction"] == 15
    assert counts["duplicate of a pair already made"] == 15
    assert counts["no such record in the build"] == 1


def test_cap_spreads_pairs_over_records_and_is_seeded(rendered: pl.DataFrame) -> None:
    specs = catalogue()
    log = wrong_answers(rendered)
    pairs, skipped = prediction_pairs(log, rendered, specs, max_per_task=4, seed=1)
    for task in TASKS:
        task_pairs = pairs.filter(pl.col("task_id") == task)
        assert task_pairs.height == 4 and task_pairs["record_id"].n_unique() == 4
    assert skipped.filter(pl.col("reason").str.contains("cap")).height == 3 * 6
    again, _ = prediction_pairs(log, rendered, specs, max_per_task=4, seed=1)
    assert again.equals(pairs)


def test_rewards_in_the_log_are_trusted(rendered: pl.DataFrame) -> None:
    row = rendered.filter(pl.col("task_id") == "note_gender").row(0, named=True)
    log = normalize_log(pl.DataFrame({"record_id": [row["record_id"]] * 2, "completion": ["meh", "bah"],
                                      "reward": [0.9, 0.1]}))
    pairs, skipped = prediction_pairs(log, rendered, catalogue())
    assert [r[0]["content"] for r in pairs["rejected"].to_list()] == ["bah"]
    assert pairs["task_id"].to_list() == ["note_gender"]  # from the record id
    assert skipped["reason"].to_list() == ["prediction scores at least 0.5"]


def test_subjective_tasks_only_take_annotations(rendered: pl.DataFrame, tmp_path: Path) -> None:
    specs = dict(catalogue())
    specs["note_gender"] = specs["note_gender"].model_copy(update={"tags": [*specs["note_gender"].tags,
                                                                            "subjective"]})
    pairs, skipped = prediction_pairs(wrong_answers(rendered), rendered, specs)
    assert "note_gender" not in set(pairs["task_id"])
    assert skipped.filter(pl.col("reason").str.starts_with("subjective")).height == 5 * 6

    first = rendered.filter(pl.col("task_id") == "note_gender").row(0, named=True)
    lines = [
        {"record_id": first["record_id"], "chosen": "Yes, because it discusses dating.", "rejected": "No."},
        {"record_id": first["record_id"], "chosen": "Same", "rejected": "Same"},
        {"prompt": "Say hi kindly", "task_id": "note_gender", "chosen": "Hi there!", "rejected": "What."},
        {"prompt": first["prompt"], "chosen": "A", "rejected": "B"},
        {"prompt": "Orphan prompt", "chosen": "A", "rejected": "B"},
    ]
    path = tmp_path / "annotations.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    made, skipped = annotation_pairs(read_annotations(path), rendered)
    assert made.height == 3 and set(made["pair_source"]) == {"annotations"}
    assert made.filter(pl.col("record_id") == first["record_id"]).height == 2  # by id and by its prompt
    own = made.filter(pl.col("record_id") != first["record_id"]).row(0, named=True)
    assert own["prompt"] == [{"role": "user", "content": "Say hi kindly"}] and own["split"] == "train"
    assert sorted(skipped["reason"]) == ["annotation prompt has no task_id", "chosen equals rejected"]
    path.write_text('{"record_id": "x", "chosen": "A"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=":1: an annotation needs"):
        read_annotations(path)


def test_dpo_build_takes_pairs_from_predictions(shared_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from snsdata.cli import app

    root = tmp_path / "data"
    root.mkdir()
    (root / "sns_bench_sample").symlink_to(shared_data / "sns_bench_sample")
    specs = catalogue()
    predictions = tmp_path / "predictions.jsonl"
    with predictions.open("w", encoding="utf-8") as handle:
        for task in TASKS:  # a prediction log without task ids: record ids name their task
            for record in records(specs[task], root):
                handle.write(json.dumps({"record_id": record["record_id"], "prediction": "I cannot tell"}) + "\n")
    out = tmp_path / "pairs.parquet"
    made = CliRunner().invoke(app, ["pairs", "--mixture", "dpo", "--predictions", str(predictions), "--data-root",
                                    str(root), "--max-per-task", "8", "--out", str(out)])
    assert made.exit_code == 0, made.output
    pairs = pl.read_parquet(out)
    # The build reads 8 records per task: predictions of the others name no record of it.
    assert pairs.height == 3 * 8 and "skipped 36: no such record in the build" in made.output
    built = CliRunner().invoke(app, ["build", "--mixture", "dpo", "--data-root", str(root), "--max-per-task", "8",
                                     "--pairs", str(out), "--out", str(tmp_path / "dpo")])
    assert built.exit_code == 0, built.output
    rows = pl.concat([pl.read_parquet(tmp_path / "dpo" / "data" / f"{split}.parquet") for split in ("train", "eval")])
    from_predictions = rows.filter(pl.col("pair_source") == "predictions")
    assert from_predictions.height == pairs.height
    assert all(r[0]["content"] == "I cannot tell" for r in from_predictions["rejected"].to_list())
    # The same in one command: `snsdata build --mixture dpo --predictions F`.
    direct = CliRunner().invoke(app, ["build", "--mixture", "dpo", "--data-root", str(root), "--max-per-task", "8",
                                      "--predictions", str(predictions), "--out", str(tmp_path / "dpo_direct")])
    assert direct.exit_code == 0, direct.output
    again = pl.concat([pl.read_parquet(tmp_path / "dpo_direct" / "data" / f"{split}.parquet")
                       for split in ("train", "eval")])
    # There the model's own wrong answer is the record's rejected answer (one pair per record, in place of an
    # option), and the pairs go through the build's class balancing like every other row.
    own = again.filter(pl.col("pair_source") == "predictions")
    assert own.height and all(r[0]["content"] == "I cannot tell" for r in own["rejected"].to_list())
    assert own.select("task_id", "record_id").is_unique().all()
    keys = ["task_id", "record_id"]
    missing = from_predictions.select(keys).join(own.select(keys), on=keys, how="anti")
    balanced = pl.read_parquet(tmp_path / "dpo_direct" / "rejects.parquet").filter(pl.col("step") == "balance")
    assert missing.join(balanced.select(keys), on=keys, how="anti").is_empty()
    assert again.filter(pl.col("pair_source") != "predictions").join(own.select(keys), on=keys, how="semi").is_empty()
