"""The scoring core: a spec's reward declaration becomes a tree of nodes that score whole batches.

One `Scorer` per spec serves RL rewards, evaluation, gold self-checks and every backend. It never raises on a
completion: a node whose batch computation fails is retried row by row, and a row that still fails gets None
(the reward does not apply) with the error recorded, so a scorer bug never turns into a false 0 for the policy.
"""

from __future__ import annotations

import json
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

import regex

from snsdata.rewards.metrics import METRICS, is_empty, run_metric
from snsdata.rewards.normalize import approx_tokens, cap, chain, completion_text, strip_think
from snsdata.rewards.parse import OutputParser, Parsed, extract_code
from snsdata.rewards.patterns import build_check
from snsdata.rewards.types import ScoreDetail, ScoreStats
from snsdata.spec.models import TaskSpec
from snsdata.spec.reward import (
    CompositeReward,
    ExactMatchReward,
    MetricReward,
    OverlongPenalty,
    PatternReward,
    RewardSpec,
    SandboxReward,
    metric_params,
)

Compat = Literal["fixed", "official"]
FULL_MARKS = 1.0 - 1e-6
"""Scores at or above this count as full marks (embedding cosine of identical texts rounds just below 1)."""


class Batch:
    """The rows being scored, with per-record work (gold rendering, gold parsing, candidates) done once per
    distinct record: the G completions of one GRPO prompt share it."""

    def __init__(self, spec: TaskSpec, texts: list[str], records: list[Mapping[str, Any]],
                 lengths: Sequence[int] | None = None):
        self.spec = spec
        self.texts = texts
        self.records = records
        self._lengths = lengths
        self._keys = [id(r) for r in records]  # rows of one record share the dict (as TRL's callable arranges)
        self._cache: dict[Hashable, dict[Hashable, Any]] = {}

    def __len__(self) -> int:
        return len(self.texts)

    def per_record(self, name: Hashable, compute: Callable[[int], Any]) -> list[Any]:
        """compute(row) for the first row of each distinct record, shared by the record's other rows."""
        cache = self._cache.setdefault(name, {})
        out = []
        for row, key in enumerate(self._keys):
            if key not in cache:
                cache[key] = compute(row)
            out.append(cache[key])
        return out

    def gold_texts(self) -> list[str | None]:
        """Each record's gold completion, None where the target template cannot render it."""
        return self.per_record("gold", self._render)

    def _render(self, row: int) -> str | None:
        try:
            return self.spec.render_target(dict(self.records[row]))
        except Exception:
            return None

    def token_lengths(self) -> list[int]:
        """Completion lengths in tokens: the caller's when given, else `approx_tokens`."""
        if self._lengths is not None:
            return [int(n) for n in self._lengths]
        return [approx_tokens(t) for t in self.texts]

    def subset(self, rows: Sequence[int]) -> Batch:
        lengths = [self._lengths[i] for i in rows] if self._lengths is not None else None
        return Batch(self.spec, [self.texts[i] for i in rows], [self.records[i] for i in rows], lengths)


class Node(ABC):
    """One reward of the tree; `score` returns one detail per row of the batch."""

    @abstractmethod
    def score(self, batch: Batch) -> list[ScoreDetail]: ...

    def safe_score(self, batch: Batch) -> list[ScoreDetail]:
        """`score`, falling back to one row at a time so that one bad row cannot void the batch."""
        try:
            return self.score(batch)
        except Exception as exc:
            if len(batch) == 1:
                return [error_detail(exc)]
        out = []
        for row in range(len(batch)):
            try:
                out.extend(self.score(batch.subset([row])))
            except Exception as exc:
                out.append(error_detail(exc))
        return out


def error_detail(exc: BaseException) -> ScoreDetail:
    """A row the scorer could not score: no reward rather than a false 0 (counted as an error, not as a parse
    failure of the completion)."""
    return ScoreDetail(None, error=f"{type(exc).__name__}: {exc}"[:300])


_SPACES = regex.compile(r"\s+")


