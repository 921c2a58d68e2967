"""Official (quirk-exact) and fixed SNS-Bench / SNS-TransBench evaluators.

Small constructed cases pin every quirk of the official evaluators that docs/sns_bench_metrics.md names; the
shared 20-record samples check the verbatim gold against values derived by hand from the data (official)
and against 100 (fixed).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jieba
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snsdata.rewards.official import (
    OFFICIAL_KEYS,
    OFFICIAL_TASKS,
    REPORTED_METRIC,
    REPORTED_METRICS,
    SNSDATA_KEYS,
    evaluate_benchmark,
    gold_prediction,
    querycorr_level,
)
from snsdata.rewards.official_text import (
    answer_line,
    fixed_items,
    general_postprocess,
    parse_list_literal,
    postprocess_a,
    postprocess_b,
    postprocess_c,
    strip_think,
)

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"

SAMPLE_FILES = {
    "note_taxonomy_single": "Note-Taxonomy-single.json",
    "note_taxonomy_multiple": "Note-Taxonomy-multiple.json",
    "note_hashtag_single": "Note-Hashtag-single.json",
    "note_hashtag_multiple": "Note-Hashtag-multiple.json",
    "note_querycorr_topic": "Note-QueryCorr-topic.json",
    "note_querycorr_explain": "Note-QueryCorr-explain.json",
    "note_mrc_simple": "Note-MRC-simple.json",
    "note_mrc_complex": "Note-MRC-complex.json",
    "note_ner": "Note-NER.json",
    "note_gender": "Note-Gender.json",
    "note_chlw": "Note-CHLW.json",
    "note_querygen": "Note-QueryGen.json",
}


def sample(task: str) -> list[dict[str, Any]]:
    """The shared sample of a task (TransBench split by direction); skips where the data is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    if task.startswith("redtrans_"):
        pairs = json.loads((SHARED_DATA / "redtrans_sample" / "RedTrans-Bench-sample.json").read_text())
        source = task.removeprefix("redtrans_")[:2]
        return [r for r in pairs if r["src_lang"] == source]
    return json.loads((SHARED_DATA / "sns_bench_sample" / SAMPLE_FILES[task]).read_text())


def score(task: str, golds: list[Any], preds: list[str], compat: str = "official", field: str = "answer"):
    return evaluate_benchmark(task, [{field: g} for g in golds], preds, compat)  # type: ignore[arg-type]


def result_tag(options: list[tuple[str, str]]) -> str:
    return "<Result>" + json.dumps([{"Option": o, "Reason": r} for o, r in options], ensure_ascii=False) + "</Result>"


# --- API ----------------------------------------------------------------------------------------------------


def test_api_lists_every_task_with_its_reported_metric():
    assert set(OFFICIAL_TASKS) == set(SAMPLE_FILES) | {"redtrans_zh2en", "redtrans_en2zh"}
    assert set(REPORTED_METRIC) == set(OFFICIAL_TASKS)
    assert REPORTED_METRICS["redtrans_en2zh"] == ("bleu_score", "chrf_score")
    assert REPORTED_METRIC["note_querycorr_topic"] == "success-macro-f1"


def test_bad_calls_raise():
    with pytest.raises(ValueError, match="unknown task"):
        evaluate_benchmark("note_nope", [{"answer": "x"}], ["x"])
    with pytest.raises(ValueError, match="predictions"):
        evaluate_benchmark("note_gender", [{"answer": "Yes"}], [])
    with pytest.raises(ValueError, match="compat"):
        evaluate_benchmark("note_gender", [{"answer": "Yes"}], ["Yes"], "loose")  # type: ignore[arg-type]


# --- result keys ------------------------------------------------------------------------------------------------

# Every number each official evaluator returns (../shared/docs/sns_bench_metrics.md, "Official result keys").
_MRC_COMPLEX = [
    "total-precision", "total-recall", "total-f1", "option-f1", "option-em", "reason-f1", "reason-em",
    "answer-level-option-f1", "answer-level-option-em", "answer-level-reason-f1", "answer-level-reason-em",
]
EXPECTED_KEYS: dict[str, set[str]] = {
    "note_chlw": {"f1", "precision", "recall", "success-ratio", "success-f1", "success-precision", "success-recall"},
    **{task: {"accuracy"} for task in ("note_gender", "note_hashtag_single", "note_querycorr_explain",
                                        "note_taxonomy_single")},
    "note_hashtag_multiple": {"f1"},
    "note_ner": {"f1"},
    "note_taxonomy_multiple": {"score"},
    "note_mrc_simple": {
        "success-ratio", "total-tp", "total-fp", "total-fn", "total-tn", "total-precision", "total-recall",
        "total-f1", "blue", "rouge-1", "rouge-2", "rouge-L", "success-f1", "success-blue", "success-rouge-1",
        "success-rouge-2", "success-rouge-L",
    },
    "note_mrc_complex": {"success-ratio", *_MRC_COMPLEX, *(f"success-{k}" for k in _MRC_COMPLEX)},
    "note_querycorr_topic": {
        "success-ratio", "success-macro-f1",
        *(f"level({lv})-{m}" for lv in ("-1", "0", "1", "2", "3") for m in ("precision", "recall", "f1")),
    },
    # The evaluator's code returns only `final_scores`; the shared notes' key table names `anls_mean`, which
    # snsdata returns as one of its own keys (the mean ANLS half of `final_scores`).
    "note_querygen": {"final_scores"},
    "redtrans_zh2en": {"bleu_score", "chrf_score"},
    "redtrans_en2zh": {"bleu_score", "chrf_score"},
}
# snsdata's own keys per task, beside `official_would_crash` where the official run would crash.
OUR_KEYS: dict[str, set[str]] = {
    "note_mrc_simple": {"reported_score"},
    "note_mrc_complex": {"reported_score"},
    "note_querycorr_topic": {"macro-f1"},
    "note_querygen": {"anls_mean", "embedding_similarity"},
}
# Synthetic records per task: (gold, [a right answer, a wrong or unparseable one, noise]).
KEY_CASES: dict[str, tuple[Any, list[str]]] = {
    "note_chlw": ("['a']", ["['a']", "no list", "['b', 'c']"]),
    "note_mrc_simple": (["a b c d e"], ['["a b c d e"]', "", "[]"]),
    "note_mrc_complex": ('<Result>[{"Option": "a", "Reason": "b"}]</Result>', [
        '<Result>[{"Option": "a", "Reason": "b"}]</Result>', "none", "<Result>[]</Result>"]),
    "note_querycorr_topic": ("2", ["2", "none", "-1"]),
    "note_querygen": ("polo wool sweater", ["polo wool sweater", "", "<think>x</think>polo"]),
    "redtrans_zh2en": ("the cat", ["the cat", "", "a dog"]),
    "redtrans_en2zh": ("我爱猫", ["我爱猫", "", "狗"]),
}


