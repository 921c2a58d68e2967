"""Decontamination: training rows sharing long n-grams with evaluation items are dropped, hits listed."""

from __future__ import annotations

import polars as pl

from snsdata.pipeline.base import REASON
from snsdata.pipeline.decontam import decontaminate

EVAL = pl.DataFrame({
    "id": ["e1", "e2", "e3", "e4"],
    "text": [
        "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat today",
        "今天我们在上海的外滩看到了非常美丽的夜景，灯光璀璨，游人如织，真是一个难忘的夜晚啊",
        "short eval tweet about a rainy monday morning here",
        "too short",
    ],
})


def _run(texts: list[str | None], **kwargs: object) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    train = pl.LazyFrame({"record_id": [f"t{i}" for i in range(len(texts))], "text": pl.Series(texts, dtype=pl.String)})
    found = decontaminate(train, EVAL, **kwargs)
    return tuple(pl.collect_all([found.result.kept, found.result.rejected, found.hits]))  # type: ignore[return-value]


def test_overlapping_rows_are_dropped_and_hits_listed() -> None:
    kept, rejected, hits = _run([
        "I saw that the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat today lol",
        "完全无关的句子，讲的是别的事情",
        "朋友说：今天我们在上海的外滩看到了非常美丽的夜景，灯光璀璨，游人如织，真是一个难忘的夜晚啊！",
        "My SHORT eval tweet, about a rainy Monday morning here... ugh",
        "a rainy monday morning",  # shorter than the short eval item: no hit
        "too short",  # the eval item is below the minimum whole-item length
        None,
    ])
    assert kept["record_id"].to_list() == ["t1", "t4", "t5"]
    reasons = dict(zip(rejected["record_id"].to_list(), rejected[REASON].to_list(), strict=True))
    assert reasons["t0"].startswith("overlaps eval item e1")
    assert reasons["t2"].startswith("overlaps eval item e2")
    assert reasons["t3"].startswith("overlaps eval item e3")
    assert reasons["t6"] == "text is null"
    assert hits.rows() == [("e1", ["t0"]), ("e2", ["t2"]), ("e3", ["t3"])]


def test_one_row_hitting_several_items_names_them_all() -> None:
    both = EVAL["text"][0] + " and also " + EVAL["text"][2]
    _, rejected, hits = _run([both, EVAL["text"][0]])
    assert rejected[REASON].to_list()[0].startswith("overlaps eval item e1 and 1 more")
    assert hits.rows() == [("e1", ["t0", "t1"]), ("e3", ["t0"])]


def test_shorter_ngrams_catch_partial_overlap() -> None:
    partial = "foxes: the quick brown fox jumps over the lazy dog, they say"
    kept, _, _ = _run([partial])
    assert kept.height == 1
    kept, rejected, _ = _run([partial], word_ngram=8)
    assert kept.height == 0 and rejected.height == 1


def test_instruction_text_every_eval_item_repeats_is_not_contamination() -> None:
    template = ("Please provide a list of words you think are suitable for highlighting "
                "and output an empty list if none")
    items = [f"Comment {i}: item number {i} is about topic {i}. {template}" for i in range(5)]
    eval_texts = pl.DataFrame({"id": [f"e{i}" for i in range(5)], "text": items})
    train = pl.LazyFrame({"record_id": ["fresh", "leak"], "text": [
        f"Comment: a brand new remark about my cat. {template}",
        f"Comment 3: item number 3 is about topic 3. {template}",
    ]})
    found = decontaminate(train, eval_texts)
    kept, rejected = pl.collect_all([found.result.kept, found.result.rejected])
    assert kept["record_id"].to_list() == ["fresh"]  # shares only the 5-item template: kept
    assert rejected["record_id"].to_list() == ["leak"]  # shares the item's own words too: dropped
