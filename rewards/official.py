"""Benchmark-exact evaluators for SNS-Bench (12 subsets) and SNS-TransBench (zh2en, en2zh).

`compat="official"` reproduces what the benchmark's OpenCompass evaluators compute (metric names, 0-100
scale, parse-rate multipliers, smoothing terms and every documented quirk), so our numbers line up with
published tables. `compat="fixed"` keeps the metric names but removes the documented bugs (think blocks,
cuts inside labels, crash cases, ...); docs/official_metrics.md lists every difference and why.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable
from typing import Any, Literal

from rapidfuzz.distance import Levenshtein
from sacrebleu.metrics import BLEU, CHRF

from snsdata.rewards.official_mrc import evaluate_mrc_complex, evaluate_mrc_simple
from snsdata.rewards.official_text import (
    answer_line,
    clean_response,
    first_bracket_span,
    fixed_items,
    general_postprocess,
    label_matches,
    np_mean,
    parse_list_literal,
    postprocess_a,
    postprocess_b,
    postprocess_c,
    querygen_truncate,
    safe_eval,
    strip_think,
)

Compat = Literal["official", "fixed"]
Result = dict[str, float | bool]


# --- exact-match tasks (AccEvaluator / EMEvaluator) ----------------------------------------------------


def _accuracy(golds: list[Any], predictions: list[str], fixed: bool, family: str) -> Result:
    """Exact-match accuracy after postprocessor A (labels) or B (Yes/No)."""
    if fixed:
        hits = [label_matches(p, str(g), casefold=family == "B") for g, p in zip(golds, predictions, strict=True)]
    else:
        post = postprocess_a if family == "A" else postprocess_b
        hits = [post(p) == str(g) for g, p in zip(golds, predictions, strict=True)]
    # scikit-learn's accuracy_score, then AccEvaluator's `*= 100` (in that order, to the last bit).
    return {"accuracy": sum(hits) / len(hits) * 100}


# Levels are stripped below, so a separator needs no surrounding `\s*` (which rescanned a whitespace run from each
# of its characters); a spaced hyphen starts where its whitespace run starts.
_LEVEL_SPLIT = re.compile(r"[|/>›»,;，；、]|(?<!\s)\s+-\s+")


def _levels(text: str) -> list[str]:
    """Taxonomy path as a list of levels, each with punctuation removed and whitespace collapsed."""
    levels = (re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", level)).strip() for level in _LEVEL_SPLIT.split(text))
    return [level for level in levels if level]


def _taxonomy_multiple(golds: list[Any], predictions: list[str], fixed: bool) -> Result:
    """Whole-path exact match (EMEvaluator with a one-element reference list)."""
    hits = 0
    for gold, prediction in zip(golds, predictions, strict=True):
        gold = str(gold)
        if fixed:
            hits += _levels(answer_line(prediction)) == _levels(gold)
        else:
            pred = general_postprocess(postprocess_a(prediction))
            hits += pred in (general_postprocess(gold), gold)
    return {"score": hits / len(predictions) * 100}


# --- set F1 tasks ----------------------------------------------------------------------------------------


def _pooled_counts(pairs: list[tuple[list[str], list[str]]]) -> tuple[int, int, int]:
    """(TP, predicted, gold) summed over samples, each side as a set."""
    tp = p = r = 0
    for pred, ref in pairs:
        pred_set, ref_set = set(pred), set(ref)
        tp += len(pred_set & ref_set)
        p += len(pred_set)
        r += len(ref_set)
    return tp, p, r


def _ratio(num: float, den: float, empty: float) -> float:
    return num / den if den else empty


def _set_f1(golds: list[Any], predictions: list[str], fixed: bool) -> Result:
    """NER / Hashtag-multiple: pooled set F1 over comma lists (both sides through the same parser)."""
    parse = fixed_items if fixed else postprocess_c
    tp, p, r = _pooled_counts([(parse(pred), parse(str(g))) for g, pred in zip(golds, predictions, strict=True)])
    if fixed:
        return {"f1": 100 * _ratio(2 * tp, p + r, 1.0)}
    return {"f1": round(2 * tp / (p + r + 0.0001), 4) * 100}


def _official_chlw_list(text: str, search: bool) -> list[str] | None:
    """Official CHLW parse: (first bracket span,) eval, list of str, [] -> [""]; None = parse error."""
    try:
        value = safe_eval(first_bracket_span(text) if search else text)
    except Exception:  # every exception is a parse error upstream
        return None
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        return None
    return value or [""]


def _fixed_chlw_list(text: str) -> list[str] | None:
    """Fixed CHLW parse: the whole list literal after think removal; [] -> [""] kept (see docs)."""
    value = parse_list_literal(strip_think(text))
    if value is None or not all(isinstance(item, str) for item in value):
        return None
    return value or [""]


def _chlw(golds: list[Any], predictions: list[str], fixed: bool) -> Result:
    """Highlight words: pooled set F1 over the parsed samples, times the parse rate."""
    pairs = []
    for gold, prediction in zip(golds, predictions, strict=True):
        if fixed:
            ref, pred = _fixed_chlw_list(str(gold)), _fixed_chlw_list(prediction)
        else:
            ref, pred = _official_chlw_list(str(gold), search=False), _official_chlw_list(prediction, search=True)
        if ref is not None and pred is not None:
            pairs.append((pred, ref))
    tp, p, r = _pooled_counts(pairs)
    if fixed:
        f1, precision, recall = _ratio(2 * tp, p + r, 0.0), _ratio(tp, p, 0.0), _ratio(tp, r, 0.0)
    else:
        f1 = round(2 * tp / (p + r + 1e-4), 4)
        precision, recall = round(tp / (p + 1e-4), 4), round(tp / (r + 1e-4), 4)
    success = (1 - (len(predictions) - len(pairs)) / len(predictions)) * 100
    return {
        "success-ratio": success,
        "f1": f1 * 100,
        "precision": precision * 100,
        "recall": recall * 100,
        "success-f1": success * f1,
        "success-precision": success * precision,
        "success-recall": success * recall,
    }


# --- QueryCorr-topic -------------------------------------------------------------------------------------

_LEVELS = ("-1", "0", "1", "2", "3")
_OFFICIAL_LEVEL = re.compile(r"(-1|0|1|2|3)")
# A standalone level: not part of a longer number ("13", "2.5", "-10", "0.3").
_FIXED_LEVEL = re.compile(r"(?<![\d.])(-1|0|1|2|3)(?!\d|\.\d)")


def querycorr_level(prediction: str, fixed: bool = False) -> str | None:
    """The relevance level read from a prediction. Officially the first "-1|0|1|2|3" anywhere in the raw
    text ("13" -> "1", think digits included); fixed: the first standalone level after think removal."""
    match = _FIXED_LEVEL.search(clean_response(prediction)) if fixed else _OFFICIAL_LEVEL.search(prediction)
    return match.group(1) if match else None


def _querycorr_topic(golds: list[Any], predictions: list[str], fixed: bool) -> Result:
    """Per-level precision/recall/F1 and their macro-F1 over the five relevance levels, times the parse rate."""
    tp, fp, fn = Counter[str](), Counter[str](), Counter[str]()
    errors = 0
    for gold, prediction in zip(golds, predictions, strict=True):
        pred, ref = querycorr_level(prediction, fixed), str(gold)
        if pred is None:
            errors += 1
            continue
        if not fixed and ref not in _LEVELS:  # upstream's per-level counter has no such key: KeyError
            return {**_querycorr_topic(golds, predictions, fixed=True), "official_would_crash": True}
        if pred == ref:
            tp[ref] += 1
        else:
            fn[ref] += 1
            fp[pred] += 1
    success = 1 - errors / len(predictions)
    result: Result = {"success-ratio": success * 100}
    for lv in _LEVELS:
        if fixed:  # unsmoothed; 0 where a denominator is 0
            precision = _ratio(tp[lv], tp[lv] + fp[lv], 0.0) * 100
            recall = _ratio(tp[lv], tp[lv] + fn[lv], 0.0) * 100
            f1 = _ratio(2 * tp[lv], 2 * tp[lv] + fp[lv] + fn[lv], 0.0) * 100
        else:  # smoothing terms on the 0-100 scale, as upstream
            precision = tp[lv] / (tp[lv] + fp[lv] + 1e-5) * 100
            recall = tp[lv] / (tp[lv] + fn[lv] + 1e-5) * 100
            f1 = 2 * precision * recall / (precision + recall + 1e-5)
        result |= {f"level({lv})-precision": precision, f"level({lv})-recall": recall, f"level({lv})-f1": f1}
    if fixed:
        # Levels seen in gold or predictions only (sklearn's macro over present labels).
        f1s = [float(result[f"level({lv})-f1"]) for lv in _LEVELS if tp[lv] + fp[lv] + fn[lv]]
    else:
        f1s = [float(result[f"level({lv})-f1"]) for lv in _LEVELS]
    macro = sum(f1s) / len(f1s) if f1s else 0.0
    result["success-macro-f1"] = macro * success
    result["macro-f1"] = macro
    return result


# --- QueryGen --------------------------------------------------------------------------------------------


def _anls(pred: str, ref: str) -> float:
    return (1.0 - Levenshtein.distance(pred, ref) / max(len(pred), len(ref))) * 100


def _querygen(golds: list[Any], predictions: list[str], fixed: bool) -> Result:
    """Mean of (embedding cosine x 100 + ANLS) / 2; MiniLM stands in for bge-large-en-v1.5."""
    from snsdata.rewards.embedding import cosine_similarity

    refs = [str(g) for g in golds]
    if fixed:
        embedded = anls_texts = [answer_line(p) for p in predictions]
    else:
        if any(not p and not r for p, r in zip(predictions, refs, strict=True)):
            return {**_querygen(golds, predictions, fixed=True), "official_would_crash": True}
        embedded, anls_texts = [querygen_truncate(p) for p in predictions], predictions
    sims = cosine_similarity(refs, embedded) * 100
    anls = [_anls(p, r) if p or r else 100.0 for p, r in zip(anls_texts, refs, strict=True)]
    scores = [(float(sim) + a) / 2 for sim, a in zip(sims, anls, strict=True)]
    return {"final_scores": np_mean(scores), "anls_mean": np_mean(anls), "embedding_similarity": np_mean(sims)}


# --- SNS-TransBench --------------------------------------------------------------------------------------


def _translation(golds: list[Any], predictions: list[str], fixed: bool, target: str) -> Result:
    """Mean sentence-level sacreBLEU and chrF (beta 2, no word n-grams), reported separately."""
    bleu = BLEU(tokenize="zh" if target == "zh" else "13a", effective_order=True)
    chrf = CHRF(beta=2)
    bleus, chrfs = [], []
    for gold, prediction in zip(golds, predictions, strict=True):
        hyp = clean_response(prediction) if fixed else prediction.strip()
        ref = str(gold).strip()
        bleus.append(bleu.sentence_score(hyp, [ref]).score / 100)
        chrfs.append(chrf.sentence_score(hyp, [ref]).score / 100)
    return {"bleu_score": np_mean(bleus) * 100, "chrf_score": np_mean(chrfs) * 100}


# --- registry --------------------------------------------------------------------------------------------

Evaluator = Callable[[list[Any], list[str], bool], Result]


def _family(family: str) -> Evaluator:
    return lambda golds, preds, fixed: _accuracy(golds, preds, fixed, family)


def _target(lang: str) -> Evaluator:
    return lambda golds, preds, fixed: _translation(golds, preds, fixed, lang)


_SUCCESS = ("success-ratio",)
_MRC_SIMPLE_KEYS = (
    "success-ratio", "total-tp", "total-fp", "total-fn", "total-tn", "total-precision", "total-recall", "total-f1",
    "blue", "rouge-1", "rouge-2", "rouge-L",
    "success-f1", "success-blue", "success-rouge-1", "success-rouge-2", "success-rouge-L",
)
_MRC_COMPLEX_SCORES = (
    "total-precision", "total-recall", "total-f1", "option-f1", "option-em", "reason-f1", "reason-em",
    "answer-level-option-f1", "answer-level-option-em", "answer-level-reason-f1", "answer-level-reason-em",
)
_LEVEL_KEYS = tuple(f"level({lv})-{m}" for lv in _LEVELS for m in ("precision", "recall", "f1"))

# task id -> (record field holding the reference, evaluator, reported metric names, official result keys)
_TASKS: dict[str, tuple[str, Evaluator, tuple[str, ...], tuple[str, ...]]] = {
    "note_taxonomy_single": ("answer", _family("A"), ("accuracy",), ("accuracy",)),
    "note_taxonomy_multiple": ("answer", _taxonomy_multiple, ("score",), ("score",)),
    "note_hashtag_single": ("answer", _family("A"), ("accuracy",), ("accuracy",)),
    "note_hashtag_multiple": ("answer", _set_f1, ("f1",), ("f1",)),
    "note_querycorr_topic": (
        "answer", _querycorr_topic, ("success-macro-f1",), (*_SUCCESS, *_LEVEL_KEYS, "success-macro-f1"),
    ),
    "note_querycorr_explain": ("answer", _family("B"), ("accuracy",), ("accuracy",)),
    "note_mrc_simple": ("answer", evaluate_mrc_simple, ("reported_score",), _MRC_SIMPLE_KEYS),
    "note_mrc_complex": (
        "answer", evaluate_mrc_complex, ("reported_score",),
        (*_SUCCESS, *_MRC_COMPLEX_SCORES, *(f"success-{k}" for k in _MRC_COMPLEX_SCORES)),
    ),
    "note_ner": ("answer", _set_f1, ("f1",), ("f1",)),
    "note_gender": ("answer", _family("B"), ("accuracy",), ("accuracy",)),
    "note_chlw": (
        "answer", _chlw, ("success-f1",),
        ("success-ratio", "f1", "precision", "recall", "success-f1", "success-precision", "success-recall"),
    ),
    "note_querygen": ("answer", _querygen, ("final_scores",), ("final_scores",)),
    "redtrans_zh2en": ("en", _target("en"), ("bleu_score", "chrf_score"), ("bleu_score", "chrf_score")),
    "redtrans_en2zh": ("zh", _target("zh"), ("bleu_score", "chrf_score"), ("bleu_score", "chrf_score")),
}

OFFICIAL_TASKS: tuple[str, ...] = tuple(_TASKS)
REPORTED_METRICS: dict[str, tuple[str, ...]] = {task: spec[2] for task, spec in _TASKS.items()}
"""Every column the benchmark reports per task (TransBench reports BLEU and chrF side by side)."""
REPORTED_METRIC: dict[str, str] = {task: names[0] for task, names in REPORTED_METRICS.items()}
"""The headline metric per task (for TransBench, BLEU; chrF is in REPORTED_METRICS)."""
OFFICIAL_KEYS: dict[str, tuple[str, ...]] = {task: spec[3] for task, spec in _TASKS.items()}
"""Every number the task's official evaluator returns, under its name and in its order; both modes return all."""
SNSDATA_KEYS: frozenset[str] = frozenset(
    {"reported_score", "macro-f1", "anls_mean", "embedding_similarity", "official_would_crash"}
)
"""Keys snsdata adds beside the official ones (docs/official_metrics.md, "Keys we add")."""