class _ParsingNode(Node):
    """A reward that compares the parsed completion with the parsed gold target."""

    def __init__(self, spec: TaskSpec, reward: ExactMatchReward | MetricReward):
        self.parser = OutputParser(spec.output, reward.normalize, reward.aliases, reward.extract)
        self.spans_from = list(reward.spans_from)
        self._source_form = chain([*(n for n in reward.normalize if n != "strip_think"),
                                   *([] if spec.output.case_sensitive else ["casefold"])])

    def source_text(self, record: Mapping[str, Any]) -> str:
        """The fields predicted spans must come from, normalised as items are (whitespace collapsed)."""
        values = [record.get(f) for f in self.spans_from]
        text = "\n".join(v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, default=str)
                         for v in values if v is not None)
        return _SPACES.sub(" ", self._source_form(text))

    def _within_source(self, batch: Batch, preds: list[Parsed]) -> list[Parsed]:
        """Items of each prediction that do not occur in the record's input become unmatched markers: they still
        count as predicted items (precision), but can match nothing."""
        sources = batch.per_record(("source", id(self)), lambda row: self.source_text(batch.records[row]))
        out = []
        for pred, source in zip(preds, sources, strict=True):
            if not isinstance(pred.value, list):
                out.append(pred)
                continue
            items = [item if _SPACES.sub(" ", item[0] if isinstance(item, tuple) else item) in source
                     else _unmatched(item, i) for i, item in enumerate(pred.value)]
            out.append(Parsed(items, pred.ok))
        return out

    def parse_batch(self, batch: Batch) -> tuple[list[Parsed], list[Parsed | None], list[set[str] | None]]:
        parser = self.parser
        allowed = batch.per_record(("allowed", id(self)), lambda row: parser.allowed(batch.records[row]))
        gold_texts = batch.gold_texts()

        def parse_gold(row: int) -> Parsed | None:
            text = gold_texts[row]
            if text is None:
                return None
            if not text.strip() and parser.format in ("labels", "spans"):
                return Parsed([], True)  # a record with no items may render its gold list as nothing
            return parser.parse(text, allowed[row])

        golds = batch.per_record(("gold", id(self)), parse_gold)
        preds = [parser.parse(text, allowed[row]) for row, text in enumerate(batch.texts)]
        if self.spans_from:
            preds = self._within_source(batch, preds)
        return preds, golds, allowed


def _unmatched(item: Any, index: int) -> Any:
    """A stand-in for an item that is not in the input: unique, one token (no space or punctuation, so token
    metrics cannot match a piece of it), and equal to no gold item."""
    marker = f"\x00notininput{index}\x00"
    return (marker, item[1]) if isinstance(item, tuple) else marker


class ExactMatchNode(_ParsingNode):
    def __init__(self, spec: TaskSpec, reward: ExactMatchReward):
        super().__init__(spec, reward)
        self.reward = reward
        if reward.choose_from_candidates and not (spec.output.candidates_field or spec.output.labels):
            raise ValueError(f"{spec.id}: choose_from_candidates needs output.candidates_field or output.labels")
        if reward.equivalence != "string" and spec.output.format not in ("text", "number"):
            raise ValueError(f"{spec.id}: equivalence {reward.equivalence!r} compares text or number answers")

    def _equal(self, pred: Any, gold: Any) -> bool:
        if isinstance(pred, list) and isinstance(gold, list):
            return pred == gold if self.reward.ordered else set(pred) == set(gold)
        if isinstance(pred, float) and isinstance(gold, float):
            return math.isclose(pred, gold, rel_tol=1e-9, abs_tol=1e-9)
        return bool(pred == gold)

    def _answer(self, text: str) -> str | None:
        """The answer text a verifier compares (think, extraction, text-level normalisers applied)."""
        prepared, found = self.parser.prepare(text)
        return prepared.strip() if found and prepared.strip() else None

    def _verified(self, batch: Batch) -> list[ScoreDetail]:
        """`math` / `reasoning_gym` equivalence, each distinct (answer, record) pair judged once."""
        from snsdata.rewards.verify import math_equal, reasoning_gym_correct

        def gold_answer(row: int) -> str | None:
            text = batch.gold_texts()[row]
            return None if text is None else self._answer(text)

        golds = batch.per_record(("verified_gold", id(self)), gold_answer)
        judged: dict[tuple[int, str], bool | None] = {}

        def judge(answer: str, gold: str, record: Mapping[str, Any]) -> bool | None:
            key = (id(record), answer)
            if key not in judged:
                if self.reward.equivalence == "math":
                    judged[key] = math_equal(answer, gold)
                else:
                    judged[key] = reasoning_gym_correct(answer, record)
            return judged[key]

        out = []
        for text, gold, record in zip(batch.texts, golds, batch.records, strict=True):
            if gold is None or judge(gold, gold, record) is not True:
                out.append(ScoreDetail(None, gold_ok=False))
                continue
            answer = self._answer(text)
            if answer is None:
                out.append(ScoreDetail(0.0, parse_ok=False))
                continue
            out.append(ScoreDetail(float(bool(judge(answer, gold, record)))))
        return out

    def score(self, batch: Batch) -> list[ScoreDetail]:
        if self.reward.equivalence != "string":
            return self._verified(batch)
        preds, golds, allowed = self.parse_batch(batch)
        out = []
        for pred, gold, ok_labels in zip(preds, golds, allowed, strict=True):
            if gold is None or not gold.ok:
                out.append(ScoreDetail(None, pred.ok, gold_ok=False))
                continue
            if self.reward.choose_from_candidates and not (pred.ok and _within(pred.value, ok_labels)):
                out.append(ScoreDetail(0.0, pred.ok))
                continue
            out.append(ScoreDetail(float(pred.value is not None and self._equal(pred.value, gold.value)), pred.ok))
        return out


