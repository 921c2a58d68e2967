"""Text handling for the SNS-Bench evaluators.

Two families live here. The `official_*`/`postprocess_*` functions reproduce the benchmark's OpenCompass
postprocessors exactly, quirks included (`|` alternation that splits at the bare substring `end`, cuts at `.`
and `,`, no think-tag handling). The `fixed_*` helpers are what `compat="fixed"` uses instead: think blocks
removed, cuts only at line ends and literal end-of-response tokens, "Answer:" chatter dropped, lists parsed
as a whole before any bracket search.
"""

from __future__ import annotations

import ast
import re
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from snsdata.rewards.normalize import strip_think as strip_reasoning

# --- official postprocessors -------------------------------------------------------------------------

# Family A: the regex alternation `\n|\.|,|<|end|>|...` splits at the bare substring "end" anywhere.
_CUT_A = re.compile(r"\n|\.|,|<|end|>|endofresponse|im_end")
# Family B: the same without the bare `end`.
_CUT_B = re.compile(r"\n|\.|,|<|>|endofresponse")
# Family C (and QueryGen's truncation): newline, `<`, `>` or `endofresponse`.
_CUT_C = re.compile(r"\n|<|>|endofresponse")


def postprocess_a(text: str) -> str:
    """Taxonomy / Hashtag-single postprocessor: drop "Answer:", cut at the first A separator."""
    return _CUT_A.split(text.replace("Answer:", "").strip(), maxsplit=1)[0].strip()


def postprocess_b(text: str) -> str:
    """Gender / QueryCorr-explain postprocessor: like A but without the bare `end` cut."""
    return _CUT_B.split(text.replace("Answer:", "").strip(), maxsplit=1)[0].strip()


def postprocess_c(text: str) -> list[str]:
    """NER / Hashtag-multiple postprocessor: comma list; empties dropped before stripping, so " " -> ''."""
    head = _CUT_C.split(text.replace("Answer:", "").strip(), maxsplit=1)[0]
    return [piece.strip() for piece in head.split(",") if piece != ""]


def querygen_truncate(text: str) -> str:
    """The part of a QueryGen prediction that the official evaluator embeds."""
    return _CUT_C.split(text.strip(), maxsplit=1)[0]


def general_postprocess(text: str) -> str:
    """OpenCompass `general_postprocess`: cut at newline/`.`/`,`, drop punctuation and articles."""
    head = re.split(r"[\n.,]", text, maxsplit=1)[0]
    head = re.sub(r"[^\w\s]", "", head)
    head = re.sub(r"\b(a|an|the)\b", "", head, flags=re.IGNORECASE)
    return re.sub(r"\s+", " ", head).strip()


_FIRST_BRACKET_SPAN = re.compile(r"\[[^\[\]]*\]", re.DOTALL)


def first_bracket_span(text: str) -> str:
    """The official CHLW / MRC-simple search: the first `[...]` with no bracket inside, else the whole text."""
    match = _FIRST_BRACKET_SPAN.search(text)
    return match.group(0) if match else text


def np_mean(values: Sequence[float] | np.ndarray) -> float:
    """Upstream's `np.mean` (0 for no values): its pairwise summation differs from `sum` in the last bits from
    eight values on, and official numbers are reproduced to the last bit."""
    return float(np.mean(values)) if len(values) else 0.0


def safe_eval(text: str) -> Any:
    """Stand-in for the official `eval`: `ast.literal_eval`, which agrees with eval on list-of-string
    literals and refuses (raises) on anything that would need code execution."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # invalid escape sequences in model output
        return ast.literal_eval(text)


# --- fixed-mode cleaning -----------------------------------------------------------------------------

# Literal end-of-response tokens (`<|im_end|>`, `<|endofresponse|>`, `</s>`, ...), never bare words.
_END_TOKEN = re.compile(r"<\|[^|<>\s]{1,40}\|>|</s>|<eos>", re.IGNORECASE)
_CHATTER = re.compile(
    r"^[*#\s]*(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*+\**\s*[:：](?:\s*\*\*(?=\s))?\s*"
    r"|^[*#\s]*(?:the\s+)?(?:final\s+)?answer\s+is\b\s*",
    re.IGNORECASE,
)
_WRAPPERS = (("**", "**"), ("*", "*"), ("`", "`"), ('"', '"'), ("'", "'"), ("“", "”"), ("「", "」"))


def strip_think(text: str) -> str:
    """The reward normaliser's think removal (one definition for RL and fixed-mode evaluation), trimmed."""
    return strip_reasoning(text).strip()


