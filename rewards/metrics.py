"""Per-sample metrics, each scoring a whole batch of (prediction, gold) pairs in [0, 1].

Every metric reads parsed values through a *view* (text, items, typed spans, number, options, any value): a view
returns None when a value cannot be read that way. Empty-versus-empty pairs score 1 (an empty answer to an empty
gold is right) and one-sided empties score 0 before the metric runs, so no metric sees an empty side. Mostly-empty
tasks are balanced in the data, never discounted here.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rapidfuzz import fuzz, process
from rapidfuzz.distance import LCSseq, Levenshtein
from sacrebleu.metrics import BLEU, CHRF

from snsdata.rewards.normalize import tokenize
from snsdata.rewards.parse import find_json, parse_number, tag_bodies

Scores = list[float]


def as_text(value: Any) -> str | None:
    """Text of a value: lists become lines, JSON is serialised."""
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, list | tuple):
        return "\n".join(v[0] if isinstance(v, tuple) else as_text(v) or "" for v in value)
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def as_items(value: Any) -> list[str] | None:
    """Distinct items of a list answer (span texts for typed spans); a text is one item."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        items = (v[0] if isinstance(v, tuple) else as_text(v) or "" for v in value)
        return list(dict.fromkeys(i for i in items if i))
    text = as_text(value) or ""
    return [text] if text else []


def as_typed(value: Any) -> list[tuple[str, str]] | None:
    """Distinct (text, type) pairs; untyped items get the empty type."""
    if value is None:
        return None
    if isinstance(value, list | tuple):
        pairs = (v if isinstance(v, tuple) else (as_text(v) or "", "") for v in value)
        return list(dict.fromkeys(p for p in pairs if p[0]))
    return [(t, "") for t in as_items(value) or []]


def as_number(value: Any) -> float | None:
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return parse_number(value)
    return None


def is_empty(view: Any) -> bool:
    """An answer with nothing in it (blank text, empty list or object); None is unreadable, not empty."""
    if view is None:
        return False
    if isinstance(view, str):
        return not view.strip()
    if isinstance(view, list | tuple | dict):
        return len(view) == 0
    return False


@dataclass(frozen=True)
class Metric:
    """A batched metric: `view(value, params)` reads one side, `score(preds, golds, params)` scores the pairs."""

    view: Callable[[Any, Any], Any]
    score: Callable[[list[Any], list[Any], Any], Sequence[float]]


def run_metric(metric: Metric, preds: Sequence[Any], golds: Sequence[Any], params: Any) -> list[float | None]:
    """Score pairs; None where the gold cannot be read (the reward does not apply), 0 where the prediction cannot."""
    pred_views = [metric.view(p, params) for p in preds]
    gold_views = [metric.view(g, params) for g in golds]
    out: list[float | None] = [0.0] * len(pred_views)
    todo: list[int] = []
    for i, (p, g) in enumerate(zip(pred_views, gold_views, strict=True)):
        if g is None:
            out[i] = None
        elif p is None:
            out[i] = 0.0
        elif is_empty(g) or is_empty(p):
            out[i] = float(is_empty(g) and is_empty(p))
        else:
            todo.append(i)
    if todo:
        # The G completions of a GRPO group share a gold answer and often repeat each other: score each
        # distinct pair once (sacreBLEU re-extracts reference n-grams on every call, MiniLM re-encodes).
        groups: dict[Any, list[int]] = {}
        for i in todo:
            groups.setdefault((_frozen(pred_views[i]), _frozen(gold_views[i])), []).append(i)
        firsts = [rows[0] for rows in groups.values()]
        scores = metric.score([pred_views[i] for i in firsts], [gold_views[i] for i in firsts], params)
        for rows, s in zip(groups.values(), scores, strict=True):
            value = min(1.0, max(0.0, float(s))) if s == s else 0.0
            for i in rows:
                out[i] = value
    return out


