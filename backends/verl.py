"""verl: an `rl` build as verl's RL Parquet, and the reward functions verl loads from this file's path.

Each row: `data_source` = `snsdata/<task_id>` (verl groups validation metrics by it), `prompt` (chat messages),
`ability` (the task's capability), `reward_model` = `{"style": "rule", "ground_truth": <gold completion>}`, and
`extra_info` with the reward type, the reward declaration (JSON) and the record (JSON) that scoring needs.

verl imports this file standalone (`reward.custom_reward_function.path=.../backends/verl.py`), so everything here
uses absolute `snsdata` imports. verl >= 0.7 scores in its reward loop: one `run_single` per row, all of a batch
at once, on each reward worker's event loop; `compute_score_async` gathers the concurrent rows of one task into a
batch. verl <= 0.6's `batch` manager calls `compute_score` with plural keywords. Scoring runs on daemon threads
under `timeout_s` (verl calls from threads, where signal-based timeouts cannot be set). The reward declaration in
`extra_info` wins over the spec it is looked up in, so scoring follows the build even where the catalogue has
moved on. The export's overrides pass its `specs.json` (the build's frozen specs) through `reward_kwargs.specs`, so
a build made with your own spec folders scores without them; without that keyword, specs come from the search path
(shipped + SNSDATA_SPECS).
"""

from __future__ import annotations

import asyncio
import functools
import importlib.metadata
import json
import re
import shutil
import threading
import weakref
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.backends.deadline import gather_with_deadline, run_with_deadline
from snsdata.backends.trl import BuildError, build_format, read_specs, read_split, splits
from snsdata.rewards.types import ScoreDetail
from snsdata.spec.errors import InvalidInput

DATA_SOURCE_PREFIX = "snsdata/"

_MESSAGES = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
SCHEMA = {
    "data_source": pl.String,
    "prompt": _MESSAGES,
    "ability": pl.String,
    "reward_model": pl.Struct({"style": pl.String, "ground_truth": pl.String}),
    "extra_info": pl.Struct({
        "split": pl.String, "index": pl.Int64, "task_id": pl.String, "record_id": pl.String,
        "reward_type": pl.String, "reward": pl.String, "record": pl.String, "has_rationale": pl.Boolean,
        "origin": pl.String,
    }),
}
"""Fixed so that every export has the same Arrow types whatever tasks it holds."""


def verl_frame(build: str | Path, split: str = "train") -> pl.DataFrame:
    """One split of an `rl` build as verl rows."""
    from snsdata.spec import TaskSpec

    if build_format(build) != "rl":
        raise BuildError(f"{build} is not an `rl` build; verl's RL trainer needs prompts with records to score")
    specs = {task_id: TaskSpec.model_validate(spec) for task_id, spec in read_specs(build).items()}
    rows = []
    for index, row in enumerate(read_split(build, split).iter_rows(named=True)):
        spec = specs.get(row["task_id"])
        if spec is None:
            raise BuildError(f"task {row['task_id']!r} of row {row['record_id']} has no spec in specs.json")
        record = json.loads(row["record"])
        rows.append({
            "data_source": DATA_SOURCE_PREFIX + row["task_id"],
            "prompt": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
            "ability": row["capability"],
            "reward_model": {"style": "rule", "ground_truth": spec.render_target(record)},
            "extra_info": {
                "split": split, "index": index, "task_id": row["task_id"], "record_id": row["record_id"],
                "reward_type": spec.reward.type,
                "reward": json.dumps(spec.reward.model_dump(mode="json"), ensure_ascii=False, sort_keys=True),
                "record": row["record"], "has_rationale": bool(row.get("has_rationale")),
                "origin": row.get("origin"),
            },
        })
    return pl.DataFrame(rows, schema=SCHEMA)


REWARD_LOOP_SINCE = (0, 7)
"""verl 0.7 moved rewards into its reward loop (`reward.*` keys, managers `naive`/`dapo`/..., no `batch`); 0.8 and
0.9 compose the same overrides. Up to 0.6 the keys are top-level `custom_reward_function.*` and
`reward_model.reward_manager`, and the `batch` manager exists."""


def installed_verl_version() -> str | None:
    """The version of the verl installed beside snsdata, if any."""
    try:
        return importlib.metadata.version("verl")
    except importlib.metadata.PackageNotFoundError:
        return None


