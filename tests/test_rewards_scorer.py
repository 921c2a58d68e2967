"""The scoring core on the fixture specs: gold round-trips, the four reward types, composition, the API."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from snsdata.readers import read_task
from snsdata.rewards import evaluate, gold_check, score
from snsdata.rewards.scorer import Scorer, overlong_penalty
from snsdata.rewards.selfcheck import GoldFailure
from snsdata.spec import TaskSpec, load_catalogue
from snsdata.spec.reward import MetricReward, OverlongPenalty, SandboxReward

FIXTURES = Path(__file__).parent / "fixtures" / "reward_specs"


@cache
def specs() -> dict[str, TaskSpec]:
    return load_catalogue([FIXTURES])


@cache
def records(task_id: str) -> list[dict[str, Any]]:
    return read_task(specs()[task_id], FIXTURES / "data").frame.collect().to_dicts()


def scorer(task_id: str) -> Scorer:
    return Scorer(specs()[task_id])


def test_fixtures_cover_every_reward_type_and_output_format() -> None:
    formats = {spec.output.format for spec in specs().values()}
    types = {spec.reward.type for spec in specs().values()}
    assert formats == {"label", "labels", "spans", "json", "text", "code", "number"}
    assert types == {"exact_match", "metric", "pattern", "sandbox", "composite"}


@pytest.mark.parametrize("task_id", sorted(load_catalogue([FIXTURES])))
def test_gold_round_trip(task_id: str) -> None:
    spec = specs()[task_id]
    rows = records(task_id)
    assert rows, task_id
    assert gold_check(spec, rows) == []
    golds = [spec.render_target(r) for r in rows]
    details = scorer(task_id).details(golds, rows)
    assert all(d.parse_ok and d.gold_ok for d in details)


def test_gold_check_reports_records_below_full_marks() -> None:
    spec = specs()["fx_label"]
    good = records("fx_label")[0]
    not_a_candidate = {**good, "record_id": "r-bad", "answer": "Sports"}
    no_field = {"text": "x", "candidates": "A, B"}
    failures = gold_check(spec, [good, not_a_candidate, no_field])
    assert failures == [GoldFailure("r-bad", None), GoldFailure(2, None)]
    assert "does not parse" in str(failures[0])
    assert "0.5000" in str(GoldFailure("r", 0.5))


def test_label_candidates_aliases_and_normalisers() -> None:
    s = scorer("fx_label")
    base = {"text": "mooncakes", "answer": "Food"}
    for candidates in ("Food, Travel", "['Food', 'Travel']", ["Food", "Travel"]):
        record = {**base, "candidates": candidates}
        assert s(["<think>Travel?</think>Answer: **ｆｏｏｄ**."], [record]) == [1.0]
        assert s(["Cuisine"], [record]) == [1.0]  # alias
    record = {**base, "candidates": "Education, Travel"}  # gold not among them: reward does not apply
    assert s(["Food"], [record]) == [None]
    record = {**base, "candidates": "Food, Travel"}
    # Naming two labels is wrong whatever comes first (it used to read "Food and Travel" as "Food").
    assert s(["Travel", "Food and Travel", "Sports", "Food, it shows a dish"], [record] * 4) == [0.0, 0.0, 0.0, 1.0]


def test_choose_from_candidates_rejects_answers_outside_them() -> None:
    s = scorer("fx_label")
    record = {"text": "x", "candidates": "Food, Travel", "answer": "Food"}
    details = s.details(["Foods"], [record])
    assert details[0].score == 0.0 and not details[0].parse_ok


def test_extraction() -> None:
    s = scorer("fx_extract")
    record = {"query": "q", "answer": "3"}
    assert s(["I'd say 2.5, no: 3", "score=13", "3.", "<think>3</think>1"], [record] * 4) == [1.0, 0.0, 1.0, 0.0]


def test_ordered_and_unordered_lists() -> None:
    path = scorer("fx_path")
    record = {"text": "x", "answer": "A | B | C"}
    assert path(["A|B|C", "B | A | C", "A | B"], [record] * 3) == [1.0, 0.0, 0.0]
    tags = scorer("fx_labels")
    record = {"text": "x", "answer": ["Tea", "Cafe"]}
    assert tags(["cafe; TEA", '["Tea"]', "[]"], [record] * 3) == [1.0, pytest.approx(2 / 3), 0.0]


def test_an_empty_answer_to_an_empty_gold_is_right() -> None:
    # It used to earn a discounted `empty_match` (0.5 here), so a perfect model looked weak; imbalance is now
    # fixed by balancing the data, and the parameter is refused with that explanation.
    spec = specs()["fx_labels"]
    record = {"text": "nothing", "answer": []}
    assert Scorer(spec)(["[]", "", "none"], [record] * 3) == [1.0, 0.0, 0.0]
    assert gold_check(spec, [record]) == []
    with pytest.raises(ValueError, match="balance"):
        MetricReward(metric="set_f1", params={"empty_match": 0.5})


def test_typed_spans_and_json_fields() -> None:
    spans = scorer("fx_spans")
    record = records("fx_spans")[0]
    assert spans(['[{"text": "周杰伦", "type": "人名"}]'], [record]) == [pytest.approx(2 / 3)]
    js = scorer("fx_json")
    record = records("fx_json")[0]
    half = '```json\n{"sexist": true, "category": "insult", "target": "women"}\n```'
    assert js([half, '{"sexist": "yes"}', "no json"], [record] * 3) == [pytest.approx(2 / 3), 0.0, 0.0]


def test_number_partial_credit() -> None:
    s = scorer("fx_number")
    record = {"text": "x", "score": 4}
    assert s(["4", "Intimacy: 5/5 -> 5", "2", "high"], [record] * 4) == [1.0, 0.75, 0.5, 0.0]


def test_composite_gate_and_weights() -> None:
    s = scorer("fx_translate")
    record = records("fx_translate")[1]
    gold = record["en"]
    assert s([gold, gold + " 绝绝子"], [record] * 2) == [1.0, 0.0]
    detail = s.details(["The hot pot here is amazing!"], [record])[0]
    bleu, chrf, gate = detail.parts
    assert gate == 1.0 and detail.score == pytest.approx(0.5 * bleu + 0.5 * chrf)


def test_overlong_penalty() -> None:
    rule = OverlongPenalty(max_tokens=64, cache_tokens=16)
    assert [overlong_penalty(n, rule) for n in (10, 48, 56, 64, 500)] == [0.0, 0.0, -0.5, -1.0, -1.0]
    s = scorer("fx_translate")
    record = records("fx_translate")[1]
    gold = record["en"]
    assert s([gold] * 3, [record] * 3, lengths=[12, 56, 80]) == [1.0, 0.5, 0.0]
    assert s([gold + " " + "amazing " * 40], [record])[0] == 0.0  # approximated length: over 64 tokens


def test_pattern_mean_and_ifeval() -> None:
    s = scorer("fx_ifeval")
    record = records("fx_ifeval")[0]
    assert s(["the cat sleeps.", "The cat, sleeps.", "As an AI, The Cat, " + "word " * 80], [record] * 3) == [
        1.0, pytest.approx(2 / 3), 0.0]


def test_option_list_gated_by_tag() -> None:
    s = scorer("fx_options")
    gold_record = records("fx_options")[0]
    answer = '<Result>[{"Option": "The Forbidden City 100", "Reason": "x"}]</Result>'
    assert s([answer, answer.replace("Result", "Answer")], [gold_record] * 2) == [pytest.approx(2 / 3), 0.0]


def test_sandbox_pass_rate() -> None:
    s = scorer("fx_code")
    record = records("fx_code")[0]
    completions = [
        "```python\ndef add(a: int, b: int) -> int:\n    return a + b\n```",
        "    return a + b\n",
        "    return a - b\n",
        "",
        "    while True:\n        pass\n",
    ]
    details = s.details(completions, [record] * len(completions))
    assert [d.score for d in details] == [1.0, 1.0, 0.0, 0.0, 0.0]
    assert details[3].parse_ok is False and details[4].timed_out


def test_sandbox_whole_function_keeps_prompt_imports_and_stdio_mode() -> None:
    s = scorer("fx_code")
    record = {"prompt": "from typing import List\n\n\ndef total(xs: List[int]) -> int:\n    \"\"\"Sum.\"\"\"\n",
              "test": "def check(candidate):\n    assert candidate([1, 2]) == 3\n", "entry_point": "total"}
    assert s(["def total(xs: List[int]) -> int:\n    return sum(xs)\n"], [record]) == [1.0]
    stdio = Scorer(specs()["fx_code"].model_copy(update={"reward": SandboxReward(
        mode="stdio", tests_field="test", entry_point_field=None, timeout_s=2)}))
    cases = {"test": json.dumps([{"input": "2 3\n", "output": "5\n"}, ["1 1", "2"]])}
    program = "```python\na, b = map(int, input().split())\nprint(a + b)\n```"
    assert stdio([program, "print(5)"], [cases, cases]) == [1.0, 0.5]
    assert stdio([program], [{"test": "[]"}]) == [None]  # no cases: the reward does not apply


def test_internal_failure_gives_none_not_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(a: list[str], b: list[str], batch_size: int = 0) -> None:
        raise RuntimeError("model missing")

    monkeypatch.setattr("snsdata.rewards.embedding.cosine_similarity", broken)
    s = scorer("fx_query")
    record = records("fx_query")[0]
    detail = s.details([record["answer"]], [record])[0]
    assert detail.parts == (None, 1.0) and detail.score == 1.0  # the ANLS half still applies
    assert detail.error and "model missing" in detail.error and detail.parse_ok
    assert s.stats.errors == 1 and s.stats.parse_failures == 0


def test_stats_count_parse_and_gold_failures() -> None:
    s = scorer("fx_label")
    good = {"text": "x", "candidates": "Food, Travel", "answer": "Food"}
    bad_gold = {"text": "x", "candidates": "Food, Travel", "answer": "Sports"}
    s(["Food", "Sports", "Food"], [good, good, bad_gold])
    stats = s.stats
    assert (stats.samples, stats.scored, stats.not_applicable, stats.parse_failures, stats.gold_failures) == (
        3, 2, 1, 1, 1)
    assert stats.mean_reward == 0.5


def test_score_and_evaluate_api() -> None:
    rows = records("fx_label")
    assert score("fx_label", "Food", rows[0], specs=specs()) == 1.0
    assert score("fx_label", [{"role": "assistant", "content": "Travel"}], rows[0], specs=specs()) == 0.0
    metrics = evaluate("fx_label", rows, ["Food", "Travel", "Education"], specs=specs())
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["n"] == 3
    assert metrics["macro_f1"] == pytest.approx((1 + 0 + 1 + 0) / 4)
    with pytest.raises(ValueError, match="official"):
        evaluate("fx_label", rows, ["Food"] * 3, compat="official", specs=specs())
    with pytest.raises(ValueError, match="predictions"):
        evaluate("fx_label", rows, ["Food"], specs=specs())
    with pytest.raises(KeyError):
        score("nope", "x", {}, specs=specs())


def test_evaluate_corpus_metrics_per_format() -> None:
    rows = records("fx_labels")
    sets = evaluate("fx_labels", rows, ['["Tea", "Cafe"]', "[]", "Pets; Dogs"], specs=specs())
    assert sets["precision"] == pytest.approx(3 / 4) and sets["recall"] == pytest.approx(3 / 4)
    rows = records("fx_translate")
    text = evaluate("fx_translate", rows, [r["en"] for r in rows], specs=specs())
    assert text["bleu"] == pytest.approx(1.0) and text["chrf"] == pytest.approx(1.0) and text["mean_reward"] == 1.0
    rows = records("fx_number")
    numbers = evaluate("fx_number", rows, ["4", "2", "oops"], specs=specs())
    assert numbers["accuracy"] == pytest.approx(1 / 3) and numbers["mae"] == 0.5 and numbers["parse_rate"] < 1
    rows = records("fx_json")
    assert evaluate("fx_json", rows, [spec_gold("fx_json", r) for r in rows], specs=specs())["exact_match"] == 1.0


def spec_gold(task_id: str, record: dict[str, Any]) -> str:
    return specs()[task_id].render_target(record)


def test_benchmark_tasks_delegate_to_the_official_evaluator(shared_data: Path) -> None:
    spec = load_catalogue()["note_gender"]
    rows = read_task(spec, shared_data).frame.collect().to_dicts()
    predictions = [r["answer"] for r in rows[:-1]] + ["<think>Yes</think>Yes"]
    official = evaluate("note_gender", rows, predictions, compat="official")
    fixed = evaluate("note_gender", rows, predictions)
    assert official["accuracy"] < 100 and fixed["accuracy"] == 100.0
    assert "mean_reward" in fixed and "mean_reward" not in official
    assert score("note_gender", "Yes.", rows[0], compat="official") in (0.0, 1.0)
    with pytest.raises(ValueError, match="official"):
        score("fx_label", "Food", records("fx_label")[0], compat="official", specs=specs())


def test_shaping_parts_and_the_raw_task_metric() -> None:
    from snsdata.spec.reward import CompositeReward

    base = specs()["fx_labels"]
    reward = CompositeReward.model_validate({"type": "composite", "parts": [
        {"reward": {"type": "metric", "metric": "set_f1"}},
        {"role": "shaping", "weight": 0.5, "reward": {"type": "metric", "metric": "over_return"}},
    ], "gate": {"type": "pattern", "checks": [{"max_chars": 30}]}, "gate_role": "shaping"})
    s = Scorer(base.model_copy(update={"reward": reward}))
    record = {"text": "x", "answer": ["Tea", "Cafe"]}
    right, padded, long = s.details(["Tea; Cafe", "Tea; Cafe; Dogs; Pets", "Tea; Cafe" + " " * 40], [record] * 3)
    assert (right.score, right.task_score) == (1.0, 1.0)
    # Two extra items: F1 2/3 is the task's metric; over_return 1/2 at weight 0.5 takes a quarter of it away.
    assert padded.task_score == pytest.approx(2 / 3) and padded.score == pytest.approx(2 / 3 * 0.75)
    # A shaping gate zeroes the reward, not the task metric (the answer itself is right).
    assert long.task_score == 1.0 and long.score == 0.0
    assert s.stats.mean_task_score > s.stats.mean_reward
    with pytest.raises(ValueError, match="correctness part"):
        CompositeReward.model_validate({"type": "composite", "parts": [
            {"role": "shaping", "reward": {"type": "metric", "metric": "over_return"}}]})
    with pytest.raises(ValueError, match="at most 1"):
        CompositeReward.model_validate({"type": "composite", "parts": [
            {"reward": {"type": "metric", "metric": "set_f1"}},
            {"role": "shaping", "weight": 2, "reward": {"type": "metric", "metric": "over_return"}}]})


def test_spans_must_come_from_the_input() -> None:
    from snsdata.spec.reward import MetricReward

    base = specs()["fx_labels"]
    s = Scorer(base.model_copy(update={"reward": MetricReward(metric="soft_set_f1", spans_from=["text"])}))
    record = {"text": "We had tea at the cafe", "answer": ["tea", "cafe"]}
    # "teas" would earn fuzzy credit against "tea", but it is not in the input: a wrong item.
    assert s(["tea; cafe", "teas; cafe", "tea; cafe; dogs"], [record] * 3) == [1.0, pytest.approx(0.5),
                                                                          pytest.approx(0.8)]
