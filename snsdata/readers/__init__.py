"""Readers: a task spec plus a data root become the canonical record frame and a rejects table.

Files are streamed in batches (`iter_task`), so memory stays bounded however large a file is; `read_task`
collects the batches for callers that want the whole task. Every row read is kept, excluded by the spec's
`where`, or rejected with its place and reason, in this order of steps:

    read        the file's own problems: invalid UTF-8 or JSON, a ragged CSV line, a field whose type drifts,
                a required field missing or null
    label_map   a label id the spec's label map does not have
    where       (not a reject: counted as excluded)
    label       a gold answer that does not fit the spec: its target does not render (e.g. a non-numeric
                value through `float`), or a `format: label` field outside `output.labels`
    known_bad   a record the spec declares as known-bad (`source.known_bad`), when reading for training

Reading for evaluation (`purpose="eval"`) keeps the declared known-bad records, label problems and all: the
benchmark scores them as they are.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import reduce
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import polars as pl
import xxhash
from jinja2 import TemplateError, nodes

from snsdata.frames import KEY_COLUMNS, REJECT_SCHEMA
from snsdata.readers.formats import (
    CONLL_SCHEMA,
    Item,
    Malformed,
    Progress,
    SourceError,
    conll_items,
    csv_header,
    csv_items,
    json_list_items,
    jsonl_items,
    parquet_batches,
    tweeteval_items,
    tweeteval_paths,
)
from snsdata.readers.schema import Survey
from snsdata.spec.errors import InvalidInput
from snsdata.spec.models import (
    TRAIN_SOURCE_SPLIT,
    Contains,
    GeneratedSource,
    KnownBad,
    LabelMap,
    Prefix,
    TableSource,
    TaskSpec,
)
from snsdata.spec.templating import environment, template_variables
from snsdata.spec.where import WhereError, where_expression

__all__ = ["DataNotFound", "Progress", "Purpose", "ReadBatch", "ReadResult", "SourceError", "data_found",
           "default_data_root", "iter_task", "read_task", "read_work", "records", "select_where"]

Purpose = Literal["train", "eval"]
BATCH_ROWS = 20_000
"""Rows per streamed batch: large enough for column operations to pay, small enough to bound memory."""


class DataNotFound(InvalidInput, FileNotFoundError):
    """A task whose files are not under the data root; the message says how to point at them."""


@dataclass
class ReadResult:
    frame: pl.LazyFrame
    rejects: pl.DataFrame
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    """Per split: rows `read` from the files, `rejected`, `excluded` by `where`, `kept`."""


@dataclass
class ReadBatch:
    """One streamed piece of a task: kept rows (key columns + fields), the rows rejected beside them, counts."""

    split: str
    frame: pl.DataFrame
    rejects: pl.DataFrame
    counts: dict[str, int]
    known_bad: dict[int, int] = field(default_factory=dict)
    """Declared known-bad records met in this batch: index in `source.known_bad` -> rows (kept in the frame
    when reading for evaluation, in `rejects` with step `known_bad` when reading for training)."""


def default_data_root() -> Path:
    """`data_root` of the project file (`snsdata.toml` in the working directory), else the small permissively
    licensed samples shipped inside the package."""
    from snsdata.spec.searchpath import project_data_root

    return project_data_root() or Path(str(resources.files("snsdata.sample_data")))


def _paths(value: str | list[str], data_root: Path) -> list[Path]:
    return [data_root / p for p in ([value] if isinstance(value, str) else value)]


def _split_paths(spec: TaskSpec, data_root: Path) -> dict[str, list[Path]]:
    """The files of each split to read: the source's own splits (none for a generator) where all their files
    are present, or where the task has no `train` files to fall back on; then its `train` files if present."""
    source = spec.source
    own = {} if isinstance(source, GeneratedSource) else {
        split: _paths(paths, data_root) for split, paths in source.splits.items()}
    if source.train is None:
        return own
    train = _paths(source.train, data_root)
    own_found = all(_exists(spec, p) for paths in own.values() for p in paths)
    if not all(_exists(spec, p, TRAIN_SOURCE_SPLIT) for p in train):
        return own
    return {**(own if own_found else {}), TRAIN_SOURCE_SPLIT: train}


def _reader_of(spec: TaskSpec, split: str) -> str:
    """A generated task's own training files are JSONL; every other file is read with the source's reader."""
    if isinstance(spec.source, GeneratedSource):
        return "jsonl" if split == TRAIN_SOURCE_SPLIT else "generated"
    return spec.source.reader


def _exists(spec: TaskSpec, path: Path, split: str = "") -> bool:
    if _reader_of(spec, split) == "tweeteval":
        return tweeteval_paths(path)[0].is_file()
    return path.is_file()


def data_found(spec: TaskSpec, data_root: Path | None = None) -> bool:
    """Whether every file of the task's splits, or of its `train` files, is present under the data root."""
    root = Path(data_root) if data_root else default_data_root()
    plan = _split_paths(spec, root)
    if isinstance(spec.source, GeneratedSource):
        return True
    return bool(plan) and all(_exists(spec, p, split) for split, paths in plan.items() for p in paths)


