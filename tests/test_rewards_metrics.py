"""Each metric and pattern check of snsdata.rewards on hand-computed cases."""

from __future__ import annotations

import math
import random

import pytest
from sacrebleu.metrics import BLEU, CHRF

from snsdata.rewards.metrics import METRICS, run_metric, sentence_scores
from snsdata.rewards.patterns import IFEVAL_UNSUPPORTED, build_check, json_answer
from snsdata.spec.reward import METRIC_PARAMS, MetricReward, PatternCheck, metric_params


def score(metric: str, pred: object, gold: object, **params: object) -> float | None:
    reward = MetricReward(metric=metric, params=params)
    return run_metric(METRICS[metric], [pred], [gold], metric_params(reward))[0]


def test_every_declared_metric_is_implemented() -> None:
    assert set(METRICS) == set(METRIC_PARAMS) == set(MetricReward.model_fields["metric"].annotation.__args__)


def test_set_f1_and_empty_handling() -> None:
    assert score("set_f1", ["a", "b"], ["b", "c"]) == pytest.approx(0.5)
    assert score("set_f1", ["a", "a"], ["a"]) == 1.0
    assert score("set_f1", [], []) == 1.0
    assert score("set_f1", [], ["a"]) == 0.0
    assert score("set_f1", ["a"], []) == 0.0
    assert score("set_f1", None, ["a"]) == 0.0  # unreadable prediction
    assert score("set_f1", ["a"], None) is None  # unreadable gold: does not apply


def test_over_return_costs_only_items_beyond_the_golds() -> None:
    assert score("over_return", ["a", "b"], ["a", "b", "c"]) == 1.0
    assert score("over_return", ["x", "y"], ["a", "b"]) == 1.0  # wrong items are the metric's job, not this one's
    assert score("over_return", ["a", "b", "c", "d"], ["a"]) == pytest.approx(0.25)
    assert score("over_return", [], []) == 1.0


def test_soft_set_f1_credits_near_spellings_once() -> None:
    exact = score("soft_set_f1", ["West Lake", "Sunset"], ["West Lake", "Sunset"])
    near = score("soft_set_f1", ["West Lakes", "Sunset"], ["West Lake", "Sunset"])
    assert exact == 1.0 and 0.9 < near < 1.0
    assert score("soft_set_f1", ["West Lake", "West Lakes"], ["West Lake"]) == pytest.approx(2 / 3)
    assert score("soft_set_f1", ["xyz"], ["West Lake"]) == 0.0


def test_token_f1_and_entity_f1() -> None:
    assert score("token_f1", "the cat sat", "the cat ran") == pytest.approx(2 / 3)
    assert score("token_f1", "我爱猫", "我爱狗") == pytest.approx(2 / 3)
    assert score("entity_f1", [("周杰伦", "PER"), ("北京", "LOC")], [("周杰伦", "PER"), ("北京", "GPE")]) == 0.5
    assert score("entity_f1", ["a"], [("a", "")]) == 1.0


def test_span_f1_partial_credit() -> None:
    gold = ["Initially a bit unaccustomed.", "After a while, got the hang of it."]
    assert score("span_f1", gold, gold) == 1.0
    partial = score("span_f1", ["Initially a bit unaccustomed."], gold)
    assert 0.5 < partial < 1.0


def test_bleu_chrf_scales() -> None:
    ref = "The hot pot at this place is absolutely amazing!"
    assert score("bleu", ref, ref) == pytest.approx(1.0)
    assert 0 < score("bleu", "The hot pot here is amazing!", ref) < 1
    assert score("bleu", "这家店的火锅绝绝子", "这家店的火锅绝绝子", tokenize="zh") == pytest.approx(1.0)
    assert score("chrf", ref, ref) == pytest.approx(1.0)
    assert score("chrf++", ref.lower(), ref, lowercase=True) == pytest.approx(1.0)
    assert score("chrf", "zzz", ref) < 0.1


