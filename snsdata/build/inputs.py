"""The optional input files of a build: a stage-1 diagnosis and a soft-label file (schemas in docs/build.md)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import JsonlError, read_jsonl

SOFT_LABEL_COLUMNS = {"task_id": pl.String, "record_id": pl.String, "prompt_hash": pl.String,
                      "completion": pl.String, "truncated": pl.Boolean, "reward": pl.Float64, "_line": pl.Int64}
PROVENANCE_KEYS = ("schema", "model", "model_fingerprint", "engine", "mixture", "generation")


class InputFileError(InvalidInput):
    """A diagnosis or soft-label file that does not follow its schema; the message names file and line."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonl_rows(path: Path, objects: bool = False) -> list[tuple[int, Any]]:
    """The file's lines through the project's one JSONL reader; a bad line is an InputFileError naming it."""
    try:
        return read_jsonl(path, objects=objects)
    except JsonlError as exc:
        raise InputFileError(str(exc)) from None


@dataclass(frozen=True)
class Diagnosis:
    """What stage 2 reads from `snsdata diagnose`: the weak tasks and their failing train records."""

    path: Path
    weak_tasks: list[str]
    failures: dict[str, list[str]]
    tasks: dict[str, Any] = field(default_factory=dict)


def read_diagnosis(path: str | Path, known_tasks: set[str]) -> Diagnosis:
    """Parse and check a diagnosis JSON: `weak_tasks` (task ids), `failures` ({task id: [record id]}), `tasks`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputFileError(f"{path}: cannot read the diagnosis JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InputFileError(f"{path}: a diagnosis is a JSON object with keys tasks, weak_tasks, failures")
    missing = [key for key in ("tasks", "weak_tasks", "failures") if key not in data]
    if missing:
        raise InputFileError(f"{path}: missing key(s) {missing}")
    weak, failures, tasks = data["weak_tasks"], data["failures"], data["tasks"]
    if not isinstance(weak, list) or not all(isinstance(t, str) for t in weak):
        raise InputFileError(f"{path}: weak_tasks must be a list of task ids")
    if not isinstance(failures, dict) or not all(
            isinstance(ids, list) and all(isinstance(i, str) for i in ids) for ids in failures.values()):
        raise InputFileError(f"{path}: failures must map task ids to lists of record ids")
    if not isinstance(tasks, dict):
        raise InputFileError(f"{path}: tasks must be an object keyed by task id")
    unknown = sorted(set(weak) - known_tasks)
    if unknown:
        raise InputFileError(f"{path}: weak_tasks names task(s) the catalogue lacks: {unknown}")
    return Diagnosis(path, sorted(set(weak)), {t: sorted(set(ids)) for t, ids in sorted(failures.items())}, tasks)


@dataclass(frozen=True)
class SoftLabels:
    """One completion per (task, record id) or (task, prompt hash), and who produced them."""

    path: Path
    by_record: pl.DataFrame
    by_prompt: pl.DataFrame
    rows: int
    unusable: dict[str, int]
    provenance: list[dict[str, Any]]


def read_soft_labels(path: str | Path) -> SoftLabels:
    """Parse a soft-label JSONL file (docs/build.md); several rows for one record: highest `reward`, then first.

    Rows marked `truncated` (the answer hit the token limit) or with an empty completion are not labels.
    """
    path = Path(path)
    rows, provenance, unusable, parsed = [], [], {"truncated": 0, "empty_completion": 0}, 0
    for number, item in _jsonl_rows(path):
        if not isinstance(item, dict) or not isinstance(item.get("task_id"), str) \
                or not isinstance(item.get("completion"), str):
            raise InputFileError(f"{path}:{number}: a soft-label row needs string `task_id` and `completion`")
        if not isinstance(item.get("record_id"), str) and not isinstance(item.get("prompt_hash"), str):
            raise InputFileError(f"{path}:{number}: a soft-label row needs `record_id` or `prompt_hash`")
        parsed += 1
        if item.get("truncated") is True:
            unusable["truncated"] += 1
            continue
        if not item["completion"].strip():
            unusable["empty_completion"] += 1
            continue
        reward = item.get("reward")
        rows.append({"task_id": item["task_id"], "record_id": item.get("record_id"),
                     "prompt_hash": item.get("prompt_hash"), "completion": item["completion"],
                     "truncated": False, "reward": float(reward) if isinstance(reward, (int, float)) else None,
                     "_line": number})
        stamp = {key: item[key] for key in PROVENANCE_KEYS if key in item}
        if stamp not in provenance:
            provenance.append(stamp)
    frame = pl.DataFrame(rows, schema=SOFT_LABEL_COLUMNS).sort(
        ["task_id", "reward", "_line"], descending=[False, True, False], nulls_last=True)
    by_record = (frame.filter(pl.col("record_id").is_not_null())
                 .unique(["task_id", "record_id"], keep="first", maintain_order=True)
                 .select("task_id", "record_id", _soft=pl.col("completion")))
    by_prompt = (frame.filter(pl.col("prompt_hash").is_not_null())
                 .unique(["task_id", "prompt_hash"], keep="first", maintain_order=True)
                 .select("task_id", "prompt_hash", _soft_by_prompt=pl.col("completion")))
    return SoftLabels(path, by_record, by_prompt, parsed, unusable, provenance)


def read_pairs(path: str | Path) -> pl.DataFrame:
    """Extra DPO pairs from Parquet or JSONL (docs/build.md): `task_id, record_id, prompt, chosen, rejected`, plus
    optional `split` (default train) and `pair_source` (default predictions). `chosen`/`rejected` may be plain
    strings (one assistant message) or message lists; `prompt` is a message list."""
    from snsdata.build.formats import PAIR_COLUMNS

    path = Path(path)
    if path.suffix == ".parquet":
        rows = pl.read_parquet(path).to_dicts()
    else:
        rows = [row for _, row in _jsonl_rows(path, objects=True)]
    out = []
    for number, row in enumerate(rows, start=1):
        missing = [k for k in ("task_id", "record_id", "prompt", "chosen", "rejected") if row.get(k) is None]
        if missing:
            raise InputFileError(f"{path}: pair {number} lacks {missing}")
        answers = {k: [{"role": "assistant", "content": row[k]}] if isinstance(row[k], str) else row[k]
                   for k in ("chosen", "rejected")}
        out.append({"task_id": row["task_id"], "record_id": row["record_id"], "split": row.get("split") or "train",
                    "prompt": row["prompt"], **answers, "pair_source": row.get("pair_source") or "predictions"})
    try:
        return pl.DataFrame(out, schema=PAIR_COLUMNS)
    except (TypeError, ValueError, pl.exceptions.PolarsError) as exc:
        raise InputFileError(f"{path}: pairs do not have the expected shapes (messages are lists of "
                             f"{{role, content}}): {exc}") from None
