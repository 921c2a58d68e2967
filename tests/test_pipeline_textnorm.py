"""Vectorised normalisation (code-point tables) against the exact per-string definition."""

from __future__ import annotations

import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from snsdata.pipeline.textnorm import codepoints, normalize_text, row_digests

CRAFTED = [
    "Ｈｅｌｌｏ　ＷＯＲＬＤ",  # fullwidth letters and ideographic space
    "ﬁne ligature … and ellipsis",
    "cafe\u0301 vs café",  # combining accent composes
    "ΟΔΟΣ ΟΔΟΣ",  # capital sigma: casefold is context-free
    "\u1100\u1161\u11a8 hangul jamo",
    "  leading\t\ttabs\n\nand   trailing   ",
    "nul\x00inside",
    "emoji 👍🏽 ❤️ 👨‍👩‍👧",
    "Straße ẞ",
    "",
    "   ",
    "今天天气很好，我们去公园散步吧！！",
]


def _decoded(texts: list[str | None]) -> list[str]:
    cps = codepoints(pl.Series(texts, dtype=pl.String))
    return [
        cps.cp[start : start + length].tobytes().decode("utf-32-le")
        for start, length in zip(cps.starts.tolist(), cps.lengths.tolist(), strict=True)
    ]


def test_crafted_strings_match_exact_definition() -> None:
    assert _decoded(CRAFTED) == [normalize_text(t) for t in CRAFTED]


def test_null_is_an_empty_row() -> None:
    assert _decoded(["a", None, "b"]) == ["a", "", "b"]


@settings(max_examples=150, deadline=None)
@given(st.lists(st.text(max_size=40), min_size=1, max_size=8))
def test_any_text_matches_exact_definition(texts: list[str]) -> None:
    assert _decoded(texts) == [normalize_text(t) for t in texts]


def test_digests_equal_exactly_for_equal_normalised_text() -> None:
    digests = row_digests(codepoints(pl.Series(["Hello  World", "hello world", "ｈｅｌｌｏ world", "hello world!"])))
    assert (digests[0] == digests[1]).all() and (digests[0] == digests[2]).all()
    assert not (digests[0] == digests[3]).all()
