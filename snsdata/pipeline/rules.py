"""Rule filters as Polars expressions: length, markup, repetition (Gopher), character shares, SNS rules.

Every rule is a `RuleConfig`: its `reason` expression is null for rows it keeps and a short, readable reason for
rows it drops (`"url_share 0.62 > 0.30"`), so one pass over the column decides and explains.
Shares are measured against the non-whitespace characters of the text.
"""

from __future__ import annotations

from functools import partial
from typing import ClassVar, Literal

import polars as pl
from pydantic import Field, model_validator

from snsdata.pipeline.base import SCRATCH, RuleConfig, first_reason, joined
from snsdata.pipeline.repetition import distinct_characters, flood_share, repetition_measures

# Scripts written without spaces: each character counts as a word.
CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
WORD = rf"[{CJK}]|[^\s{CJK}]+"
URL = r"(?:https?://|www\.)\S+"
HASHTAG = r"#[^\s#]+#?"  # "#tag" and Weibo's "#话题#"
MENTION = r"@[\w.\-]+"
STICKER = r"\[[^\[\]\s]{1,12}\]"  # "[笑哭R]", "[doge]": sticker codes of Xiaohongshu / Weibo
EMOJI = r"[\p{Extended_Pictographic}\x{FE0F}\x{200D}\x{20E3}\x{1F3FB}-\x{1F3FF}]"
SYMBOL = r"[\p{P}\p{Sm}\p{Sc}\p{Sk}\p{So}--[\p{Extended_Pictographic}\x{1F3FB}-\x{1F3FF}]]"
HTML_TAG = r"</?[A-Za-z!][^<>]{0,500}>"
HTML_ENTITY = r"&(?:[A-Za-z]{2,10}|#\d{1,7}|#[xX][0-9A-Fa-f]{1,6});"


def visible_chars(text: pl.Expr) -> pl.Expr:
    """Characters that are not whitespace."""
    return text.str.len_chars() - text.str.count_matches(r"\s")


def covered_chars(text: pl.Expr, pattern: str) -> pl.Expr:
    """Characters inside matches of `pattern`, whitespace excluded (one regex replace, no lists)."""
    return visible_chars(text) - visible_chars(text.str.replace_all(pattern, ""))


def share(part: pl.Expr, whole: pl.Expr) -> pl.Expr:
    """part / whole, 0 for an empty whole."""
    return pl.when(whole > 0).then(part / whole).otherwise(0.0)


def above(name: str, value: pl.Expr, limit: float | None) -> pl.Expr | None:
    """Reason when value > limit (None when the check is off)."""
    if limit is None:
        return None
    return pl.when(value > limit).then(joined(f"{name} ", value.round(2), f" > {limit:.2f}"))


def below(name: str, value: pl.Expr, limit: float | None) -> pl.Expr | None:
    """Reason when value < limit (None when the check is off)."""
    if limit is None:
        return None
    return pl.when(value < limit).then(joined(f"{name} ", value.round(2), f" < {limit:.2f}"))


def count_above(name: str, value: pl.Expr, limit: int | None) -> pl.Expr | None:
    """Reason when a count exceeds limit."""
    if limit is None:
        return None
    return pl.when(value > limit).then(joined(f"{name} ", value, f" > {limit}"))


def count_below(name: str, value: pl.Expr, limit: int | None) -> pl.Expr | None:
    """Reason when a count is under limit."""
    if limit is None:
        return None
    return pl.when(value < limit).then(joined(f"{name} ", value, f" < {limit}"))


class Length(RuleConfig):
    """Bounds on characters (whitespace excluded) and words (a CJK character counts as a word)."""

    step: Literal["length"] = "length"
    min_chars: int | None = Field(default=5, ge=0)
    max_chars: int | None = Field(default=100_000, ge=1)
    min_words: int | None = Field(default=None, ge=0)
    max_words: int | None = Field(default=None, ge=1)

    def reason(self, text: pl.Expr) -> pl.Expr:
        chars = visible_chars(text)
        words = text.str.count_matches(WORD)
        return first_reason([
            count_below("chars", chars, self.min_chars),
            count_above("chars", chars, self.max_chars),
            count_below("words", words, self.min_words),
            count_above("words", words, self.max_words),
        ])


