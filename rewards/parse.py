"""Output parsers: a completion, or the rendered gold target, becomes a value of the spec's output format.

The gold answer goes through exactly the parser the completion does, so a gold target that does not parse (or
does not score full marks) is caught by the self-check instead of silently capping a task's reward.
"""

from __future__ import annotations

import ast
import json
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jsonschema
import regex

from snsdata.rewards.normalize import REGEX_TIMEOUT_S, TEXT_LEVEL, chain, clean_answer, strip_think
from snsdata.spec.models import Output
from snsdata.spec.reward import Extraction

MAX_LITERAL_CHARS = 100_000
"""Python-literal fallback (`['a', 'b']`) only below this size: `ast.literal_eval` is not linear on hostile input."""
MAX_SPANS = 64
"""Bracket spans tried per text; garbage full of brackets cannot make parsing quadratic."""

_STRUCT = regex.compile(r"[\[\]{}\"'\\]")
# The opener's info string holds no backtick (as in CommonMark) and its runs are possessive, so a run of backticks
# or a long opener line is scanned once, not once per starting point (that was quadratic).
_FENCE = regex.compile(r"```[ \t]*+([\w+#.-]*+)[^\n`]*+\n(.*?)(?:```|\Z)", regex.DOTALL)
_BULLET = regex.compile(r"^\s*(?:[-*•·]|\d{1,3}[.)、])\s+")
_QUOTES = "\"'“”‘’「」『』`"
_BOXED = regex.compile(r"\\boxed\{([^{}]*)\}")
_HASHES = regex.compile(r"####\s*([^\n]+)")
_NUMBER = regex.compile(r"[-+]?\d++/\d++(?!\.\d)|[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:[eE][-+]?\d+)?|[-+]?\.\d+")
_FRACTION = regex.compile(r"^([-+]?\d+)\s*/\s*(\d+)$")
_CLOSERS = {"]": "[", "}": "{"}


@dataclass(frozen=True, slots=True)
class Parsed:
    """A parsed answer: `value` in the output format's shape (None when nothing usable), `ok` if it parsed."""

    value: Any
    ok: bool


def bracket_spans(text: str, limit: int = MAX_SPANS) -> list[str]:
    """Top-level `[...]`/`{...}` substrings, brackets inside quoted strings ignored (quotes only count inside a
    span, so apostrophes in prose do not derail the scan)."""
    spans: list[str] = []
    stack: list[str] = []
    start = 0
    quote: str | None = None
    skip_at = -1
    for match in _STRUCT.finditer(text):
        pos, ch = match.start(), match.group()
        if pos == skip_at:
            continue
        if quote:
            if ch == "\\":
                skip_at = pos + 1
            elif ch == quote:
                quote = None
            continue
        if ch in "[{":
            if not stack:
                start = pos
            stack.append(ch)
        elif ch in "]}":
            if stack and stack[-1] == _CLOSERS[ch]:
                stack.pop()
                if not stack:
                    spans.append(text[start: pos + 1])
                    if len(spans) >= limit:
                        break
            else:
                stack.clear()
        elif stack and ch in "\"'":
            quote = ch
    return spans


def _decode(text: str) -> tuple[Any, bool]:
    """JSON, else a Python literal (SNS-Bench writes `['a', 'b']`)."""
    try:
        return json.loads(text), True
    except (ValueError, RecursionError):
        pass
    if len(text) <= MAX_LITERAL_CHARS:
        try:
            return ast.literal_eval(text), True
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            pass
    return None, False


def find_json(text: str, want: Callable[[Any], bool] = lambda v: isinstance(v, dict | list)) -> tuple[Any, bool]:
    """The answer's JSON value: the whole text, else a fenced block, else the last bracket span that decodes to a
    value accepted by `want` (explanations come first, answers last)."""
    stripped = text.strip()
    if stripped[:1] in ("[", "{"):
        value, ok = _decode(stripped)
        if ok and want(value):
            return value, True
    for fence in _FENCE.finditer(text):
        value, ok = _decode(fence.group(2).strip())
        if ok and want(value):
            return value, True
    for span in reversed(bracket_spans(text)):
        value, ok = _decode(span)
        if ok and want(value):
            return value, True
    return None, False