def test_official_key_registry_matches_the_notes():
    assert {task: set(keys) for task, keys in OFFICIAL_KEYS.items()} == EXPECTED_KEYS
    assert set().union(*OUR_KEYS.values(), {"official_would_crash"}) == SNSDATA_KEYS
    assert not SNSDATA_KEYS & set().union(*EXPECTED_KEYS.values())


@pytest.mark.parametrize("compat", ["official", "fixed"])
@pytest.mark.parametrize("task", OFFICIAL_TASKS)
def test_every_official_key_is_returned_and_nothing_unexplained(task, compat):
    field = {"redtrans_zh2en": "en", "redtrans_en2zh": "zh"}.get(task, "answer")
    gold, preds = KEY_CASES.get(task, ("a, b", ["a, b", "", "<think>x</think>zzz"]))
    for chosen in ([preds[0]], [preds[1]], preds):
        result = score(task, [gold] * len(chosen), chosen, compat, field=field)
        crash = {"official_would_crash"} if result.get("official_would_crash") else set()
        assert set(result) == EXPECTED_KEYS[task] | OUR_KEYS.get(task, set()) | crash, chosen
        assert list(result)[: len(OFFICIAL_KEYS[task])] == list(OFFICIAL_KEYS[task])  # upstream's order first
        assert all(isinstance(v, float) for k, v in result.items() if k != "official_would_crash")


@pytest.mark.parametrize("task", OFFICIAL_TASKS)
def test_official_keys_on_the_shared_sample(task):
    result = gold_run(task, "official")
    crash = {"official_would_crash"} if result.get("official_would_crash") else set()
    assert set(result) == EXPECTED_KEYS[task] | OUR_KEYS.get(task, set()) | crash


def test_accuracy_follows_upstream_arithmetic_to_the_last_bit():
    # accuracy_score (1/3), then `*= 100`: 33.33333333333333, not 100/3 = 33.333333333333336.
    result = score("note_gender", ["Yes", "Yes", "Yes"], ["Yes", "No", "No"])
    assert result["accuracy"] == 1 / 3 * 100
    assert score("note_taxonomy_multiple", ["A", "A", "A"], ["A", "B", "B"])["score"] == 1 / 3 * 100


# --- postprocessors A / B / C and general_postprocess ----------------------------------------------------------


def test_postprocessor_a_splits_at_bare_end_and_punctuation():
    assert postprocess_a("Fashion Trends") == "Fashion Tr"
    assert postprocess_a("Single Item Recommendation") == "Single Item Recomm"
    assert postprocess_a("Answer: Food.\nBecause ...") == "Food"
    assert postprocess_a("Food, Travel") == "Food"
    assert postprocess_a("<think>x</think>Food") == ""
    assert postprocess_a("Food<|im_end|>") == "Food"


def test_postprocessor_b_has_no_bare_end_cut():
    assert postprocess_b("Yes, because it is about dating") == "Yes"
    assert postprocess_b("Weekend") == "Weekend"
    assert postprocess_b("Answer: No\nexplanation") == "No"


def test_postprocessor_c_keeps_whitespace_only_items_as_empty_strings():
    assert postprocess_c("a, , b") == ["a", "", "b"]
    assert postprocess_c("a,,b") == ["a", "b"]
    assert postprocess_c("a, b, ") == ["a", "b"]
    assert postprocess_c("a\nb") == ["a"]
    assert postprocess_c("a; b") == ["a; b"]
    assert postprocess_c("['a', 'b']") == ["['a'", "'b']"]
    assert postprocess_c("<think>a, b</think>c") == []


def test_general_postprocess_deletes_separators_and_articles():
    assert general_postprocess("The Food | Display & More") == "Food Display More"
    assert general_postprocess("X|Y|Z") == "XYZ"
    assert general_postprocess("A | B | C") == "B C"  # "A" is an article
    assert general_postprocess("X, Y, Z") == "X"


# --- fixed-mode cleaning ------------------------------------------------------------------------------------


def test_strip_think_handles_closed_stray_and_unclosed_blocks():
    assert strip_think("<think>a [x] 3</think>\nFood") == "Food"
    assert strip_think("reasoning the template opened</think>Food") == "Food"
    assert strip_think("<think>never closed, Food") == ""


def test_answer_line_drops_chatter_and_wrappers():
    assert answer_line("The answer is: **Fashion Trends**\nbecause") == "Fashion Trends"
    assert answer_line("**Answer:** Yes<|im_end|>") == "Yes"


