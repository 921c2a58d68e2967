"""Readers: a task spec plus a data root become the canonical record frame and a rejects table."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import polars as pl
import xxhash

from snsdata.frames import KEY_COLUMNS, REJECT_SCHEMA
from snsdata.readers.formats import PARSERS, Malformed, SourceError
from snsdata.spec.models import GeneratedSource, LabelMap, TableSource, TaskSpec

__all__ = ["DataNotFound", "ReadResult", "SourceError", "data_found", "default_data_root", "read_task", "records",
           "select_where"]


class DataNotFound(FileNotFoundError):
    """A task whose files are not under the data root; the message says how to point at them."""


@dataclass
class ReadResult:
    frame: pl.LazyFrame
    rejects: pl.DataFrame
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per split: rows `read` from the files, `rejected`, `excluded` by `where`, `kept`."""


def default_data_root() -> Path:
    """`data_root` of the project file (`snsdata.toml` in the working directory), else the small permissively
    licensed samples shipped inside the package."""
    from snsdata.spec.searchpath import project_data_root

    return project_data_root() or Path(str(resources.files("snsdata.sample_data")))


def _split_paths(spec: TaskSpec, data_root: Path) -> dict[str, list[Path]]:
    if isinstance(spec.source, GeneratedSource):
        return {}
    out = {}
    for split, paths in spec.source.splits.items():
        out[split] = [data_root / p for p in ([paths] if isinstance(paths, str) else paths)]
    return out


def _exists(spec: TaskSpec, path: Path) -> bool:
    if spec.source.reader == "tweeteval":
        return (path.parent / f"{path.name}_text.txt").is_file()
    return path.is_file()


def data_found(spec: TaskSpec, data_root: Path | None = None) -> bool:
    """Whether every file of every split is present under the data root."""
    root = Path(data_root) if data_root else default_data_root()
    return all(_exists(spec, p) for paths in _split_paths(spec, root).values() for p in paths)


def _label_values(label_map: LabelMap, data_root: Path, task_id: str) -> dict[str, str]:
    if label_map.values is not None:
        return {str(k): v for k, v in label_map.values.items()}
    path = data_root / str(label_map.file)
    if not path.is_file():
        raise DataNotFound(f"{task_id}: label map {path} not found (set --data-root)")
    values = {}
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            values[str(number - 1)] = parts[0].strip()
        else:  # `id<TAB>name`, possibly with more columns after the name (TweetEval emoji: `0<TAB>❤<TAB>_red_heart_`)
            values[parts[0].strip()] = parts[1].strip()
    return values


def _reject_rows(task_id: str, step: str, reasons: pl.DataFrame) -> pl.DataFrame:
    """Turn rows (with `_location` and `_reason`) into the shared rejects shape, the row kept as JSON."""
    if reasons.is_empty():
        return pl.DataFrame(schema=REJECT_SCHEMA)
    payload = reasons.drop("_location", "_reason")
    rows = payload.select(pl.struct(payload.columns).struct.json_encode()).to_series() if payload.columns \
        else pl.Series([None] * reasons.height, dtype=pl.String)
    return pl.DataFrame({
        "task_id": [task_id] * reasons.height,
        "record_id": [None] * reasons.height,
        "source": reasons["_location"],
        "step": [step] * reasons.height,
        "reason": reasons["_reason"],
        "duplicate_of": [None] * reasons.height,
        "row": rows,
    }, schema=REJECT_SCHEMA)


def _malformed_rejects(task_id: str, malformed: list[Malformed]) -> pl.DataFrame:
    return pl.DataFrame({
        "task_id": [task_id] * len(malformed),
        "record_id": [None] * len(malformed),
        "source": [m.location for m in malformed],
        "step": ["read"] * len(malformed),
        "reason": [m.reason for m in malformed],
        "duplicate_of": [None] * len(malformed),
        "row": [m.raw for m in malformed],
    }, schema=REJECT_SCHEMA)


def read_task(spec: TaskSpec, data_root: str | Path | None = None) -> ReadResult:
    """Read every split of a task into `task_id, record_id, split, <fields>`; bad rows go to rejects."""
    root = Path(data_root) if data_root else default_data_root()
    source = spec.source
    if isinstance(source, GeneratedSource):
        return _generated(spec, source)
    fields = sorted(source.provided_fields()) if not isinstance(source, TableSource) else list(source.field_columns)
    frames, rejects, counts = [], [], {}
    for split, paths in _split_paths(spec, root).items():
        split_frames, split_rejects = [], []
        for path in paths:
            if not _exists(spec, path):
                raise DataNotFound(
                    f"{spec.id}: data file {path} not found. The default data root holds only the shipped samples; "
                    f"point --data-root at a folder containing {path.relative_to(root)}"
                    + (f" (origin: {source.origin})" if source.origin else "")
                )
            parsed = PARSERS[source.reader](path, source)
            split_rejects.append(_malformed_rejects(spec.id, parsed.malformed))
            frame = parsed.frame.collect()
            if frame.is_empty():
                continue
            if isinstance(source, TableSource):
                frame, missing = _select_fields(frame, source, path)
                split_rejects.append(_reject_rows(spec.id, "read", missing))
            split_frames.append(frame)
        frame = pl.concat(split_frames, how="diagonal_relaxed") if split_frames else pl.DataFrame()
        read = frame.height + sum(r.height for r in split_rejects)
        if not frame.is_empty():
            frame, unmapped = _apply_label_maps(frame, spec, root)
            split_rejects.append(_reject_rows(spec.id, "label_map", unmapped))
        before = frame.height
        frame = select_where(spec, frame)
        excluded = before - frame.height
        split_reject = pl.concat(split_rejects) if split_rejects else pl.DataFrame(schema=REJECT_SCHEMA)
        counts[split] = {"read": read, "rejected": split_reject.height, "excluded": excluded, "kept": frame.height}
        rejects.append(split_reject)
        if not frame.is_empty():
            frames.append(frame.drop("_location").with_columns(split=pl.lit(split)))
    combined = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
        schema={"split": pl.String} | {f: pl.String for f in fields})
    combined = _with_keys(spec.id, combined, fields)
    all_rejects = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECT_SCHEMA)
    return ReadResult(combined.lazy(), all_rejects, counts)