def _within(value: Any, allowed: set[str] | None) -> bool:
    """Whether an answer (a label, or every item of a list) is among the allowed labels."""
    if allowed is None:
        return True
    if isinstance(value, list):
        return all((v[0] if isinstance(v, tuple) else v) in allowed for v in value)
    return isinstance(value, str) and value in allowed


class MetricNode(_ParsingNode):
    def __init__(self, spec: TaskSpec, reward: MetricReward, options: BuildOptions):
        super().__init__(spec, reward)
        self.metric = METRICS[reward.metric]
        params = metric_params(reward)
        if reward.metric == "abs_err" and params.range is None:
            params = params.model_copy(update={"range": _label_range(spec)})
        self.params = params

    def score(self, batch: Batch) -> list[ScoreDetail]:
        preds, golds, _ = self.parse_batch(batch)
        pred_values = [p.value if p.ok or not is_empty(p.value) else None for p in preds]
        gold_values = [g.value if g is not None and g.ok else None for g in golds]
        scores = run_metric(self.metric, pred_values, gold_values, self.params)
        return [ScoreDetail(s, p.ok, gold_ok=g is not None and g.ok)
                for s, p, g in zip(scores, preds, golds, strict=True)]


def _label_range(spec: TaskSpec) -> float:
    try:
        values = [float(label) for label in spec.output.labels or []]
    except ValueError:
        values = []
    if len(values) < 2 or max(values) == min(values):
        raise ValueError(f"{spec.id}: metric abs_err needs params.range or numeric output.labels")
    return max(values) - min(values)


class PatternNode(Node):
    def __init__(self, spec: TaskSpec, reward: PatternReward):
        self.normalize = chain(reward.normalize)
        self.checks = [build_check(check) for check in reward.checks]
        self.aggregate = reward.aggregate

    def score(self, batch: Batch) -> list[ScoreDetail]:
        out = []
        for text, record in zip(batch.texts, batch.records, strict=True):
            text = self.normalize(text)
            values = [v for v in (check(text, record) for check in self.checks) if v is not None]
            if not values:
                out.append(ScoreDetail(None))
            elif self.aggregate == "all":
                out.append(ScoreDetail(float(all(v >= FULL_MARKS for v in values)), parts=tuple(values)))
            else:
                out.append(ScoreDetail(sum(values) / len(values), parts=tuple(values)))
        return out