def test_fixed_items_split_lines_lists_and_drop_empties():
    assert fixed_items("a, , b") == ["a", "b"]
    assert fixed_items("- a\n- b") == ["a", "b"]
    assert fixed_items("['a', 'b']") == ["a", "b"]
    assert fixed_items("<think>x, y</think>a; b") == ["a", "b"]


def test_parse_list_literal_reads_the_whole_list_before_inner_brackets():
    assert parse_list_literal("Sure: ['so cute [crying R]', 'b'] done") == ["so cute [crying R]", "b"]
    assert parse_list_literal('```json\n["a"]\n```') == ["a"]
    assert parse_list_literal("[__import__('os').getcwd()]") is None
    assert parse_list_literal("no list") is None


# --- Taxonomy / Hashtag-single (A) and Gender / QueryCorr-explain (B) --------------------------------------------


@pytest.mark.parametrize("task", ["note_taxonomy_single", "note_hashtag_single"])
def test_gold_containing_end_is_unmatchable_officially_and_matched_when_fixed(task):
    for gold in ("Fashion Trends", "Single Item Recommendation"):
        assert score(task, [gold], [gold])["accuracy"] == 0.0
        assert score(task, [gold], [gold], "fixed")["accuracy"] == 100.0


@pytest.mark.parametrize(
    ("prediction", "official", "fixed"),
    [
        ("Food", 100.0, 100.0),
        ("Food.", 100.0, 100.0),
        ("Food\nIt shows a dish.", 100.0, 100.0),
        ("Answer: Food", 100.0, 100.0),
        ("The answer is: Food", 0.0, 100.0),
        ("**Food**", 0.0, 100.0),
        ("<think>Maybe Travel.</think>Food", 0.0, 100.0),
        ("food", 0.0, 0.0),
        ("Food Exploration", 0.0, 0.0),
    ],
)
def test_taxonomy_single_label_extraction(prediction, official, fixed):
    assert score("note_taxonomy_single", ["Food"], [prediction])["accuracy"] == official
    assert score("note_taxonomy_single", ["Food"], [prediction], "fixed")["accuracy"] == fixed


@pytest.mark.parametrize(
    ("prediction", "official", "fixed"),
    [
        ("Yes", 100.0, 100.0),
        ("Yes.", 100.0, 100.0),
        ("Yes, because it is about dating", 100.0, 100.0),
        ("Answer: Yes", 100.0, 100.0),
        ("Yes\nIt is about marriage.", 100.0, 100.0),
        ("yes", 0.0, 100.0),
        ("**Yes**", 0.0, 100.0),
        ("The answer is: Yes", 0.0, 100.0),
        ("<think>No idea.</think>Yes", 0.0, 100.0),
        ("Yesterday", 0.0, 0.0),
    ],
)
@pytest.mark.parametrize("task", ["note_gender", "note_querycorr_explain"])
def test_yes_no_extraction(task, prediction, official, fixed):
    assert score(task, ["Yes"], [prediction])["accuracy"] == official
    assert score(task, ["Yes"], [prediction], "fixed")["accuracy"] == fixed


# --- Taxonomy-multiple ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "official", "fixed"),
    [
        ("A | B | C", 100.0, 100.0),
        ("A / B / C", 100.0, 100.0),
        ("A - B - C", 100.0, 100.0),
        # Postprocessor A cuts at ">" before general_postprocess runs, so this one is lost officially.
        ("A > B > C", 0.0, 100.0),
        ("A|B|C", 0.0, 100.0),
        ("A, B, C", 0.0, 100.0),
        ("<think>x</think>A | B | C", 0.0, 100.0),
        ("A | B | D", 0.0, 0.0),
        ("a | b | c", 0.0, 0.0),
    ],
)
def test_taxonomy_multiple_path_matching(prediction, official, fixed):
    assert score("note_taxonomy_multiple", ["A | B | C"], [prediction])["score"] == official
    assert score("note_taxonomy_multiple", ["A | B | C"], [prediction], "fixed")["score"] == fixed


def test_taxonomy_multiple_trend_gold_is_cut_officially():
    gold = "Fashion | Trends | Street Style"
    assert score("note_taxonomy_multiple", [gold], [gold])["score"] == 0.0
    assert score("note_taxonomy_multiple", [gold], [gold], "fixed")["score"] == 100.0


# --- NER / Hashtag-multiple ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", ["note_ner", "note_hashtag_multiple"])
def test_pooled_set_f1_rounding_smoothing_and_empty_items(task):
    # One record: TP 1, |pred| 3, |gold| 3 -> round(2/6.0001, 4) = 0.3333 officially.
    assert score(task, ["a, b, c"], ["a, x, y"])["f1"] == pytest.approx(33.33, abs=1e-9)
    assert score(task, ["a, b, c"], ["a, x, y"], "fixed")["f1"] == pytest.approx(100 / 3)
    # Pooled over the file, not averaged per record: TP 2, |pred| 2, |gold| 4.
    pooled = score(task, ["a", "b, c, d"], ["a", "b"])["f1"]
    assert pooled == pytest.approx(round(4 / 6.0001, 4) * 100)
    # "a, , b" keeps an '' item officially (it costs precision); fixed mode drops it.
    assert score(task, ["a, b"], ["a, , b"])["f1"] == pytest.approx(round(4 / 5.0001, 4) * 100)
    assert score(task, ["a, b"], ["a, , b"], "fixed")["f1"] == 100.0


