"""Text normalisers, completion coercion and tokenisers shared by every reward type.

Normalisers are named in specs (`snsdata.spec.reward.Normalizer`); this module is their only implementation, so
the prediction and the gold answer always go through the same code.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import regex

MAX_CHARS = 200_000
"""Completions are cut to this many characters before parsing and metrics (length checks see the full text):
a runaway generation must not stall a training step."""

REGEX_TIMEOUT_S = 0.5
"""Budget of one declared regex search; a search that exceeds it counts as no match."""

_THINK_CLOSE = regex.compile(r"</think\s*>", regex.IGNORECASE)
_THINK_OPEN = regex.compile(r"<think\s*>", regex.IGNORECASE)
_ANSWER_PREFIX = regex.compile(
    r"^\s*(?:(?:the\s+)?(?:final\s+|correct\s+)?answer\s*(?:is\b\s*[:：]?|[:：])|output\s*[:：]|"
    r"(?:最终|正确)?答案\s*(?:[是为]\s*[:：]?|[:：])|答\s*[:：])\s*",
    regex.IGNORECASE,
)
# Bold text holds no delimiter after a space (which cannot close it), so an unclosed `**` is scanned to the next
# `**`, not to the end of the text (that was quadratic).
_BOLD = regex.compile(r"(\*\*|__)(?=\S)((?:(?!\s\1).)+?)(?<=\S)\1", regex.DOTALL)
_ITALIC = regex.compile(r"(?<![\w*])([*_])(?=\S)([^*_\n]+?)(?<=\S)\1(?![\w*])")
_INLINE_CODE = regex.compile(r"(?<!`)`([^`\n]+)`(?!`)")
_HEADING = regex.compile(r"(?m)^\s{0,3}(?:#{1,6}|>)\s+")
_WHITESPACE = regex.compile(r"\s+")
_PUNCTUATION = regex.compile(r"\p{P}+")
_FULLWIDTH = {cp: cp - 0xFEE0 for cp in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

CJK_CHARS = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
_CJK_SCRIPT = regex.compile(rf"[{CJK_CHARS}\u3000-\u303f\uff00-\uffef]")
_LATIN = regex.compile(r"\p{Latin}")
_CJK_CHAR = regex.compile(rf"[{CJK_CHARS}]")
_AUTO_TOKENS = regex.compile(rf"[{CJK_CHARS}]|[^\s\p{{P}}{CJK_CHARS}]+")
_WORD_TOKENS = regex.compile(rf"[{CJK_CHARS}]|[^\s{CJK_CHARS}]+")


def strip_think(text: str) -> str:
    """Drop reasoning: keep what follows the last `</think>`; an unclosed `<think>` leaves only what precedes it.

    Chat templates that open `<think>` in the prompt leave a completion with only the closing tag, so a lone
    `</think>` is handled the same way.
    """
    closes = list(_THINK_CLOSE.finditer(text))
    if closes:
        return text[closes[-1].end():]
    opened = _THINK_OPEN.search(text)
    return text[: opened.start()] if opened else text


def strip_answer_prefix(text: str) -> str:
    """Remove a leading "Answer:" / "The answer is" / "答案：" so the bare answer is compared."""
    return _ANSWER_PREFIX.sub("", text, count=1)


def strip_markdown(text: str) -> str:
    """Unwrap bold, italic and inline code, and drop heading/quote markers; code fences are left alone."""
    text = _BOLD.sub(r"\2", text)
    text = _ITALIC.sub(r"\2", text)
    text = _INLINE_CODE.sub(r"\1", text)
    return _HEADING.sub("", text)


_TRAILING = ".。!！?？;；:：,，、"
_WRAPPERS = (("**", "**"), ("__", "__"), ("*", "*"), ("_", "_"), ("`", "`"), ('"', '"'), ("'", "'"),
             ("“", "”"), ("‘", "’"), ("「", "」"), ("『", "』"), ("《", "》"))


def clean_answer(text: str) -> str:
    """The shared answer normaliser of one label or list item: surrounding whitespace, trailing punctuation,
    and quotes or markdown emphasis wrapped around the whole answer are removed, repeatedly ("**Yes**.",
    "'Food'", "「是」。" all become the bare answer). Used by every label and list reward and by fixed-mode
    evaluation, on the answer and the gold alike."""
    for _ in range(8):
        before = text
        text = text.strip().rstrip(_TRAILING).strip()
        for left, right in _WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left): -len(right)].strip()
        if text == before:
            break
    return text


def fullwidth_to_halfwidth(text: str) -> str:
    """Fullwidth ASCII forms (Ａ１，！) and the ideographic space become their ASCII counterparts."""
    return text.translate(_FULLWIDTH)


NORMALIZERS: dict[str, Callable[[str], str]] = {
    "strip": str.strip,
    "casefold": str.casefold,
    "whitespace": lambda text: _WHITESPACE.sub(" ", text).strip(),
    "punctuation": lambda text: _PUNCTUATION.sub("", text),
    "strip_think": strip_think,
    "strip_markdown": strip_markdown,
    "strip_answer_prefix": strip_answer_prefix,
    "fullwidth": fullwidth_to_halfwidth,
}

TEXT_LEVEL = ("strip_think", "strip_answer_prefix", "strip_markdown", "fullwidth", "strip")
"""Normalisers that keep the structure of an answer (lists, JSON, tags) and so may run before parsing."""


def chain(names: Iterable[str]) -> Callable[[str], str]:
    """One function applying the named normalisers in order."""
    steps = [NORMALIZERS[name] for name in names]

    def apply(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return apply


def completion_text(value: Any) -> str:
    """Coerce whatever a trainer hands over into the completion string, never raising.

    Strings pass through; a chat-message list yields its assistant contents (text parts of multimodal content
    included); bytes are decoded with replacement; None is empty.
    """
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return _content_text(value.get("content"))
    if isinstance(value, list | tuple):
        messages = [m for m in value if isinstance(m, Mapping)]
        if messages:
            assistant = [m for m in messages if m.get("role", "assistant") == "assistant"] or messages[-1:]
            return "\n".join(_content_text(m.get("content")) for m in assistant)
        return "".join(completion_text(v) for v in value)
    return str(value)


def _content_text(content: Any) -> str:
    if isinstance(content, list):
        return "".join(
            str(part.get("text", "")) if isinstance(part, Mapping) else completion_text(part) for part in content
        )
    return completion_text(content)


def cap(text: str) -> str:
    """The text cut to MAX_CHARS."""
    return text if len(text) <= MAX_CHARS else text[:MAX_CHARS]


def tokenize(text: str, mode: str = "auto") -> list[str]:
    """Tokens for overlap metrics: `auto` (CJK characters one by one, other words whole, punctuation dropped),
    `whitespace` (CJK characters one by one, other runs between spaces whole, punctuation kept) or `char`."""
    if mode == "char":
        return [c for c in text if not c.isspace()]
    pattern = _AUTO_TOKENS if mode == "auto" else _WORD_TOKENS
    return pattern.findall(text)


def count_words(text: str) -> int:
    """Words for length checks: each CJK character counts as one word, other runs between spaces as one."""
    return len(_WORD_TOKENS.findall(text))


def approx_tokens(text: str) -> int:
    """A tokenizer-free length estimate for the overlong penalty: one token per CJK character plus one per four
    other characters (BPE vocabularies of Qwen/Llama average close to this on SNS text)."""
    cjk = len(_CJK_CHAR.findall(text))
    return cjk + math.ceil((len(text) - cjk) / 4)


def has_script(text: str, script: str, *, letters_only: bool = False) -> bool:
    """Whether the text holds a character of the script. `cjk` covers Han, kana and Hangul plus, unless
    `letters_only`, CJK and fullwidth punctuation (an English translation should contain neither)."""
    pattern = _LATIN if script == "latin" else _CJK_CHAR if letters_only else _CJK_SCRIPT
    return pattern.search(text) is not None


_NGRAM_CHARS = {
    None: regex.compile(rf"[\p{{L}}\p{{N}}{CJK_CHARS}]+"),
    "cjk": regex.compile(rf"[{CJK_CHARS}]+"),
    "latin": regex.compile(r"[\p{Latin}\p{N}]+"),
}


def char_ngrams(text: str, n: int, script: str | None = None) -> set[str]:
    """Distinct character n-grams of a text's letters, digits and CJK characters (only those of `script`
    when given), case-folded, with spaces and punctuation left out: one measure of shared content for Chinese
    and English alike."""
    letters = "".join(_NGRAM_CHARS[script].findall(text.casefold()))
    if len(letters) < n:
        return {letters} if letters else set()
    return {letters[i: i + n] for i in range(len(letters) - n + 1)}


def script_share(text: str, script: str) -> float | None:
    """Share of a text's letters (Latin and CJK) that are of `script`; None when it has no such letters."""
    cjk = len(_CJK_CHAR.findall(text))
    latin = len(_LATIN.findall(text))
    total = cjk + latin
    if not total:
        return None
    return (cjk if script == "cjk" else latin) / total


def is_mostly_cjk(texts: Iterable[str]) -> bool:
    """Whether CJK characters outnumber other non-space characters over the texts (chooses BLEU's zh tokenizer)."""
    cjk = other = 0
    for text in texts:
        n = len(_CJK_CHAR.findall(text))
        cjk += n
        other += sum(1 for c in text if not c.isspace()) - n
    return cjk > other
