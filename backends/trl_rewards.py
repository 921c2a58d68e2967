"""TRL reward callables: one GRPO/RLOO reward function that scores every snsdata task of a batch.

TRL 1.16 calls `reward_func(prompts=..., completions=..., completion_ids=..., <every dataset column>=...,
trainer_state=..., log_extra=..., log_metric=...)` and turns None into "not applicable". The callable here
dispatches each row on its `task_id` column, rebuilds the record from the `record` JSON column (falling back to
the individual columns), scores each task's rows in batches on worker threads under a deadline (no signals, so it
works off the main thread and in TRL's async loop), and returns None for tasks it does not cover and for rows
still being scored at the deadline. `AsyncSnsdataReward` is the same callable as a coroutine: TRL runs async
reward functions concurrently on its event loop, so slow rewards (sandboxed code) overlap with other async
rewards instead of queueing behind them. Both are module-level classes, so `experimental.async_grpo` can pickle
them.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from snsdata.backends.deadline import gather_with_deadline, run_with_deadline
from snsdata.rewards.scorer import Scorer
from snsdata.rewards.types import ScoreDetail, ScoreStats
from snsdata.spec import TaskSpec, load_catalogue
from snsdata.spec.searchpath import frozen_specs

TRAINER_KWARGS = frozenset({"prompts", "completions", "completion_ids", "trainer_state", "log_extra",
                            "log_metric", "environments"})
"""Keyword arguments TRL adds beside the dataset columns; never part of a record."""

class SnsdataReward:
    """Reward of every row whose `task_id` names a covered spec; None for the others.

    timeout_s bounds one call: rows unscored at the deadline get None (the reward does not apply) and count as
    timeouts. chunk_size rows of one task are scored per job, so one slow task does not hold back the others' rows.
    Per task and batch it logs the shaped reward (`{name}/{task}/reward`, what the trainer optimises) apart from the
    task's own metric (`{name}/{task}/task_score`: correctness parts only), and each row's task score as the
    completions-table column `{name}/task_score`.
    """

    def __init__(self, specs: Mapping[str, TaskSpec], name: str = "snsdata", timeout_s: float = 120.0,
                 workers: int | None = None, chunk_size: int = 128, task_column: str = "task_id"):
        self.__name__ = name
        self.specs = dict(specs)
        self.timeout_s = timeout_s
        self.workers = workers or min(4, os.cpu_count() or 1)
        self.chunk_size = chunk_size
        self.task_column = task_column
        self.stats: dict[str, ScoreStats] = {}
        self._scorers: dict[str, Scorer] = {}
        self._lock = threading.Lock()

    def __getstate__(self) -> dict[str, Any]:
        """Specs travel as JSON-ready dicts (compiled templates do not pickle); scorers are rebuilt on use."""
        return {"specs": {tid: spec.model_dump(mode="json") for tid, spec in self.specs.items()},
                "name": self.__name__, "timeout_s": self.timeout_s, "workers": self.workers,
                "chunk_size": self.chunk_size, "task_column": self.task_column}

    def __setstate__(self, state: dict[str, Any]) -> None:
        specs = {tid: TaskSpec.model_validate(spec) for tid, spec in state["specs"].items()}
        self.__init__(specs, state["name"], state["timeout_s"], state["workers"], state["chunk_size"],
                      state["task_column"])

    def scorer(self, task_id: str) -> Scorer:
        with self._lock:
            if task_id not in self._scorers:
                self._scorers[task_id] = Scorer(self.specs[task_id])
            return self._scorers[task_id]

    def __call__(self, prompts: Sequence[Any] | None = None, completions: Sequence[Any] | None = None,
                 completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float | None]:
        chunks, jobs = self._plan(completions, completion_ids, kwargs)
        return self._finish(len(completions or []), chunks, run_with_deadline(jobs, self.workers, self.timeout_s),
                            kwargs)

    def _plan(self, completions: Sequence[Any] | None, completion_ids: Sequence[Sequence[int]] | None,
              kwargs: Mapping[str, Any]) -> tuple[list[tuple[str, list[int]]], list[Callable[[], list[ScoreDetail]]]]:
        """The (task, rows) chunks of one call and a scoring job for each."""
        completions = list(completions or [])
        n = len(completions)
        task_ids = kwargs.get(self.task_column)
        if not isinstance(task_ids, Sequence) or len(task_ids) != n:
            return [], []
        columns = {k: v for k, v in kwargs.items()
                   if k not in TRAINER_KWARGS and isinstance(v, Sequence) and not isinstance(v, str) and len(v) == n}
        records = _records(columns, n)
        lengths = _lengths(completion_ids, n)
        groups: dict[str, list[int]] = {}
        for row, task_id in enumerate(task_ids):
            if isinstance(task_id, str) and task_id in self.specs:
                groups.setdefault(task_id, []).append(row)
        chunks = [(task_id, rows[i: i + self.chunk_size])
                  for task_id, rows in groups.items() for i in range(0, len(rows), self.chunk_size)]
        return chunks, [self._job(task_id, rows, completions, records, lengths) for task_id, rows in chunks]

    def _finish(self, n: int, chunks: list[tuple[str, list[int]]], results: list[Any],
                kwargs: Mapping[str, Any]) -> list[float | None]:
        """Rewards from the jobs' results (None where a job did not finish or failed), stats and logs."""
        rewards: list[float | None] = [None] * n
        task_scores: list[float | None] = [None] * n
        batch_stats: dict[str, ScoreStats] = {}
        for (task_id, rows), result in zip(chunks, results, strict=True):
            stats = batch_stats.setdefault(task_id, ScoreStats())
            if isinstance(result, list):
                details = result
            else:
                timed_out = result is None
                error = None if timed_out else f"{type(result).__name__}: {result}"[:300]
                details = [ScoreDetail(None, timed_out=timed_out, error=error)] * len(rows)
            for row, detail in zip(rows, details, strict=True):
                rewards[row] = detail.score
                if detail.score is not None:
                    task_scores[row] = detail.task_score if detail.task_score is not None else detail.score
                stats.add(detail)
        with self._lock:
            for task_id, stats in batch_stats.items():
                self.stats.setdefault(task_id, ScoreStats()).merge(stats)
        _log(kwargs.get("log_metric"), self.__name__, batch_stats)
        _log_rows(kwargs.get("log_extra"), self.__name__, task_scores)
        return rewards

    def _job(self, task_id: str, rows: list[int], completions: list[Any], records: list[dict[str, Any]],
             lengths: list[int] | None) -> Callable[[], list[ScoreDetail]]:
        def run() -> list[ScoreDetail]:
            return self.scorer(task_id).details(
                [completions[r] for r in rows], [records[r] for r in rows],
                [lengths[r] for r in rows] if lengths is not None else None,
            )

        return run


