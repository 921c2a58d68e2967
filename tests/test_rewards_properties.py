"""Property tests: whatever a policy writes, every reward type returns a score in [0, 1] or None, and never raises."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snsdata.readers import read_task
from snsdata.rewards.scorer import Scorer
from snsdata.spec import load_catalogue

FIXTURES = Path(__file__).parent / "fixtures" / "reward_specs"
TASKS = sorted(load_catalogue([FIXTURES]))

_STRUCTURE = list("[]{}()<>\"',:;|\\/#*`\n\t 　，。、：！？abcXYZ019-你好世界\ufffd\u200b")

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)

texts = st.one_of(
    st.text(max_size=300),
    st.text(alphabet=st.sampled_from(_STRUCTURE), max_size=300),
    st.builds(lambda a, b: f"<think>{a}</think>{b}", st.text(max_size=60), st.text(max_size=60)),
    st.builds(lambda a: f"<think>{a}", st.text(max_size=60)),
    st.builds(lambda n, c: c * n, st.integers(0, 4000), st.sampled_from(["[", "{", "]", "<Result>", "```"])),
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False)),
    json_values.map(repr),
    st.builds(lambda v: f"Answer: **{v}**\n```json\n{json.dumps(v)}\n```", json_values),
)
ENORMOUS = ["x " * 150_000, "你" * 50_000 + "</think>" + "[" * 50_000, "{" * 300_000]

completions = st.one_of(
    texts,
    texts.map(lambda t: [{"role": "assistant", "content": t}]),
    texts.map(lambda t: [{"role": "assistant", "content": [{"type": "text", "text": t}]}]),
    st.none(),
    st.just([]),
    st.integers(),
)


@cache
def scorer_and_records(task_id: str) -> tuple[Scorer, list[dict[str, Any]]]:
    spec = load_catalogue([FIXTURES])[task_id]
    return Scorer(spec), read_task(spec, FIXTURES / "data").frame.collect().to_dicts()


@pytest.mark.parametrize("task_id", TASKS)
def test_any_completion_scores_in_range_or_none(task_id: str) -> None:
    scorer, rows = scorer_and_records(task_id)
    examples = {"fx_code": 6, "fx_query": 8}.get(task_id, 25)  # sandbox runs and MiniLM encodes are the slow ones

    @settings(max_examples=examples, deadline=None, derandomize=True,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(batch=st.lists(completions, min_size=1, max_size=4), which=st.integers(0, 10), lengths=st.booleans())
    def check(batch: list[Any], which: int, lengths: bool) -> None:
        records = [rows[(which + i) % len(rows)] for i in range(len(batch))]
        token_lengths = [which * 9 + i for i in range(len(batch))] if lengths else None
        details = scorer.details(batch, records, token_lengths)
        assert len(details) == len(batch)
        for detail in details:
            assert detail.score is None or 0.0 <= detail.score <= 1.0
            assert detail.error is None, detail.error

    check()


@pytest.mark.parametrize("task_id", TASKS)
def test_enormous_completions(task_id: str) -> None:
    scorer, rows = scorer_and_records(task_id)
    details = scorer.details(ENORMOUS, [rows[0]] * len(ENORMOUS))
    assert all(d.score is None or 0.0 <= d.score <= 1.0 for d in details)
    assert all(d.error is None for d in details)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(record=st.dictionaries(st.sampled_from(["text", "candidates", "answer", "record_id", "x"]),
                              json_values | st.text(max_size=30), max_size=5),
       completion=texts)
def test_malformed_records_never_raise(record: dict[str, Any], completion: str) -> None:
    scorer, _ = scorer_and_records("fx_label")
    value = scorer([completion], [record])[0]
    assert value is None or 0.0 <= value <= 1.0
