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
from typing import Any

import jsonschema
import regex

from snsdata.rewards.normalize import REGEX_TIMEOUT_S, count_words, has_script
from snsdata.spec.reward import PatternCheck

Check = Callable[[str, Mapping[str, Any]], float | None]

IFEVAL_UNSUPPORTED = frozenset({"length_constraints:number_sentences", "change_case:capital_word_frequency"})
"""if-verifiable checkers that need NLTK punkt data (absent offline)."""

_FENCED = regex.compile(r"\s*```[\w+-]*+[^\n`]*+\n(.*?)\n?```\s*", regex.DOTALL)  # opener line as parse._FENCE
_IFEVAL_LOCK = threading.Lock()
_IFEVAL: dict[str, Any] = {}


def json_answer(text: str) -> tuple[Any, bool]:
    """The whole answer as JSON, a ```json fence around it allowed."""
    fenced = _FENCED.fullmatch(text)
    body = fenced.group(1) if fenced else text
    try:
        return json.loads(body), True
    except (ValueError, RecursionError):
        return None, False


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
    raise ValueError("a pattern check sets no constraint")
