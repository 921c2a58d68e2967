"""Rollout and prediction logs: whatever a trainer or an eval run wrote, read into one frame shape.

A log is Parquet or JSONL with one row per completion. Column names vary between trainers, so a few aliases are
accepted; everything downstream (diagnosis, DPO pairs) sees only `LOG_SCHEMA`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.build import prompt_hash as build_prompt_hash
from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import JsonlError, read_jsonl

LOG_SCHEMA: dict[str, pl.DataType] = {
    "task_id": pl.String(),
    "record_id": pl.String(),
    "prompt": pl.String(),  # the prompt as text or as JSON messages; null when the log has none
    "completion": pl.String(),
    "reward": pl.Float64(),  # null: not scored yet
    "record": pl.String(),  # the record's fields as JSON; null: look it up by record_id
    "step": pl.Int64(),  # trainer step of a rollout; null for prediction logs
}

ALIASES: dict[str, tuple[str, ...]] = {
    "task_id": ("task_id", "task", "data_source"),
    "record_id": ("record_id", "id", "uid"),
    "prompt": ("prompt", "messages", "question", "input"),
    "completion": ("completion", "prediction", "response", "output", "generation"),
    "reward": ("reward", "score"),
    "record": ("record", "extra_info"),
    "step": ("step", "global_step"),
}
"""Column names accepted for each log field, first match wins (TRL, verl and our own writers differ)."""

_JSON_COLUMNS = ("record", "extra_info", "prompt", "messages")


class LogError(InvalidInput):
    """A log that cannot be read into `LOG_SCHEMA`; the message names the file and the missing piece."""


def prompt_hash(prompt: Any) -> str:
    """Stable id of a prompt given as chat messages, their JSON text, or plain text (a one-turn user prompt).

    Message lists hash exactly as the build hashes its rendered prompts (`snsdata.build.prompt_hash`).
    """
    if isinstance(prompt, str):
        try:
            decoded = json.loads(prompt)
        except ValueError:
            decoded = None
        prompt = decoded if isinstance(decoded, list) else [{"role": "user", "content": prompt}]
    return build_prompt_hash(prompt)


def completion_text(value: Any) -> str:
    """A completion as plain text; conversational completions keep the last message's content."""
    if isinstance(value, list):
        return str(value[-1].get("content", "")) if value else ""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return "" if value is None else str(value)


def _jsonl_frame(path: Path) -> pl.DataFrame:
    """A JSONL log through the project's one JSONL reader (a bad line is an error naming it). JSON objects and
    lists in the record and prompt columns stay JSON text, so records of different tasks never merge their keys."""
    try:
        rows = [value for _, value in read_jsonl(path)]
    except JsonlError as exc:
        raise LogError(str(exc)) from None
    if not rows:
        return pl.DataFrame()
    for row in rows:
        for name in _JSON_COLUMNS:
            value = row.get(name)
            if isinstance(value, dict | list):
                row[name] = json.dumps(value, ensure_ascii=False)
    try:
        return pl.DataFrame(rows, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise LogError(f"{path}: rows do not share one shape: {str(exc).splitlines()[0]}") from None


def _read_raw(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise LogError(f"{path}: no such file")
    if path.suffix == ".parquet":
        try:
            return pl.read_parquet(path)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise LogError(f"{path}: cannot read Parquet: {str(exc).splitlines()[0]}") from None
    if path.suffix in (".jsonl", ".ndjson", ".json"):
        return _jsonl_frame(path)
    raise LogError(f"{path}: expected a .parquet or .jsonl log")


def _as_text(series: pl.Series) -> pl.Series:
    """JSON text for nested columns (structs, message lists), plain text otherwise."""
    if isinstance(series.dtype, pl.Struct):
        return series.struct.json_encode()
    if isinstance(series.dtype, pl.List):
        return pl.Series(series.name, [None if v is None else json.dumps(v, ensure_ascii=False)
                                       for v in series.to_list()], dtype=pl.String)
    return series.cast(pl.String)


def normalize_log(raw: pl.DataFrame, source: str = "log") -> pl.DataFrame:
    """Rename aliased columns into `LOG_SCHEMA`; completions become text, nested records and prompts JSON."""
    columns: dict[str, pl.Series] = {}
    for field, names in ALIASES.items():
        name = next((n for n in names if n in raw.columns), None)
        if name is None:
            columns[field] = pl.Series(field, [None] * raw.height, dtype=LOG_SCHEMA[field])
            continue
        series = raw[name].alias(field)
        if field == "completion" and isinstance(series.dtype, pl.List | pl.Struct):
            series = pl.Series(field, [completion_text(v) for v in series.to_list()], dtype=pl.String)
        elif field in ("record", "prompt"):
            series = _as_text(series).alias(field)
        columns[field] = series.cast(LOG_SCHEMA[field], strict=False)
    if raw.height and columns["completion"].null_count() == raw.height:
        raise LogError(f"{source}: no completion column (accepted names: {', '.join(ALIASES['completion'])})")
    frame = pl.DataFrame(columns).with_columns(pl.col("completion").fill_null(""))
    if frame.filter(pl.col("record_id").is_null() & pl.col("prompt").is_null()).height:
        raise LogError(f"{source}: rows need a record_id or a prompt to be traced back to their record")
    if frame.filter(pl.col("task_id").is_null() & pl.col("record_id").is_null()).height:
        raise LogError(f"{source}: rows need a task_id (accepted names: {', '.join(ALIASES['task_id'])}), or a "
                       "record_id that a build directory resolves")
    return frame


def fill_task_ids(log: pl.DataFrame, known: pl.DataFrame) -> pl.DataFrame:
    """Rows without a task id take it from `known` (`task_id`, `record_id`): record ids hash their task id, so a
    record id names one task."""
    if not log["task_id"].null_count():
        return log
    lookup = known.select("record_id", _task="task_id").unique("record_id")
    return (log.join(lookup, on="record_id", how="left")
            .with_columns(task_id=pl.coalesce("task_id", "_task")).drop("_task"))


def read_log(path: str | Path) -> pl.DataFrame:
    """Read a Parquet or JSONL rollout/prediction log into `LOG_SCHEMA`."""
    path = Path(path)
    return normalize_log(_read_raw(path), str(path))