def gold_prediction(task_id: str, record: dict[str, Any]) -> str:
    """The verbatim gold answer as a model would write it (MRC-simple's span list as a JSON list)."""
    value = record[_TASKS[task_id][0]]
    if isinstance(value, list):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def evaluate_benchmark(
    task_id: str, records: list[dict[str, Any]], predictions: list[str], compat: Compat = "official"
) -> dict[str, float | bool]:
    """Score a whole benchmark file: every key of `OFFICIAL_KEYS[task_id]` in the official evaluator's order, then
    snsdata's own keys (`SNSDATA_KEYS`). Values are 0-100; `official_would_crash` is present (True) only when the
    official evaluator would have crashed, in which case the fixed-mode values are returned."""
    if task_id not in _TASKS:
        raise ValueError(f"unknown task {task_id!r}; expected one of {', '.join(OFFICIAL_TASKS)}")
    if compat not in ("official", "fixed"):
        raise ValueError(f"compat must be 'official' or 'fixed', got {compat!r}")
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    if not records:
        raise ValueError("no records to evaluate")
    field, evaluator, _, official_keys = _TASKS[task_id]
    golds = [record[field] for record in records]
    result = evaluator(golds, [str(p) for p in predictions], compat == "fixed")
    return {key: result[key] for key in official_keys} | result
