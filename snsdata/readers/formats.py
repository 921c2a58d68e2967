"""One parser per on-disk format. Each streams rows with their place, and the rows it cannot parse with why.

A parser never drops a row silently and never fails a file for one bad row: invalid UTF-8, invalid JSON, a
ragged CSV line or a non-object come back as `Malformed` naming the file and the line (or record index). Only a
file that cannot be read at all (missing, not a JSON list, a broken JSON list) raises `SourceError`.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import zip_longest
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow.parquet as pq

from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import PROGRESS_EVERY, iter_jsonl, json_type
from snsdata.spec.models import ConllSource, TableSource, TweetEvalSource

Progress = Callable[[int], None] | None
"""Called with the number of bytes read since the last call."""


class SourceError(InvalidInput):
    """A data file that cannot be read at all (missing, wrong shape, missing columns)."""


@dataclass(frozen=True)
class Malformed:
    location: str  # "file:line" or "file#record"
    reason: str
    raw: str


@dataclass(frozen=True)
class Row:
    location: str
    values: dict[str, Any]


Item = Row | Malformed

_SURROGATE = re.compile("[\ud800-\udfff]")


def _location(path: Path, line: int | None = None, record: int | None = None) -> str:
    if line is not None:
        return f"{path}:{line}"
    return f"{path}#{record}"


def _keep(values: dict[str, Any], columns: set[str] | None) -> dict[str, Any]:
    return values if columns is None else {k: v for k, v in values.items() if k in columns}


def jsonl_items(path: Path, columns: set[str] | None = None, progress: Progress = None) -> Iterator[Item]:
    """One JSON object per line (the project's one JSONL reader, `snsdata.spec.jsonl`)."""
    for line in iter_jsonl(path, progress):
        location = _location(path, line=line.number)
        if line.error is not None:
            yield Malformed(location, line.error, line.text)
        elif not isinstance(line.value, dict):
            yield Malformed(location, f"line is not a JSON object ({json_type(line.value)})", line.text)
        else:
            yield Row(location, _keep(line.value, columns))


class _TextBuffer:
    """Decoded text of a file read in growing chunks, with the line number of the read position."""

    def __init__(self, handle: Any, progress: Progress):
        self.handle, self.progress = handle, progress
        self.decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")
        self.text, self.position, self.line, self.eof, self.chunk = "", 0, 1, False, 1 << 20

    def more(self) -> bool:
        """Read the next chunk (each twice the last, so a huge record is not re-parsed chunk after chunk)."""
        if self.eof:
            return False
        data = self.handle.read(self.chunk)
        if self.progress is not None and data:
            self.progress(len(data))
        self.eof = not data
        self.text = self.text[self.position:] + self.decoder.decode(data, final=self.eof)
        self.position = 0
        self.chunk = min(self.chunk * 2, 1 << 26)
        return True

    def skip_space(self) -> str:
        """Move past whitespace; the next character, or '' at the end of the file."""
        while True:
            start, text = self.position, self.text
            while self.position < len(text) and text[self.position] in " \t\r\n":
                self.position += 1
            self.line += text.count("\n", start, self.position)
            if self.position < len(text):
                return text[self.position]
            if not self.more():
                return ""

    def line_at(self, index: int) -> int:
        return self.line + self.text.count("\n", self.position, max(index, self.position))


def json_list_items(path: Path, columns: set[str] | None = None, progress: Progress = None) -> Iterator[Item]:
    """A JSON array of objects (SNS-Bench, RedTrans), decoded item by item so memory holds one item at a time.

    Bytes that are not UTF-8 make their record a reject (they decode to lone surrogates, which no record may
    keep); a syntax error ends the file, since nothing after it can be located reliably.
    """
    decoder = json.JSONDecoder()
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        buf = _TextBuffer(handle, progress)
        buf.more()
        if buf.text.startswith("\ufeff"):
            buf.position = 1
        first = buf.skip_space()
        if first != "[":
            raise SourceError(f"{path}:{buf.line}: expected a JSON list of records, found "
                              f"{repr(first) if first else 'nothing'}")
        buf.position += 1
        if buf.skip_space() == "]":
            buf.position += 1
            if buf.skip_space():
                raise SourceError(f"{path}:{buf.line}: not valid JSON: data after the end of the list")
            return
        index = 0
        while True:
            if not buf.skip_space():
                raise SourceError(f"{path}:{buf.line}: not valid JSON: the list is not closed")
            while True:
                try:
                    value, end = decoder.raw_decode(buf.text, buf.position)
                except json.JSONDecodeError as exc:
                    if (exc.msg.startswith("Unterminated") or exc.pos >= len(buf.text) - 1) and buf.more():
                        continue  # the record goes on in the next chunk
                    raise SourceError(f"{path}:{buf.line_at(exc.pos)}: not valid JSON: {exc.msg}") from None
                except RecursionError:
                    raise SourceError(f"{path}:{buf.line}: not valid JSON: nested too deeply") from None
                if end >= len(buf.text) and buf.more():
                    continue  # a value that ends with the buffer (a number) may go on in the next chunk
                break
            raw = buf.text[buf.position:end]
            location = _location(path, record=index)
            if _SURROGATE.search(raw):
                yield Malformed(location, f"record starting on line {buf.line} is not valid UTF-8", _readable(raw))
            elif not isinstance(value, dict):
                yield Malformed(location, f"record is not a JSON object ({json_type(value)})", raw)
            else:
                yield Row(location, _keep(value, columns))
            buf.line += raw.count("\n")
            buf.position = end
            index += 1
            separator = buf.skip_space()
            if separator == "]":
                buf.position += 1
                if buf.skip_space():
                    raise SourceError(f"{path}:{buf.line}: not valid JSON: data after the end of the list")
                return
            if separator != ",":
                what = "the list is not closed" if not separator else f"expected ',' or ']', found {separator!r}"
                raise SourceError(f"{path}:{buf.line}: not valid JSON: {what}")
            buf.position += 1


def _text_lines(path: Path, progress: Progress) -> Iterator[tuple[int, str]]:
    """(line number, text) of a text file; undecodable bytes come out as lone surrogates for the caller to
    reject (line endings kept, a byte-order mark dropped)."""
    pending = 0
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise SourceError(f"{path}: cannot read: {exc.strerror or exc}") from None
    with handle:
        for number, raw in enumerate(handle, start=1):
            if progress is not None:
                pending += len(raw)
                if pending >= PROGRESS_EVERY:
                    progress(pending)
                    pending = 0
            if number == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            yield number, raw.decode("utf-8", errors="surrogateescape")
    if progress is not None and pending:
        progress(pending)


def _readable(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def csv_header(path: Path, source: TableSource) -> list[str]:
    for _, row in _csv_rows(path, source, None):
        if any(_SURROGATE.search(name) for name in row):
            raise SourceError(f"{path}:1: the header is not valid UTF-8")
        return row
    return []


def _csv_rows(path: Path, source: TableSource, progress: Progress) -> Iterator[tuple[int, list[str]]]:
    """(first line, fields) per CSV record: quoted fields may span lines, as in RFC 4180."""
    lines = _text_lines(path, progress)
    last_line = 0

    def text() -> Iterator[str]:
        nonlocal last_line
        for number, line in lines:
            last_line = number
            yield line

    reader = csv.reader(text(), delimiter=source.separator, strict=True)
    while True:
        start = last_line + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise SourceError(f"{path}:{start}: cannot parse CSV: {exc}") from None
        yield start, row


def csv_items(path: Path, source: TableSource, columns: set[str] | None = None,
              progress: Progress = None) -> Iterator[Item]:
    """CSV read as strings (labels stay exactly as written; an empty cell is missing). A row with more or fewer
    cells than the header, or with bytes that are not UTF-8, is a reject with its line number."""
    header = csv_header(path, source)
    rows = _csv_rows(path, source, progress)
    next(rows, None)
    wanted = [(i, name) for i, name in enumerate(header) if columns is None or name in columns]
    seen: set[str] = set()
    wanted = [(i, n) for i, n in wanted if not (n in seen or seen.add(n))]  # a repeated header keeps its first
    for start, row in rows:
        location = _location(path, line=start)
        if not row or (len(row) == 1 and not row[0].strip() and len(header) > 1):
            continue  # a blank line
        raw = source.separator.join(row)
        if len(row) != len(header):
            yield Malformed(location, f"{len(row)} field(s) where the header has {len(header)}", _readable(raw))
            continue
        if _SURROGATE.search(raw):
            bad = next(header[i] for i, cell in enumerate(row) if _SURROGATE.search(cell))
            yield Malformed(location, f"field {bad!r} is not valid UTF-8", _readable(raw))
            continue
        yield Row(location, {name: row[i] or None for i, name in wanted})


def parquet_batches(path: Path, columns: list[str] | None, batch_rows: int,
                    progress: Progress = None) -> Iterator[pl.DataFrame]:
    """Row batches of a Parquet file with their `_location` (`file#row`), reading only the named columns."""
    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a file that is not Parquet
        raise SourceError(f"{path}: cannot read Parquet: {str(exc).splitlines()[0] if str(exc) else exc}") from None
    names = parquet.schema_arrow.names
    chosen = [c for c in columns if c in names] if columns is not None else names
    size, total, offset = path.stat().st_size, max(parquet.metadata.num_rows, 1), 0
    for batch in parquet.iter_batches(batch_size=batch_rows, columns=chosen):
        frame = pl.from_arrow(batch)
        assert isinstance(frame, pl.DataFrame)
        if progress is not None:
            progress(size * (offset + batch.num_rows) // total - size * offset // total)
        yield frame.with_columns(
            _location=pl.format("{}#{}", pl.lit(str(path)), pl.int_range(offset, offset + frame.height)))
        offset += frame.height


CONLL_SCHEMA = {
    "text": pl.String(), "tokens": pl.List(pl.String()), "tags": pl.List(pl.String()),
    "entities": pl.List(pl.Struct({"text": pl.String(), "type": pl.String(), "start": pl.Int64(),
                                   "end": pl.Int64()})),
}


def conll_items(path: Path, source: ConllSource, progress: Progress = None) -> Iterator[Item]:
    """Token<TAB>BIO-tag lines, sentences separated by blank (or whitespace-only) lines -> text plus spans."""
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 1
    bad: str | None = None

    def flush() -> Item | None:
        nonlocal tokens, tags, bad
        item: Item | None = None
        if tokens or bad:
            raw = "\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags, strict=True))
            if bad:
                item = Malformed(_location(path, line=start_line), bad, _readable(raw))
            else:
                item = Row(_location(path, line=start_line), _conll_record(tokens, tags, source.joiner))
        tokens, tags, bad = [], [], None
        return item

    for number, line in _text_lines(path, progress):
        line = line.rstrip("\n").rstrip("\r")
        if not line.strip():
            item = flush()
            if item is not None:
                yield item
            start_line = number + 1
            continue
        if _SURROGATE.search(line):
            bad = bad or f"line {number}: not valid UTF-8"
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0]:
            bad = bad or f"line {number}: expected 'token<TAB>tag', got {line!r}"
            continue
        token, tag = parts
        if source.strip_segmentation_digit:
            if not token[-1].isdigit() or len(token) < 2:
                bad = bad or f"line {number}: token {token!r} lacks its segmentation digit"
                continue
            token = token[:-1]
        if not (tag == "O" or tag[:2] in ("B-", "I-")):
            bad = bad or f"line {number}: tag {tag!r} is not BIO"
            continue
        tokens.append(token)
        tags.append(tag)
    item = flush()
    if item is not None:
        yield item


def _conll_record(tokens: list[str], tags: list[str], joiner: str) -> dict:
    """Join tokens into text and turn BIO tags into character-offset entity spans."""
    offsets, position = [], 0
    for token in tokens:
        offsets.append(position)
        position += len(token) + len(joiner)
    text = joiner.join(tokens)
    entities: list[dict] = []
    current: dict | None = None
    for index, tag in enumerate(tags):
        if tag == "O" or tag.startswith("B-") or (current and tag[2:] != current["type"]):
            if current:
                entities.append(current)
            current = None
        if tag != "O" and current is None:
            current = {"type": tag[2:], "start": offsets[index]}
        if current is not None:
            current["end"] = offsets[index] + len(tokens[index])
    if current:
        entities.append(current)
    spans = [{"text": text[e["start"]:e["end"]], "type": e["type"], "start": e["start"], "end": e["end"]}
             for e in entities]
    return {"text": text, "tokens": tokens, "tags": tags, "entities": spans}


def tweeteval_paths(prefix: Path) -> tuple[Path, Path]:
    return prefix.parent / f"{prefix.name}_text.txt", prefix.parent / f"{prefix.name}_labels.txt"


def tweeteval_items(prefix: Path, source: TweetEvalSource, progress: Progress = None) -> Iterator[Item]:
    """`{prefix}_text.txt` line i pairs with `{prefix}_labels.txt` line i."""
    text_path, label_path = tweeteval_paths(prefix)
    for needed in (text_path, label_path):
        if not needed.is_file():
            raise SourceError(f"{needed}: TweetEval file not found")
    pairs = zip_longest(_text_lines(text_path, progress), _text_lines(label_path, None))
    for text_line, label_line in pairs:
        if text_line is None or label_line is None:
            longer = text_path if label_line is None else label_path
            number = (text_line or label_line)[0]  # type: ignore[index]
            raise SourceError(f"{longer}: has more lines than {(label_path if label_line is None else text_path).name}"
                              f" (line {number} has no partner)")
        number, text = text_line
        text = text[:-1] if text.endswith("\n") else text
        text = text[:-1] if text.endswith("\r") else text
        label = label_line[1].strip()
        if _SURROGATE.search(text) or _SURROGATE.search(label):
            bad = text_path if _SURROGATE.search(text) else label_path
            yield Malformed(_location(bad, line=number), "not valid UTF-8", _readable(text))
        elif not label.isdigit():
            yield Malformed(_location(label_path, line=number), f"label {label!r} is not an id", text)
        else:
            yield Row(_location(text_path, line=number), {"text": text, "label": label})


@dataclass
class Parsed:
    frame: pl.LazyFrame
    malformed: list[Malformed]


def _parsed(items: Iterator[Item], schema: dict[str, pl.DataType] | None = None) -> Parsed:
    """All rows of one file as a frame (for callers that want a whole small file, e.g. generators' texts)."""
    from snsdata.readers.schema import Survey

    rows, malformed, survey = [], [], Survey()
    for item in items:
        if isinstance(item, Malformed):
            malformed.append(item)
            continue
        reason = survey.admit("", item.location, item.values) if schema is None else None
        if reason is not None:
            malformed.append(Malformed(item.location, reason, json.dumps(item.values, ensure_ascii=False,
                                                                         default=str)))
            continue
        rows.append({"_location": item.location, **item.values})
    full = {"_location": pl.String(), **(schema if schema is not None else survey.schema())}
    return Parsed(pl.DataFrame(rows, schema=full).lazy() if rows else pl.LazyFrame(schema=full), malformed)


PARSERS: dict[str, Callable[[Path, Any], Parsed]] = {
    "json": lambda path, source: _parsed(json_list_items(path)),
    "jsonl": lambda path, source: _parsed(jsonl_items(path)),
    "parquet": lambda path, source: Parsed(pl.concat(list(parquet_batches(path, None, 65_536)) or [
        pl.DataFrame(schema={"_location": pl.String()})], how="diagonal_relaxed").lazy(), []),
    "csv": lambda path, source: _parsed(csv_items(path, source), {c: pl.String() for c in csv_header(path, source)}),
    "conll": lambda path, source: _parsed(conll_items(path, source), CONLL_SCHEMA),
    "tweeteval": lambda path, source: _parsed(tweeteval_items(path, source), {"text": pl.String(),
                                                                             "label": pl.String()}),
}
"""Whole-file parsers by reader name (small files: the readers themselves stream through the `*_items`)."""
