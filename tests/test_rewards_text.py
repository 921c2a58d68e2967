"""Normalisers, completion coercion, tokenisers and the output parsers of snsdata.rewards."""

from __future__ import annotations

import pytest

from snsdata.rewards.normalize import (
    NORMALIZERS,
    approx_tokens,
    chain,
    completion_text,
    count_words,
    has_script,
    strip_think,
    tokenize,
)
from snsdata.rewards.parse import (
    OutputParser,
    bracket_spans,
    extract_code,
    find_json,
    parse_candidates,
    parse_list,
    parse_number,
)
from snsdata.spec.models import Output
from snsdata.spec.reward import Extraction


@pytest.mark.parametrize(("text", "expected"), [
    ("<think>maybe B</think>A", "A"),
    ("<think>a</think>x<think>b</think> y", " y"),
    ("reasoning only</think>\nAnswer", "\nAnswer"),  # the template opened <think> in the prompt
    ("<think>never closed, B", ""),
    ("prefix <THINK>unclosed", "prefix "),
    ("no think at all", "no think at all"),
])
def test_strip_think(text: str, expected: str) -> None:
    assert strip_think(text) == expected


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("strip", "  a b \n", "a b"),
    ("casefold", "Straße YES", "strasse yes"),
    ("whitespace", " a \t\n b  ", "a b"),
    ("punctuation", "Yes, it is. 是的！", "Yes it is 是的"),
    ("strip_markdown", "**Food** and `code` and *it* ## x", "Food and code and it ## x"),
    ("strip_markdown", "# Title\n> quoted", "Title\nquoted"),
    ("strip_markdown", "```python\nx\n```", "```python\nx\n```"),
    ("strip_markdown", "arts_&_culture", "arts_&_culture"),
    ("strip_answer_prefix", "Answer: Food", "Food"),
    ("strip_answer_prefix", "The answer is Food", "Food"),
    ("strip_answer_prefix", "the final answer is: 3", "3"),
    ("strip_answer_prefix", "答案：美食", "美食"),
    ("strip_answer_prefix", "Answers vary", "Answers vary"),
    ("fullwidth", "ＡＢＣ１２３，！　x", "ABC123,! x"),
])
def test_each_normalizer(name: str, text: str, expected: str) -> None:
    assert NORMALIZERS[name](text) == expected


def test_chain_applies_in_order() -> None:
    assert chain(["strip_think", "strip_answer_prefix", "strip_markdown", "casefold"])(
        "<think>x</think>Answer: **YES**") == "yes"