def _file_size(spec: TaskSpec, path: Path, split: str) -> int:
    if _reader_of(spec, split) == "tweeteval":
        return tweeteval_paths(path)[0].stat().st_size
    return path.stat().st_size


def read_work(spec: TaskSpec, data_root: Path | None = None) -> int:
    """Bytes `iter_task` reports through its progress callback for this task (JSON files are read twice: once
    to settle each field's type, once to build the rows)."""
    root = Path(data_root) if data_root else default_data_root()
    return sum((2 if _reader_of(spec, split) in ("json", "jsonl") else 1) * _file_size(spec, p, split)
               for split, paths in _split_paths(spec, root).items() for p in paths if _exists(spec, p, split))


def _label_values(label_map: LabelMap, data_root: Path, task_id: str) -> dict[str, str]:
    if label_map.values is not None:
        return {str(k): v for k, v in label_map.values.items()}
    path = data_root / str(label_map.file)
    if not path.is_file():
        raise DataNotFound(f"{task_id}: label map {path} not found (set --data-root)")
    values = {}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise SourceError(f"{path}: not valid UTF-8 (byte {exc.start + 1})") from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) == 1:
            values[str(number - 1)] = parts[0].strip()
        else:  # `id<TAB>name`, possibly with more columns after the name (TweetEval emoji: `0<TAB>❤<TAB>_red_heart_`)
            values[parts[0].strip()] = parts[1].strip()
    return values


def _payload_json(frame: pl.DataFrame) -> pl.Series:
    payload = frame.select([c for c in frame.columns if not c.startswith("_")])
    if not payload.columns:
        return pl.Series([None] * frame.height, dtype=pl.String)
    return payload.select(pl.struct(payload.columns).struct.json_encode()).to_series()


