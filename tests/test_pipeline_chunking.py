"""CPT preparation: long texts cut at sentence ends into pieces <= max_len, short texts packed, in order."""

from __future__ import annotations

import polars as pl
import pytest

from snsdata.pipeline.chunking import prepare_cpt

LONG_EN = "This is one sentence of a long post. " * 40
LONG_ZH = "今天天气很好。" * 30 + "没有标点的超长句子" * 40


def _frame() -> pl.LazyFrame:
    texts = ["short one", LONG_EN, "a mid length text that stays whole " * 2, "tiny", LONG_ZH, None, "", "另一条短文"]
    return pl.LazyFrame({"record_id": [f"r{i}" for i in range(len(texts))], "text": texts})


def test_pieces_fit_and_reassemble_exactly() -> None:
    out = prepare_cpt(_frame(), max_len=200, min_len=30).collect()
    assert out["length"].max() <= 200
    assert (out["text"].str.len_chars() == out["length"]).all()
    for rid, source in (("r1", LONG_EN), ("r4", LONG_ZH)):
        pieces = out.filter(pl.col("source_ids").list.first() == rid)
        assert pieces["kind"].unique().to_list() == ["piece"] and pieces["part"].to_list() == list(range(pieces.height))
        assert "".join(pieces["text"]) == source
        assert pieces["length"][:-1].min() >= 200 // 2  # cut at sentence ends, not into crumbs


def test_english_pieces_end_at_sentence_boundaries() -> None:
    out = prepare_cpt(_frame(), max_len=200, min_len=30).collect()
    pieces = out.filter(pl.col("source_ids").list.first() == "r1")["text"].to_list()
    assert all(piece.rstrip().endswith(".") for piece in pieces)


def test_short_texts_are_packed_in_order_and_empty_rows_yield_nothing() -> None:
    out = prepare_cpt(_frame(), max_len=200, min_len=30).collect()
    packed = out.filter(pl.col("kind") == "packed")
    assert packed["source_ids"].to_list() == [["r0", "r3", "r7"]]
    assert packed["text"].to_list() == ["short one\n\ntiny\n\n另一条短文"]
    assert out.filter(pl.col("kind") == "whole")["source_ids"].to_list() == [["r2"]]
    assert not {"r5", "r6"} & {i for ids in out["source_ids"].to_list() for i in ids}


def test_packing_respects_the_budget_and_groups() -> None:
    frame = pl.LazyFrame({"text": [f"note {i:03d}" for i in range(100)], "lang": ["en", "zh"] * 50})
    out = prepare_cpt(frame, max_len=60, min_len=20, pack_within="lang").collect()
    assert out["length"].max() <= 60 and (out["text"].str.len_chars() == out["length"]).all()
    for ids in out["source_ids"].to_list():
        assert len({int(i) % 2 for i in ids}) == 1  # rows of one language only (ids are input positions)
    assert sum(len(ids) for ids in out["source_ids"].to_list()) == 100


def test_token_counter_measures_in_tokens() -> None:
    def words(texts: pl.Series) -> pl.Series:
        return texts.str.count_matches(r"\S+")

    out = prepare_cpt(pl.LazyFrame({"text": [LONG_EN]}), max_len=50, min_len=5, token_counter=words).collect()
    assert out["length"].max() <= 50 and "".join(out["text"]) == LONG_EN


def test_deterministic_and_validated() -> None:
    assert prepare_cpt(_frame(), max_len=200).collect().equals(prepare_cpt(_frame(), max_len=200).collect())
    with pytest.raises(ValueError, match="min_len"):
        prepare_cpt(_frame(), max_len=100, min_len=100)
