"""verl: an `rl` build as verl's RL Parquet, and the `compute_score` verl loads from this file's path.

Each row: `data_source` = `snsdata/<task_id>` (verl groups validation metrics by it), `prompt` (chat messages),
`ability` (the task's capability), `reward_model` = `{"style": "rule", "ground_truth": <gold completion>}`, and
`extra_info` with the reward type, the reward declaration (JSON) and the record (JSON) that scoring needs.

verl imports this file standalone (`reward.custom_reward_function.path=.../backends/verl.py`), so everything here
uses absolute `snsdata` imports. The reward declaration in `extra_info` wins over the spec it is looked up in, so
scoring follows the build even where the catalogue has moved on. The export's overrides pass its `specs.json` (the
build's frozen specs) through `reward.custom_reward_function.reward_kwargs.specs`, so a build made with your own spec
folders scores without them; without that keyword, specs come from the search path (shipped + SNSDATA_SPECS).
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.backends.trl import BuildError, build_format, read_specs, read_split, splits

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


def export_verl(build: str | Path, out: str | Path) -> dict[str, Any]:
    """Write `<split>.parquet` per split and a copy of `specs.json`; returns the paths and verl's overrides."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in splits(build):
        path = out / f"{split}.parquet"
        verl_frame(build, split).write_parquet(path)
        files[split] = path.resolve()
    specs_path = out / "specs.json"
    shutil.copyfile(Path(build) / "specs.json", specs_path)
    overrides = [
        f"reward.custom_reward_function.path={Path(__file__).resolve()}",
        "reward.custom_reward_function.name=compute_score",
        f"+reward.custom_reward_function.reward_kwargs.specs={specs_path.resolve()}",
        "data.prompt_key=prompt",
        "data.reward_fn_key=data_source",
    ]
    if "train" in files:
        overrides.insert(0, f"data.train_files={files['train']}")
    if "eval" in files:
        overrides.insert(1, f"data.val_files={files['eval']}")
    return {"files": files, "specs": specs_path.resolve(), "overrides": overrides}


# --- compute_score ------------------------------------------------------------------------------------------------

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


def _result(score: float | None) -> dict[str, float]:
    """verl needs a number; a reward that does not apply scores 0 and is flagged so it can be filtered in logs."""
    return {"score": 0.0 if score is None else float(score), "reward_applies": float(score is not None)}


def compute_score_batch(data_sources: Sequence[str], solution_strs: Sequence[str], ground_truths: Sequence[Any],
                        extra_infos: Sequence[Any] | None = None, specs: str | None = None,
                        **kwargs: Any) -> list[dict[str, float]]:
    """verl's batch reward manager form: one result per solution, each task's rows scored as one batch."""
    infos = list(extra_infos) if extra_infos is not None else [None] * len(solution_strs)
    groups: dict[tuple[str, str | None], list[int]] = {}
    records: list[dict[str, Any]] = []
    for index, (source, info) in enumerate(zip(data_sources, infos, strict=True)):
        task_id, reward_json, record = _unpack(source, info)
        groups.setdefault((task_id, reward_json), []).append(index)
        records.append(record)
    scores: list[float | None] = [None] * len(solution_strs)
    for (task_id, reward_json), rows in groups.items():
        scorer = _scorer(task_id, reward_json, specs)
        for row, value in zip(rows, scorer([solution_strs[i] for i in rows], [records[i] for i in rows]),
                              strict=True):
            scores[row] = value
    return [_result(s) for s in scores]


def compute_score(data_source: str | None = None, solution_str: str | None = None, ground_truth: Any = None,
                  extra_info: dict[str, Any] | None = None, *, data_sources: Sequence[str] | None = None,
                  solution_strs: Sequence[str] | None = None, ground_truths: Sequence[Any] | None = None,
                  extra_infos: Sequence[Any] | None = None, specs: str | None = None,
                  **kwargs: Any) -> dict[str, float] | list[dict[str, float]]:
    """verl's custom reward function: `{"score", "reward_applies"}` for one solution; called with the batch
    manager's plural keywords it returns one result per solution (so either manager can name this function)."""
    if data_sources is not None:
        return compute_score_batch(data_sources, solution_strs or [], ground_truths or [], extra_infos, specs)
    return compute_score_batch([data_source or ""], [solution_str or ""], [ground_truth], [extra_info], specs)[0]