def extract_code(text: str) -> str:
    """Code from a completion: the first ```python fence, else the first fence of any language, else the text."""
    fences = list(_FENCE.finditer(text))
    for fence in fences:
        if fence.group(1).lower() in ("python", "py", "python3"):
            return fence.group(2)
    return fences[0].group(2) if fences else text


def tag_bodies(text: str, tag: str, allow_empty: bool = True) -> list[str]:
    """What `findall(r"<tag>(.*?)</tag>", DOTALL)` returns (`.+?` without `allow_empty`), in one linear pass: the
    regex rescans the rest of the text from every opening tag that has no closing tag after it."""
    name = tag.strip("<>")
    opening, closing = f"<{name}>", f"</{name}>"
    bodies = []
    at = text.find(opening)
    while at >= 0:
        start = at + len(opening)
        end = text.find(closing, start if allow_empty else start + 1)
        if end < 0:  # no later opening tag has a closing tag after it either
            break
        bodies.append(text[start:end])
        at = text.find(opening, end + len(closing))
    return bodies


def _fraction_value(text: str) -> float | None:
    fraction = _FRACTION.match(text)
    if not fraction:
        return None
    denominator = int(fraction.group(2))
    return int(fraction.group(1)) / denominator if denominator else None


def parse_number(text: str) -> float | None:
    """A number: inside `\\boxed{}`, after `####`, the whole text, or else the last number (or fraction) in the
    text; trailing punctuation and wrappers are the shared answer normaliser's ("3/4。" is 3/4)."""
    for pattern in (_BOXED, _HASHES):
        hits = pattern.findall(text)
        if hits:
            text = hits[-1]
            break
    cleaned = clean_answer(text).replace("−", "-").replace(",", "").rstrip("%").strip()
    if _FRACTION.match(cleaned):
        return _fraction_value(cleaned)
    try:
        return _finite(float(cleaned))
    except ValueError:
        pass
    numbers = _NUMBER.findall(text.replace("−", "-"))
    if not numbers:
        return None
    last = numbers[-1].replace(",", "")
    if "/" in last:
        return _fraction_value(last)
    try:
        return _finite(float(last))
    except ValueError:
        return None


def _finite(value: float) -> float | None:
    return value if value == value and value not in (float("inf"), float("-inf")) else None


@lru_cache(maxsize=64)
def _separators(separator: str) -> regex.Pattern[str]:
    family = {",": [",", "，", "、"], ";": [";", "；"], "|": ["|", "｜"]}.get(separator, [separator])
    return regex.compile("|".join(regex.escape(s) for s in family))


def split_items(text: str, separator: str) -> list[str]:
    """A delimited list: split on the separator (and its fullwidth forms), or on lines when there is one item;
    bullets and surrounding quotes are dropped, as are empty items."""
    parts = _separators(separator).split(text)
    if len(parts) == 1 and "\n" in text:
        parts = text.splitlines()
    items = (_BULLET.sub("", part).strip().strip(_QUOTES).strip() for part in parts)
    return [item for item in items if item]


def parse_list(text: str, separator: str) -> tuple[list[Any], bool]:
    """A list answer written as JSON/Python (`["a", "b"]`, `['a']`, `[]`) or delimited (`a, b`).

    A text that opens a bracket but never decodes is still split leniently and reported as a parse failure.
    """
    stripped = text.strip()
    if not stripped:
        return [], False
    if "[" in stripped:
        value, ok = find_json(stripped, lambda v: isinstance(v, list | tuple))
        if ok:
            return list(value), True
        if stripped.startswith("["):
            return split_items(stripped.strip("[]"), separator), False
    return split_items(stripped, separator), True


def parse_candidates(value: Any, separator: str) -> list[str]:
    """A record's candidate labels: a real list, a JSON/Python-list string, or a delimited string."""
    if value is None:
        return []
    if isinstance(value, list | tuple):
        return [str(v).strip() for v in value if str(v).strip()]
    text = str(value).strip()
    if text.startswith("["):
        decoded, ok = _decode(text)
        if ok and isinstance(decoded, list | tuple):
            return [str(v).strip() for v in decoded if str(v).strip()]
    sep = separator if separator in text else ","
    return split_items(text, sep)