class Html(RuleConfig):
    """Markup left over from scraping: share of characters inside HTML tags and entities."""

    step: Literal["html"] = "html"
    max_tag_share: float | None = Field(default=0.2, ge=0, le=1)
    max_entity_share: float | None = Field(default=0.1, ge=0, le=1)

    def reason(self, text: pl.Expr) -> pl.Expr:
        chars = visible_chars(text)
        return first_reason([
            above("html_tag_share", share(covered_chars(text, HTML_TAG), chars), self.max_tag_share),
            above("html_entity_share", share(covered_chars(text, HTML_ENTITY), chars), self.max_entity_share),
        ])


class Repetition(RuleConfig):
    """Gopher-style repetition (Rae et al. 2021): duplicate lines, the top n-gram's character share, and the
    share of characters in duplicated n-grams (see `repetition.repetition_measures`, one numpy pass a batch).
    Word n-grams are over runs of letters and digits outside CJK text; Chinese repetition shows in lines,
    floods and distinct characters.
    """

    step: Literal["repetition"] = "repetition"
    max_dup_line_frac: float | None = Field(default=0.30, ge=0, le=1)
    max_dup_line_char_frac: float | None = Field(default=0.20, ge=0, le=1)
    max_top_ngram_share: dict[int, float] = Field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    max_dup_ngram_share: dict[int, float] = Field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )

    @model_validator(mode="after")
    def _sizes(self) -> Repetition:
        for size in (*self.max_top_ngram_share, *self.max_dup_ngram_share):
            if size < 1:
                raise ValueError(f"n-gram size must be >= 1, got {size}")
        return self

    def _measures(self) -> list[str]:
        return ["dup_line_frac", "dup_line_char_frac",
                *(f"top_{n}gram_share" for n in sorted(self.max_top_ngram_share)),
                *(f"dup_{n}gram_share" for n in sorted(self.max_dup_ngram_share))]

    def scratch(self, text: pl.Expr) -> pl.Expr:
        measure = partial(repetition_measures, top_sizes=sorted(self.max_top_ngram_share),
                          dup_sizes=sorted(self.max_dup_ngram_share))
        return text.map_batches(lambda texts: measure(texts).to_struct(texts.name),
                                return_dtype=pl.Struct(dict.fromkeys(self._measures(), pl.Float64)))

    def reason(self, text: pl.Expr) -> pl.Expr:
        value = pl.col(SCRATCH).struct.field
        checks = [
            above("dup_line_frac", value("dup_line_frac"), self.max_dup_line_frac),
            above("dup_line_char_frac", value("dup_line_char_frac"), self.max_dup_line_char_frac),
        ]
        for n, limit in sorted(self.max_top_ngram_share.items()):
            checks.append(above(f"top_{n}gram_share", value(f"top_{n}gram_share"), limit))
        for n, limit in sorted(self.max_dup_ngram_share.items()):
            checks.append(above(f"dup_{n}gram_share", value(f"dup_{n}gram_share"), limit))
        return first_reason(checks)


class _Share(RuleConfig):
    """Share of visible characters matched by one pattern, bounded above by `max`."""

    pattern: ClassVar[str]
    max: float

    def reason(self, text: pl.Expr) -> pl.Expr:
        value = share(covered_chars(text, self.pattern), visible_chars(text))
        return first_reason([above(self.step, value, self.max)])


class UrlShare(_Share):
    """Link dumps: share of characters inside URLs."""

    step: Literal["url_share"] = "url_share"
    max: float = Field(default=0.3, ge=0, le=1)
    pattern = URL


class HashtagShare(_Share):
    """Hashtag spam: share of characters inside hashtags (#tag and #话题#)."""

    step: Literal["hashtag_share"] = "hashtag_share"
    max: float = Field(default=0.5, ge=0, le=1)
    pattern = HASHTAG


class MentionShare(_Share):
    """Mention chains: share of characters inside @mentions."""

    step: Literal["mention_share"] = "mention_share"
    max: float = Field(default=0.5, ge=0, le=1)
    pattern = MENTION


class EmojiShare(_Share):
    """Emoji floods: share of emoji characters (with their modifiers and joiners)."""

    step: Literal["emoji_share"] = "emoji_share"
    max: float = Field(default=0.5, ge=0, le=1)
    pattern = EMOJI


