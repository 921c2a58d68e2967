"""Each rule filter on crafted rows: what it keeps, what it drops, and the reason it gives."""

from __future__ import annotations

import polars as pl
import pytest

from snsdata.pipeline import rules as r
from snsdata.pipeline.base import DUPLICATE_OF, REASON, STEP, RuleConfig


def _apply(rule: RuleConfig, texts: list[str | None], **columns: list[object]) -> dict[str | None, str | None]:
    """text -> reason (None when kept), checking that every row lands on exactly one side."""
    frame = pl.LazyFrame({"text": pl.Series(texts, dtype=pl.String), **columns})
    result = rule.build("text")(frame)
    kept, rejected = pl.collect_all([result.kept, result.rejected])
    assert kept.height + rejected.height == len(texts)
    assert kept.columns == frame.collect_schema().names()
    assert set(rejected[STEP].to_list()) <= {rule.step} and rejected[DUPLICATE_OF].null_count() == rejected.height
    out: dict[str | None, str | None] = dict.fromkeys(kept["text"].to_list())
    out.update(zip(rejected["text"].to_list(), rejected[REASON].to_list(), strict=True))
    return out


def test_null_text_is_rejected_by_any_rule() -> None:
    assert _apply(r.Length(), [None, "fine text here"]) == {None: "text is null", "fine text here": None}


def test_length_counts_visible_chars_and_cjk_words() -> None:
    got = _apply(r.Length(min_chars=5, max_chars=20, min_words=3), ["abc", "   abcd   ", "一二三四五六", "two words",
                                                                     "one two three", "x" * 30])
    assert got["abc"] == "chars 3 < 5"
    assert got["   abcd   "] == "chars 4 < 5"
    assert got["一二三四五六"] is None  # six CJK characters are six words
    assert got["two words"] == "words 2 < 3"
    assert got["one two three"] is None
    assert got["x" * 30] == "chars 30 > 20"


def test_html_tag_and_entity_share() -> None:
    got = _apply(r.Html(), ["<div><p>hi</p></div>", "a &lt; b &amp;&amp; c &gt; d", "plain text, no markup <3"])
    assert got["<div><p>hi</p></div>"].startswith("html_tag_share 0.9")
    assert got["a &lt; b &amp;&amp; c &gt; d"].startswith("html_entity_share")
    assert got["plain text, no markup <3"] is None


def test_repetition_lines_and_ngrams() -> None:
    lines = "buy now\nbuy now\nbuy now\nbuy now\nreal content here"
    chinese = "小姐姐，是江西上饶，不是山西上饶。我们，你们，他们，都去。"  # bigrams and commas repeat in Chinese
    got = _apply(r.Repetition(), [lines, "spam " * 12, chinese, "a normal sentence with no repeats at all here",
                                  "转发\n转发\n转发\n转发\n原创内容"])
    assert got[lines].startswith("dup_line_frac 0.6")
    assert got["spam " * 12].startswith("top_2gram_share 1.0")
    assert got[chinese] is None
    assert got["a normal sentence with no repeats at all here"] is None
    assert got["转发\n转发\n转发\n转发\n原创内容"].startswith("dup_line_frac 0.6")


def test_repetition_duplicated_ngram_share_only() -> None:
    text = "one two three four five six seven alpha one two three four five six seven beta gamma delta"
    rule = r.Repetition(max_dup_line_frac=None, max_dup_line_char_frac=None, max_top_ngram_share={})
    assert _apply(rule, [text])[text].startswith("dup_5gram_share")
    assert _apply(r.Repetition(max_dup_ngram_share={}, max_top_ngram_share={}), [text])[text] is None


@pytest.mark.parametrize(
    ("rule", "bad", "good", "metric"),
    [
        (r.UrlShare(), "see https://example.com/a/very/long/path/here ok", "see my post about food", "url_share"),
        (r.HashtagShare(), "#love #instagood #photooftheday nice", "nice day #love", "hashtag_share"),
        (r.MentionShare(), "@alice @bob_smith @carol hi", "thanks @alice for the great dinner", "mention_share"),
        (r.EmojiShare(), "😂😂😂👍🏽🔥 ok", "great day 😂 with friends", "emoji_share"),
        (r.SymbolShare(), "$$$ !!! ??? ### ok", "hello, world!", "symbol_share"),
        (r.StickerShare(), "[笑哭R][赞R][doge] 好", "今天很开心[赞R]大家好呀朋友们", "sticker_share"),
    ],
)
def test_character_shares(rule: RuleConfig, bad: str, good: str, metric: str) -> None:
    got = _apply(rule, [bad, good])
    assert got[bad] is not None and got[bad].startswith(metric + " ") and " > " in got[bad]
    assert got[good] is None


def test_cjk_share_only_for_chinese_rows_when_a_language_column_is_given() -> None:
    texts = ["this is english", "this is english too", "中文内容很多"]
    got = _apply(r.CjkShare(min=0.5, lang_column="lang"), texts, lang=["en", "zh", "zh"])
    assert got == {"this is english": None, "this is english too": "cjk_share 0.0 < 0.50", "中文内容很多": None}


def test_block_words_names_the_word() -> None:
    got = _apply(r.BlockWords(words=["Free Money", "加微信"]), ["get FREE money now", "请加微信了解", "fine"])
    assert got == {"get FREE money now": "block word 'free money'", "请加微信了解": "block word '加微信'", "fine": None}


def test_distinct_chars() -> None:
    assert _apply(r.DistinctChars(min=4), ["aaaa bbbb", "abcd"]) == {"aaaa bbbb": "distinct_chars 2 < 4", "abcd": None}


def test_char_flood() -> None:
    got = _apply(r.CharFlood(), ["哈哈哈哈哈哈哈哈", "今天好开心哈哈哈", "!!!!!!!!!! wow"])
    assert got["哈哈哈哈哈哈哈哈"] == "char_flood(run>=6) 1.0 > 0.50"
    assert got["今天好开心哈哈哈"] is None
    assert got["!!!!!!!!!! wow"].startswith("char_flood")


def test_tags_only_posts() -> None:
    got = _apply(r.TagsOnly(), ["#ootd @zara 😍 https://t.co/x", "#话题# [赞R]", "#ootd loving this jacket"])
    assert got["#ootd @zara 😍 https://t.co/x"].startswith("content_chars 0 < 2")
    assert got["#话题# [赞R]"].startswith("content_chars 0 < 2")
    assert got["#ootd loving this jacket"] is None


def test_unknown_rule_parameter_is_refused() -> None:
    with pytest.raises(ValueError, match="extra"):
        r.Length(min_chars=3, max_char=5)