def uses_reward_loop(verl_version: str | None) -> bool:
    """Whether a verl version takes the reward-loop overrides; an unknown version (None) is taken as current."""
    if verl_version is None:
        return True
    match = re.match(r"(\d+)\.(\d+)", verl_version)
    if match is None:
        raise InvalidInput(f"verl version {verl_version!r} does not start with MAJOR.MINOR (e.g. 0.9.1)")
    return (int(match[1]), int(match[2])) >= REWARD_LOOP_SINCE


def verl_overrides(specs_path: str | Path, verl_version: str | None, train: str | Path | None = None,
                   val: str | Path | None = None) -> list[str]:
    """The Hydra overrides that point a verl version's trainer at this file's reward and the exported data.

    verl >= 0.7: `compute_score_async` on the reward loop's `naive` manager (rows of one task batched across its
    concurrent calls); verl <= 0.6: `compute_score` on the `batch` manager.
    """
    here = Path(__file__).resolve()
    specs_path = Path(specs_path).resolve()
    if uses_reward_loop(verl_version):
        reward = [f"reward.custom_reward_function.path={here}",
                  "reward.custom_reward_function.name=compute_score_async",
                  f"+reward.custom_reward_function.reward_kwargs.specs={specs_path}"]
    else:
        reward = [f"custom_reward_function.path={here}", "custom_reward_function.name=compute_score",
                  f"+custom_reward_function.reward_kwargs.specs={specs_path}", "reward_model.reward_manager=batch"]
    data = [f"data.train_files={train}"] if train is not None else []
    data += [f"data.val_files={val}"] if val is not None else []
    return [*data, *reward, "data.prompt_key=prompt", "data.reward_fn_key=data_source"]


def export_verl(build: str | Path, out: str | Path, verl_version: str | None = None) -> dict[str, Any]:
    """Write `<split>.parquet` per split and a copy of `specs.json`; returns the paths, the verl version the
    overrides are for (`verl_version`, else the installed one; None: neither, so the current form) and the
    overrides."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in splits(build):
        path = out / f"{split}.parquet"
        verl_frame(build, split).write_parquet(path)
        files[split] = path.resolve()
    specs_path = out / "specs.json"
    shutil.copyfile(Path(build) / "specs.json", specs_path)
    version = verl_version or installed_verl_version()
    overrides = verl_overrides(specs_path, version, files.get("train"), files.get("eval"))
    return {"files": files, "specs": specs_path.resolve(), "verl_version": version, "overrides": overrides}


# --- compute_score ------------------------------------------------------------------------------------------------

TIMEOUT_S = 60.0
"""Default bound on a row's scoring (`reward_kwargs.timeout_s`): past it the row scores 0 with `timed_out` set."""
BATCH_WINDOW_S = 0.02
"""How long `compute_score_async` holds a row for others of its task (`reward_kwargs.batch_window_s`)."""
BATCH_ROWS = 256
"""A task's held rows are scored at once when this many have arrived (`reward_kwargs.batch_rows`)."""
WORKERS = 4
"""Threads `compute_score_batch` scores its tasks on (`reward_kwargs.workers`); `compute_score_async` gives each
batch a thread of its own."""

_LOCK = threading.Lock()
_SPECS: dict[str | None, dict[str, Any]] = {}
_SCORERS: dict[tuple[int, str | None], tuple[Any, Any]] = {}
"""(id(spec), reward JSON) -> (spec, scorer); holding the spec keeps its id from being reused while cached."""


def _specs(path: str | None) -> dict[str, Any]:
    """Specs from a `specs.json` (an export's or a build's; loaded once), else the search path's catalogue."""
    if path is None:
        from snsdata.rewards.api import catalogue

        return catalogue()
    with _LOCK:
        if path not in _SPECS:
            from snsdata.spec.searchpath import frozen_specs

            _SPECS[path] = frozen_specs(path)
        return _SPECS[path]


