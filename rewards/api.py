"""The public faces of the scoring core: `score` one sample, `evaluate` a prediction file, `get_scorer` for batches."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any

from snsdata.rewards.corpus import corpus_metrics
from snsdata.rewards.scorer import Compat, Scorer, safe_text
from snsdata.spec import TaskSpec, resolve_specs, search_path

_LOCK = threading.Lock()
_CATALOGUES: dict[tuple, dict[str, TaskSpec]] = {}
_SCORERS: dict[tuple[int, str], tuple[TaskSpec, Scorer]] = {}
"""(id(spec), compat) -> (spec, scorer); holding the spec keeps its id from being reused while cached."""
MAX_CACHED_SCORERS = 256
READ_AS_REWARD = ("label", "labels")
"""Benchmark formats whose fixed-mode evaluation reads each answer with the task's reward parser (the shared
answer normaliser, the spec's case rule, one label only) before the benchmark's metric counts it."""


def catalogue() -> dict[str, TaskSpec]:
    """The task specs of the search path (shipped + user folders, `snsdata.spec.searchpath`), loaded once per
    process and search path."""
    path = search_path()
    with _LOCK:
        if path.key not in _CATALOGUES:
            _CATALOGUES[path.key] = resolve_specs(path).specs
        return _CATALOGUES[path.key]


def _spec(task_id: str, specs: Mapping[str, TaskSpec] | None) -> TaskSpec:
    pool = catalogue() if specs is None else specs
    if task_id not in pool:
        raise KeyError(f"unknown task {task_id!r}; known: {', '.join(sorted(pool)) or 'none'}")
    return pool[task_id]


def get_scorer(task_id: str, compat: Compat = "fixed", specs: Mapping[str, TaskSpec] | None = None) -> Scorer:
    """The batch scorer of a task (from `specs`, else the search path's catalogue), built once per spec object and
    shared: building compiles patterns and parsers, and a sandbox scorer keeps its pool warm."""
    spec = _spec(task_id, specs)
    key = (id(spec), compat)
    with _LOCK:
        hit = _SCORERS.get(key)
        if hit is not None and hit[0] is spec:
            return hit[1]
    scorer = Scorer(spec, compat)
    with _LOCK:
        if len(_SCORERS) >= MAX_CACHED_SCORERS:
            _SCORERS.pop(next(iter(_SCORERS)))
        return _SCORERS.setdefault(key, (spec, scorer))[1]


def score(task_id: str, completion: Any, record: Mapping[str, Any], compat: Compat = "fixed",
          specs: Mapping[str, TaskSpec] | None = None) -> float | None:
    """Reward of one completion in [0, 1]; None when the reward does not apply to the record.

    Never raises on the completion (any string, a chat-message list, None). Unknown task ids and
    compat="official" for a non-benchmark task raise, as they are caller errors.
    """
    return get_scorer(task_id, compat, specs)([completion], [record])[0]


def evaluate(task_id: str, records: Sequence[Mapping[str, Any]], predictions: Sequence[Any],
             compat: Compat = "fixed", specs: Mapping[str, TaskSpec] | None = None) -> dict[str, float]:
    """Corpus metrics of predictions (one per record, in order).

    Benchmark tasks (`eval.official`) report the benchmark's own metrics on its 0-100 scale through
    `snsdata.rewards.official.evaluate_benchmark` (compat "official": as published, bugs included; "fixed": bugs
    removed, and label and list answers read by the task's reward parser first, so that fixed-mode evaluation
    and the RL reward agree on every answer), plus, in fixed mode, the reward summary. Other tasks report the
    reward summary (`n`, `mean_reward`, `full_marks_rate`, `parse_rate`, `gold_parse_rate`) and their format's
    corpus metrics, 0-1.
    """
    if len(records) != len(predictions):
        raise ValueError(f"{len(records)} records but {len(predictions)} predictions")
    if not records:
        raise ValueError("no records to evaluate")
    spec = _spec(task_id, specs)
    if compat not in ("fixed", "official"):
        raise ValueError(f"compat must be 'fixed' or 'official', got {compat!r}")
    if compat == "official" and not spec.eval.official:
        raise ValueError(f"compat='official' exists only for benchmark tasks; {task_id} has no eval.official")
    result: dict[str, Any] = {}
    scorer = get_scorer(task_id, "fixed", specs)
    if spec.eval.official:
        from snsdata.rewards.official import evaluate_benchmark

        texts = [safe_text(p) for p in predictions]
        if compat == "fixed" and spec.output.format in READ_AS_REWARD:
            texts = scorer.answer_texts(predictions, records)
        result = dict(evaluate_benchmark(spec.eval.official, [dict(r) for r in records], texts, compat))
        if compat == "official":
            return result
    details = scorer.details(predictions, records)
    preds, golds = scorer.parse_pairs(predictions, records)
    ours = corpus_metrics(spec, details, preds, golds)
    if not spec.eval.official:
        return ours
    summary = ("n", "mean_reward", "full_marks_rate", "parse_rate", "gold_parse_rate")
    return result | {name: ours[name] for name in summary if name in ours and name not in result}


def evaluate_baselines(task_id: str, records: Sequence[Mapping[str, Any]], compat: Compat = "fixed",
                       specs: Mapping[str, TaskSpec] | None = None) -> dict[str, dict[str, float]]:
    """What trivial answers score on the same records, by the same metrics as `evaluate`: the empty answer, the
    majority gold as a constant, and every candidate at once (`snsdata.rewards.policies.baselines`, the policy
    generator of the reward audit). A policy that does not apply to a record answers it with nothing."""
    from snsdata.rewards.policies import baselines

    spec = _spec(task_id, specs)
    golds = []
    for record in records:
        try:
            golds.append(spec.render_target(dict(record)))
        except Exception:
            golds.append(None)
    return {policy.name: evaluate(task_id, records, [a or "" for a in policy.answers], compat, specs)
            for policy in baselines(spec, records, golds)}
