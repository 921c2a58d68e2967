"""One parser per on-disk format. Each returns raw rows plus the rows it could not parse, with their reason.

A parser never drops a row silently: every malformed record comes back as a `Malformed` naming its location.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from snsdata.spec.models import ConllSource, TableSource, TweetEvalSource


class SourceError(ValueError):
    """A data file that cannot be read at all (missing, wrong shape, missing columns)."""


@dataclass(frozen=True)
class Malformed:
    location: str  # "file:line" or "file#record"
    reason: str
    raw: str


@dataclass
class Parsed:
    frame: pl.LazyFrame
    malformed: list[Malformed]


def _location(path: Path, line: int | None = None, record: int | None = None) -> str:
    if line is not None:
        return f"{path}:{line}"
    return f"{path}#{record}"


def _frame_from_rows(path: Path, rows: list[dict]) -> pl.LazyFrame:
    try:
        return pl.DataFrame(rows, infer_schema_length=None).lazy()
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise SourceError(f"{path}: records do not share one schema (a field changes type): {exc}") from None


def parse_json_list(path: Path, source: TableSource) -> Parsed:
    """A JSON array of objects (SNS-Bench, RedTrans)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise SourceError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from None
    if not isinstance(data, list):
        raise SourceError(f"{path}: expected a JSON list of records, got {type(data).__name__}")
    rows, malformed = [], []
    for index, item in enumerate(data):
        if isinstance(item, dict):
            rows.append({"_location": _location(path, record=index), **item})
        else:
            malformed.append(Malformed(_location(path, record=index), "record is not a JSON object",
                                       json.dumps(item, ensure_ascii=False)))
    return Parsed(_frame_from_rows(path, rows), malformed)


def parse_jsonl(path: Path, source: TableSource) -> Parsed:
    """One JSON object per line; a line that does not parse is a malformed row, not a crash."""
    rows, malformed = [], []
    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                malformed.append(Malformed(_location(path, line=number), f"invalid JSON: {exc.msg}", line.rstrip("\n")))
                continue
            if not isinstance(item, dict):
                malformed.append(
                    Malformed(_location(path, line=number), "line is not a JSON object", line.rstrip("\n"))
                )
                continue
            rows.append({"_location": _location(path, line=number), **item})
    return Parsed(_frame_from_rows(path, rows), malformed)


def parse_parquet(path: Path, source: TableSource) -> Parsed:
    frame = pl.scan_parquet(path).with_row_index("_row").with_columns(
        _location=pl.format("{}#{}", pl.lit(str(path)), pl.col("_row"))
    ).drop("_row")
    return Parsed(frame, [])


def parse_csv(path: Path, source: TableSource) -> Parsed:
    """CSV read as strings (labels stay exactly as written); a byte-order mark and an unnamed index are fine."""
    try:
        frame = pl.read_csv(path, infer_schema=False, separator=source.separator, encoding="utf8")
    except pl.exceptions.PolarsError as exc:
        raise SourceError(f"{path}: cannot parse CSV: {exc}") from None
    frame = frame.with_row_index("_row").with_columns(
        _location=pl.format("{}:{}", pl.lit(str(path)), pl.col("_row") + 2)  # header is line 1
    ).drop("_row")
    return Parsed(frame.lazy(), [])


def parse_conll(path: Path, source: ConllSource) -> Parsed:
    """Token<TAB>BIO-tag lines, sentences separated by blank (or whitespace-only) lines -> text plus spans."""
    rows, malformed = [], []
    tokens: list[str] = []
    tags: list[str] = []
    start_line = 1
    bad: str | None = None

    def flush() -> None:
        nonlocal tokens, tags, bad
        if tokens or bad:
            raw = "\n".join(f"{t}\t{g}" for t, g in zip(tokens, tags, strict=True))
            if bad:
                malformed.append(Malformed(_location(path, line=start_line), bad, raw))
            else:
                rows.append(_conll_record(path, start_line, tokens, tags, source.joiner))
        tokens, tags, bad = [], [], None

    with path.open(encoding="utf-8-sig") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\n").rstrip("\r")
            if not line.strip():
                flush()
                start_line = number + 1
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
        flush()
    return Parsed(_frame_from_rows(path, rows) if rows else pl.LazyFrame(), malformed)


def _conll_record(path: Path, line: int, tokens: list[str], tags: list[str], joiner: str) -> dict:
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
    return {"_location": _location(path, line=line), "text": text, "tokens": tokens, "tags": tags,
            "entities": spans}


def parse_tweeteval(prefix: Path, source: TweetEvalSource) -> Parsed:
    """`{prefix}_text.txt` line i pairs with `{prefix}_labels.txt` line i."""
    text_path = prefix.parent / f"{prefix.name}_text.txt"
    label_path = prefix.parent / f"{prefix.name}_labels.txt"
    for needed in (text_path, label_path):
        if not needed.is_file():
            raise SourceError(f"{needed}: TweetEval file not found")
    texts = text_path.read_text(encoding="utf-8").split("\n")
    labels = label_path.read_text(encoding="utf-8").split("\n")
    for lines in (texts, labels):
        if lines and lines[-1] == "":
            lines.pop()
    if len(texts) != len(labels):
        raise SourceError(f"{text_path}: {len(texts)} lines but {label_path.name} has {len(labels)}")
    rows, malformed = [], []
    for number, (text, label) in enumerate(zip(texts, labels, strict=True), start=1):
        label = label.strip()
        if not label.isdigit():
            malformed.append(Malformed(_location(label_path, line=number), f"label {label!r} is not an id", text))
            continue
        rows.append({"_location": _location(text_path, line=number), "text": text, "label": label})
    return Parsed(_frame_from_rows(text_path, rows), malformed)


PARSERS: dict[str, Callable[[Path, object], Parsed]] = {
    "json": parse_json_list,
    "jsonl": parse_jsonl,
    "parquet": parse_parquet,
    "csv": parse_csv,
    "conll": parse_conll,
    "tweeteval": parse_tweeteval,
}