_SPAN_TEXT_KEYS = ("text", "span", "entity", "value", "name", "mention")
_SPAN_TYPE_KEYS = ("type", "label", "category", "entity_type")


ANSWER_FORMATS = ("label", "labels", "spans")
"""Formats read by the shared answer normaliser whatever a spec declares: think blocks, a leading "The answer
is" / "答案是", markdown emphasis, quotes and trailing punctuation never change a label or a list item."""
_SHARED_TEXT = ("strip_answer_prefix", "strip_markdown")


@lru_cache(maxsize=4096)
def _label_finder(keys: tuple[str, ...]) -> regex.Pattern[str]:
    """One alternation finding any of the labels as whole tokens, longest first (so "not-offensive" is found
    before, and instead of, the "offensive" inside it). A label edge that is a letter or digit (Latin or CJK)
    must not touch another one: Chinese has no spaces, so "冒犯" inside "这是冒犯内容" is not a token, while
    "冒犯" on its own line, after "答案是" or in quotes is."""
    pieces = []
    for key in sorted(keys, key=lambda k: (-len(k), k)):
        left = "" if not key[0].isalnum() else r"(?<![\p{L}\p{N}])"
        right = "" if not key[-1].isalnum() else r"(?![\p{L}\p{N}])"
        pieces.append(f"{left}{regex.escape(key)}{right}")
    return regex.compile("|".join(pieces))