def _scorer(task_id: str, reward_json: str | None, specs_path: str | None) -> Any:
    """The task's Scorer, with the row's own reward declaration when it differs from the spec's; cached per spec
    object, so a changed search path never serves a scorer built from another spec."""
    from pydantic import TypeAdapter

    from snsdata.rewards.scorer import Scorer
    from snsdata.spec import RewardSpec

    specs = _specs(specs_path)
    if task_id not in specs:
        raise KeyError(f"task {task_id!r} is not in {specs_path or 'the spec search path'}; pass the export's "
                       "specs.json as reward.custom_reward_function.reward_kwargs.specs")
    spec = specs[task_id]
    key = (id(spec), reward_json)
    with _LOCK:
        found = _SCORERS.get(key)
    if found is not None and found[0] is spec:
        return found[1]
    scored = spec
    if reward_json is not None and json.loads(reward_json) != spec.reward.model_dump(mode="json"):
        reward = TypeAdapter(RewardSpec).validate_python(json.loads(reward_json))
        scored = spec.model_copy(update={"reward": reward})
    scorer = Scorer(scored)
    with _LOCK:
        return _SCORERS.setdefault(key, (spec, scorer))[1]


def _unpack(data_source: str, extra_info: Any) -> tuple[str, str | None, dict[str, Any]]:
    info = extra_info if isinstance(extra_info, dict) else {}
    task_id = info.get("task_id") or str(data_source).removeprefix(DATA_SOURCE_PREFIX)
    try:
        record = json.loads(info["record"]) if isinstance(info.get("record"), str) else {}
    except ValueError:
        record = {}
    if isinstance(info.get("record_id"), str):
        record.setdefault("record_id", info["record_id"])
    return task_id, info.get("reward"), record


def _result(detail: ScoreDetail) -> dict[str, float]:
    """verl's result dict; verl copies every key into the row's `reward_extra_info` (so all rows carry the same
    keys, as verl requires). `score`: the shaped reward verl trains on, 0 where the reward does not apply (verl
    needs a number); `task_score`: the task's own metric (correctness parts only), for dynamic sampling
    (`algorithm.filter_groups.metric=task_score`); `reward_applies`; `timed_out`: the row's scoring, or its
    program in the sandbox, ran out of time (`reward_applies` 0: scoring did not finish, so the 0 is no verdict)."""
    applies = detail.score is not None
    task = detail.task_score if detail.task_score is not None else detail.score
    return {"score": float(detail.score) if applies else 0.0,
            "task_score": float(task) if applies and task is not None else 0.0,
            "reward_applies": float(applies), "timed_out": float(detail.timed_out)}


def _unfinished(timeout_s: float, result: Any) -> ScoreDetail:
    """The detail of a row whose job did not finish (None) or failed (its exception)."""
    if result is None:
        return ScoreDetail(None, timed_out=True, error=f"not scored within {timeout_s:g} s")
    return ScoreDetail(None, error=f"{type(result).__name__}: {result}"[:300])


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[Any] | None = None, specs: str | None = None,
                        timeout_s: float = TIMEOUT_S, workers: int = WORKERS,
                        **kwargs: Any) -> list[dict[str, float]]:
    """verl's batch reward manager form (verl <= 0.6): one result per solution, each task's rows scored as one
    batch on worker threads, bounded by `timeout_s` (no signals: verl calls this from threads)."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    groups: dict[tuple[str, str | None], list[int]] = {}
    records: list[dict[str, Any]] = []
    for index, (source, info) in enumerate(zip(data_sources, infos, strict=True)):
        task_id, reward_json, record = _unpack(source, info)
        groups.setdefault((task_id, reward_json), []).append(index)
        records.append(record)
    keys = list(groups)
    scorers = [_scorer(task_id, reward_json, specs) for task_id, reward_json in keys]  # unknown tasks raise here
    jobs = [functools.partial(scorer.details, [solution_strs[i] for i in groups[key]],
                              [records[i] for i in groups[key]]) for key, scorer in zip(keys, scorers, strict=True)]
    details: list[ScoreDetail] = [ScoreDetail(None)] * len(solution_strs)
    for key, result in zip(keys, run_with_deadline(jobs, workers, timeout_s), strict=True):
        rows = groups[key]
        found = result if isinstance(result, list) else [_unfinished(timeout_s, result)] * len(rows)
        for row, detail in zip(rows, found, strict=True):
            details[row] = detail
    return [_result(d) for d in details]


def compute_score(data_source: str | None = None, solution_str: str | None = None, ground_truth: Any = None,
                  extra_info: dict[str, Any] | None = None, *, data_sources: Sequence[str] | None = None,
                  solution_strs: Sequence[str] | None = None, ground_truths: Sequence[Any] | None = None,
                  extra_infos: Sequence[Any] | None = None, specs: str | None = None, timeout_s: float = TIMEOUT_S,
                  workers: int = WORKERS, **kwargs: Any) -> dict[str, float] | list[dict[str, float]]:
    """verl's custom reward function, synchronous: the result dict for one solution; called with the batch
    manager's plural keywords it returns one result per solution (so either manager can name this function)."""
    if data_sources is not None:
        return compute_score_batch(data_sources, solution_strs or [], ground_truths or [], extra_infos, specs,
                                   timeout_s, workers)
    return compute_score_batch([data_source or ""], [solution_str or ""], [ground_truth], [extra_info], specs,
                               timeout_s, workers)[0]