@pytest.mark.parametrize("task", ["note_ner", "note_hashtag_multiple"])
def test_set_f1_list_shapes(task):
    assert score(task, ["a, b"], ["a\nb"])["f1"] == pytest.approx(round(2 / 3.0001, 4) * 100)
    assert score(task, ["a, b"], ["a\nb"], "fixed")["f1"] == 100.0
    assert score(task, ["a, b"], ["['a', 'b']"])["f1"] == 0.0
    assert score(task, ["a, b"], ["['a', 'b']"], "fixed")["f1"] == 100.0
    assert score(task, ["a, b"], ["<think>a</think>a, b"])["f1"] == 0.0
    assert score(task, ["Students"], ["students"], "fixed")["f1"] == 0.0


# --- QueryCorr-topic -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prediction", "official", "fixed"),
    [
        ("13", "1", None),
        ("10", "1", None),
        ("2.5", "2", None),
        ("score=1/3", "1", "1"),
        ("-10", "-1", None),
        ("<think>Could be 3.</think>2", "3", "2"),
        ("The relevance is 2.", "2", "2"),
        ("irrelevant", None, None),
    ],
)
def test_querycorr_level_parsing(prediction, official, fixed):
    assert querycorr_level(prediction) == official
    assert querycorr_level(prediction, fixed=True) == fixed


def smoothed_level_f1(tp: int, fp: int, fn: int) -> float:
    precision = tp / (tp + fp + 1e-5) * 100
    recall = tp / (tp + fn + 1e-5) * 100
    return 2 * precision * recall / (precision + recall + 1e-5)


def test_querycorr_macro_over_five_levels_with_smoothing_and_parse_rate():
    # Perfect on level "1" only: the four absent levels contribute 0 to the official macro average.
    result = score("note_querycorr_topic", ["1", "1"], ["1", "1"])
    assert result["success-macro-f1"] == pytest.approx(smoothed_level_f1(2, 0, 0) / 5)
    assert score("note_querycorr_topic", ["1", "1"], ["1", "1"], "fixed")["success-macro-f1"] == 100.0
    # One unparseable answer halves the score through the success ratio.
    result = score("note_querycorr_topic", ["1", "1"], ["1", "no idea"])
    assert result["success-ratio"] == 50.0
    assert result["success-macro-f1"] == pytest.approx(smoothed_level_f1(1, 0, 0) / 5 * 0.5)


def test_querycorr_per_level_precision_recall_f1():
    golds = ["1", "1", "2", "-1", "3"]
    preds = ["1", "2", "2", "nothing", "0"]  # tp 1, fn 1 / fp 2, tp 2, parse error, fn 3 / fp 0
    result = score("note_querycorr_topic", golds, preds)
    assert result["success-ratio"] == 80.0
    expected = {"-1": (0, 0, 0), "0": (0, 1, 0), "1": (1, 0, 1), "2": (1, 1, 0), "3": (0, 0, 1)}  # tp, fp, fn
    for level, (tp, fp, fn) in expected.items():
        precision = tp / (tp + fp + 1e-5) * 100
        recall = tp / (tp + fn + 1e-5) * 100
        assert result[f"level({level})-precision"] == precision
        assert result[f"level({level})-recall"] == recall
        assert result[f"level({level})-f1"] == smoothed_level_f1(tp, fp, fn)
    assert result["level(1)-precision"] == pytest.approx(100.0, abs=1e-3)
    assert result["level(1)-recall"] == pytest.approx(50.0, abs=1e-3)
    assert result["level(1)-f1"] == pytest.approx(200 / 3, abs=1e-3)
    assert result["level(0)-f1"] == result["level(-1)-precision"] == 0.0
    macro = sum(smoothed_level_f1(*c) for c in expected.values()) / 5
    assert result["macro-f1"] == macro
    assert result["success-macro-f1"] == macro * (1 - 1 / 5)
    fixed = score("note_querycorr_topic", golds, preds, "fixed")
    assert fixed["level(1)-precision"] == 100.0
    assert fixed["level(1)-recall"] == 50.0
    assert fixed["level(1)-f1"] == pytest.approx(200 / 3)
    assert fixed["level(-1)-f1"] == 0.0  # absent from gold and predictions: 0, and left out of the macro
    assert fixed["macro-f1"] == pytest.approx((200 / 3 + 200 / 3 + 0 + 0) / 4)


def test_querycorr_gold_outside_the_levels_would_crash_officially():
    result = score("note_querycorr_topic", ["4", "1"], ["1", "1"])
    assert result["official_would_crash"] is True
    assert result == {**score("note_querycorr_topic", ["4", "1"], ["1", "1"], "fixed"), "official_would_crash": True}
    # An unparsed answer never reaches upstream's per-level counter.
    assert "official_would_crash" not in score("note_querycorr_topic", ["4", "1"], ["none", "1"])


def test_querycorr_verbatim_gold_is_just_below_100():
    golds = ["-1", "0", "1", "2", "3"] * 4
    value = score("note_querycorr_topic", golds, golds)["success-macro-f1"]
    assert value == pytest.approx(smoothed_level_f1(4, 0, 0))
    assert 99.999 < value < 100.0


# --- CHLW ------------------------------------------------------------------------------------------------------


def test_chlw_empty_list_substitution_counts_an_item():
    result = score("note_chlw", ["[]"], ["[]"])
    assert result["success-f1"] == 100.0
    assert score("note_chlw", ["[]", "['CC mode']"], ["[]", "[]"])["f1"] == pytest.approx(round(2 / 4.0001, 4) * 100)