def test_batched_sentence_scores_equal_sacrebleu_sentence_score() -> None:
    rng = random.Random(0)
    words = ["the", "a", "hot", "pot", "is", "amazing", "火锅", "绝绝子", ",", ".", "!", "really", "我", "爱"]
    golds = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))) for _ in range(8)]
    pairs = [(" ".join(rng.choice(words) for _ in range(rng.randint(1, 12))), rng.choice(golds)) for _ in range(60)]
    makers = [lambda: BLEU(tokenize="13a", effective_order=True), lambda: BLEU(tokenize="zh", effective_order=True),
              lambda: CHRF(), lambda: CHRF(word_order=2, beta=3, lowercase=True)]
    for make in makers:
        expected = [make().sentence_score(p, [g]).score / 100 for p, g in pairs]
        assert sentence_scores(make(), [p for p, _ in pairs], [g for _, g in pairs]) == expected


def test_rouge_family() -> None:
    assert score("rouge_1", "a b c d", "a b e f") == pytest.approx(0.5)
    assert score("rouge_2", "a b c d", "a b e f") == pytest.approx(1 / 3)
    assert score("rouge_l", "a x b y c", "a b c") == pytest.approx(2 * 3 / 8)
    assert score("rouge_l", "吉隆坡美食", "吉隆坡的美食") == pytest.approx(2 * 5 / 11)
    assert score("rouge_l", "ab", "ab", tokenize="char") == 1.0


def test_anls_threshold() -> None:
    assert score("anls", "abcd", "abce") == pytest.approx(0.75)
    assert score("anls", "abcd", "wxyz") == 0.0
    assert score("anls", "ab", "abcd", threshold=0.0) == pytest.approx(0.5)


def test_abs_err_accuracy_field_acc() -> None:
    assert score("abs_err", 4.0, 5.0, range=4) == pytest.approx(0.75)
    assert score("abs_err", 99.0, 1.0, range=4) == 0.0
    assert score("abs_err", "about 3", 3.0, range=4) == 1.0
    assert score("accuracy", "Yes", "Yes") == 1.0
    assert score("accuracy", ["b", "a"], ["a", "b"]) == 1.0
    assert score("accuracy", 1.0000000001, 1.0) == 1.0
    gold = {"sexist": True, "category": "stereotype", "target": "women"}
    assert score("field_acc", {"sexist": True, "category": "other"}, gold) == pytest.approx(1 / 3)
    assert score("field_acc", {"sexist": True, "category": "other"}, gold, fields=["sexist"]) == 1.0
    assert score("field_acc", "not an object", gold) == 0.0
    assert score("field_acc", [{"a": 1}, {"a": 2}], [{"a": 1}, {"a": 3}]) == 0.5


def test_ndcg() -> None:
    assert score("ndcg", ["n1", "n2"], ["n1", "n2"]) == pytest.approx(1.0)
    assert score("ndcg", ["n2", "n1"], ["n1", "n2"]) == pytest.approx(1.0)  # binary relevance: order-free
    graded = score("ndcg", ["n2", "n1"], ["n1", "n2"], graded=True)
    assert graded == pytest.approx((1 + 2 / math.log2(3)) / (2 + 1 / math.log2(3)))
    assert score("ndcg", ["x", "y", "z", "n1"], ["n1"], k=3) == 0.0


def test_option_f1_reads_tagged_lists() -> None:
    gold = '<Result>[{"Option": "A", "Reason": "r [x]"}, {"Option": "B", "Reason": "s"}]</Result>'
    assert score("option_f1", gold, gold, tag="Result") == 1.0
    assert score("option_f1", '<Result>[{"Option": "A", "Reason": "?"}]</Result>', gold, tag="Result") == \
        pytest.approx(2 / 3)
    assert score("option_f1", "no tags [1]", gold, tag="Result") == 0.0
    assert score("option_f1", '[{"Option": "A"}]', [{"Option": "A"}]) == 1.0
    assert score("option_f1", "<Result>[]</Result>", "<Result>[]</Result>", tag="Result") == 1.0
    assert score("option_f1", '["Palace Guide"]', ["Palace Guides"], threshold=0.8) > 0.9