class AsyncSnsdataReward(SnsdataReward):
    """`SnsdataReward` as a coroutine (TRL awaits async reward functions concurrently on its event loop); the
    scores, deadline, stats and logs are the synchronous callable's."""

    async def __call__(self, prompts: Sequence[Any] | None = None,  # type: ignore[override]
                       completions: Sequence[Any] | None = None,
                       completion_ids: Sequence[Sequence[int]] | None = None, **kwargs: Any) -> list[float | None]:
        chunks, jobs = self._plan(completions, completion_ids, kwargs)
        results = await gather_with_deadline(jobs, self.workers, self.timeout_s)
        return self._finish(len(completions or []), chunks, results, kwargs)


def _records(columns: Mapping[str, Sequence[Any]], n: int) -> list[dict[str, Any]]:
    """Each row's record: the `record` JSON column's fields over the row's other columns. Rows of one record
    (same record JSON, else same task and record id) share one dict, so per-record work (rendering and parsing
    the gold answer) runs once per GRPO group."""
    plain = {k: v for k, v in columns.items() if k != "record"}
    packed = columns.get("record")
    shared: dict[Any, dict[str, Any]] = {}
    out = []
    for row in range(n):
        value = packed[row] if packed is not None else None
        key = _share_key(value, plain, row)
        if key is not None and key in shared:
            out.append(shared[key])
            continue
        record = {k: v[row] for k, v in plain.items()}
        record.update(_decode_record(value))
        if key is not None:
            shared[key] = record
        out.append(record)
    return out