class SandboxNode(Node):
    """Runs each completion's code against its record's tests: one call to a warm sandbox pool per batch."""

    def __init__(self, spec: TaskSpec, reward: SandboxReward, options: BuildOptions):
        self.reward = reward
        self.workers = options.sandbox_workers
        self._pool: Any = None
        self._lock = threading.Lock()

    def program(self, text: str, record: Mapping[str, Any]) -> str:
        """The code to run: the record's prompt (HumanEval's imports, signature and docstring) continued by the
        completion's code; a completion that writes the whole function redefines the prompt's stub, which still
        contributes its imports and helpers."""
        code = extract_code(strip_think(text))
        reward = self.reward
        prompt = str(record.get(reward.prompt_field) or "") if reward.prompt_field else ""
        entry = str(record.get(reward.entry_point_field) or "") if reward.entry_point_field else ""
        if not prompt:
            return code
        if entry and f"def {entry}(" in code:
            return prompt.rstrip() + "\n\n\n" + code
        return prompt + code

    def job(self, text: str, record: Mapping[str, Any]) -> Any:
        """The sandbox job of one row, or None when the record carries no usable tests."""
        from snsdata.rewards.sandbox import SandboxJob

        reward = self.reward
        tests = _decoded(record.get(reward.tests_field))
        entry = record.get(reward.entry_point_field) if reward.entry_point_field else None
        program = self.program(text, record)
        if reward.mode == "stdio":
            cases = [_io_case(c) for c in tests] if isinstance(tests, list) else []
            cases = [c for c in cases if c is not None]
            return SandboxJob(program=program, mode="stdio", stdin_cases=cases) if cases else None
        if isinstance(tests, list):
            tests = [str(t) for t in tests if str(t).strip()]
        if not tests or not isinstance(tests, str | list):
            return None
        prompt = str(record.get(reward.prompt_field) or "") if reward.prompt_field else ""
        return SandboxJob(program=program, tests=tests, entry_point=str(entry) if entry else None, prompt=prompt)

    def pool(self) -> Any:
        """A warm pool kept across batches (worker start-up is paid once, not per training step)."""
        from snsdata.rewards.sandbox import SandboxLimits, SandboxPool

        with self._lock:
            if self._pool is None:
                limits = SandboxLimits(timeout_s=self.reward.timeout_s, memory_mb=self.reward.memory_mb)
                self._pool = SandboxPool(limits, workers=self.workers)
            return self._pool

    def score(self, batch: Batch) -> list[ScoreDetail]:
        out = [ScoreDetail(None, gold_ok=False)] * len(batch)
        jobs, rows = [], []
        for row, (text, record) in enumerate(zip(batch.texts, batch.records, strict=True)):
            if not extract_code(strip_think(text)).strip():
                out[row] = ScoreDetail(0.0, parse_ok=False)
                continue
            job = self.job(text, record)
            if job is not None:
                jobs.append(job)
                rows.append(row)
        if jobs:
            for row, result in zip(rows, self.pool().run(jobs), strict=True):
                out[row] = ScoreDetail(min(1.0, max(0.0, float(result.reward))), timed_out=result.status == "timeout")
        return out