def test_completion_text_accepts_what_trainers_pass() -> None:
    assert completion_text("a") == "a"
    assert completion_text(None) == ""
    assert completion_text(b"\xff ok") == "\ufffd ok"
    assert completion_text([{"role": "assistant", "content": "hi"}]) == "hi"
    multimodal = [{"role": "assistant", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]
    assert completion_text(multimodal) == "ab"
    chat = [{"role": "user", "content": "q"}, {"role": "assistant", "content": "1"},
            {"role": "tool", "content": "t"}, {"role": "assistant", "content": "2"}]
    assert completion_text(chat) == "1\n2"
    assert completion_text(42) == "42"


def test_tokenizers() -> None:
    assert tokenize("我爱 New-York, ok!") == ["我", "爱", "New", "York", "ok"]
    assert tokenize("我爱 New-York, ok!", "whitespace") == ["我", "爱", "New-York,", "ok!"]
    assert tokenize("a b", "char") == ["a", "b"]
    assert count_words("我爱 big cats") == 4


def test_approx_tokens_and_scripts() -> None:
    assert approx_tokens("") == 0
    assert approx_tokens("你好") == 2
    assert approx_tokens("abcdefgh") == 2
    assert has_script("a，b", "cjk") and not has_script("a，b", "cjk", letters_only=True)
    assert has_script("Hello 世界", "cjk", letters_only=True)
    assert has_script("é", "latin") and not has_script("你好", "latin")


def test_bracket_spans_skip_quoted_brackets_and_prose_apostrophes() -> None:
    assert bracket_spans("don't [\"a]\", 'b'] then {\"k\": [1]}") == ["[\"a]\", 'b']", "{\"k\": [1]}"]
    assert bracket_spans("[[[") == []
    assert bracket_spans("[a}") == []


def test_find_json_prefers_whole_text_then_fence_then_last_span() -> None:
    assert find_json('{"a": 1}') == ({"a": 1}, True)
    assert find_json('reason [x]\n```json\n{"a": 2}\n```') == ({"a": 2}, True)
    assert find_json('first {"a": 1} then {"a": 3}') == ({"a": 3}, True)
    assert find_json("{'a': 'python literal'}") == ({"a": "python literal"}, True)
    assert find_json("no json here") == (None, False)
    assert find_json("[" * 5000 + "]" * 5000) == (None, False)  # deeper than the decoders recurse: no crash
    assert find_json("[" * 100_000) == (None, False)


def test_parse_list_forms() -> None:
    assert parse_list("['CC mode']", ",") == (["CC mode"], True)
    assert parse_list("[]", ",") == ([], True)
    assert parse_list('The words are ["a", "b"].', ",") == (["a", "b"], True)
    assert parse_list("a, b，c、d", ",") == (["a", "b", "c", "d"], True)
    assert parse_list("- a\n- b\n1. c", ",") == (["a", "b", "c"], True)
    assert parse_list("A | B|C", "|") == (["A", "B", "C"], True)
    assert parse_list("[a, 'b'", ",") == (["a", "b"], False)
    assert parse_list("", ",") == ([], False)


def test_parse_candidates_three_encodings() -> None:
    assert parse_candidates("Food, Travel", ",") == ["Food", "Travel"]
    assert parse_candidates("['Food', 'Travel, Asia']", ",") == ["Food", "Travel, Asia"]
    assert parse_candidates(["Food", " Travel "], ",") == ["Food", "Travel"]
    assert parse_candidates("A|B", "|") == ["A", "B"]
    assert parse_candidates(None, ",") == []


@pytest.mark.parametrize(("text", "expected"), [
    ("42", 42.0), ("The answer is \\boxed{3/4}.", 0.75), ("so #### 1,234", 1234.0), ("−5", -5.0),
    ("I think 2, no 3", 3.0), ("50%", 50.0), ("none", None), ("1e999", None), ("7/0", None),
])
def test_parse_number(text: str, expected: float | None) -> None:
    assert parse_number(text) == expected


def test_extract_code() -> None:
    assert extract_code("text\n```js\nx\n```\n```python\ny = 1\n```") == "y = 1\n"
    assert extract_code("```\nz\n```") == "z\n"
    assert extract_code("```python\nunclosed = 1") == "unclosed = 1"
    assert extract_code("plain = 2") == "plain = 2"


def _parser(fmt: str, normalize: list[str] | None = None, **output: object) -> OutputParser:
    return OutputParser(Output(format=fmt, **output), normalize or ["strip_think", "strip"])


def test_label_parser_matches_candidates_through_chatter() -> None:
    parser = _parser("label", ["strip_think", "strip_answer_prefix", "strip_markdown", "strip"])
    allowed = {parser.key(c) for c in ["Yes", "No", "Fashion Trends"]}
    assert parser.parse("Answer: **Yes**", allowed).value == "Yes"
    assert parser.parse("Let me think.\nFashion Trends.", allowed).value == "Fashion Trends"
    assert parser.parse("No, because it is calm", allowed).value == "No"
    assert parser.parse("Nobody knows", allowed).ok is False
    assert parser.parse("<think>Yes</think>", allowed).ok is False


def test_label_parser_case_and_aliases() -> None:
    parser = OutputParser(Output(format="label", labels=["Yes", "No"], case_sensitive=False), ["strip"],
                          aliases={"Yes": ["是", "y"]})
    allowed = parser.allowed({})
    assert parser.parse("YES", allowed).value == parser.parse("是", allowed).value == parser.key("yes")


def test_allowed_labels_come_from_the_record_first() -> None:
    parser = _parser("label", candidates_field="candidates", labels=["X"])
    assert parser.allowed({"candidates": "['A', 'B']"}) == {"A", "B"}
    assert parser.allowed({}) == {"X"}


def test_spans_parser_typed_and_plain() -> None:
    parser = OutputParser(Output(format="spans"), ["strip"], aliases={"PER": ["person"]})
    typed = parser.parse('[{"text": "周杰伦", "type": "person"}, {"entity": "北京", "label": "LOC"}, {"x": 1}]')
    assert typed.value == [("周杰伦", "PER"), ("北京", "LOC")]
    assert parser.parse("a, b, a").value == ["a", "b"]


def test_json_parser_schema_and_leaf_normalisation() -> None:
    schema = {"type": "object", "required": ["label"]}
    parser = OutputParser(Output(format="json", json_schema=schema), ["strip", "casefold"])
    assert parser.parse('Sure: {"label": " YES ", "n": 2}').value == {"label": "yes", "n": 2}
    assert parser.parse('{"other": 1}').ok is False
    assert parser.parse("not json").value is None


def test_extraction_first_and_last_and_missing() -> None:
    last = OutputParser(Output(format="text"), ["strip"], extract=Extraction(pattern=r"(\d+)"))
    first = OutputParser(Output(format="text"), ["strip"], extract=Extraction(pattern=r"(?P<n>\d+)", group="n",
                                                                               which="first"))
    assert last.parse("1 then 2").value == "2"
    assert first.parse("1 then 2").value == "1"
    assert last.parse("none").ok is False


def test_numbers_keep_fractions_and_drop_trailing_punctuation() -> None:
    from snsdata.rewards.parse import parse_number

    # "3/4。" used to read as 4 (the last number): a trailing period was fatal to a fraction answer.
    assert parse_number("3/4。") == 0.75 and parse_number("x = 3/4.") == 0.75
    assert parse_number("答案是12。") == 12.0 and parse_number("**7**") == 7.0 and parse_number('"-3"') == -3.0
    assert parse_number("a 1/2.5 b") == 2.5 and parse_number("1/0") is None