def cut_end_token(text: str) -> str:
    """Keep the text before the first literal end-of-response token."""
    return _END_TOKEN.split(text, maxsplit=1)[0]


def drop_chatter(text: str) -> str:
    """Remove a leading "Answer:" / "The answer is" label (markdown bold tolerated)."""
    return _CHATTER.sub("", text.strip(), count=1).strip()


def unwrap(text: str) -> str:
    """Remove markdown emphasis or quotes wrapped around the whole answer."""
    text = text.strip()
    changed = True
    while changed:
        changed = False
        for left, right in _WRAPPERS:
            if len(text) > len(left) + len(right) and text.startswith(left) and text.endswith(right):
                text = text[len(left) : -len(right)].strip()
                changed = True
    return text


def clean_response(text: str) -> str:
    """Think blocks, end tokens and answer chatter removed; the rest of the response, stripped."""
    return drop_chatter(cut_end_token(strip_think(text)))


def answer_line(text: str) -> str:
    """The first line of the cleaned response, unwrapped: the answer of a one-label task."""
    return unwrap(clean_response(text).split("\n", 1)[0])


# The official A/B cut characters (plus CJK equivalents): allowed right after a label, never inside it.
_LABEL_FOLLOWERS = frozenset(".,<>。，")


def label_matches(prediction: str, gold: str, casefold: bool = False) -> bool:
    """Fixed-mode label match: the answer line equals the gold, or starts with it and continues with one of
    the separators the official postprocessor cuts at ("Food." / "Yes, because ..." stay right)."""
    line, gold = answer_line(prediction), gold.strip()
    if casefold:
        line, gold = line.casefold(), gold.casefold()
    if not gold or line == gold:
        return line == gold
    return line.startswith(gold) and line[len(gold)] in _LABEL_FOLLOWERS


_FENCE_OPEN = re.compile(r"^```[a-zA-Z]*\s*")
_FENCE_CLOSE = re.compile(r"(?<!\s)\s*```$")  # starts where a whitespace run starts: scanned once, not per space
_MAX_LIST_TRIES = 400
_LIST_BUDGET = 4
_LIST_ALLOWANCE = 8192


def strip_fence(text: str) -> str:
    """Remove one markdown code fence around the whole text."""
    return _FENCE_CLOSE.sub("", _FENCE_OPEN.sub("", text.strip())).strip()


def parse_list_literal(text: str) -> list[Any] | None:
    """The first complete Python/JSON list literal in the text, trying the widest span from each `[` first,
    so brackets inside the items ("[crying R]") are never mistaken for the list. None when there is none.

    The search gives up after _MAX_LIST_TRIES spans or once it has handed _LIST_BUDGET characters per character
    of text to the parser (a wide span it can no longer afford is passed over): garbage full of brackets costs
    linear time instead of hundreds of full-text parses."""
    text = strip_fence(text)
    opens = [i for i, ch in enumerate(text) if ch == "["]
    closes = [i for i, ch in enumerate(text) if ch == "]"]
    tries = 0
    budget = _LIST_BUDGET * len(text) + _LIST_ALLOWANCE
    for start in opens:
        for end in reversed(closes):
            if end < start or tries >= _MAX_LIST_TRIES:
                break
            tries += 1
            if end + 1 - start > budget:
                continue
            budget -= end + 1 - start
            try:
                value = safe_eval(text[start : end + 1])
            except Exception:  # any refusal of literal_eval (syntax, names, recursion) means "not this span"
                continue
            if isinstance(value, list):
                return value
    return None


_ITEM_SPLIT = re.compile(r"[,，;；\n]")
_BULLET = re.compile(r"^(?:[-*•·]|\d{1,2}[.)、])\s+")


def fixed_items(text: str) -> list[str]:
    """Fixed-mode item list (NER, Hashtag-multiple): a list literal if the response is one, otherwise items
    separated by commas, semicolons or lines; bullets, wrappers and empty items dropped."""
    body = clean_response(text)
    parsed = parse_list_literal(body) if body.startswith(("[", "```")) else None
    is_list = parsed is not None and all(isinstance(item, str) for item in parsed)
    pieces = parsed if is_list else _ITEM_SPLIT.split(body)
    items = (unwrap(_BULLET.sub("", piece.strip())) for piece in pieces)
    return [item for item in items if item]