def _share_key(packed: Any, plain: Mapping[str, Sequence[Any]], row: int) -> Any:
    if isinstance(packed, str):
        return packed
    if packed is None and "record_id" in plain and "task_id" in plain:
        record_id, task_id = plain["record_id"][row], plain["task_id"][row]
        if isinstance(record_id, str) and isinstance(task_id, str):
            return ("id", task_id, record_id)
    return None


def _decode_record(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return {}
        return decoded if isinstance(decoded, dict) else {}
    return {}


def _lengths(completion_ids: Any, n: int) -> list[int] | None:
    if not isinstance(completion_ids, Sequence) or len(completion_ids) != n:
        return None
    try:
        return [len(ids) for ids in completion_ids]
    except TypeError:
        return None


def _log(log_metric: Any, name: str, batch_stats: Mapping[str, ScoreStats]) -> None:
    """Per-task means of this batch to the trainer's metrics: the shaped reward and the raw task metric apart."""
    if not callable(log_metric):
        return
    try:
        for task_id, stats in sorted(batch_stats.items()):
            if stats.scored:
                log_metric(f"{name}/{task_id}/reward", stats.mean_reward)
                log_metric(f"{name}/{task_id}/task_score", stats.mean_task_score)
            log_metric(f"{name}/{task_id}/parse_rate", stats.parse_rate)
            if stats.timeouts:
                log_metric(f"{name}/{task_id}/timeouts", float(stats.timeouts))
    except Exception:
        return


def _log_rows(log_extra: Any, name: str, task_scores: list[float | None]) -> None:
    """Each row's task score as a completions-table column beside TRL's own column of the shaped reward."""
    if not callable(log_extra):
        return
    try:
        log_extra(f"{name}/task_score", task_scores)
    except Exception:
        return


def _specs(build_or_specs: str | Path | Iterable[str] | Mapping[str, TaskSpec] | None) -> dict[str, TaskSpec]:
    if build_or_specs is None:
        return load_catalogue()
    if isinstance(build_or_specs, Mapping):
        return dict(build_or_specs)
    if isinstance(build_or_specs, str | Path):
        return frozen_specs(build_or_specs)
    wanted = list(build_or_specs)
    catalogue = load_catalogue()
    unknown = [t for t in wanted if t not in catalogue]
    if unknown:
        raise KeyError(f"unknown task id(s): {', '.join(unknown)}")
    return {t: catalogue[t] for t in wanted}


def reward_funcs(build_or_specs: str | Path | Iterable[str] | Mapping[str, TaskSpec] | None = None,
                 timeout_s: float = 120.0, workers: int | None = None, asynchronous: bool = False
                 ) -> list[SnsdataReward]:
    """The reward functions to pass as `GRPOTrainer(reward_funcs=...)`.

    `build_or_specs`: a build directory (or its specs.json), whose frozen specs are used, so the build scores the
    same anywhere, without the spec folders it was built from; a list of task ids or None (every task) from the
    spec search path (shipped catalogue + user folders); or a mapping of task id to TaskSpec. Spec problems
    surface here, building every scorer once, not at the first training step. `asynchronous=True` gives the
    `AsyncSnsdataReward` coroutine (same scores), which TRL awaits beside its other async reward functions.
    """
    kind = AsyncSnsdataReward if asynchronous else SnsdataReward
    reward = kind(_specs(build_or_specs), timeout_s=timeout_s, workers=workers)
    for task_id in reward.specs:
        reward.scorer(task_id)
    return [reward]
