"""Pattern checks: verifiable format constraints on a completion, each scoring 0-1 (None: does not apply).

IFEval-style instructions go through the `if-verifiable` checkers. Two of them need NLTK's `punkt` data, which
is not installed and cannot be downloaded offline (`length_constraints:number_sentences`,
`change_case:capital_word_frequency`); they and ids the package does not know are skipped, and a record whose
instructions are all skipped gets None. `language:response_language` uses langdetect, seeded here so that a
score is a pure function of the text.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

import jsonschema
import regex

from snsdata.rewards.normalize import (
    REGEX_TIMEOUT_S,
    char_ngrams,
    count_words,
    has_script,
    script_share,
    strip_answer_prefix,
    strip_markdown,
)
from snsdata.spec.reward import ContentKept, EchoCheck, PatternCheck, ScriptShare

Check = Callable[[str, Mapping[str, Any]], float | None]

IFEVAL_UNSUPPORTED = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})
"""if-verifiable checkers that need NLTK punkt data (absent offline)."""

_FENCED = regex.compile(r"\s*```[\w+-]*+[^\n`]*+\n(.*?)\n?```\s*", regex.DOTALL)  # opener line as parse._FENCE
_IFEVAL_LOCK = threading.Lock()
_IFEVAL: dict[str, Any] = {}


def _whole_json(text: str) -> tuple[Any, bool]:
    fenced = _FENCED.fullmatch(text)
    body = fenced.group(1) if fenced else text
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        return None, False


def json_answer(text: str) -> tuple[Any, bool]:
    """The whole answer as JSON, a ```json fence around it allowed, as are the wrappers the shared answer
    normaliser removes ("The answer is {...}.", "**{...}**"); prose around the JSON is not."""
    value, ok = _whole_json(text)
    if ok:
        return value, True
    unwrapped = strip_markdown(strip_answer_prefix(text)).strip().rstrip(".。")
    return _whole_json(unwrapped) if unwrapped != text else (None, False)


def _regex_check(pattern: str, expect: bool) -> Check:
    compiled = regex.compile(pattern)

    def check(text: str, record: Mapping[str, Any]) -> float:
        try:
            found = compiled.search(text, timeout=REGEX_TIMEOUT_S) is not None
        except TimeoutError:
            return 0.0
        return float(found == expect)

    return check


def _schema_check(schema: dict[str, Any]) -> Check:
    validator = jsonschema.validators.validator_for(schema)(schema)

    def check(text: str, record: Mapping[str, Any]) -> float:
        value, ok = json_answer(text)
        return float(ok and validator.is_valid(value))

    return check


def _tags_check(tags: list[str]) -> Check:
    names = [t.strip("<>") for t in tags]

    def check(text: str, record: Mapping[str, Any]) -> float:
        present = 0
        for name in names:
            start = text.find(f"<{name}>")
            present += start >= 0 and text.find(f"</{name}>", start) >= 0
        return present / len(names)

    return check


def _ifeval_registry() -> dict[str, Any]:
    """The IFEval checkers, imported on first use (if-verifiable pulls in `datasets`)."""
    with _IFEVAL_LOCK:
        if not _IFEVAL:
            from if_verifiable.common import evaluate_instructions
            from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT
            from langdetect import DetectorFactory

            DetectorFactory.seed = 0
            _IFEVAL.update(evaluate=evaluate_instructions, registry=INSTRUCTION_DICT)
    return _IFEVAL


def _json_field(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def _ifeval_check(fields: dict[str, str]) -> Check:
    def check(text: str, record: Mapping[str, Any]) -> float | None:
        ids = _json_field(record.get(fields["instruction_ids"]))
        kwargs = _json_field(record.get(fields["kwargs"]))
        if not isinstance(ids, list) or not ids:
            return None
        if not isinstance(kwargs, list) or len(kwargs) != len(ids):
            kwargs = [{}] * len(ids)
        ifeval = _ifeval_registry()
        keep = [i for i, iid in enumerate(ids) if iid in ifeval["registry"] and iid not in IFEVAL_UNSUPPORTED]
        if not keep:
            return None
        prompt = str(record.get(fields["prompt"], "")) if "prompt" in fields else ""
        if not text.strip():
            return 0.0
        _, scores = ifeval["evaluate"](
            response=text,
            instruction_id_list=[ids[i] for i in keep],
            kwargs_list=[{k: v for k, v in (kwargs[i] or {}).items() if v is not None} for i in keep],
            prompt=prompt,
            instruction_registry=ifeval["registry"],
        )
        return float(scores.partial_strict)

    return check


def _field_text(record: Mapping[str, Any], field: str) -> str | None:
    value = record.get(field)
    if value is None:
        return None
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)


@lru_cache(maxsize=4096)
def _field_grams(text: str, n: int, script: str | None) -> frozenset[str]:
    """A record field's n-grams, computed once for the G completions of a GRPO group (they share the record)."""
    return frozenset(char_ngrams(text, n, script))


def _echo_check(rule: EchoCheck) -> Check:
    """1 - how much of the field the answer repeats, beyond the free share (a translation that echoes its
    source scores 0)."""
    def check(text: str, record: Mapping[str, Any]) -> float | None:
        source = _field_text(record, rule.field)
        if source is None:
            return None
        grams = _field_grams(source, rule.n, rule.script)
        if not grams:
            return 1.0
        copied = len(grams & char_ngrams(text, rule.n, rule.script)) / len(grams)
        return 1.0 if copied <= rule.free else max(0.0, (1.0 - copied) / (1.0 - rule.free))

    return check


def _script_check(rule: ScriptShare) -> Check:
    def check(text: str, record: Mapping[str, Any]) -> float:
        share = script_share(text, rule.script)
        return float(share is not None and share >= rule.min)

    return check


def _kept_check(rule: ContentKept) -> Check:
    """Share of the field's n-grams the answer keeps, scaled so that `min` and above score 1."""
    def check(text: str, record: Mapping[str, Any]) -> float | None:
        source = _field_text(record, rule.field)
        if source is None:
            return None
        grams = _field_grams(source, rule.n, None)
        if not grams:
            return 1.0
        return min(1.0, len(grams & char_ngrams(text, rule.n)) / len(grams) / rule.min)

    return check


def build_check(check: PatternCheck) -> Check:
    """The function implementing one declared check (exactly one of its fields is set)."""
    if check.must_match is not None:
        return _regex_check(check.must_match, True)
    if check.must_not_match is not None:
        return _regex_check(check.must_not_match, False)
    if check.valid_json:
        return lambda text, record: float(json_answer(text)[1])
    if check.valid_json is False:
        return lambda text, record: float(not json_answer(text)[1])
    if check.json_schema is not None:
        return _schema_check(check.json_schema)
    if check.required_tags is not None:
        return _tags_check(check.required_tags)
    if check.min_chars is not None:
        low = check.min_chars
        return lambda text, record: float(len(text) >= low)
    if check.max_chars is not None:
        high = check.max_chars
        return lambda text, record: float(len(text) <= high)
    if check.min_words is not None:
        low = check.min_words
        return lambda text, record: float(count_words(text) >= low)
    if check.max_words is not None:
        high = check.max_words
        return lambda text, record: float(count_words(text) <= high)
    if check.forbid_script is not None:
        script = check.forbid_script
        return lambda text, record: float(not has_script(text, script))
    if check.require_script is not None:
        script = check.require_script
        return lambda text, record: float(has_script(text, script, letters_only=True))
    if check.ifeval_from_fields is not None:
        return _ifeval_check(check.ifeval_from_fields)
    if check.echo_of is not None:
        return _echo_check(check.echo_of)
    if check.script_share is not None:
        return _script_check(check.script_share)
    if check.keeps_content is not None:
        return _kept_check(check.keeps_content)
    raise ValueError("a pattern check sets no constraint")