class SymbolShare(_Share):
    """Punctuation and symbol noise (emoji excluded): share of such characters."""

    step: Literal["symbol_share"] = "symbol_share"
    max: float = Field(default=0.4, ge=0, le=1)
    pattern = SYMBOL


class StickerShare(_Share):
    """Sticker-code posts: share of characters inside `[xx R]`-style sticker codes."""

    step: Literal["sticker_share"] = "sticker_share"
    max: float = Field(default=0.5, ge=0, le=1)
    pattern = STICKER


class CjkShare(RuleConfig):
    """Chinese sources should be mostly Chinese: minimum share of CJK characters.

    With `lang_column`, only rows whose value there is in `lang_values` are checked; others pass.
    """

    step: Literal["cjk_share"] = "cjk_share"
    min: float = Field(default=0.3, ge=0, le=1)
    lang_column: str | None = None
    lang_values: list[str] = Field(default_factory=lambda: ["zh"])

    def reason(self, text: pl.Expr) -> pl.Expr:
        value = share(text.str.count_matches(rf"[{CJK}]"), visible_chars(text))
        check = below("cjk_share", value, self.min)
        if self.lang_column is None:
            return check
        return pl.when(pl.col(self.lang_column).is_in(self.lang_values)).then(check)


class BlockWords(RuleConfig):
    """Drop rows containing any listed word or phrase (substring match)."""

    step: Literal["block_words"] = "block_words"
    words: list[str] = Field(min_length=1)
    ignore_case: bool = True

    def reason(self, text: pl.Expr) -> pl.Expr:
        words = [w.lower() for w in self.words] if self.ignore_case else self.words
        haystack = text.str.to_lowercase() if self.ignore_case else text
        hit = haystack.str.extract_many(words).list.first()
        return pl.when(hit.is_not_null()).then(joined("block word '", hit, "'"))


class DistinctChars(RuleConfig):
    """Too few different characters to be language ("....", "aaaa bbbb"); whitespace does not count."""

    step: Literal["distinct_chars"] = "distinct_chars"
    min: int = Field(default=4, ge=1)

    def scratch(self, text: pl.Expr) -> pl.Expr:
        return text.map_batches(distinct_characters, return_dtype=pl.Int64)

    def reason(self, text: pl.Expr) -> pl.Expr:
        return first_reason([count_below("distinct_chars", pl.col(SCRATCH), self.min)])


class CharFlood(RuleConfig):
    """Repeated-character floods ("哈哈哈哈哈哈哈哈", "!!!!!!!!"): share of visible characters in runs of one
    character at least `min_run` long (whitespace ignored, so "哈 哈 哈" is one run)."""

    step: Literal["char_flood"] = "char_flood"
    min_run: int = Field(default=6, ge=2)
    max_share: float = Field(default=0.5, ge=0, le=1)

    def scratch(self, text: pl.Expr) -> pl.Expr:
        return text.map_batches(partial(flood_share, min_run=self.min_run), return_dtype=pl.Float64)

    def reason(self, text: pl.Expr) -> pl.Expr:
        return first_reason([above(f"char_flood(run>={self.min_run})", pl.col(SCRATCH), self.max_share)])


class TagsOnly(RuleConfig):
    """Posts that are only hashtags, mentions, links, stickers, emoji and punctuation: fewer than
    `min_content_chars` characters remain once those are removed."""

    step: Literal["tags_only"] = "tags_only"
    min_content_chars: int = Field(default=2, ge=1)

    def reason(self, text: pl.Expr) -> pl.Expr:
        rest = text
        for pattern in (URL, HASHTAG, MENTION, STICKER, EMOJI, SYMBOL):
            rest = rest.str.replace_all(pattern, "")
        content = visible_chars(rest)
        return pl.when(content < self.min_content_chars).then(
            joined("content_chars ", content, f" < {self.min_content_chars} (only tags, mentions, links, emoji)")
        )


RULES: tuple[type[RuleConfig], ...] = (
    Length, Html, Repetition, UrlShare, HashtagShare, MentionShare, EmojiShare, SymbolShare, StickerShare,
    CjkShare, BlockWords, DistinctChars, CharFlood, TagsOnly,
)