def test_chlw_bracket_search_parse_errors_and_success_multiplier():
    golds = ["['CC mode']", "['Skullpanda']", "['Chongming']", "['x']"]
    preds = [
        "Sure, here you go: ['CC mode'] hope it helps",  # first bracket span is the list
        "<think>maybe [Skull]</think>['Skullpanda']",  # think bracket wins -> eval error
        "['so cute [crying R]']",  # inner bracket span wins -> eval error
        "[__import__('os').getcwd()]",  # refused by the safe evaluator -> parse error
    ]
    official = score("note_chlw", golds, preds)
    assert official["success-ratio"] == 25.0
    assert official["f1"] == pytest.approx(round(2 / 2.0001, 4) * 100)
    assert official["success-f1"] == pytest.approx(25.0 * round(2 / 2.0001, 4))
    fixed = score("note_chlw", golds, preds, "fixed")
    assert fixed["success-ratio"] == 75.0
    assert fixed["f1"] == pytest.approx(100 * 4 / 6)


def test_chlw_success_precision_and_recall():
    golds = ["['a', 'b']", "['c']", "[]", "['d']"]
    preds = ["['a', 'x', 'y']", "['c']", "[]", "no list"]  # the last is a parse error
    # Pooled over the three parsed samples: TP 3 (a, c, and "" for the two empty lists), |pred| 5, |gold| 4.
    result = score("note_chlw", golds, preds)
    assert result["success-ratio"] == 75.0
    assert result["precision"] == pytest.approx(60.0)
    assert result["recall"] == pytest.approx(75.0)
    assert result["f1"] == pytest.approx(66.67)
    assert result["success-precision"] == 75.0 * round(3 / 5.0001, 4) == pytest.approx(45.0)
    assert result["success-recall"] == 75.0 * round(3 / 4.0001, 4) == pytest.approx(56.25)
    assert result["success-f1"] == 75.0 * round(6 / 9.0001, 4)
    fixed = score("note_chlw", golds, preds, "fixed")
    assert fixed["success-precision"] == pytest.approx(75 * 3 / 5)
    assert fixed["success-recall"] == pytest.approx(75 * 3 / 4)


def test_chlw_non_string_items_are_parse_errors():
    assert score("note_chlw", ["['a']"], ["[1, 2]"])["success-ratio"] == 0.0
    assert score("note_chlw", ["['a']"], ["'a'"])["success-ratio"] == 0.0


def test_chlw_constant_empty_list_on_sample():
    records = sample("note_chlw")
    empty = sum(r["answer"] == "[]" for r in records)
    result = evaluate_benchmark("note_chlw", records, ["[]"] * len(records))
    n = len(records)
    assert result["success-f1"] == pytest.approx(100 * round(2 * empty / (2 * n + 1e-4), 4))


# --- MRC-simple ----------------------------------------------------------------------------------------------------


def test_mrc_simple_gold_with_bracket_span_is_a_parse_error():
    gold = ["It is so cute [crying R] and I love it"]
    prediction = json.dumps(gold)
    assert score("note_mrc_simple", [gold], [prediction])["success-ratio"] == 0.0
    assert score("note_mrc_simple", [gold], [prediction], "fixed")["reported_score"] == 100.0


def test_mrc_simple_short_exact_answer_gets_near_zero_bleu_officially():
    gold = ["Yes sir"]  # jieba: ['Yes', ' ', 'sir'], fewer than four tokens
    official = score("note_mrc_simple", [gold], [json.dumps(gold)])
    assert 0 < official["blue"] < 1e-60
    assert official["rouge-1"] == pytest.approx(100.0)
    assert score("note_mrc_simple", [gold], [json.dumps(gold)], "fixed")["blue"] == pytest.approx(100.0)


def test_mrc_simple_answer_no_answer_confusion():
    golds: list[list[str]] = [[], [], ["a b c d e"], ["a b c d e"], ["a b c d e"]]
    preds = ["[]", '["a b c d e"]', "[]", '["a b c d e"]', ""]
    result = score("note_mrc_simple", golds, preds)
    assert result["success-ratio"] == 80.0  # the empty string is a parse error; "[]" is a valid empty answer
    assert [result[f"total-{k}"] for k in ("tp", "fp", "fn", "tn")] == [20.0, 20.0, 20.0, 20.0]
    precision = 1 / (2 + 1e-4)
    assert result["total-precision"] == pytest.approx(precision * 100)
    assert result["total-f1"] == pytest.approx(2 * precision * precision / (2 * precision + 1e-4) * 100)
    assert result["success-f1"] == pytest.approx(80 * 2 * precision * precision / (2 * precision + 1e-4))
    fixed = score("note_mrc_simple", golds, preds, "fixed")
    assert fixed["total-f1"] == 50.0


def test_mrc_simple_gold_spans_are_joined_without_separator():
    gold = ["one two three four", "five six"]
    glued = score("note_mrc_simple", [gold], ['["one two three four five six"]'])
    assert glued["rouge-1"] < 80  # the reference reads "...fourfive six"
    assert score("note_mrc_simple", [gold], [json.dumps(gold)])["rouge-1"] == pytest.approx(100.0)
    assert score("note_mrc_simple", [gold], ['["one two three four five six"]'], "fixed")["rouge-1"] == 100.0


def test_mrc_simple_bare_string_is_joined_character_by_character():
    gold = ["one two three four five"]
    assert score("note_mrc_simple", [gold], ['"one two three four five"'])["blue"] == pytest.approx(100.0)
    assert score("note_mrc_simple", [gold], ['"one two three four five"'], "fixed")["success-ratio"] == 0.0