def select_where(spec: TaskSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of a record frame that the spec's `where` keeps (every row without one): the one selection path
    for files read here and for records handed over directly (`snsdata eval --data`)."""
    where = spec.source.where
    if not where or frame.is_empty():
        return frame
    return frame.filter(pl.sql_expr(where))


def _generated(spec: TaskSpec, source: GeneratedSource) -> ReadResult:
    """Generated general data: no files, so nothing malformed; records are keyed like any other."""
    from snsdata.sources import generate_source

    frames, counts = [], {}
    for split, count in source.splits.items():
        frame = generate_source(source.generator, split, count, source.params).select(source.fields)
        counts[split] = {"read": frame.height, "rejected": 0, "excluded": 0, "kept": frame.height}
        frames.append(frame.with_columns(split=pl.lit(split)))
    combined = _with_keys(spec.id, pl.concat(frames, how="diagonal_relaxed"), source.fields)
    return ReadResult(combined.lazy(), pl.DataFrame(schema=REJECT_SCHEMA), counts)


def _with_keys(task_id: str, frame: pl.DataFrame, fields: list[str]) -> pl.DataFrame:
    present = [f for f in fields if f in frame.columns]
    if frame.is_empty():
        ids = pl.Series("record_id", [], dtype=pl.String)
    else:
        encoded = frame.select(pl.struct(present).struct.json_encode()).to_series()
        prefix = f"{task_id}\x1f"
        digests = [xxhash.xxh3_64_hexdigest((prefix + row).encode()) for row in encoded]
        ids = pl.Series("record_id", digests, dtype=pl.String)
    frame = frame.with_columns(ids, task_id=pl.lit(task_id, dtype=pl.String))
    repeat = pl.col("record_id").cum_count().over("record_id") - 1
    frame = frame.with_columns(
        record_id=pl.when(repeat > 0).then(pl.format("{}-{}", pl.col("record_id"), repeat))
        .otherwise(pl.col("record_id"))
    )
    return frame.select(*KEY_COLUMNS, *present)


def _select_fields(frame: pl.DataFrame, source: TableSource, path: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Rename columns to field names; rows lacking a required field become rejects."""
    columns = source.field_columns
    absent = [column for column in columns.values() if column not in frame.columns]
    required_absent = [c for name, c in columns.items() if c in absent and name not in source.optional]
    if required_absent:
        raise SourceError(f"{path}: column(s) {required_absent} not found (columns: {frame.columns})")
    for column in absent:
        frame = frame.with_columns(pl.lit(None).alias(column))
    frame = frame.select("_location", *[pl.col(col).alias(name) for name, col in columns.items()])
    required = [name for name in columns if name not in source.optional]
    if not required:
        return frame, frame.clear().with_columns(_reason=pl.lit(""))
    null_fields = pl.concat_list([pl.when(pl.col(n).is_null()).then(pl.lit(n)) for n in required]).list.drop_nulls()
    frame = frame.with_columns(_missing=null_fields)
    bad = frame.filter(pl.col("_missing").list.len() > 0).with_columns(
        _reason=pl.format("missing or null field(s): {}", pl.col("_missing").list.join(", "))
    ).drop("_missing")
    return frame.filter(pl.col("_missing").list.len() == 0).drop("_missing"), bad


def _apply_label_maps(frame: pl.DataFrame, spec: TaskSpec, root: Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace label ids by names; an id absent from the map is a reject, not a silent null."""
    bad_parts = []
    for name, label_map in spec.source.label_maps.items():
        values = _label_values(label_map, root, spec.id)
        raw = pl.col(name).cast(pl.String).str.strip_chars()
        frame = frame.with_columns(_mapped=raw.replace_strict(values, default=None, return_dtype=pl.String))
        bad = frame.filter(pl.col("_mapped").is_null()).with_columns(
            _reason=pl.format("{} value {} is not in the label map", pl.lit(name), pl.col(name).cast(pl.String))
        ).drop("_mapped")
        bad_parts.append(bad)
        kept = frame.filter(pl.col("_mapped").is_not_null())
        frame = kept.with_columns(pl.col("_mapped").alias(name)).drop("_mapped")
    if not bad_parts:
        return frame, pl.DataFrame()
    return frame, pl.concat(bad_parts, how="diagonal_relaxed")


def records(spec: TaskSpec, data_root: str | Path | None = None, split: str | None = None) -> list[dict]:
    """The task's records as plain dicts (fields only), in file order; for evaluation and tests."""
    frame = read_task(spec, data_root).frame
    if split:
        frame = frame.filter(pl.col("split") == split)
    return frame.collect().to_dicts()