def _reject_rows(task_id: str, step: str, rows: pl.DataFrame) -> pl.DataFrame:
    """Turn rows (with `_location`, `_reason`, maybe `_base_id`) into the shared rejects shape, row kept as JSON."""
    if rows.is_empty():
        return pl.DataFrame(schema=REJECT_SCHEMA)
    ids = rows["_base_id"] if "_base_id" in rows.columns else pl.Series([None] * rows.height, dtype=pl.String)
    return pl.DataFrame({
        "task_id": [task_id] * rows.height,
        "record_id": ids,
        "source": rows["_location"],
        "step": [step] * rows.height,
        "reason": rows["_reason"],
        "duplicate_of": [None] * rows.height,
        "row": _payload_json(rows),
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


def _identity_field(template: str) -> str | None:
    """The field a target template prints unchanged (`{{ label }}`), if that is all it does."""
    body = [n for n in environment().parse(template).body
            if not (isinstance(n, nodes.Output) and all(isinstance(c, nodes.TemplateData) and not c.data.strip()
                                                        for c in n.nodes))]
    if len(body) != 1 or not isinstance(body[0], nodes.Output):
        return None
    parts = [c for c in body[0].nodes if not (isinstance(c, nodes.TemplateData) and not c.data.strip())]
    if len(parts) == 1 and isinstance(parts[0], nodes.Name):
        return parts[0].name
    return None


def _fields(spec: TaskSpec) -> list[str]:
    """A task's fields in record order (the order record ids hash them in)."""
    source = spec.source
    if isinstance(source, TableSource):
        return list(source.field_columns)
    if isinstance(source, GeneratedSource):
        return list(source.fields)
    return sorted(source.provided_fields())


def _known_bad_expr(declared: KnownBad) -> pl.Expr:
    """Whether a row is the declared record: all of `match`, or its record id."""
    tests = []
    for name, expected in (declared.match or {}).items():
        column = pl.col(name)
        if isinstance(expected, Prefix):
            tests.append(column.cast(pl.String).str.starts_with(expected.prefix))
        elif isinstance(expected, Contains):
            tests.append(column.cast(pl.String).str.contains(expected.contains, literal=True))
        elif isinstance(expected, str):
            tests.append(column.cast(pl.String) == expected)
        else:
            tests.append(column == expected)
    by_match = reduce(lambda a, b: a & b, tests).fill_null(False) if tests else pl.lit(False)
    by_id = pl.col("_base_id") == declared.record_id if declared.record_id else pl.lit(False)
    return by_match | by_id


class _TaskReader:
    """Reads one task's files batch by batch; holds what must span batches (schema, label maps, id counts)."""

    def __init__(self, spec: TaskSpec, root: Path, purpose: Purpose, batch_rows: int, progress: Progress):
        self.spec, self.root, self.purpose, self.batch_rows, self.progress = spec, root, purpose, batch_rows, \
            progress
        source = spec.source
        self.table = source if isinstance(source, TableSource) else None
        self.fields = _fields(spec)
        self.label_maps = {name: _label_values(m, root, spec.id) for name, m in source.label_maps.items()}
        try:
            self.where = where_expression(source.where, source.provided_fields()) if source.where else None
        except WhereError as exc:
            raise SourceError(f"{spec.id}: source.where: {exc}") from None
        self.seen: dict[str, int] = {}
        self.schema: dict[str, pl.DataType] | None = None
        self.survey: Survey | None = None
        self.drifted: dict[str, str] = {}
        self.identity = _identity_field(spec.target.template)
        self.target_reads = sorted(template_variables(spec.target.template) & source.provided_fields())

    # ---- files -> raw batches (`_location` + the file's columns)
    def columns(self) -> set[str] | None:
        return set(self.table.field_columns.values()) if self.table else None

    def items(self, path: Path, progress: Progress, reader: str) -> Iterator[Item]:
        if reader == "jsonl":
            return jsonl_items(path, self.columns(), progress)
        if reader == "json":
            return json_list_items(path, self.columns(), progress)
        if reader == "csv":
            assert self.table is not None
            return csv_items(path, self.table, self.columns(), progress)
        if reader == "conll":
            return conll_items(path, self.spec.source, progress)  # type: ignore[arg-type]
        return tweeteval_items(path, self.spec.source, progress)  # type: ignore[arg-type]

    def survey_files(self, paths: list[tuple[Path, str]]) -> None:
        """JSON and JSONL: settle every column's type over all files before the first batch is built."""
        survey, drifted = Survey(), {}
        for path, reader in paths:
            for item in self.items(path, self.progress, reader):
                if isinstance(item, Malformed):
                    continue
                reason = survey.admit(str(path), item.location, item.values)
                if reason is not None:
                    drifted[item.location] = reason
        self.survey, self.drifted = survey, drifted
        self.schema = survey.schema()

    def file_schema(self, path: Path, reader: str) -> dict[str, pl.DataType]:
        if reader in ("json", "jsonl"):
            assert self.schema is not None
            return self.schema
        if reader == "csv":
            assert self.table is not None
            return {c: pl.String() for c in csv_header(path, self.table)}
        if reader == "conll":
            return dict(CONLL_SCHEMA)
        return {"text": pl.String(), "label": pl.String()}

    def raw_batches(self, path: Path, reader: str) -> Iterator[tuple[pl.DataFrame, list[Malformed]]]:
        if reader == "parquet":
            for frame in parquet_batches(path, sorted(self.columns() or []) or None, self.batch_rows,
                                         self.progress):
                yield frame, []
            return
        schema = {"_location": pl.String(), **self.file_schema(path, reader)}
        drifted = self.drifted
        rows: list[dict[str, Any]] = []
        malformed: list[Malformed] = []
        for item in self.items(path, self.progress, reader):
            if isinstance(item, Malformed):
                malformed.append(item)
            elif item.location in drifted:
                malformed.append(Malformed(item.location, drifted[item.location], _row_text(item.values)))
            else:
                rows.append({"_location": item.location, **item.values})
            if len(rows) >= self.batch_rows or len(malformed) >= self.batch_rows:
                yield _frame(rows, schema, malformed), malformed
                rows, malformed = [], []
        if rows or malformed:
            yield _frame(rows, schema, malformed), malformed

    # ---- raw batch -> kept rows and rejects
    def select_fields(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Rename columns to field names; rows lacking a required field become rejects."""
        if self.table is None:
            for name in self.fields:
                if name not in frame.columns:
                    frame = frame.with_columns(pl.lit(None).alias(name))
            return frame.select("_location", *self.fields), frame.clear().select("_location").with_columns(
                _reason=pl.lit(""))
        columns = self.table.field_columns
        absent = [column for column in columns.values() if column not in frame.columns]
        for column in absent:
            frame = frame.with_columns(pl.lit(None).alias(column))
        frame = frame.select("_location", *[pl.col(col).alias(name) for name, col in columns.items()])
        required = [name for name in columns if name not in self.table.optional]
        if not required:
            return frame, frame.clear().with_columns(_reason=pl.lit(""))
        null_fields = pl.concat_list([pl.when(pl.col(n).is_null()).then(pl.lit(n)) for n in required]) \
            .list.drop_nulls()
        frame = frame.with_columns(_missing=null_fields)
        bad = frame.filter(pl.col("_missing").list.len() > 0).with_columns(
            _reason=pl.format("missing or null field(s): {}", pl.col("_missing").list.join(", "))
        ).drop("_missing")
        return frame.filter(pl.col("_missing").list.len() == 0).drop("_missing"), bad

    def apply_label_maps(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Replace label ids by names; an id absent from the map is a reject, not a silent null."""
        bad_parts = []
        for name, values in self.label_maps.items():
            raw = pl.col(name).cast(pl.String).str.strip_chars()
            frame = frame.with_columns(_mapped=raw.replace_strict(values, default=None, return_dtype=pl.String))
            bad = frame.filter(pl.col("_mapped").is_null()).with_columns(
                _reason=pl.format("{} value {} is not in the label map", pl.lit(name), pl.col(name).cast(pl.String))
            ).drop("_mapped")
            bad_parts.append(bad)
            frame = frame.filter(pl.col("_mapped").is_not_null()).with_columns(pl.col("_mapped").alias(name)) \
                .drop("_mapped")
        return frame, pl.concat(bad_parts, how="diagonal_relaxed") if bad_parts else frame.clear()

    def base_ids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """The content hash of each record (task id + its fields as JSON), before duplicate suffixes."""
        if frame.is_empty():
            return frame.with_columns(_base_id=pl.lit(None, dtype=pl.String))
        encoded = frame.select(pl.struct(self.fields).struct.json_encode()).to_series()
        prefix = f"{self.spec.id}\x1f"
        digests = [xxhash.xxh3_64_hexdigest((prefix + row).encode()) for row in encoded]
        return frame.with_columns(pl.Series("_base_id", digests, dtype=pl.String))

    def mark_known_bad(self, frame: pl.DataFrame) -> pl.DataFrame:
        declared = self.spec.source.known_bad
        if not declared or frame.is_empty():
            return frame.with_columns(_known=pl.lit(None, dtype=pl.Int64))
        index = pl.lit(None, dtype=pl.Int64)
        for number in reversed(range(len(declared))):
            index = pl.when(_known_bad_expr(declared[number])).then(pl.lit(number, dtype=pl.Int64)).otherwise(index)
        try:
            return frame.with_columns(_known=index)
        except pl.exceptions.PolarsError as exc:
            raise SourceError(f"{self.spec.id}: source.known_bad cannot be matched: "
                              f"{str(exc).splitlines()[0]}") from None

    def check_labels(self, frame: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
        """Gold answers must fit the spec: the target renders, and a label field is one of `output.labels`."""
        if frame.is_empty():
            return frame, frame.with_columns(_reason=pl.lit(None, dtype=pl.String)).clear()
        reasons: list[str | None] = [None] * frame.height
        spec, reads = self.spec, ", ".join(self.target_reads) or "no field"
        needs_render = self.identity is None or spec.target.rationale_template is not None
        for index, record in enumerate(frame.select(*self.fields, "_known").iter_rows(named=True)
                                       if needs_render else ()):  # `{{ field }}` always renders
            if record.pop("_known") is not None:
                continue
            try:
                spec.render_target(record)
            except TemplateError as exc:
                reasons[index] = f"gold target (reads {reads}) does not render: {exc}"
        frame = frame.with_columns(_reason=pl.Series(reasons, dtype=pl.String))
        labels = spec.output.labels
        if spec.output.format == "label" and labels and self.identity in self.fields:
            value = pl.col(self.identity).cast(pl.String).str.strip_chars()
            allowed = labels if spec.output.case_sensitive else [label.casefold() for label in labels]
            if not spec.output.case_sensitive:
                value = value.str.to_lowercase()
            outside = value.is_in(pl.Series(allowed, dtype=pl.String).implode()).not_() & pl.col("_known").is_null()
            frame = frame.with_columns(_reason=pl.when(pl.col("_reason").is_null() & outside).then(pl.format(
                "field {}: {} is not one of the declared labels ({})", pl.lit(repr(self.identity)),
                pl.col(self.identity).cast(pl.String), pl.lit(", ".join(labels)))).otherwise(pl.col("_reason")))
        bad = frame.filter(pl.col("_reason").is_not_null())
        return frame.filter(pl.col("_reason").is_null()).drop("_reason"), bad

    def process(self, split: str, frame: pl.DataFrame, malformed: list[Malformed], path: Path | None) -> ReadBatch:
        task_id = self.spec.id
        rejects = [_malformed_rejects(task_id, malformed)]
        read = frame.height + len(malformed)
        frame, missing = self.select_fields(frame) if path is not None else (frame, frame.clear())
        if "_reason" in missing.columns:
            rejects.append(_reject_rows(task_id, "read", missing))
        frame, unmapped = self.apply_label_maps(frame)
        rejects.append(_reject_rows(task_id, "label_map", unmapped))
        excluded = 0
        if self.where is not None and not frame.is_empty():
            before = frame.height
            try:
                frame = frame.filter(self.where)
            except pl.exceptions.PolarsError as exc:
                where = f" to {path}" if path is not None else ""
                raise SourceError(f"{task_id}: source.where {self.spec.source.where!r} cannot be applied{where}: "
                                  f"{str(exc).splitlines()[0]}") from None
            excluded = before - frame.height
        frame = self.mark_known_bad(self.base_ids(frame))
        frame, bad_labels = self.check_labels(frame)
        rejects.append(_reject_rows(task_id, "label", bad_labels))
        known: dict[int, int] = {}
        if self.spec.source.known_bad:
            flagged = frame.filter(pl.col("_known").is_not_null())
            known = dict(flagged.group_by("_known").len().iter_rows())
            if self.purpose == "train":
                reasons = pl.Series([self.spec.source.known_bad[i].reason for i in flagged["_known"]],
                                    dtype=pl.String)
                rejects.append(_reject_rows(task_id, "known_bad", flagged.with_columns(_reason=reasons)))
                frame = frame.filter(pl.col("_known").is_null())
        frame = self.final_ids(frame).with_columns(split=pl.lit(split, dtype=pl.String))
        batch_rejects = pl.concat(rejects)
        counts = {"read": read, "rejected": batch_rejects.height, "excluded": excluded, "kept": frame.height}
        return ReadBatch(split, frame.select(*KEY_COLUMNS, *self.fields), batch_rejects, counts, known)

    def final_ids(self, frame: pl.DataFrame) -> pl.DataFrame:
        """`<hash>` for a record's first copy, `<hash>-N` for its N-th exact duplicate (across the whole task)."""
        ids = []
        seen = self.seen
        for base in frame["_base_id"]:
            count = seen.get(base, 0)
            seen[base] = count + 1
            ids.append(base if count == 0 else f"{base}-{count}")
        return frame.with_columns(record_id=pl.Series(ids, dtype=pl.String), task_id=pl.lit(self.spec.id,
                                                                                            dtype=pl.String))

    def batches(self) -> Iterator[ReadBatch]:
        plan = _split_paths(self.spec, self.root)
        for split, paths in plan.items():
            for path in paths:
                if not _exists(self.spec, path, split):
                    source = self.spec.source
                    raise DataNotFound(
                        f"{self.spec.id}: data file {path} not found. The default data root holds only the shipped "
                        f"samples; point --data-root at a folder containing {path.relative_to(self.root)}"
                        + (f" (origin: {source.origin})" if source.origin else ""))
        surveyed = [(p, _reader_of(self.spec, split)) for split, paths in plan.items() for p in paths]
        if any(reader in ("json", "jsonl") for _, reader in surveyed):
            self.survey_files([(p, reader) for p, reader in surveyed if reader in ("json", "jsonl")])
        for split, paths in plan.items():
            reader = _reader_of(self.spec, split)
            for path in paths:
                checked = False
                for frame, malformed in self.raw_batches(path, reader):
                    if not checked and frame.height:
                        self.check_columns(path, frame, reader)
                        checked = True
                    yield self.process(split, frame, malformed, path)

    def check_columns(self, path: Path, frame: pl.DataFrame, reader: str) -> None:
        """A required column that no row of a file has is the file's error, not one reject per row."""
        if self.table is None:
            return
        if reader in ("json", "jsonl"):
            assert self.survey is not None
            present = self.survey.columns_by_file.get(str(path), set())
        else:
            present = set(frame.columns) - {"_location"}
        required = [c for name, c in self.table.field_columns.items() if name not in self.table.optional]
        absent = [c for c in required if c not in present]
        if absent:
            raise SourceError(f"{path}: column(s) {absent} not found (columns: {sorted(present)})")


def _row_text(values: dict[str, Any]) -> str:
    return json.dumps(values, ensure_ascii=False, default=str)


def _frame(rows: list[dict[str, Any]], schema: dict[str, pl.DataType], malformed: list[Malformed]) -> pl.DataFrame:
    """A batch built with the file's schema; a row that still does not fit becomes a reject, not a crash."""
    try:
        return pl.DataFrame(rows, schema=schema)
    except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError):
        pass
    kept = []
    for row in rows:
        try:
            pl.DataFrame([row], schema=schema)
        except (pl.exceptions.PolarsError, TypeError, ValueError, OverflowError) as exc:
            reason = f"row does not fit the file's schema: {str(exc).splitlines()[0] if str(exc) else exc}"
            malformed.append(Malformed(row["_location"], reason, _row_text({k: v for k, v in row.items()
                                                                             if k != "_location"})))
            continue
        kept.append(row)
    return pl.DataFrame(kept, schema=schema)


def iter_task(spec: TaskSpec, data_root: str | Path | None = None, purpose: Purpose = "train",
              batch_rows: int = BATCH_ROWS, progress: Progress = None) -> Iterator[ReadBatch]:
    """Stream a task's records split by split, file by file, in batches of at most `batch_rows` rows.

    `purpose="train"` (builds) leaves the spec's known-bad records out, as `known_bad` rejects with their
    reason; `purpose="eval"` keeps them. `progress` is called with bytes read (total: `read_work`).
    """
    root = Path(data_root) if data_root else default_data_root()
    reader = _TaskReader(spec, root, purpose, batch_rows, progress)
    if isinstance(spec.source, GeneratedSource):
        from snsdata.sources import generate_source

        for split, count in spec.source.splits.items():
            frame = generate_source(spec.source.generator, split, count, spec.source.params).select(spec.source.fields)
            frame = frame.with_columns(_location=pl.format("{}:{}#{}", pl.lit(spec.source.generator), pl.lit(split),
                                                           pl.int_range(pl.len())))
            for start in range(0, max(frame.height, 1), batch_rows):
                yield reader.process(split, frame.slice(start, batch_rows), [], None)
    yield from reader.batches()


def select_where(spec: TaskSpec, frame: pl.DataFrame) -> pl.DataFrame:
    """The rows of a record frame that the spec's `where` keeps (every row without one), by the readers' own
    where language: for records handed over directly (`snsdata eval --data`) as for files read here."""
    source = spec.source
    if not source.where or frame.is_empty():
        return frame
    try:
        return frame.filter(where_expression(source.where, source.provided_fields()))
    except (WhereError, pl.exceptions.PolarsError) as exc:
        raise SourceError(f"{spec.id}: source.where {source.where!r} cannot be applied: "
                          f"{str(exc).splitlines()[0]}") from None


def read_task(spec: TaskSpec, data_root: str | Path | None = None, purpose: Purpose = "train",
              progress: Progress = None) -> ReadResult:
    """Read every split of a task into `task_id, record_id, split, <fields>`; bad rows go to rejects."""
    frames, rejects, counts = [], [], {}
    splits = list(spec.source.splits)
    for batch in iter_task(spec, data_root, purpose, progress=progress):
        total = counts.setdefault(batch.split, {"read": 0, "rejected": 0, "excluded": 0, "kept": 0})
        for key, value in batch.counts.items():
            total[key] += value
        if not batch.frame.is_empty():
            frames.append(batch.frame)
        if not batch.rejects.is_empty():
            rejects.append(batch.rejects)
    for split in splits:
        counts.setdefault(split, {"read": 0, "rejected": 0, "excluded": 0, "kept": 0})
    fields = _fields(spec)
    combined = pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame(
        schema={"task_id": pl.String, "record_id": pl.String, "split": pl.String} | {f: pl.String for f in fields})
    all_rejects = pl.concat(rejects) if rejects else pl.DataFrame(schema=REJECT_SCHEMA)
    return ReadResult(combined.lazy(), all_rejects, {s: counts[s] for s in [*splits, *(set(counts) - set(splits))]})


def records(spec: TaskSpec, data_root: str | Path | None = None, split: str | None = None,
            purpose: Purpose = "eval") -> list[dict]:
    """The task's records as plain dicts, in file order; for evaluation (known-bad records kept) and tests."""
    frame = read_task(spec, data_root, purpose).frame
    if split:
        frame = frame.filter(pl.col("split") == split)
    return frame.collect().to_dicts()