class _Batcher:
    """Rows of concurrent `compute_score_async` calls on one event loop, held per task for a short window and
    scored as one batch on worker threads; each row waits at most the window plus `timeout_s`."""

    def __init__(self) -> None:
        self.pending: dict[tuple[Any, ...], list[tuple[str, dict[str, Any], asyncio.Future[ScoreDetail]]]] = {}
        self.timers: dict[tuple[Any, ...], asyncio.TimerHandle] = {}
        self.running: set[asyncio.Task[None]] = set()

    def submit(self, key: tuple[Any, ...], text: str, record: dict[str, Any], window_s: float,
               batch_rows: int) -> asyncio.Future[ScoreDetail]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ScoreDetail] = loop.create_future()
        rows = self.pending.setdefault(key, [])
        rows.append((text, record, future))
        if len(rows) >= batch_rows:
            self.flush(key)
        elif key not in self.timers:
            self.timers[key] = loop.call_later(window_s, self.flush, key)
        return future

    def flush(self, key: tuple[Any, ...]) -> None:
        timer = self.timers.pop(key, None)
        if timer is not None:
            timer.cancel()
        rows = self.pending.pop(key, [])
        if rows:
            task = asyncio.get_running_loop().create_task(self._score(key, rows))
            self.running.add(task)
            task.add_done_callback(self.running.discard)

    async def _score(self, key: tuple[Any, ...],
                     rows: list[tuple[str, dict[str, Any], asyncio.Future[ScoreDetail]]]) -> None:
        task_id, reward_json, specs, timeout_s = key
        texts, records = [r[0] for r in rows], [r[1] for r in rows]

        def job() -> list[ScoreDetail]:  # the scorer is built here, off the event loop (building can be slow)
            return _scorer(task_id, reward_json, specs).details(texts, records)

        (result,) = await gather_with_deadline([job], 1, timeout_s)
        for index, (_, _, future) in enumerate(rows):
            if future.done():
                continue
            if isinstance(result, Exception):  # an unknown task or a broken spec fails loudly, as synchronously
                future.set_exception(result)
            else:
                future.set_result(result[index] if isinstance(result, list) else _unfinished(timeout_s, result))


_BATCHERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Batcher] = weakref.WeakKeyDictionary()


async def compute_score_async(data_source: str | None = None, solution_str: str | None = None,
                              ground_truth: Any = None, extra_info: dict[str, Any] | None = None, *,
                              specs: str | None = None, timeout_s: float = TIMEOUT_S,
                              batch_window_s: float = BATCH_WINDOW_S, batch_rows: int = BATCH_ROWS,
                              **kwargs: Any) -> dict[str, float]:
    """verl's custom reward function for its reward loop (verl >= 0.7): a coroutine, so verl awaits it on the
    reward worker's event loop instead of a thread per row. verl starts one call per row, all at once; the calls
    of one task are gathered into one batch (`compute_score_batch`'s scores), so rows are scored by task, not one
    by one."""
    task_id, reward_json, record = _unpack(data_source or "", extra_info)
    loop = asyncio.get_running_loop()
    batcher = _BATCHERS.get(loop)
    if batcher is None:
        batcher = _BATCHERS[loop] = _Batcher()
    key = (task_id, reward_json, specs, float(timeout_s))
    detail = await batcher.submit(key, solution_str or "", record, batch_window_s, batch_rows)
    return _result(detail)