class OutputParser:
    """Parses completions and gold targets of one spec with one reward's normalisers, aliases and extraction.

    Pipeline: `strip_think` (if declared; always for label and list formats) -> declared extraction regex -> the
    other structure-preserving normalisers on the whole text (for label and list formats always the answer
    prefix and markdown too) -> the format's parser -> every declared normaliser on each atom (label, list item,
    span, JSON string leaf, the text itself), the shared `clean_answer` for label and list atoms, case folding
    when the spec ignores case -> aliases.
    """

    def __init__(
        self,
        output: Output,
        normalize: Sequence[str],
        aliases: Mapping[str, Sequence[str]] | None = None,
        extract: Extraction | None = None,
    ):
        self.output = output
        self.format = output.format
        shared = self.format in ANSWER_FORMATS
        self._think = "strip_think" in normalize or shared
        text_steps = [n for n in normalize if n in TEXT_LEVEL and n != "strip_think"]
        if shared:
            text_steps = [*_SHARED_TEXT, *(n for n in text_steps if n not in _SHARED_TEXT)]
        self._text_level = chain(text_steps)
        atom_steps = list(normalize) + ([] if output.case_sensitive else ["casefold"])
        declared = chain(atom_steps)
        self._atom = (lambda text: clean_answer(declared(clean_answer(text)))) if shared else declared
        self._aliases = {self._atom(alias): self._atom(canonical)
                         for canonical, names in (aliases or {}).items() for alias in names}
        self._extract = regex.compile(extract.pattern) if extract else None
        self._extract_group = extract.group if extract else 1
        self._extract_last = bool(extract and extract.which == "last")
        self._labels = {self.key(label) for label in output.labels} if output.labels else None
        self._schema = (jsonschema.validators.validator_for(output.json_schema)(output.json_schema)
                        if output.json_schema else None)

    def key(self, text: str) -> str:
        """The comparison form of one atom: normalised, case-folded when the output is case-insensitive, aliased."""
        atom = self._atom(text).strip()
        return self._aliases.get(atom, atom)

    def allowed(self, record: Mapping[str, Any]) -> set[str] | None:
        """Keys of the labels a record allows: its candidates field, else the spec's labels, else any."""
        field = self.output.candidates_field
        if field and record.get(field) is not None:
            return {self.key(c) for c in parse_candidates(record[field], self.output.separator)}
        return self._labels

    def spellings(self, record: Mapping[str, Any], gold_text: str | None) -> dict[str, str]:
        """Key -> the record's own spelling of it: its labels (candidates, else the spec's), then, over them,
        the items of its gold answer as written there."""
        field = self.output.candidates_field
        if field and record.get(field) is not None:
            labels = parse_candidates(record[field], self.output.separator)
        else:
            labels = list(self.output.labels or [])
        out = {self.key(label): label for label in labels}
        if gold_text is not None and self.format in ("labels", "spans"):
            prepared, found = self.prepare(gold_text)
            items, _ = parse_list(prepared, self.output.separator) if found else ([], False)
            out |= {self.key(str(item)): str(item).strip() for item in items if not isinstance(item, dict)}
        return out

    def prepare(self, text: str) -> tuple[str, bool]:
        """The answer text before format parsing; False when a declared extraction finds nothing."""
        if self._think:
            text = strip_think(text)
        if self._extract is not None:
            try:
                if self._extract_last:
                    last = deque(self._extract.finditer(text, timeout=REGEX_TIMEOUT_S), maxlen=1)
                    match = last[0] if last else None
                else:
                    match = self._extract.search(text, timeout=REGEX_TIMEOUT_S)
            except TimeoutError:
                match = None
            if match is None:
                return "", False
            text = match.group(self._extract_group) or ""
        if self.format == "code":
            return text, True
        return self._text_level(text), True

    def parse(self, text: str, allowed: set[str] | None = None) -> Parsed:
        """Parse one answer; `allowed` (from `allowed(record)`) restricts a label answer to those keys."""
        prepared, found = self.prepare(text)
        if not found:
            return Parsed("" if self.format in ("label", "text") else None, False)
        return getattr(self, f"_parse_{self.format}")(prepared, allowed)

    def labels_named(self, text: str, allowed: set[str]) -> list[str]:
        """The distinct allowed labels (canonical keys) an answer names as whole tokens, aliases included,
        longest first; the text is normalised as an atom is, so case and declared normalisers agree."""
        names = {label: label for label in allowed if label}
        names |= {alias: canonical for alias, canonical in self._aliases.items() if canonical in allowed and alias}
        if not names:
            return []
        found = _label_finder(tuple(names)).findall(self._atom(text))
        return list(dict.fromkeys(names[match] for match in found))

    def _parse_label(self, text: str, allowed: set[str] | None) -> Parsed:
        """One label: the whole answer, else the one allowed label it names. An answer naming several labels
        ("Yes, No", "hate, not-hate") is wrong whatever it names first."""
        key = self.key(text)
        if allowed is None:
            return Parsed(key, bool(key))
        if key in allowed:
            return Parsed(key, True)
        named = self.labels_named(text, allowed)
        if len(named) == 1:
            return Parsed(named[0], True)
        return Parsed(key, False)

    def _parse_labels(self, text: str, allowed: set[str] | None) -> Parsed:
        items, ok = parse_list(text, self.output.separator)
        keys = [self.key(str(item)) for item in items if not isinstance(item, dict)]
        return Parsed(list(dict.fromkeys(k for k in keys if k)), ok)

    def _parse_spans(self, text: str, allowed: set[str] | None) -> Parsed:
        items, ok = parse_list(text, self.output.separator)
        spans: list[Any] = []
        for item in items:
            if isinstance(item, dict):
                span = next((item[k] for k in _SPAN_TEXT_KEYS if k in item), None)
                kind = next((item[k] for k in _SPAN_TYPE_KEYS if k in item), None)
                if span is None:
                    continue
                spans.append((self.key(str(span)), self.key(str(kind)) if kind is not None else ""))
            else:
                spans.append(self.key(str(item)))
        spans = [s for s in spans if (s[0] if isinstance(s, tuple) else s)]
        return Parsed(list(dict.fromkeys(spans)), ok)

    def _parse_json(self, text: str, allowed: set[str] | None) -> Parsed:
        value, ok = find_json(text)
        if not ok:
            return Parsed(None, False)
        if self._schema is not None and not self._schema.is_valid(value):
            return Parsed(None, False)
        return Parsed(self._normalise_leaves(value), True)

    def _normalise_leaves(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.key(value)
        if isinstance(value, dict):
            return {str(k): self._normalise_leaves(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self._normalise_leaves(v) for v in value]
        return value

    def _parse_text(self, text: str, allowed: set[str] | None) -> Parsed:
        key = self.key(text)
        return Parsed(key, bool(key))

    def _parse_code(self, text: str, allowed: set[str] | None) -> Parsed:
        code = extract_code(text)
        return Parsed(code, bool(code.strip()))

    def _parse_number(self, text: str, allowed: set[str] | None) -> Parsed:
        value = parse_number(text)
        return Parsed(value, value is not None)