def test_mrc_simple_emoji_only_hypothesis_would_crash_officially():
    gold = ["one two three four five"]
    result = score("note_mrc_simple", [gold], ['["😀"]'])
    assert result["official_would_crash"] is True
    assert result == {**score("note_mrc_simple", [gold], ['["😀"]'], "fixed"), "official_would_crash": True}
    assert result["total-tp"] == 100.0
    assert result["rouge-1"] == 0.0


# --- MRC-complex -------------------------------------------------------------------------------------------------


def test_mrc_complex_missing_options_are_not_penalised_officially():
    gold = result_tag([("Apple 13", "cheap"), ("Pixel 8", "camera")])
    dropped = result_tag([("Apple 13", "cheap")])
    official = score("note_mrc_complex", [gold], [dropped])
    assert official["option-f1"] == official["option-em"] == official["reported_score"] == 100.0
    fixed = score("note_mrc_complex", [gold], [dropped], "fixed")
    assert fixed["option-em"] == pytest.approx(100 * 2 / 3)


def test_mrc_complex_extra_options_are_penalised():
    gold = result_tag([("Apple 13", "cheap")])
    extra = result_tag([("Apple 13", "cheap"), ("Pixel 8", "camera")])
    assert score("note_mrc_complex", [gold], [extra])["option-em"] == 50.0


def test_mrc_complex_token_f1_is_longest_common_substring():
    # One token per CJK character: the longest common run of 甲乙丙丁 / 甲丙乙丁 is one token (a subsequence
    # would be three), so F1 = 0.25.
    result = score("note_mrc_complex", [result_tag([("甲乙丙丁", "r")])], [result_tag([("甲丙乙丁", "r")])])
    assert result["option-f1"] == pytest.approx(25.0)
    result = score("note_mrc_complex", [result_tag([("北京故宫博物院", "r")])], [result_tag([("故宫博物院", "r")])])
    assert result["option-f1"] == pytest.approx(100 * 10 / 12)
    assert result["option-em"] == 0.0
    # Latin text is one token per run: option-f1 is exact match after normalisation.
    result = score("note_mrc_complex", [result_tag([("Apple 13 Pro", "r")])], [result_tag([("Apple 13", "r")])])
    assert result["option-f1"] == 0.0
    result = score("note_mrc_complex", [result_tag([("apple13", "r")])], [result_tag([("Apple（13）", "r")])])
    assert result["option-f1"] == result["option-em"] == 100.0


def test_mrc_complex_tn_rule_and_constant_empty_answer():
    empty = result_tag([])
    assert score("note_mrc_complex", [empty, empty], [empty, empty])["option-f1"] == 100.0
    # All tn: total precision and recall are -1 upstream, so total-f1 is reported as 0.
    assert score("note_mrc_complex", [empty], [empty])["total-f1"] == 0.0
    assert score("note_mrc_complex", [empty], [empty], "fixed")["total-f1"] == 100.0
    mixed = score("note_mrc_complex", [empty, empty, result_tag([("a", "b")])], [empty] * 3)
    assert mixed["option-f1"] == pytest.approx(200 / 3)
    assert mixed["reported_score"] == pytest.approx((0 + 200 / 3 + 200 / 3) / 3)


def test_mrc_complex_total_recall_reported_zero_when_precision_is_not_positive():
    result = score("note_mrc_complex", [result_tag([])], [result_tag([("a", "b")])])
    assert result["total-precision"] == result["total-recall"] == result["total-f1"] == 0.0
    assert "official_would_crash" not in result


def test_mrc_complex_fp_and_fn_without_tp_would_crash_officially():
    golds = [result_tag([]), result_tag([("a", "b")])]
    preds = [result_tag([("a", "b")]), result_tag([])]
    result = score("note_mrc_complex", golds, preds)
    assert result["official_would_crash"] is True
    assert result == {**score("note_mrc_complex", golds, preds, "fixed"), "official_would_crash": True}


def test_mrc_complex_success_total_and_answer_level_keys():
    gold = result_tag([("Apple 13", "cheap"), ("Pixel 8", "camera")])
    # Both predicted options match gold "Apple 13" after normalisation; "Pixel 8" is missed. Latin text is one
    # token per run, so reason "cheap price" shares no token with "cheap".
    tp = result_tag([("Apple 13", "cheap price"), ("apple 13", "cheap")])
    empty = result_tag([])
    golds = [gold, empty, empty, gold]
    preds = [tp, empty, result_tag([("x", "y")]), "no result"]  # tp, tn, fp, parse error
    result = score("note_mrc_complex", golds, preds)
    assert result["success-ratio"] == 75.0
    assert result["total-precision"] == 50.0  # tp / (tp + fp)
    assert result["total-recall"] == 100.0  # tp / (tp + fn)
    assert result["success-total-precision"] == 37.5
    assert result["success-total-recall"] == 75.0
    assert result["success-total-f1"] == pytest.approx(75 * 2 / 3)
    # Per parsed sample (tp, tn, fp): option f1/em (1, 1, 0); reason f1/em (0.5, 1, 0).
    assert result["option-f1"] == result["option-em"] == pytest.approx(200 / 3)
    assert result["reason-f1"] == result["reason-em"] == pytest.approx(50.0)
    # Answer level, options: precision 2/2; upstream's "recall" = matched predictions / (those + missed golds)
    # = 2 / (2 + 1), not the share of gold items matched (1/2).
    assert result["answer-level-option-f1"] == pytest.approx(100 * (1 + 1 + 0) / 3)
    assert result["answer-level-option-em"] == pytest.approx(100 * (2 / 3 + 1 + 0) / 3)
    # Reasons at 0.5: one of two predictions matches, one of two golds is missed: (1/2, 1/2).
    assert result["answer-level-reason-f1"] == pytest.approx(50.0)
    assert result["answer-level-reason-em"] == pytest.approx(50.0)
    for name in ("option-f1", "option-em", "reason-f1", "reason-em", "answer-level-option-f1",
                 "answer-level-option-em", "answer-level-reason-f1", "answer-level-reason-em"):
        assert result[f"success-{name}"] == pytest.approx(0.75 * result[name])
    assert result["success-answer-level-option-em"] == pytest.approx(75 * 5 / 9)