def _frozen(view: Any) -> Any:
    """A hashable stand-in for a view (types kept apart, so True and 1 do not collide)."""
    if isinstance(view, str):
        return view
    if isinstance(view, list | tuple):
        return ("list", *(_frozen(v) for v in view))
    if isinstance(view, dict):
        return ("dict", *sorted((str(k), _frozen(v)) for k, v in view.items()))
    return (type(view).__name__, view)


# --- set and span metrics ---------------------------------------------------------------------------------


def _f1(matched: float, n_pred: int, n_gold: int) -> float:
    return 2.0 * matched / (n_pred + n_gold) if n_pred + n_gold else 0.0


def _set_f1(preds: list[list[Any]], golds: list[list[Any]], params: Any) -> Scores:
    return [_f1(len(set(p) & set(g)), len(set(p)), len(set(g))) for p, g in zip(preds, golds, strict=True)]


def _soft_match(pred: list[str], gold: list[str], threshold: float) -> float:
    """Sum of similarities of a greedy one-to-one matching, best pairs first, pairs below threshold unmatched."""
    sims = process.cdist(pred, gold, scorer=fuzz.ratio, dtype=np.float32) / 100.0
    total = 0.0
    used_p: set[int] = set()
    used_g: set[int] = set()
    order = np.argsort(-sims, axis=None, kind="stable")
    for flat in order:
        i, j = divmod(int(flat), len(gold))
        sim = float(sims[i, j])
        if sim < threshold:
            break
        if i not in used_p and j not in used_g:
            used_p.add(i)
            used_g.add(j)
            total += sim
    return total


def _soft_set_f1(preds: list[list[str]], golds: list[list[str]], params: Any) -> Scores:
    return [_f1(_soft_match(p, g, params.threshold), len(p), len(g)) for p, g in zip(preds, golds, strict=True)]


def _token_f1_pair(pred: list[str], gold: list[str]) -> float:
    common = sum((Counter(pred) & Counter(gold)).values())
    return _f1(common, len(pred), len(gold))


def _token_f1(preds: list[str], golds: list[str], params: Any) -> Scores:
    return [_token_f1_pair(tokenize(p, params.tokenize), tokenize(g, params.tokenize))
            for p, g in zip(preds, golds, strict=True)]


def _span_f1(preds: list[list[str]], golds: list[list[str]], params: Any) -> Scores:
    """Each predicted span earns its best token F1 against the gold spans (precision) and vice versa (recall)."""
    out = []
    for pred, gold in zip(preds, golds, strict=True):
        pt = [tokenize(s, params.tokenize) for s in pred]
        gt = [tokenize(s, params.tokenize) for s in gold]
        grid = np.array([[_token_f1_pair(a, b) for b in gt] for a in pt])
        precision, recall = grid.max(axis=1).mean(), grid.max(axis=0).mean()
        out.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return out


def _ndcg(preds: list[list[str]], golds: list[list[str]], params: Any) -> Scores:
    out = []
    for pred, gold in zip(preds, golds, strict=True):
        relevance = {g: (len(gold) - i if params.graded else 1.0) for i, g in enumerate(gold)}
        dcg = sum(relevance.get(item, 0.0) / math.log2(rank + 2) for rank, item in enumerate(pred[: params.k]))
        ideal = sorted(relevance.values(), reverse=True)[: params.k]
        idcg = sum(rel / math.log2(rank + 2) for rank, rel in enumerate(ideal))
        out.append(dcg / idcg if idcg else 0.0)
    return out


# --- text metrics -----------------------------------------------------------------------------------------


def sentence_scores(metric: BLEU | CHRF, preds: list[str], golds: list[str]) -> Scores:
    """sacreBLEU sentence scores (0-1) of many pairs, each distinct reference's n-grams extracted once.

    `metric.sentence_score` re-extracts the reference on every call, which is half the work when a GRPO group
    shares one gold answer. This goes through the same internal steps (reference cache, per-segment
    statistics, aggregation); tests check it against `sentence_score`. `metric` must be private to the call
    (its reference cache is set here).
    """
    distinct = list(dict.fromkeys(golds))
    info = dict(zip(distinct, metric._cache_references([distinct]), strict=True))
    metric._ref_cache = [info[g] for g in golds]
    metric._force = True  # no "forgot to detokenize?" corpus warning: these are independent sentences
    stats = metric._extract_corpus_statistics(preds, None)
    return [metric._aggregate_and_compute([row]).score / 100.0 for row in stats]


