"""Prediction and record files for `snsdata eval`: read strictly, and say which file and line is wrong."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import JsonlError, read_jsonl


class EvalInputError(InvalidInput):
    """A prediction or data file that cannot be evaluated; the message names the file (and line)."""


def _jsonl(path: Path) -> list[tuple[int, Any]]:
    """(line, value) of every non-blank line, through the project's one JSONL reader."""
    try:
        return read_jsonl(path, objects=False)
    except JsonlError as exc:
        raise EvalInputError(str(exc)) from None


def load_predictions(path: Path) -> list[tuple[int, str | None, Any]]:
    """(line, record_id or None, prediction) per non-blank line of a JSONL file with a `prediction` field.

    A prediction is a string or a chat-message list; null counts as an empty answer.
    """
    out = []
    for number, row in _jsonl(path):
        if not isinstance(row, dict) or "prediction" not in row:
            raise EvalInputError(f"{path}:{number}: each line is a JSON object with a `prediction` field")
        prediction = row["prediction"]
        if prediction is not None and not isinstance(prediction, str | list):
            raise EvalInputError(f"{path}:{number}: `prediction` is a string or a message list, "
                                 f"not {type(prediction).__name__}")
        record_id = row.get("record_id")
        if record_id is not None and not isinstance(record_id, str):
            raise EvalInputError(f"{path}:{number}: `record_id` is a string")
        out.append((number, record_id, prediction))
    if not out:
        raise EvalInputError(f"{path}: no predictions")
    return out


def load_records(path: Path) -> list[dict[str, Any]]:
    """Records from a JSON list of objects or a JSONL file."""
    try:
        with path.open("rb") as handle:
            head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    except OSError as exc:
        raise EvalInputError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if head.startswith(b"["):
        try:
            data = json.loads(path.read_bytes().decode("utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise EvalInputError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
        except ValueError as exc:
            raise EvalInputError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(data, list):
            raise EvalInputError(f"{path}: expected a JSON list of records")
        rows = list(enumerate(data, start=1))
        where = "item"
    else:
        rows, where = _jsonl(path), "line"
    for number, row in rows:
        if not isinstance(row, dict):
            raise EvalInputError(f"{path}: {where} {number} is not a JSON object")
    if not rows:
        raise EvalInputError(f"{path}: no records")
    return [row for _, row in rows]


def align(predictions: Sequence[tuple[int, str | None, Any]], records: Sequence[Mapping[str, Any]],
          source: str) -> list[Any]:
    """One prediction per record, in record order: by `record_id` when every prediction line carries one,
    else by position (then the counts must agree)."""
    if predictions and all(record_id is not None for _, record_id, _ in predictions):
        by_id: dict[str, Any] = {}
        for number, record_id, prediction in predictions:
            if record_id in by_id:
                raise EvalInputError(f"{source}:{number}: record_id {record_id!r} appears twice")
            by_id[record_id] = prediction
        ids = [r.get("record_id") for r in records]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise EvalInputError(f"{source}: no prediction for {len(missing)} of {len(ids)} record(s), "
                                 f"e.g. record_id {missing[0]!r}")
        unknown = set(by_id) - set(ids)
        if unknown:
            number = next(n for n, record_id, _ in predictions if record_id in unknown)
            raise EvalInputError(f"{source}:{number}: record_id {sorted(unknown)[0]!r} is not in the data "
                                 f"({len(unknown)} unknown id(s))")
        return [by_id[i] for i in ids]
    if len(predictions) != len(records):
        raise EvalInputError(f"{source}: {len(predictions)} prediction line(s) but {len(records)} record(s); "
                             "give one line per record in order, or a `record_id` on every line")
    return [prediction for _, _, prediction in predictions]