def test_mrc_complex_success_total_keys_are_zero_without_positive_precision():
    result = score("note_mrc_complex", [result_tag([("a", "b")]), result_tag([])], [result_tag([])] * 2)  # fn, tn
    assert "official_would_crash" not in result
    assert result["success-total-precision"] == result["success-total-recall"] == result["success-total-f1"] == 0.0
    assert all(math.copysign(1.0, v) == 1.0 for v in result.values())  # no -0.0


def test_mrc_complex_tokens_follow_upstream_cjk_ranges_and_punctuation():
    # U+3400 (CJK extension A) is one token per character upstream: F1 of one shared token out of 1 and 2.
    ext_a = score("note_mrc_complex", [result_tag([("\u3400\u3401", "r")])], [result_tag([("\u3400", "r")])])
    assert ext_a["option-f1"] == pytest.approx(200 / 3)
    # A backslash is not among the deleted characters.
    slash = score("note_mrc_complex", [result_tag([("a\\b", "r")])], [result_tag([("ab", "r")])])
    assert slash["option-em"] == 0.0


def test_mrc_complex_result_parsing():
    gold = result_tag([("Apple 13", "cheap")])
    fenced = '<Result>```json\n[{"Option": "Apple 13", "Reason": "cheap"}]\n```</Result>'
    assert score("note_mrc_complex", [gold], [fenced])["reported_score"] == 100.0
    last_wins = "<think><Result>[]</Result></think>" + gold
    assert score("note_mrc_complex", [gold], [last_wins])["reported_score"] == 100.0
    assert score("note_mrc_complex", [gold], ["<Result></Result>"])["success-ratio"] == 0.0
    assert score("note_mrc_complex", [result_tag([])], ["<Result></Result>"], "fixed")["success-ratio"] == 100.0
    lower_keys = '<Result>[{"option": "Apple 13", "reason": "cheap"}]</Result>'
    assert score("note_mrc_complex", [gold], [lower_keys])["success-ratio"] == 0.0
    duplicated = result_tag([("Apple 13", "x"), ("Apple 13", "cheap")])
    assert score("note_mrc_complex", [gold], [duplicated])["reason-em"] == 100.0


# --- QueryGen ------------------------------------------------------------------------------------------------------


def test_querygen_anls_uses_the_raw_prediction_officially():
    gold = "polo wool sweater"
    pred = "<think>short</think>polo wool sweater"
    official = score("note_querygen", [gold], [pred])
    assert official["anls_mean"] == pytest.approx(100 * (1 - len("<think>short</think>") / len(pred)))
    assert official["final_scores"] == pytest.approx((official["anls_mean"] + official["embedding_similarity"]) / 2)
    assert official["embedding_similarity"] < 90  # the embedded text is '' (cut at "<")
    fixed = score("note_querygen", [gold], [pred], "fixed")
    assert fixed["anls_mean"] == pytest.approx(100.0)
    assert fixed["final_scores"] == pytest.approx(100.0)


def test_querygen_both_empty_would_crash_officially():
    result = score("note_querygen", ["", "polo"], ["", "polo"])
    assert result["official_would_crash"] is True
    assert result["final_scores"] == pytest.approx(100.0)


def test_embedding_cosine_is_pairwise_and_loads_the_model_once():
    from concurrent.futures import ThreadPoolExecutor

    from snsdata.rewards.embedding import cosine_similarity, get_model

    with ThreadPoolExecutor(4) as pool:
        models = list(pool.map(lambda _: get_model(), range(4)))
    assert all(m is models[0] for m in models)
    sims = cosine_similarity(
        ["polo wool sweater", "polo wool sweater", "polo wool sweater"],
        ["polo wool sweater", "knitted polo jumper", "cable car opening hours"],
    )
    assert sims.shape == (3,)
    assert sims[0] == pytest.approx(1.0, abs=1e-9)
    assert sims[1] > sims[2]
    assert cosine_similarity([], []).shape == (0,)


# --- SNS-TransBench ------------------------------------------------------------------------------------------------


def test_transbench_chrf_ignores_whitespace_and_word_order_and_bleu_is_separate():
    result = score("redtrans_zh2en", ["the cat"], ["thecat"], field="en")
    assert result["chrf_score"] == pytest.approx(100.0)  # chrF2 (word order 0), not chrF++
    assert result["bleu_score"] < 1.0
    assert set(result) == {"bleu_score", "chrf_score"}


def test_transbench_target_tokeniser_and_sentence_mean():
    gold, pred = "我爱北京天安门", "我爱北京天安"
    assert score("redtrans_en2zh", [gold], [pred], field="zh")["bleu_score"] > 50  # zh: one token per char
    assert score("redtrans_zh2en", [gold], [pred], field="en")["bleu_score"] < 1  # 13a: one token
    both = score("redtrans_zh2en", ["a b c d", "e f g h"], [" a b c d ", "x"], field="en")
    assert both["bleu_score"] == pytest.approx(50.0)  # mean of sentence BLEU 100 and 0, not corpus BLEU


def test_transbench_think_block_only_removed_when_fixed():
    gold = "This is my golden retriever."
    pred = "<think>Translate it.</think>" + gold
    assert score("redtrans_zh2en", [gold], [pred], field="en")["bleu_score"] < 100
    assert score("redtrans_zh2en", [gold], [pred], "fixed", field="en")["bleu_score"] == pytest.approx(100.0)


