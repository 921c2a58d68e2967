"""DPO hard negatives: nearest level, confusable labels, the model's own wrong answer, caps; never a right answer."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from snsdata.build import build, prepare
from snsdata.build.formats import add_rejected
from snsdata.build.negatives import CONFUSION, ORDINAL, PREDICTIONS, SIMILAR, ngram_similarity
from snsdata.rewards import get_scorer
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import load_mixture

SPECS = load_catalogue()


def _frame(task_id: str, field: str, golds: list[str], **extra: str) -> pl.DataFrame:
    n = len(golds)
    return pl.DataFrame({"task_id": [task_id] * n, "record_id": [f"r{i}" for i in range(n)], "split": ["train"] * n,
                         "text": [f"post number {i}" for i in range(n)], field: golds,
                         **{k: [v] * n for k, v in extra.items()}})


def _rejected(frame: pl.DataFrame) -> list[tuple[str, str]]:
    return list(zip(frame["_rejected"].to_list(), frame["_pair_source"].to_list(), strict=True))


def test_ordinal_tasks_reject_the_nearest_other_level() -> None:
    spec = SPECS["tweet_sentiment"]  # output.ordered: negative < neutral < positive
    paired, unpaired = add_rejected(spec, _frame(spec.id, "label", ["negative", "positive"] + ["neutral"] * 20), 0)
    assert unpaired.is_empty()
    pairs = _rejected(paired)
    assert pairs[:2] == [("neutral", ORDINAL), ("neutral", ORDINAL)]
    # Both neighbours of the middle level are one step away, never the gold; the next criterion decides the tie:
    # the model's confusions when there are any.
    assert {text for text, _ in pairs[2:]} <= {"negative", "positive"}
    for confused in ("negative", "positive"):
        tied, _ = add_rejected(spec, _frame(spec.id, "label", ["neutral"] * 5), 0,
                               confusion={("neutral", confused): 2})
        assert _rejected(tied) == [(confused, ORDINAL)] * 5


def test_chinese_labels_reject_the_label_sharing_most_characters() -> None:
    spec = SPECS["cold_offense_type_zh"]  # 攻击个人, 攻击群体, 反对偏见, 其他非冒犯
    assert ngram_similarity("攻击群体", "攻击个人") > ngram_similarity("攻击群体", "反对偏见") == 0
    frame = _frame(spec.id, "fine_label", ["攻击群体", "攻击个人"], topic="种族", label="冒犯")
    paired, _ = add_rejected(spec, frame, 0)
    assert _rejected(paired) == [("攻击个人", SIMILAR), ("攻击群体", SIMILAR)]


def test_english_labels_reject_the_label_closest_in_meaning() -> None:
    spec = SPECS["tweet_emotion"]  # anger, joy, optimism, sadness: MiniLM puts joy nearest to optimism
    paired, _ = add_rejected(spec, _frame(spec.id, "label", ["optimism"]), 0)
    assert _rejected(paired) == [("joy", SIMILAR)]


def test_a_confusion_matrix_beats_label_similarity() -> None:
    spec = SPECS["cold_offense_type_zh"]
    frame = _frame(spec.id, "fine_label", ["攻击群体", "攻击个人"], topic="种族", label="冒犯")
    paired, _ = add_rejected(spec, frame, 0, confusion={("攻击群体", "其他非冒犯"): 3})
    # The model confuses 攻击群体 with 其他非冒犯; for 攻击个人 it has no confusion, so similarity decides.
    assert _rejected(paired) == [("其他非冒犯", CONFUSION), ("攻击群体", SIMILAR)]


@pytest.fixture(scope="module")
def predictions(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prediction log for cold_offense_type_zh: 攻击群体 is answered as 其他非冒犯 on half its train records,
    every 反对偏见 record is answered right (no pair from those)."""
    frame = prepare("dpo").frames["cold_offense_type_zh"].sort("record_id")
    group = frame.filter(pl.col("fine_label") == "攻击群体")
    path = tmp_path_factory.mktemp("predictions") / "predictions.jsonl"
    with path.open("w", encoding="utf-8") as out:
        for row in group.head(group.height // 2).iter_rows(named=True):
            out.write(json.dumps({"task_id": "cold_offense_type_zh", "record_id": row["record_id"],
                                  "prediction": "其他非冒犯"}, ensure_ascii=False) + "\n")
        for row in frame.filter(pl.col("fine_label") == "反对偏见").iter_rows(named=True):
            out.write(json.dumps({"task_id": "cold_offense_type_zh", "record_id": row["record_id"],
                                  "prediction": "反对偏见"}, ensure_ascii=False) + "\n")
    return path


def test_predictions_give_own_wrong_answers_and_confusions(predictions: Path, tmp_path: Path) -> None:
    result = build("dpo", out=tmp_path / "dpo", predictions=predictions)
    rows = pl.concat([result.train, result.eval]).filter(pl.col("task_id") == "cold_offense_type_zh")
    answers = rows.with_columns(gold=pl.col("chosen").list.last().struct.field("content"),
                                wrong=pl.col("rejected").list.last().struct.field("content"))
    said = {json.loads(line)["record_id"] for line in predictions.read_text(encoding="utf-8").splitlines()
            if json.loads(line)["prediction"] == "其他非冒犯"}
    own = answers.filter(pl.col("pair_source") == PREDICTIONS)
    assert own.height and set(own["record_id"].to_list()) <= said and set(own["wrong"].to_list()) == {"其他非冒犯"}
    # The other 攻击群体 records take the model's confusion as their rejected answer.
    others = answers.filter((pl.col("gold") == "攻击群体") & (pl.col("pair_source") != PREDICTIONS))
    assert others.height and set(others["pair_source"].to_list()) == {CONFUSION}
    assert set(others["wrong"].to_list()) == {"其他非冒犯"}
    assert result.manifest["inputs"]["predictions"]["records_with_own_wrong_answer"] == len(said)
    # Without predictions the same records reject the most similar label instead.
    plain = build("dpo", out=tmp_path / "plain")
    plain_rows = plain.train.filter(pl.col("task_id") == "cold_offense_type_zh").with_columns(
        gold=pl.col("chosen").list.last().struct.field("content"),
        wrong=pl.col("rejected").list.last().struct.field("content"))
    assert set(plain_rows.filter(pl.col("gold") == "攻击群体")["wrong"].to_list()) == {"攻击个人"}


def test_rejected_answers_score_below_the_pass_threshold(predictions: Path, tmp_path: Path) -> None:
    """Scored with each task's own reward: every rejected answer fails, every chosen one passes."""
    result = build("dpo", out=tmp_path / "dpo", predictions=predictions)
    frames = prepare("dpo").frames
    assert {PREDICTIONS, CONFUSION, SIMILAR} <= set(result.train["pair_source"].to_list())
    for (task_id,), group in pl.concat([result.train, result.eval]).group_by("task_id"):
        frame = frames[str(task_id)]
        fields = [c for c in frame.columns if not c.startswith("_") and c not in ("task_id", "split")]
        by_id = {row.pop("record_id"): row for row in frame.select(fields).to_dicts()}
        records = [by_id[record_id] for record_id in group["record_id"].to_list()]
        scorer = get_scorer(str(task_id))
        wrong = scorer([r[-1]["content"] for r in group["rejected"].to_list()], records)
        right = scorer([c[-1]["content"] for c in group["chosen"].to_list()], records)
        assert all(score is not None and score < 0.5 for score in wrong), task_id
        assert all(score is not None and score >= 0.5 for score in right), task_id


def test_caps_per_task_and_per_pair_source(tmp_path: Path) -> None:
    base = load_mixture("dpo")
    capped = base.model_copy(update={"pairs": base.pairs.model_copy(update={"max_per_task": 40,
                                                                             "max_per_source": 25})})
    first = build(capped, out=tmp_path / "a")
    per_task = first.train.group_by("task_id").len()
    per_source = first.train.group_by("task_id", "pair_source").len()
    assert per_task["len"].max() <= 40 and per_source["len"].max() <= 25
    over = first.rejects.filter(pl.col("reason").str.starts_with("over the cap"))
    assert over.height and set(over["step"].to_list()) == {"pairs"}
    assert first.manifest["totals"]["balanced"]
    again = build(capped, out=tmp_path / "b")
    assert again.manifest["outputs"] == first.manifest["outputs"]
    other = build(capped, out=tmp_path / "c", seed=1)
    assert set(other.train["record_id"].to_list()) != set(first.train["record_id"].to_list())
