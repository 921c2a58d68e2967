"""The one JSONL reader of the project: every line with its number, bad lines said as such, in bounded memory.

Everything that reads JSON Lines (the task readers, prediction and record files for `eval`, rollout logs,
soft labels, pairs, annotations) goes through here, so a bad line is always reported the same way: the file, the
line number and why (invalid UTF-8, invalid JSON, not an object). It lives in `snsdata.spec` because that is the
one part every other part (rewards included) may import; it needs nothing but the standard library.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from snsdata.spec.errors import InvalidInput

_BOM = b"\xef\xbb\xbf"
PROGRESS_EVERY = 1 << 20
"""Bytes between two progress callbacks."""


class JsonlError(InvalidInput):
    """A JSONL file that cannot be used as it is: `path:line: reason`."""

    def __init__(self, path: str | Path, line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: {reason}" if line else f"{path}: {reason}")


@dataclass(frozen=True)
class JsonLine:
    """One non-blank line: its number and value, or the reason it is not JSON (`error`) and its text."""

    number: int
    value: Any = None
    error: str | None = None
    raw: bytes = b""

    @property
    def text(self) -> str:
        """The line as text, undecodable bytes replaced (for a reject's `row`)."""
        return self.raw.decode("utf-8", errors="replace").rstrip("\r\n")


def json_type(value: Any) -> str:
    """A value's JSON type, for messages (`an object`, `an array`, ...)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a number")


def parse_line(number: int, raw: bytes) -> JsonLine:
    """Decode and parse one line (strict UTF-8, standard JSON)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        return JsonLine(number, error=f"invalid UTF-8 (byte {exc.start + 1} of the line)", raw=raw)
    try:
        return JsonLine(number, json.loads(text), raw=raw)
    except json.JSONDecodeError as exc:
        return JsonLine(number, error=f"not valid JSON: {exc.msg} (column {exc.colno})", raw=raw)
    except RecursionError:
        return JsonLine(number, error="not valid JSON: nested too deeply", raw=raw)


def iter_lines(lines: Iterable[bytes], progress: Callable[[int], None] | None = None) -> Iterator[JsonLine]:
    """Every non-blank line of a byte-line iterable (a file opened in binary), numbered from 1."""
    pending = 0
    for number, raw in enumerate(lines, start=1):
        if progress is not None:
            pending += len(raw)
            if pending >= PROGRESS_EVERY:
                progress(pending)
                pending = 0
        if number == 1 and raw.startswith(_BOM):
            raw = raw[len(_BOM):]
        if raw.strip():
            yield parse_line(number, raw)
    if progress is not None and pending:
        progress(pending)


def iter_jsonl(path: str | Path, progress: Callable[[int], None] | None = None) -> Iterator[JsonLine]:
    """Stream a JSONL file line by line (memory: one line); an unreadable file is a JsonlError."""
    path = Path(path)
    try:
        handle = path.open("rb")
    except OSError as exc:
        raise JsonlError(path, 0, f"cannot read: {exc.strerror or exc}") from None
    with handle:
        yield from iter_lines(handle, progress)


def read_jsonl(path: str | Path, objects: bool = True) -> list[tuple[int, Any]]:
    """(line number, value) of every non-blank line; the first bad line (or non-object, with `objects`) raises
    JsonlError. For inputs that must be right as a whole: predictions, soft labels, pairs, annotations."""
    rows = []
    for line in iter_jsonl(path):
        if line.error is not None:
            raise JsonlError(path, line.number, line.error)
        if objects and not isinstance(line.value, dict):
            raise JsonlError(path, line.number, f"expected a JSON object, got {json_type(line.value)}")
        rows.append((line.number, line.value))
    return rows