# --- robustness ------------------------------------------------------------------------------------------------

_PIECES = [*"ab [],'\"<>/{}:013-.\n好😀`", "<Result>", "</Result>", "<think>", "</think>", "end"]
_NOISE = st.lists(st.sampled_from(_PIECES), max_size=30).map("".join)
_GOLDS = {
    "note_chlw": "['a']",
    "note_mrc_simple": ["a b", "好"],
    "note_mrc_complex": '<Result>[{"Option": "a", "Reason": "b"}]</Result>',
    "note_querycorr_topic": "1",
}


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(preds=st.lists(_NOISE, min_size=1, max_size=3))
@pytest.mark.parametrize("compat", ["official", "fixed"])
@pytest.mark.parametrize("task", [t for t in OFFICIAL_TASKS if t != "note_querygen"])
def test_any_prediction_scores_without_raising(task, compat, preds):
    field = {"redtrans_zh2en": "en", "redtrans_en2zh": "zh"}.get(task, "answer")
    result = score(task, [_GOLDS.get(task, "a, b")] * len(preds), preds, compat, field=field)
    assert all(math.isfinite(v) for v in result.values())
    assert all(-1e-9 <= v <= 100 + 1e-9 for k, v in result.items() if k != "official_would_crash")


# --- verbatim gold on the shared samples ---------------------------------------------------------------------------


def gold_run(task: str, compat: str) -> dict[str, float | bool]:
    records = sample(task)
    return evaluate_benchmark(task, records, [gold_prediction(task, r) for r in records], compat)  # type: ignore[arg-type]


@pytest.mark.parametrize("task", OFFICIAL_TASKS)
def test_fixed_mode_scores_verbatim_gold_100(task):
    result = gold_run(task, "fixed")
    for name in REPORTED_METRICS[task]:
        assert result[name] == pytest.approx(100.0, abs=1e-6), name
    assert "official_would_crash" not in result


@pytest.mark.parametrize("task", ["note_taxonomy_single", "note_hashtag_single"])
def test_official_gold_single_label_accuracy(task):
    records = sample(task)
    cut = sum(any(s in r["answer"] for s in ("end", ".", ",", "<", ">", "\n")) for r in records)
    assert gold_run(task, "official")["accuracy"] == pytest.approx(100 * (1 - cut / len(records)))


def test_official_gold_taxonomy_multiple():
    # "." and "," cut both sides alike; "end", "<" and ">" cut only the prediction.
    records = sample("note_taxonomy_multiple")
    cut = sum(any(s in r["answer"] for s in ("end", "<", ">")) for r in records)
    assert gold_run("note_taxonomy_multiple", "official")["score"] == pytest.approx(100 * (1 - cut / len(records)))


@pytest.mark.parametrize("task", ["note_ner", "note_hashtag_multiple", "note_gender", "note_querycorr_explain"])
def test_official_gold_symmetric_tasks_are_100(task):
    assert gold_run(task, "official")[REPORTED_METRIC[task]] == 100.0


def test_official_gold_querycorr_topic():
    records = sample("note_querycorr_topic")
    counts = {level: sum(r["answer"] == level for r in records) for level in ("-1", "0", "1", "2", "3")}
    expected = sum(smoothed_level_f1(c, 0, 0) for c in counts.values()) / 5
    assert gold_run("note_querycorr_topic", "official")["success-macro-f1"] == pytest.approx(expected, abs=1e-9)


def test_official_gold_chlw():
    records = sample("note_chlw")
    nested = sum("[" in r["answer"][1:-1] or "]" in r["answer"][1:-1] for r in records)
    result = gold_run("note_chlw", "official")
    assert result["success-ratio"] == pytest.approx(100 * (1 - nested / len(records)))
    assert result["f1"] == 100.0


def test_official_gold_mrc_simple():
    records = sample("note_mrc_simple")
    n = len(records)
    assert all(r["answer"] for r in records)  # no empty gold in the sample: every parsed pair is a tp
    bracketed = sum(any("[" in s or "]" in s for s in r["answer"]) for r in records)
    parsed = [r for r in records if not any("[" in s or "]" in s for s in r["answer"])]
    assert all(len(list(jieba.cut("".join(r["answer"])))) >= 4 for r in parsed)  # so exact BLEU is 1
    tp = n - bracketed
    success = 100 * tp / n
    precision = tp / (tp + 1e-4)
    f1 = 2 * precision * precision / (2 * precision + 1e-4)
    rouge = 2 / (2 + 1e-8)  # the rouge package's F for identical texts
    result = gold_run("note_mrc_simple", "official")
    assert result["success-ratio"] == pytest.approx(success)
    assert result["blue"] == pytest.approx(100.0)
    assert result["rouge-L"] == pytest.approx(100 * rouge, abs=1e-9)
    expected = success * (f1 + 1 + 3 * rouge) / 5
    assert result["reported_score"] == pytest.approx(expected, abs=1e-9)
    assert math.isclose(result["success-f1"], success * f1)


def test_official_gold_mrc_complex_and_querygen_and_transbench_are_100():
    assert gold_run("note_mrc_complex", "official")["reported_score"] == 100.0
    assert gold_run("note_querygen", "official")["final_scores"] == pytest.approx(100.0, abs=1e-6)
    for task in ("redtrans_zh2en", "redtrans_en2zh"):
        result = gold_run(task, "official")
        assert result["bleu_score"] == pytest.approx(100.0)
        assert result["chrf_score"] == pytest.approx(100.0)
