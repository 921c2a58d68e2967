"""Corpus metrics for `evaluate`: what a file of predictions scores as a whole, by output format (0-1 scale)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from typing import Any

from sacrebleu.metrics import BLEU, CHRF

from snsdata.rewards.metrics import METRICS, as_items, as_number, as_text, as_typed, run_metric
from snsdata.rewards.normalize import is_mostly_cjk
from snsdata.rewards.parse import Parsed
from snsdata.rewards.types import ScoreDetail
from snsdata.spec.models import TaskSpec
from snsdata.spec.reward import MetricReward, RewardSpec, metric_params

FULL_MARKS = 1.0 - 1e-6


def _f1(tp: float, n_pred: float, n_gold: float) -> tuple[float, float, float]:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return precision, recall, f1


def _label_metrics(preds: list[Parsed], golds: list[Any]) -> dict[str, float]:
    """Accuracy and macro-F1 over the classes seen in the gold or predicted (like scikit-learn)."""
    tp: Counter[Any] = Counter()
    n_pred: Counter[Any] = Counter()
    n_gold: Counter[Any] = Counter()
    for pred, gold in zip(preds, golds, strict=True):
        n_gold[gold] += 1
        if pred.ok:
            n_pred[pred.value] += 1
            tp[gold] += pred.value == gold
    classes = set(n_gold) | set(n_pred)
    macro = sum(_f1(tp[c], n_pred[c], n_gold[c])[2] for c in classes) / len(classes)
    return {"accuracy": sum(tp.values()) / len(golds), "macro_f1": macro}


def _set_metrics(preds: list[Parsed], golds: list[Any], typed: bool) -> dict[str, float]:
    """Pooled (micro) precision/recall/F1 over all items of the file, and the share of exactly right sets."""
    view = as_typed if typed else as_items
    tp = n_pred = n_gold = exact = 0
    for pred, gold in zip(preds, golds, strict=True):
        p, g = set(view(pred.value) or []), set(view(gold) or [])
        tp += len(p & g)
        n_pred += len(p)
        n_gold += len(g)
        exact += p == g
    precision, recall, f1 = _f1(tp, n_pred, n_gold)
    return {"precision": precision, "recall": recall, "f1": f1, "exact_match": exact / len(golds)}


def _bleu_tokenize(reward: RewardSpec, golds: Sequence[str]) -> str:
    for leaf in _leaves(reward):
        if isinstance(leaf, MetricReward) and leaf.metric == "bleu":
            return str(metric_params(leaf).tokenize)
    return "zh" if is_mostly_cjk(golds) else "13a"


def _leaves(reward: RewardSpec) -> list[RewardSpec]:
    if reward.type != "composite":
        return [reward]
    nested = [part.reward for part in reward.parts] + ([reward.gate] if reward.gate else [])
    return [leaf for r in nested for leaf in _leaves(r)]


def _text_metrics(spec: TaskSpec, preds: list[Parsed], golds: list[Any]) -> dict[str, float]:
    """Corpus BLEU, chrF and chrF++ (sacreBLEU) and mean ROUGE-L (0-1)."""
    hyps = [as_text(p.value) or "" for p in preds]
    refs = [as_text(g) or "" for g in golds]
    tokenize = _bleu_tokenize(spec.reward, refs)
    bleu = BLEU(tokenize=tokenize).corpus_score(hyps, [refs]).score / 100
    chrf = CHRF().corpus_score(hyps, [refs]).score / 100
    chrf_pp = CHRF(word_order=2).corpus_score(hyps, [refs]).score / 100
    rouge_metric = METRICS["rouge_l"]
    rouge = run_metric(rouge_metric, hyps, refs, metric_params(MetricReward(metric="rouge_l")))
    scored = [r for r in rouge if r is not None]
    return {"bleu": bleu, "chrf": chrf, "chrf++": chrf_pp, "rouge_l": sum(scored) / len(scored)}


def _number_metrics(preds: list[Parsed], golds: list[Any]) -> dict[str, float]:
    errors = []
    hits = 0
    for pred, gold in zip(preds, golds, strict=True):
        p, g = as_number(pred.value), as_number(gold)
        if p is not None and g is not None:
            errors.append(abs(p - g))
            hits += math.isclose(p, g, rel_tol=1e-9, abs_tol=1e-9)
    out = {"accuracy": hits / len(golds)}
    if errors:
        out["mae"] = sum(errors) / len(errors)
    return out


def _json_metrics(preds: list[Parsed], golds: list[Any]) -> dict[str, float]:
    field_acc = run_metric(METRICS["field_acc"], [p.value for p in preds], golds,
                           metric_params(MetricReward(metric="field_acc")))
    return {
        "exact_match": sum(p.value == g for p, g in zip(preds, golds, strict=True)) / len(golds),
        "field_acc": sum(s or 0.0 for s in field_acc) / len(golds),
    }


def corpus_metrics(spec: TaskSpec, details: list[ScoreDetail], preds: list[Parsed],
                   golds: list[Parsed | None]) -> dict[str, float]:
    """Reward summary for every task, plus the format's corpus metrics over rows whose gold parses."""
    n = len(details)
    scored = [d.score for d in details if d.score is not None]
    out: dict[str, float] = {"n": float(n)}
    if scored:
        out["mean_reward"] = sum(scored) / len(scored)
        out["full_marks_rate"] = sum(s >= FULL_MARKS for s in scored) / len(scored)
    out["parse_rate"] = sum(d.parse_ok for d in details) / n if n else 0.0
    pairs = [(p, g.value) for p, g in zip(preds, golds, strict=True) if g is not None and g.ok]
    out["gold_parse_rate"] = len(pairs) / n if n else 0.0
    if not pairs:
        return out
    kept_preds, kept_golds = [p for p, _ in pairs], [g for _, g in pairs]
    fmt = spec.output.format
    if fmt == "label":
        out |= _label_metrics(kept_preds, kept_golds)
    elif fmt in ("labels", "spans"):
        typed = fmt == "spans" and any(isinstance(v, tuple) for g in kept_golds for v in g)
        out |= _set_metrics(kept_preds, kept_golds, typed)
    elif fmt == "text":
        out |= _text_metrics(spec, kept_preds, kept_golds)
    elif fmt == "number":
        out |= _number_metrics(kept_preds, kept_golds)
    elif fmt == "json":
        out |= _json_metrics(kept_preds, kept_golds)
    return out