def _decoded(value: Any) -> Any:
    """A tests field that may hold JSON (a list of asserts or of stdin/stdout cases) or plain test code."""
    if isinstance(value, str) and value.lstrip()[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _io_case(case: Any) -> tuple[str, str] | None:
    if isinstance(case, Mapping):
        stdin, expected = case.get("input", case.get("stdin")), case.get("output", case.get("stdout"))
    elif isinstance(case, list | tuple) and len(case) == 2:
        stdin, expected = case
    else:
        return None
    return (str(stdin), str(expected)) if stdin is not None and expected is not None else None


def overlong_penalty(length: int, overlong: OverlongPenalty) -> float:
    """DAPO's soft overlong punishment in [-1, 0]: 0 up to max - cache tokens, then linear down to -1 at max."""
    start = overlong.max_tokens - overlong.cache_tokens
    if length <= start:
        return 0.0
    if length >= overlong.max_tokens:
        return -1.0
    return (start - length) / overlong.cache_tokens


def _task_of(detail: ScoreDetail) -> float | None:
    return detail.task_score if detail.task_score is not None else detail.score


class CompositeNode(Node):
    """Correctness parts: weighted mean (the task's metric); times the gate; times each shaping part's factor
    1 - weight x (1 - score); plus the overlong penalty (clipped at 0: DAPO adds it to the reward, and rewards
    here live in [0, 1]). A part that does not apply drops out. `task_score` is the correctness mean, times the
    gate when the gate is correctness; `score` is the shaped reward."""

    def __init__(self, spec: TaskSpec, reward: CompositeReward, options: BuildOptions):
        self.parts = [(part.weight, part.role, build_node(spec, part.reward, options)) for part in reward.parts]
        self.gate = build_node(spec, reward.gate, options) if reward.gate is not None else None
        self.gate_shapes = reward.gate_role == "shaping"
        self.overlong = reward.overlong

    def score(self, batch: Batch) -> list[ScoreDetail]:
        part_details = [node.safe_score(batch) for _, _, node in self.parts]
        gate_details = self.gate.safe_score(batch) if self.gate else None
        lengths = batch.token_lengths() if self.overlong else None
        out = []
        for row in range(len(batch)):
            details = [d[row] for d in part_details]
            correct = [(w, d) for (w, role, _), d in zip(self.parts, details, strict=True)
                       if role == "correctness" and d.score is not None]
            total_weight = sum(w for w, _ in correct)
            score = task = None
            if correct and total_weight > 0:
                score = sum(w * d.score for w, d in correct) / total_weight  # type: ignore[operator]
                task = sum(w * (_task_of(d) or 0.0) for w, d in correct) / total_weight
            gate = gate_details[row] if gate_details else None
            if score is not None and task is not None:
                if gate is not None and gate.score is not None:
                    score *= gate.score
                    task = task if self.gate_shapes else task * gate.score
                for (w, role, _), d in zip(self.parts, details, strict=True):
                    if role == "shaping" and d.score is not None:
                        score *= 1.0 - w * (1.0 - d.score)
                if lengths is not None and self.overlong is not None:
                    score = max(0.0, score + overlong_penalty(lengths[row], self.overlong))
            everything = details + ([gate] if gate else [])
            out.append(ScoreDetail(
                score,
                parse_ok=all(d.parse_ok for d in everything),
                gold_ok=all(d.gold_ok for d in details),
                timed_out=any(d.timed_out for d in everything),
                error=next((d.error for d in everything if d.error), None),
                parts=tuple(d.score for d in everything),
                task_score=task,
            ))
        return out


class OfficialNode(Node):
    """compat="official": the benchmark's own evaluator on a one-record file, its headline metric over 100."""

    def __init__(self, spec: TaskSpec):
        from snsdata.rewards.official import OFFICIAL_TASKS, REPORTED_METRIC

        name = spec.eval.official
        if name not in OFFICIAL_TASKS:
            raise ValueError(f"{spec.id}: compat='official' exists only for the benchmark tasks "
                             f"({', '.join(OFFICIAL_TASKS)}); eval.official is {name!r}")
        self.name = name
        self.metric = REPORTED_METRIC[name]

    def score(self, batch: Batch) -> list[ScoreDetail]:
        from snsdata.rewards.official import evaluate_benchmark

        out = []
        for text, record in zip(batch.texts, batch.records, strict=True):
            value = float(evaluate_benchmark(self.name, [dict(record)], [text], "official")[self.metric])
            out.append(ScoreDetail(min(1.0, max(0.0, value / 100.0))))
        return out


@dataclass(frozen=True)
class BuildOptions:
    sandbox_workers: int | None = None


def build_node(spec: TaskSpec, reward: RewardSpec, options: BuildOptions) -> Node:
    if isinstance(reward, ExactMatchReward):
        return ExactMatchNode(spec, reward)
    if isinstance(reward, MetricReward):
        return MetricNode(spec, reward, options)
    if isinstance(reward, PatternReward):
        return PatternNode(spec, reward)
    if isinstance(reward, SandboxReward):
        return SandboxNode(spec, reward, options)
    return CompositeNode(spec, reward, options)


class Scorer:
    """Scores completions of one task in batches: `scorer(completions, records) -> list[float | None]`.

    Built once per spec (building validates what the spec cannot check alone, e.g. abs_err's range). Completions
    may be strings or chat-message lists; `lengths` (completion lengths in tokens) feeds the overlong penalty.
    `stats` counts everything scored so far.
    """

    def __init__(self, spec: TaskSpec, compat: Compat = "fixed", sandbox_workers: int | None = None):
        if compat not in ("fixed", "official"):
            raise ValueError(f"compat must be 'fixed' or 'official', got {compat!r}")
        self.spec = spec
        self.task_id = spec.id
        self.compat = compat
        options = BuildOptions(sandbox_workers)
        self.root = OfficialNode(spec) if compat == "official" else build_node(spec, spec.reward, options)
        self._stats = ScoreStats()
        self._lock = threading.Lock()

    def __call__(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]],
                 lengths: Sequence[int] | None = None) -> list[float | None]:
        return [d.score for d in self.details(completions, records, lengths)]

    def details(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]],
                lengths: Sequence[int] | None = None) -> list[ScoreDetail]:
        """One ScoreDetail per completion; never raises on the completions' content."""
        if len(completions) != len(records):
            raise ValueError(f"{len(completions)} completions but {len(records)} records")
        if lengths is not None and len(lengths) != len(completions):
            raise ValueError(f"{len(completions)} completions but {len(lengths)} lengths")
        texts = [safe_text(c) for c in completions]
        rows = [r if isinstance(r, Mapping) else {} for r in records]
        batch = Batch(self.spec, texts, rows, lengths)
        try:
            details = self.root.safe_score(batch)
        except Exception as exc:
            details = [error_detail(exc)] * len(batch)
        details = [_clamped(d) for d in details]
        if not isinstance(self.root, CompositeNode):
            details = [replace(d, task_score=d.score) for d in details]
        with self._lock:
            for detail in details:
                self._stats.add(detail)
        return details

    def parse_pairs(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]
                    ) -> tuple[list[Parsed], list[Parsed | None]]:
        """Parsed completions and gold answers, with the first comparing reward's parser (else the default
        normalisers), for corpus metrics."""
        node = _first_parsing_node(self.root) or _DefaultParsing(self.spec)
        batch = Batch(self.spec, [safe_text(c) for c in completions], list(records))
        preds, golds, _ = node.parse_batch(batch)
        return preds, golds

    def answer_texts(self, completions: Sequence[Any], records: Sequence[Mapping[str, Any]]) -> list[str]:
        """Each completion's label or list answer as the task's reward reads it, written in the record's own
        spelling: the one label it names ("" when it names none or several), else its items as a JSON list (or
        joined by " | " when order matters), items equal to a gold item in the gold's spelling. Fixed-mode
        benchmark evaluation compares these, so that it reads answers exactly as the RL reward does."""
        node = _first_parsing_node(self.root) or _DefaultParsing(self.spec)
        parser = node.parser
        batch = Batch(self.spec, [safe_text(c) for c in completions], list(records))
        preds, _, _ = node.parse_batch(batch)
        gold_texts = batch.gold_texts()
        spellings = batch.per_record("spellings", lambda row: parser.spellings(batch.records[row], gold_texts[row]))
        ordered = isinstance(node, ExactMatchNode) and node.reward.ordered
        out = []
        for pred, names in zip(preds, spellings, strict=True):
            if parser.format == "label":
                out.append(names.get(pred.value, pred.value) if pred.ok and isinstance(pred.value, str) else "")
                continue
            items = [names.get(v[0] if isinstance(v, tuple) else v, v[0] if isinstance(v, tuple) else v)
                     for v in (pred.value if isinstance(pred.value, list) else [])]
            out.append(" | ".join(items) if ordered else json.dumps(items, ensure_ascii=False))
        return out

    @property
    def stats(self) -> ScoreStats:
        """A snapshot of the running counts."""
        with self._lock:
            snapshot = ScoreStats()
            snapshot.merge(self._stats)
            return snapshot


