"""`snsdata diagnose`: per-task figures from a rollout log, weak tasks by declared rules, failure samples."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

import snsdata.cli.loop  # noqa: F401  (registers the loop commands)
from snsdata.cli.app import app
from snsdata.loop.diagnose import WeakRules, diagnose, diagnose_frames, load_rules
from snsdata.loop.logs import LogError, normalize_log, read_log
from snsdata.loop.records import RecordSource
from snsdata.readers import records
from snsdata.rewards import catalogue

TASKS = ("note_gender", "note_querycorr_topic", "note_hashtag_single", "note_taxonomy_single")
WEAK = ("note_hashtag_single", "note_querycorr_topic")


@pytest.fixture(scope="module")
def task_records(shared_data: Path) -> dict[str, list[dict]]:
    specs = catalogue()
    return {task: records(specs[task], shared_data)[:6] for task in TASKS}


def rollouts(task_records: dict[str, list[dict]], weak: tuple[str, ...] = WEAK, group: int = 2,
             scored: bool = False) -> pl.DataFrame:
    """`group` rollouts per record. Weak tasks answer wrongly except on their first record; the others answer
    right except on their last record (a failure sample of a task that is not weak)."""
    specs = catalogue()
    rows = []
    for task, recs in task_records.items():
        for index, record in enumerate(recs):
            gold = specs[task].render_target(record)
            wrong = index > 0 if task in weak else index == len(recs) - 1
            fields = {k: v for k, v in record.items() if k not in ("task_id", "record_id", "split")}
            for step in range(group):
                row = {"task_id": task, "record_id": record["record_id"], "step": step,
                       "completion": "definitely not the answer" if wrong else f"<think>hm</think>{gold}",
                       "record": json.dumps(fields, ensure_ascii=False)}
                if scored:
                    row["reward"] = 0.0 if wrong else 1.0
                rows.append(row)
    return pl.DataFrame(rows)


def test_two_failing_tasks_are_exactly_the_weak_ones(task_records: dict[str, list[dict]], tmp_path: Path) -> None:
    log = tmp_path / "rollouts.jsonl"
    rollouts(task_records).write_ndjson(log)
    result = diagnose(log)
    assert result["weak_tasks"] == sorted(WEAK)
    assert set(result["failures"]) == set(WEAK)
    for task in WEAK:
        expected = [r["record_id"] for r in task_records[task][1:]]
        assert sorted(result["failures"][task]) == sorted(expected)
        assert all(v == 0.0 for v in result["failure_rewards"][task].values())
        figures = result["tasks"][task]
        assert figures["count"] == 12 and figures["records"] == 6
        assert figures["mean_reward"] == pytest.approx(1 / 6) and figures["pass_rate"] == pytest.approx(1 / 6)
        assert figures["weak"] and figures["reasons"]
    for task in set(TASKS) - set(WEAK):
        figures = result["tasks"][task]
        assert not figures["weak"] and figures["failures"] == 1 and figures["mean_reward"] == pytest.approx(5 / 6)
    # The wrong answers are not labels of the task: the scorer counts them as parse failures.
    assert result["tasks"]["note_gender"]["parse_failure_rate"] == pytest.approx(1 / 6)
    assert result["inputs"]["log"]["sha256"] and result["unscored_rows"] == 0


def test_rules_baseline_drop_bottom_k_and_min_count(task_records: dict[str, list[dict]]) -> None:
    source = RecordSource()
    good = normalize_log(rollouts(task_records, weak=()))
    worse = normalize_log(rollouts(task_records, weak=("note_gender",)))
    off = {"below": None}
    # Nothing is below an absolute 0.5 in the good run; with the threshold off, only the drop rule can fire.
    dropped = diagnose_frames(worse, WeakRules(**off, max_drop=0.1), source, baseline=good)
    assert dropped["weak_tasks"] == ["note_gender"]
    assert dropped["tasks"]["note_gender"]["delta_mean_reward"] == pytest.approx(1 / 6 - 5 / 6)
    assert "against the baseline" in dropped["tasks"]["note_gender"]["reasons"][0]
    # All four tasks are content_understanding or not: bottom-1 per capability picks one task per capability.
    bottom = diagnose_frames(worse, WeakRules(**off, max_drop=None, bottom_k=1), source)
    capabilities = {f["capability"] for f in bottom["tasks"].values()}
    assert len(bottom["weak_tasks"]) == len(capabilities)
    assert "note_gender" in bottom["weak_tasks"]
    # Too few rows: reported, never chosen.
    sparse = diagnose_frames(worse, WeakRules(min_count=13), source)
    assert sparse["weak_tasks"] == [] and sparse["tasks"]["note_gender"]["mean_reward"] < 0.5
    # A per-task pass threshold: at 0 every rollout of note_gender passes, so it has no failure samples.
    lenient = diagnose_frames(worse, WeakRules(metric="pass_rate", task_pass_thresholds={"note_gender": 0.0}), source)
    assert lenient["tasks"]["note_gender"]["pass_rate"] == 1.0 and lenient["tasks"]["note_gender"]["failures"] == 0
    assert lenient["weak_tasks"] == []
    # At most one failure sample per weak task, the worst first.
    capped = diagnose_frames(worse, WeakRules(max_failures=1), source)
    assert [len(ids) for ids in capped["failures"].values()] == [1]


def test_pre_scored_rollouts_keep_their_rewards(task_records: dict[str, list[dict]], tmp_path: Path) -> None:
    frame = rollouts(task_records, scored=True).drop("record")
    log = tmp_path / "rollouts.parquet"
    frame.write_parquet(log)
    result = diagnose(log, from_step=1)
    assert result["weak_tasks"] == sorted(WEAK)
    assert result["tasks"]["note_gender"]["count"] == 6  # step 0 dropped
    assert result["tasks"]["note_gender"]["parse_failure_rate"] is None  # no record: parsing unknown


def test_log_columns_are_checked(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"task_id": "note_gender", "text": "Yes"}\n', encoding="utf-8")
    with pytest.raises(LogError, match="completion"):
        read_log(bad)
    chat = tmp_path / "chat.jsonl"
    chat.write_text(json.dumps({"task": "note_gender", "id": "r1", "reward": 1,
                                "completion": [{"role": "assistant", "content": "Yes"}]}) + "\n", encoding="utf-8")
    row = read_log(chat).row(0, named=True)
    assert (row["task_id"], row["record_id"], row["completion"], row["reward"]) == ("note_gender", "r1", "Yes", 1.0)


def test_rules_from_yaml_with_cli_overrides(tmp_path: Path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text("below: 0.3\nbottom_k: 2\ntask_pass_thresholds: {redtrans_zh2en: 0.25}\n", encoding="utf-8")
    rules = load_rules(path, below=0.4, bottom_k=None)
    assert (rules.below, rules.bottom_k, rules.task_pass_thresholds, rules.pass_threshold) == (
        0.4, 2, {"redtrans_zh2en": 0.25}, 0.5)
    path.write_text("belwo: 0.3\n", encoding="utf-8")
    with pytest.raises(ValueError, match="belwo"):
        load_rules(path)


def test_cli_table_json_and_html(task_records: dict[str, list[dict]], tmp_path: Path) -> None:
    log = tmp_path / "rollouts.jsonl"
    base = tmp_path / "baseline.jsonl"
    rollouts(task_records).write_ndjson(log)
    rollouts(task_records, weak=()).write_ndjson(base)
    out, html = tmp_path / "d" / "diagnosis.json", tmp_path / "report.html"
    result = CliRunner().invoke(app, ["diagnose", str(log), "--baseline", str(base), "--out", str(out),
                                      "--html", str(html), "--below", "0.5"])
    assert result.exit_code == 0, result.output
    assert "note_hashtag_single" in result.output and "weak tasks:" in result.output
    written = json.loads(out.read_text(encoding="utf-8"))
    assert written["weak_tasks"] == sorted(WEAK) and written["inputs"]["baseline"]["path"] == str(base)
    page = html.read_text(encoding="utf-8")
    assert page.count("<svg") == 1 and "<script" not in page and "http" not in page.replace(
        "http://www.w3.org/2000/svg", "")
    for task in TASKS:
        assert f"<title>{task} mean_reward" in page and f"<title>{task} failure_rate" in page
    missing = CliRunner().invoke(app, ["diagnose", str(tmp_path / "nope.jsonl"), "--out", str(out)])
    assert missing.exit_code == 1 and "no such file" in missing.output


def test_a_perfect_model_is_never_weak_even_where_its_gold_earns_less_than_1(
        task_records: dict[str, list[dict]]) -> None:
    """Judged against what gold answers earn on the same records: a task whose reward pays its own gold 0.5
    (here a shaping check the long golds fail) is not weak when the model answers exactly the gold."""
    from snsdata.spec.reward import CompositeReward

    specs = catalogue()
    source = RecordSource()
    strict = CompositeReward.model_validate({"type": "composite", "parts": [
        {"reward": {"type": "exact_match"}},
        {"role": "shaping", "weight": 0.5, "reward": {"type": "pattern", "checks": [{"max_chars": 1}]}}]})
    source.__dict__["specs"] = {**specs, "note_gender": specs["note_gender"].model_copy(update={"reward": strict})}
    log = normalize_log(rollouts({"note_gender": task_records["note_gender"]}, weak=()))
    perfect = log.with_columns(completion=pl.col("record").map_elements(
        lambda r: json.loads(r)["answer"], return_dtype=pl.String))
    result = diagnose_frames(perfect, WeakRules(below=0.9, pass_threshold=0.9), source)
    figures = result["tasks"]["note_gender"]
    assert figures["mean_reward"] == pytest.approx(0.5) and figures["gold_mean_reward"] == pytest.approx(0.5)
    assert figures["relative_mean_reward"] == pytest.approx(1.0) and figures["pass_rate"] == 1.0
    assert result["weak_tasks"] == [] and figures["failures"] == 0
    wrong = log.with_columns(completion=pl.lit("Maybe"))
    assert diagnose_frames(wrong, WeakRules(below=0.9), source)["weak_tasks"] == ["note_gender"]