def _bleu_scores(preds: list[str], golds: list[str], params: Any) -> Scores:
    metric = BLEU(tokenize=params.tokenize, lowercase=params.lowercase, effective_order=True)
    return sentence_scores(metric, preds, golds)


def _chrf_scores(word_order: int) -> Callable[[list[str], list[str], Any], Scores]:
    def score(preds: list[str], golds: list[str], params: Any) -> Scores:
        return sentence_scores(CHRF(word_order=word_order, beta=params.beta, lowercase=params.lowercase), preds, golds)

    return score


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(zip(*(tokens[i:] for i in range(n)), strict=False))


def _rouge_n(n: int) -> Callable[[list[str], list[str], Any], Scores]:
    def score(preds: list[str], golds: list[str], params: Any) -> Scores:
        out = []
        for p, g in zip(preds, golds, strict=True):
            pn, gn = _ngrams(tokenize(p, params.tokenize), n), _ngrams(tokenize(g, params.tokenize), n)
            out.append(_f1(sum((pn & gn).values()), sum(pn.values()), sum(gn.values())))
        return out

    return score


def _rouge_l(preds: list[str], golds: list[str], params: Any) -> Scores:
    """ROUGE-L F1 from the token LCS, computed pairwise in one rapidfuzz call."""
    pt = [tokenize(p, params.tokenize) for p in preds]
    gt = [tokenize(g, params.tokenize) for g in golds]
    lcs = process.cpdist(pt, gt, scorer=LCSseq.similarity, dtype=np.int64)
    return [_f1(int(c), len(a), len(b)) for c, a, b in zip(lcs, pt, gt, strict=True)]


def _anls(preds: list[str], golds: list[str], params: Any) -> Scores:
    sims = process.cpdist(preds, golds, scorer=Levenshtein.normalized_similarity, dtype=np.float64)
    return np.where(sims >= params.threshold, sims, 0.0).tolist()


EMBED_MAX_CHARS = 4096
"""MiniLM reads at most 256 word pieces; longer texts are cut before tokenising, which is where the time goes."""
EMBED_BATCH = 16
"""Texts per forward pass. sentence-transformers sorts by length, so small batches pad little: on CPU, 16 encodes
a GRPO batch of short answers about 1.6x faster than 64."""


def _embed_cosine(preds: list[str], golds: list[str], params: Any) -> Scores:
    from snsdata.rewards.embedding import cosine_similarity

    cut = [p[:EMBED_MAX_CHARS] for p in preds], [g[:EMBED_MAX_CHARS] for g in golds]
    cosine = cosine_similarity(*cut, batch_size=EMBED_BATCH)
    return np.clip((cosine - params.floor) / (1.0 - params.floor), 0.0, 1.0).tolist()


# --- value metrics ----------------------------------------------------------------------------------------


def _values_equal(p: Any, g: Any) -> bool:
    if isinstance(p, list) and isinstance(g, list) and all(isinstance(x, str | tuple) for x in p + g):
        return set(p) == set(g)
    if isinstance(p, int | float) and isinstance(g, int | float) and not isinstance(p, bool):
        return math.isclose(p, g, rel_tol=1e-9, abs_tol=1e-9)
    return bool(p == g)


def _accuracy(preds: list[Any], golds: list[Any], params: Any) -> Scores:
    return [float(_values_equal(p, g)) for p, g in zip(preds, golds, strict=True)]


def _abs_err(preds: list[float], golds: list[float], params: Any) -> Scores:
    p, g = np.asarray(preds, dtype=np.float64), np.asarray(golds, dtype=np.float64)
    return (1.0 - np.abs(p - g) / params.range).tolist()