class _DefaultParsing(_ParsingNode):
    """The default normalisers' parser, for tasks whose reward compares nothing (pattern, sandbox)."""

    def __init__(self, spec: TaskSpec):
        super().__init__(spec, ExactMatchReward())

    def score(self, batch: Batch) -> list[ScoreDetail]:
        raise TypeError("a parser only: the task's reward is not a comparison")


def _first_parsing_node(node: Node) -> _ParsingNode | None:
    if isinstance(node, _ParsingNode):
        return node
    if isinstance(node, CompositeNode):
        for child in [n for _, _, n in node.parts] + ([node.gate] if node.gate else []):
            found = _first_parsing_node(child)
            if found:
                return found
    return None


def safe_text(completion: Any) -> str:
    """The completion as a capped string, whatever object the caller handed over."""
    try:
        return cap(completion_text(completion))
    except Exception:
        return ""


def _clamped(detail: ScoreDetail) -> ScoreDetail:
    score = detail.score
    if score is None:
        return detail
    if not math.isfinite(score):
        return replace(detail, score=None, task_score=None, error=detail.error or "non-finite score")
    task = detail.task_score
    if task is not None and not (math.isfinite(task) and 0.0 <= task <= 1.0):
        detail = replace(detail, task_score=min(1.0, max(0.0, task)) if math.isfinite(task) else None)
    if 0.0 <= score <= 1.0:
        return detail
    return replace(detail, score=min(1.0, max(0.0, score)))