def test_embed_cosine_is_batched_and_clipped() -> None:
    reward = MetricReward(metric="embed_cosine")
    out = run_metric(METRICS["embed_cosine"], ["best hot pot in Chengdu", "quantum chromodynamics lecture"],
                     ["best hot pot in Chengdu", "cute kitten photos"], metric_params(reward))
    assert out[0] == pytest.approx(1.0, abs=1e-6)
    assert 0.0 <= out[1] < 0.5


def test_metric_params_are_validated() -> None:
    with pytest.raises(ValueError, match="unknown parameter"):
        MetricReward(metric="set_f1", params={"emptymatch": 1})
    with pytest.raises(ValueError, match="tokenize"):
        MetricReward(metric="bleu", params={"tokenize": "klingon"})
    assert metric_params(MetricReward(metric="anls")).threshold == 0.5


def check(**kwargs: object) -> object:
    return build_check(PatternCheck(**kwargs))


def test_regex_checks() -> None:
    assert check(must_match=r"^\d+$")("42", {}) == 1.0
    assert check(must_match=r"^\d+$")("x42", {}) == 0.0
    assert check(must_not_match="(?i)as an ai")("As an AI, I", {}) == 0.0
    assert check(must_not_match="(?i)as an ai")("Sure.", {}) == 1.0


def test_json_checks() -> None:
    assert json_answer('```json\n{"a": 1}\n```') == ({"a": 1}, True)
    assert check(valid_json=True)('{"a": 1}', {}) == 1.0
    assert check(valid_json=True)('Here: {"a": 1}', {}) == 0.0
    schema = {"type": "object", "required": ["label"], "properties": {"label": {"enum": ["safe", "offensive"]}}}
    assert check(json_schema=schema)('{"label": "safe"}', {}) == 1.0
    assert check(json_schema=schema)('{"label": "maybe"}', {}) == 0.0
    with pytest.raises(ValueError, match="invalid JSON schema"):
        PatternCheck(json_schema={"type": 12})


def test_tags_lengths_scripts() -> None:
    tags = check(required_tags=["<Result>", "rewrite_query"])
    assert tags("<rewrite_query>q</rewrite_query><Result>[]</Result>", {}) == 1.0
    assert tags("<Result>[]</Result>", {}) == 0.5
    assert tags("</Result><Result>", {}) == 0.0
    assert check(min_chars=3)("ab", {}) == 0.0 and check(max_chars=3)("abc", {}) == 1.0
    assert check(min_words=2)("你好", {}) == 1.0 and check(max_words=2)("one two three", {}) == 0.0
    assert check(forbid_script="cjk")("Hot pot is great!", {}) == 1.0
    assert check(forbid_script="cjk")("Hot pot is great！", {}) == 0.0  # fullwidth punctuation counts
    assert check(require_script="cjk")("火锅", {}) == 1.0 and check(require_script="latin")("火锅", {}) == 0.0


def test_ifeval_instructions_from_the_record() -> None:
    ifeval = check(ifeval_from_fields={"instruction_ids": "ids", "kwargs": "kw"})
    record = {"ids": '["punctuation:no_comma", "keywords:existence"]', "kw": '[{}, {"keywords": ["whiskers"]}]'}
    assert ifeval("my cat has whiskers", record) == 1.0
    assert ifeval("my cat, the one with no tail", record) == 0.0
    assert ifeval("my cat has whiskers, long ones", record) == 0.5
    assert ifeval("", record) == 0.0
    unsupported = {"ids": [sorted(IFEVAL_UNSUPPORTED)[0]], "kw": [{}]}
    assert ifeval("One sentence.", unsupported) is None  # needs NLTK punkt: skipped, not a false 0
    assert ifeval("x", {}) is None