def _field_acc_pair(pred: Any, gold: Any, fields: list[str] | None) -> float:
    if isinstance(gold, dict):
        names = fields or list(gold)
        if not names:
            return float(pred == gold)
        if not isinstance(pred, dict):
            return 0.0
        return sum(name in pred and _values_equal(pred[name], gold.get(name)) for name in names) / len(names)
    if isinstance(gold, list):
        if not isinstance(pred, list) or not gold:
            return float(pred == gold)
        return sum(_field_acc_pair(p, g, fields) for p, g in zip(pred, gold, strict=False)) / max(len(gold), len(pred))
    return float(_values_equal(pred, gold))


def _field_acc(preds: list[Any], golds: list[Any], params: Any) -> Scores:
    return [_field_acc_pair(p, g, params.fields) for p, g in zip(preds, golds, strict=True)]


def _options_view(value: Any, params: Any) -> list[str] | None:
    """Option names of an answer list (`[{"Option": ..., "Reason": ...}]` or plain strings), from parsed JSON or
    from a text that contains it (inside the last `<tag>` when the metric names one)."""
    if isinstance(value, str):
        text = value
        if params.tag:
            inside = tag_bodies(text, params.tag)
            if not inside:
                return None
            text = inside[-1]
        value, ok = find_json(text, lambda v: isinstance(v, list))
        if not ok:
            return None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list):
        return None
    options = (item.get(params.key) if isinstance(item, dict) else item for item in value)
    return list(dict.fromkeys(str(o).strip() for o in options if isinstance(o, str | int | float) and str(o).strip()))


def _option_f1(preds: list[list[str]], golds: list[list[str]], params: Any) -> Scores:
    if params.threshold >= 1.0:
        return _set_f1(preds, golds, params)
    return _soft_set_f1(preds, golds, params)


def _over_return(preds: list[list[str]], golds: list[list[str]], params: Any) -> Scores:
    """1 while the answer lists at most as many items as the gold, else |gold| / |answer|: a shaping penalty for
    returning every candidate (a ranking, a multi-label set) instead of choosing."""
    p = np.fromiter((len(x) for x in preds), dtype=np.float64, count=len(preds))
    g = np.fromiter((len(x) for x in golds), dtype=np.float64, count=len(golds))
    return np.minimum(1.0, g / np.maximum(p, 1.0)).tolist()


def _value_view(value: Any, params: Any) -> Any:
    return value


METRICS: dict[str, Metric] = {
    "accuracy": Metric(_value_view, _accuracy),
    "set_f1": Metric(lambda v, _: as_items(v), _set_f1),
    "soft_set_f1": Metric(lambda v, _: as_items(v), _soft_set_f1),
    "token_f1": Metric(lambda v, _: as_text(v), _token_f1),
    "entity_f1": Metric(lambda v, _: as_typed(v), _set_f1),
    "span_f1": Metric(lambda v, _: as_items(v), _span_f1),
    "bleu": Metric(lambda v, _: as_text(v), _bleu_scores),
    "chrf": Metric(lambda v, _: as_text(v), _chrf_scores(0)),
    "chrf++": Metric(lambda v, _: as_text(v), _chrf_scores(2)),
    "rouge_1": Metric(lambda v, _: as_text(v), _rouge_n(1)),
    "rouge_2": Metric(lambda v, _: as_text(v), _rouge_n(2)),
    "rouge_l": Metric(lambda v, _: as_text(v), _rouge_l),
    "anls": Metric(lambda v, _: as_text(v), _anls),
    "embed_cosine": Metric(lambda v, _: as_text(v), _embed_cosine),
    "abs_err": Metric(lambda v, _: as_number(v), _abs_err),
    "field_acc": Metric(_value_view, _field_acc),
    "ndcg": Metric(lambda v, _: as_items(v), _ndcg),
    "option_f1": Metric(_options_view, _option_f1),
    "over_return": Metric(lambda v, _: as_items(v), _over_return),
}
"""Every metric a spec may name (`snsdata.spec.reward.MetricName`)."""
