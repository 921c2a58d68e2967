"""SNS-Bench MRC evaluators (Note-MRC-simple, Note-MRC-complex), official and fixed.

Each evaluator takes references and raw predictions and returns the official metric dict (0-100 scale). Where
the official code would crash, the fixed-mode result is returned with `official_would_crash` set.
"""

from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from difflib import SequenceMatcher
from functools import cache
from typing import Any

import demoji
import jieba
from nltk.translate.bleu_score import SmoothingFunction, sentence_bleu
from rapidfuzz.distance import LCSseq
from rouge import Rouge

from snsdata.rewards.official_text import (
    first_bracket_span,
    np_mean,
    parse_list_literal,
    safe_eval,
    strip_fence,
    strip_think,
)
from snsdata.rewards.parse import tag_bodies

Result = dict[str, float | bool]
# (gold has an answer, prediction has an answer) -> confusion cell
_STATUS = {(False, False): "tn", (True, False): "fn", (False, True): "fp", (True, True): "tp"}

# --- Note-MRC-simple ---------------------------------------------------------------------------------


def _mrc_simple_reference(answer: Any) -> list[str]:
    """The gold spans as a list (the benchmark stores a list; a list-literal string is accepted too)."""
    if isinstance(answer, str):
        parsed = parse_list_literal(answer)
        return [str(s) for s in parsed] if parsed is not None else [answer]
    return [str(s) for s in answer]


def _official_simple_pred(prediction: str) -> str | None:
    """First bracket span (or the whole text), evaluated and joined with newlines; None = parse error."""
    try:
        return "\n".join(safe_eval(first_bracket_span(prediction))).strip()
    except Exception:  # the official evaluator treats every exception as a parse error
        return None


def _fixed_simple_pred(prediction: str) -> str | None:
    """The whole list literal (after think removal), newline-joined; None when no list of strings is found."""
    value = parse_list_literal(strip_think(prediction))
    if value is None or not all(isinstance(item, str) for item in value):
        return None
    return "\n".join(value).strip()


def _overlap_text(text: str, newline: str) -> str:
    """Text compared by BLEU/ROUGE: newlines (deleted officially, spaced in fixed mode), U+FFFD and emoji out."""
    return demoji.replace(text.replace("\n", newline).replace("\ufffd", ""), "")


@cache
def _rouge() -> Rouge:
    return Rouge()


def _official_overlap(hyp: str, ref: str) -> tuple[float, float, float, float] | None:
    """NLTK BLEU without smoothing and `rouge` package F scores on jieba tokens; None when rouge raises."""
    hyp_tokens, ref_tokens = list(jieba.cut(hyp)), list(jieba.cut(ref))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # NLTK warns on every zero n-gram count
        bleu = sentence_bleu([ref_tokens], hyp_tokens)
    try:
        scores = _rouge().get_scores(" ".join(hyp_tokens), " ".join(ref_tokens))[0]
    except Exception:  # the official evaluator re-raises this as "Rouge Error" and the run dies
        return None
    return bleu, scores["rouge-1"]["f"], scores["rouge-2"]["f"], scores["rouge-l"]["f"]


