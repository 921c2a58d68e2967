"""Reading and writing the files the standalone commands work on (Parquet, JSONL), with errors that name the
file, the line or the column instead of a traceback."""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import iter_jsonl, json_type

PARQUET = {".parquet", ".pq"}
JSONL = {".jsonl", ".ndjson", ".json"}


class InputError(InvalidInput):
    """A problem with a user's file: missing, unreadable, without the text column."""


def is_parquet(path: str | Path) -> bool:
    """Parquet (cheap to scan again and again) rather than JSONL."""
    return _kind(Path(path)) == "parquet"


def _kind(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix in PARQUET:
        return "parquet"
    if suffix in JSONL:
        return "jsonl"
    raise InputError(f"{path}: unsupported file type {suffix or '(none)'!r}; use .parquet or .jsonl")


def first_bad_json_line(path: Path) -> str | None:
    """Where a JSONL file stops being one JSON object per line (read only after a failure)."""
    for line in iter_jsonl(path):
        if line.error is not None:
            return f"{path}:{line.number}: {line.error}"
        if not isinstance(line.value, dict):
            return f"{path}:{line.number}: expected a JSON object, got {json_type(line.value)}"
    return None


def explain(path: Path, exc: Exception) -> InputError:
    """An InputError for a failure while reading `path`, pointing at the bad line when there is one."""
    if _kind(path) == "jsonl":
        where = first_bad_json_line(path)
        if where:
            return InputError(where)
    message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return InputError(f"{path}: cannot read: {message}")


def scan_input(path: str | Path, text_column: str) -> pl.LazyFrame:
    """A lazy scan of a Parquet or JSONL file that has a string `text_column`."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    if not path.is_file():
        raise InputError(f"{path}: not a file")
    try:
        parquet = _kind(path) == "parquet"
        frame = pl.scan_parquet(path) if parquet else pl.scan_ndjson(path, infer_schema_length=10_000)
        schema = frame.collect_schema()
    except InputError:
        raise
    except Exception as exc:  # polars and pyarrow raise many types for unreadable files
        raise explain(path, exc) from None
    if text_column not in schema:
        columns = ", ".join(schema.names()) or "(none)"
        raise InputError(f"{path}: no column {text_column!r} (columns: {columns}); pick one with --text-column")
    if schema[text_column] not in (pl.String, pl.Null):
        raise InputError(f"{path}: column {text_column!r} holds {schema[text_column]}, not text")
    return frame


class BatchWriter:
    """Writes DataFrame batches to one Parquet or JSONL file as they come, so memory stays bounded.

    Used as a context manager; `schema` is what an empty Parquet output gets when no batch arrives.
    """

    def __init__(self, path: str | Path, schema: pl.Schema | dict[str, pl.DataType] | None = None):
        self.path = Path(path)
        self.kind = _kind(self.path)
        self.schema = schema
        self.rows = 0
        self._parquet: pq.ParquetWriter | None = None
        self._jsonl: BinaryIO | None = None

    def __enter__(self) -> BatchWriter:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "jsonl":
            self._jsonl = self.path.open("wb")
        return self

    def write(self, batch: pl.DataFrame) -> None:
        if self._jsonl is not None:
            batch.write_ndjson(self._jsonl)
        else:
            table = batch.to_arrow()
            if self._parquet is None:
                # zstd level 1: most of zstd's ratio at a fraction of its default level's time
                self._parquet = pq.ParquetWriter(self.path, table.schema, compression="zstd", compression_level=1)
            self._parquet.write_table(table.cast(self._parquet.schema))
        self.rows += batch.height

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._jsonl is not None:
            self._jsonl.close()
        elif self._parquet is not None:
            self._parquet.close()
        elif exc is None:
            pl.DataFrame(schema=self.schema or {}).write_parquet(self.path)
