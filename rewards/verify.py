"""Answer equivalence beyond string equality: exact maths values, and a generator's own verifier.

`math_key` reads an answer as an exact rational when it is a number, a fraction, a percentage or a LaTeX
fraction (`7/69`, `$\\dfrac{7}{69}$`, `\\boxed{0.5}`, `1,234`), else as normalised LaTeX, so "7/69" and
`$\\dfrac{7}{69}$` are the same answer. It is linear-time string work: math-verify was tried and rejected here
because its sympy parsing hangs on answers such as `$9^{9^{9^{9}}}$` (over a minute), and off the main thread
(TRL's reward workers) it cannot use its signal-based timeout.

`reasoning_gym_correct` asks the reasoning-gym dataset that generated a record whether an answer is right, with
the record's metadata (fraction simplification wants lowest terms: "14/138" is not "7/69" there). Its partial
credits for wrong answers (0.01 for garbage, 0.05 for any text) are not paid: only full marks count.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

import regex

MAX_ANSWER_CHARS = 1000
"""Longer answers are compared as strings only (no value parsing)."""

_BOXED = regex.compile(r"\\boxed\s*\{((?:[^{}]|\{[^{}]*\})*)\}")
_LATEX_NOISE = regex.compile(r"\\left|\\right|\\[,;:! ]|\\displaystyle|\s+")
_TEXT = regex.compile(r"\\(?:text|mathrm|textbf|mbox)\s*\{([^{}]*)\}")
_FRAC = regex.compile(r"^(-?)\\[dt]?frac\{(-?\d+)\}\{(-?\d+)\}$")
_SLASH = regex.compile(r"^(-?\d+)/(-?\d+)$")
_DECIMAL = regex.compile(r"^[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d{1,3})?$")
_THOUSANDS = regex.compile(r"^[-+]?\d{1,3}(?:,\d{3})+(?:\.\d+)?$")


def math_key(text: str) -> Fraction | str:
    """An answer's comparison form: an exact rational where it reads as a number, else normalised LaTeX."""
    text = text.strip()
    if len(text) > MAX_ANSWER_CHARS:
        return text
    boxed = _BOXED.findall(text)
    if boxed:
        text = boxed[-1]
    text = text.strip().strip("$").strip().rstrip(".。")
    text = _TEXT.sub(r"\1", text)
    text = _LATEX_NOISE.sub("", text).replace("\\dfrac", "\\frac").replace("\\tfrac", "\\frac").replace("−", "-")
    text = text.removesuffix("^\\circ").removesuffix("^{\\circ}")
    percent = text.endswith("%") or text.endswith("\\%")
    body = text.removesuffix("\\%").removesuffix("%")
    value = _rational(body)
    if value is None:
        return text
    return value / 100 if percent else value


def _rational(text: str) -> Fraction | None:
    frac = _FRAC.match(text)
    if frac:
        sign, numerator, denominator = frac.groups()
        if int(denominator) == 0:
            return None
        value = Fraction(int(numerator), int(denominator))
        return -value if sign else value
    slash = _SLASH.match(text)
    if slash:
        return Fraction(int(slash.group(1)), int(slash.group(2))) if int(slash.group(2)) else None
    if _THOUSANDS.match(text):
        text = text.replace(",", "")
    if _DECIMAL.match(text):
        try:
            return Fraction(text)
        except (ValueError, ZeroDivisionError):
            return None
    return None


def math_equal(answer: str, gold: str) -> bool:
    """Whether two answers are the same value (see `math_key`)."""
    return math_key(answer) == math_key(gold)


_SCORERS: dict[str, Any] = {}
_LOCK = threading.Lock()


def _score_fn(name: str) -> Any:
    with _LOCK:
        if name not in _SCORERS:
            import reasoning_gym

            _SCORERS[name] = reasoning_gym.get_score_answer_fn(name)
        return _SCORERS[name]


def reasoning_gym_correct(answer: str, record: Mapping[str, Any]) -> bool | None:
    """Whether the generating dataset's `score_answer` gives the answer full marks; None when the record does
    not say which dataset made it (fields `source_dataset`, `question`, `answer`, `metadata` as JSON)."""
    name = record.get("source_dataset")
    if not isinstance(name, str):
        return None
    metadata = record.get("metadata")
    if isinstance(metadata, str):
        try:
            metadata = json.loads(metadata)
        except ValueError:
            return None
    entry = {"question": record.get("question"), "answer": record.get("answer"), "metadata": metadata or {}}
    if len(answer) > MAX_ANSWER_CHARS:
        return False
    try:
        score = float(_score_fn(name)(answer, entry))
    except Exception:
        return False
    return score >= 1.0 - 1e-9