def _ngram_f(hyp: list[str], ref: list[str], n: int) -> float:
    """ROUGE-N F1; two texts too short for any n-gram score 1 when identical."""
    hyp_grams = Counter(zip(*(hyp[i:] for i in range(n)), strict=False))
    ref_grams = Counter(zip(*(ref[i:] for i in range(n)), strict=False))
    if not hyp_grams and not ref_grams:
        return float(hyp == ref)
    overlap = sum((hyp_grams & ref_grams).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / sum(hyp_grams.values()), overlap / sum(ref_grams.values())
    return 2 * precision * recall / (precision + recall)


def _fixed_overlap(hyp: str, ref: str) -> tuple[float, float, float, float]:
    """BLEU with effective order and method-1 smoothing, ROUGE-1/2/L F1 over whole token sequences;
    whitespace tokens dropped; never raises."""
    hyp_tokens = [t for t in jieba.cut(hyp) if t.strip()]
    ref_tokens = [t for t in jieba.cut(ref) if t.strip()]
    if not hyp_tokens or not ref_tokens:
        same = float(hyp_tokens == ref_tokens)
        return same, same, same, same
    order = min(4, len(hyp_tokens))
    bleu = sentence_bleu(
        [ref_tokens], hyp_tokens, weights=(1 / order,) * order, smoothing_function=SmoothingFunction().method1
    )
    lcs = LCSseq.similarity(hyp_tokens, ref_tokens)
    if lcs:
        precision, recall = lcs / len(hyp_tokens), lcs / len(ref_tokens)
        rouge_l = 2 * precision * recall / (precision + recall)
    else:
        rouge_l = 0.0
    return bleu, _ngram_f(hyp_tokens, ref_tokens, 1), _ngram_f(hyp_tokens, ref_tokens, 2), rouge_l


def evaluate_mrc_simple(answers: list[Any], predictions: list[str], fixed: bool) -> Result:
    """Answer/no-answer F1 plus BLEU and ROUGE-1/2/L over the answered pairs, each times the parse rate."""
    n = len(predictions)
    errors = 0
    counts = Counter[str]()
    overlaps: list[tuple[float, float, float, float]] = []
    for answer, prediction in zip(answers, predictions, strict=True):
        spans = _mrc_simple_reference(answer)
        ref = "\n".join(spans).strip() if fixed else "".join(spans)
        pred = _fixed_simple_pred(prediction) if fixed else _official_simple_pred(prediction)
        if pred is None:
            errors += 1
            continue
        kind = _STATUS[(bool(ref), bool(pred))]
        counts[kind] += 1
        if kind != "tp":
            continue
        newline = " " if fixed else ""
        hyp_text, ref_text = _overlap_text(pred, newline), _overlap_text(ref, newline)
        scored = _fixed_overlap(hyp_text, ref_text) if fixed else _official_overlap(hyp_text, ref_text)
        if scored is None:
            return {**evaluate_mrc_simple(answers, predictions, fixed=True), "official_would_crash": True}
        overlaps.append(scored)

    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    if fixed:
        precision = tp / (tp + fp) if tp + fp else float(fn == 0)
        recall = tp / (tp + fn) if tp + fn else float(fp == 0)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    else:
        precision = tp / (tp + fp + 1e-4)
        recall = tp / (tp + fn + 1e-4)
        f1 = 2 * precision * recall / (precision + recall + 1e-4)
    means = [np_mean(column) for column in zip(*overlaps, strict=True)] if overlaps else [0.0] * 4
    success = (1 - errors / n) * 100
    result: Result = {"success-ratio": success}
    result |= {f"total-{k}": counts[k] / n * 100 for k in ("tp", "fp", "fn", "tn")}
    result |= {"total-precision": precision * 100, "total-recall": recall * 100, "total-f1": f1 * 100}
    names = ("blue", "rouge-1", "rouge-2", "rouge-L")
    result |= {name: value * 100 for name, value in zip(names, means, strict=True)}
    result |= {"success-f1": success * f1}
    result |= {f"success-{name}": success * value for name, value in zip(names, means, strict=True)}
    reported = ("success-f1", "success-blue", "success-rouge-1", "success-rouge-2", "success-rouge-L")
    result["reported_score"] = sum(float(result[k]) for k in reported) / len(reported)
    return result


# --- Note-MRC-complex --------------------------------------------------------------------------------

# Deleted before comparing options/reasons. Upstream also lists the two-character "……", which a
# per-character deletion can never match, so it is left out.
_MRC_PUNCT = frozenset(":_`，。：？！()“”；’《》·、,「」（）－～『』|")
# Upstream's "Chinese character" ranges: CJK Unified Ideographs, extensions A-E, compatibility ideographs and
# their supplement.
_CJK = (
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002a6df\U0002a700-\U0002b73f\U0002b740-\U0002b81f"
    "\U0002b820-\U0002ceaf\U0002f800-\U0002fa1f"
)
# One token per CJK ideograph or "=", one token per run of anything else (spaces included).
_MRC_TOKEN = re.compile(f"[{_CJK}=]|[^{_CJK}=]+")

Items = list[tuple[str, str]]


def _validate_items(value: Any) -> Items | None:
    """A list of {"Option": str, "Reason": str}, de-duplicated by Option (first order, last Reason)."""
    if not isinstance(value, list):
        return None
    merged: dict[str, str] = {}
    for item in value:
        if not isinstance(item, dict):
            return None
        option, reason = item.get("Option"), item.get("Reason")
        if not isinstance(option, str) or not isinstance(reason, str):
            return None
        merged[option] = reason
    return list(merged.items())


def _parse_result(text: str, fixed: bool) -> Items | None:
    """The last <Result> block as Option/Reason pairs; None = parse error."""
    if fixed:
        found = tag_bodies(strip_think(text), "Result")
        body = (strip_fence(found[-1]) or "[]") if found else None
    else:
        found = tag_bodies(text, "Result", allow_empty=False)  # upstream: (?<=<Result>).+?(?=</Result>)
        # A character-set strip meant for ```json fences.
        body = found[-1].strip().lstrip("`json").rstrip("`") if found else None
    if body is None:
        return None
    try:
        return _validate_items(json.loads(body))
    except ValueError:
        return None


def _normalise(text: str) -> str:
    return "".join(ch for ch in text.lower() if ch not in _MRC_PUNCT)


def _token_f1(pred: str, gold: str, fixed: bool) -> float:
    """F1 from the longest common *contiguous* token run (what the official `find_lcs` computes). Two empty
    strings share no run, so officially they score 0; fixed mode scores them as identical."""
    p, g = _MRC_TOKEN.findall(_normalise(pred)), _MRC_TOKEN.findall(_normalise(gold))
    if not p or not g:
        return float(fixed and not p and not g)
    size = SequenceMatcher(None, p, g, autojunk=False).find_longest_match(0, len(p), 0, len(g)).size
    if size == 0:
        return 0.0
    precision, recall = size / len(p), size / len(g)
    return 2 * precision * recall / (precision + recall)


def _harmonic(a: float, b: float) -> float:
    return 2 * a * b / (a + b) if a + b else 0.0


def _field_scores(preds: list[str], golds: list[str], threshold: float, fixed: bool) -> tuple[float, ...]:
    """(f1, em, answer-level a, answer-level b) for one field of a tp sample.

    Official: means over the predicted items (precision-like); answer-level precision = matched predicted
    items / predicted items and "recall" = matched predicted items / (those + unmatched gold items), as
    upstream counts them (two predictions matching one gold item both count). Fixed: every pair is the F1 of a
    precision-like and a recall-like side."""
    sim = [[_token_f1(p, g, fixed) for g in golds] for p in preds]
    norm_golds = {_normalise(g) for g in golds}
    norm_preds = {_normalise(p) for p in preds}
    best_for_pred = [max(row) for row in sim]
    best_for_gold = [max(col) for col in zip(*sim, strict=True)]
    if not fixed:
        matched = sum(s > threshold for s in best_for_pred)
        missed = sum(not s > threshold for s in best_for_gold)
        level_p, level_r = (matched / len(preds), matched / (matched + missed)) if matched else (0.0, 0.0)
        em_items = [float(_normalise(p) in norm_golds) for p in preds]
        return np_mean(best_for_pred), np_mean(em_items), level_p, level_r
    f1_p = sum(best_for_pred) / len(preds)
    em_p = sum(_normalise(p) in norm_golds for p in preds) / len(preds)
    level_p = sum(s > threshold for s in best_for_pred) / len(preds)
    level_r = sum(s > threshold for s in best_for_gold) / len(golds)
    f1_r = sum(best_for_gold) / len(golds)
    em_r = sum(_normalise(g) in norm_preds for g in golds) / len(golds)
    em = _harmonic(em_p, em_r)
    return _harmonic(f1_p, f1_r), em, _harmonic(level_p, level_r), em


_FIELDS = ("option-f1", "option-em", "answer-level-option-f1", "answer-level-option-em")
_REASON_FIELDS = ("reason-f1", "reason-em", "answer-level-reason-f1", "answer-level-reason-em")
_ORDER = ("option-f1", "option-em", "reason-f1", "reason-em", *_FIELDS[2:], *_REASON_FIELDS[2:])
"""Upstream's order of the per-sample means in its result."""


def evaluate_mrc_complex(answers: list[str], predictions: list[str], fixed: bool) -> Result:
    """Answer/no-answer counts plus option/reason similarity, each times the parse rate."""
    n = len(predictions)
    errors = 0
    counts = Counter[str]()
    per_sample: dict[str, list[float]] = {name: [] for name in _FIELDS + _REASON_FIELDS}
    for answer, prediction in zip(answers, predictions, strict=True):
        gold, pred = _parse_result(answer, fixed), _parse_result(prediction, fixed)
        if gold is None or pred is None:
            errors += 1
            continue
        kind = _STATUS[(bool(gold), bool(pred))]
        counts[kind] += 1
        if kind == "tp":
            options = _field_scores([o for o, _ in pred], [o for o, _ in gold], 0.8, fixed)
            reasons = _field_scores([r for _, r in pred], [r for _, r in gold], 0.5, fixed)
            sample_scores = options + reasons
        else:  # tn scores 1 on every sub-score, fp and fn 0
            sample_scores = (float(kind == "tn"),) * len(per_sample)
        for values, value in zip(per_sample.values(), sample_scores, strict=True):
            values.append(value)

    tp, fp, fn = counts["tp"], counts["fp"], counts["fn"]
    parsed = n - errors
    if fixed:
        if tp + fp + fn == 0:
            precision = recall = f1 = 1.0 if parsed else 0.0
        else:
            precision = tp / (tp + fp) if tp + fp else 0.0
            recall = tp / (tp + fn) if tp + fn else 0.0
            f1 = _harmonic(precision, recall)
    else:
        precision = tp / (tp + fp) if tp + fp else -1.0
        recall = tp / (tp + fn) if tp + fn else -1.0
        if precision + recall == 0:  # tp = 0 with fp > 0 and fn > 0: ZeroDivisionError upstream
            return {**evaluate_mrc_complex(answers, predictions, fixed=True), "official_would_crash": True}
        f1 = 2 * precision * recall / (precision + recall)
        # Upstream gates recall on the precision (a copy/paste slip); with these counts it never changes
        # the output, because recall > 0 implies tp > 0 and hence precision > 0.
        recall = recall if precision > 0 else 0.0

    success = (1 - errors / n) * 100
    # Each score in 0-1, in upstream's key order; the result holds it x 100 and x the success ratio. Scores
    # <= 0 are 0 (upstream's `x if x > 0 else 0`; also keeps a -0.0 out of the output).
    scores = {"total-precision": precision, "total-recall": recall, "total-f1": f1}
    scores |= {name: np_mean(per_sample[name]) for name in _ORDER}
    scores = {name: value if value > 0 else 0.0 for name, value in scores.items()}
    result: Result = {"success-ratio": success}
    result |= {name: value * 100 for name, value in scores.items()}
    result |= {f"success-{name}": success * value for name, value in scores.items()}
    reported = ("success-total-f1", "success-option-f1", "success-option-em")
    result["reported_score"] = sum(float(result[k]) for k in reported) / len(reported)
    return result
