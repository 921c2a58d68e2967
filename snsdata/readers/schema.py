"""One schema per task, decided row by row: a value whose type drifts from the field's becomes a reject.

Building a frame from rows lets Polars pick a supertype, which either fails the whole file (a field that is text
on one line and an object on the next) or silently turns numbers into text. Readers of JSON and JSONL survey the
rows first: a field's type is what its first non-null value has (integers widen to floats, objects gain keys, as
JSON allows), and a row whose value does not fit is rejected with its place and the field that drifted. Every
batch is then built with the one surveyed schema, so a streamed read and a whole-file read agree to the byte.
"""

from __future__ import annotations

import re
from typing import Any

import polars as pl

# A signature is None (null: fits anything), "str" | "int" | "float" | "bool", ("list", element) or
# ("struct", {key: signature}) with keys in first-seen order.
Signature = Any

_SURROGATE = re.compile("[\ud800-\udfff]")
_INT64 = (-(2**63), 2**63)


class Drift(ValueError):
    """A value that does not fit the field's type; `path` is where inside the value (`a.b[]`)."""

    def __init__(self, path: str, message: str):
        self.path = path
        super().__init__(message)


def describe(signature: Signature) -> str:
    if signature is None:
        return "null"
    if isinstance(signature, str):
        return {"str": "a string", "int": "a number", "float": "a number", "bool": "a boolean"}[signature]
    return "a list" if signature[0] == "list" else "an object"


def signature(value: Any, path: str = "") -> Signature:
    """The type of one JSON value; strings with lone surrogates (bytes that were not UTF-8) are refused."""
    kind = type(value)
    if value is None:
        return None
    if kind is str:
        if _SURROGATE.search(value):
            raise Drift(path, "text that is not valid UTF-8 (an unpaired surrogate)")
        return "str"
    if kind is bool:
        return "bool"
    if kind is int:
        if not _INT64[0] <= value < _INT64[1]:
            raise Drift(path, "an integer outside the 64-bit range")
        return "int"
    if kind is float:
        return "float"
    if kind is list:
        element: Signature = None
        for item in value:
            element = unify(element, signature(item, f"{path}[]"), f"{path}[]")
        return ("list", element)
    if kind is dict:
        for key in value:
            if _SURROGATE.search(key):
                raise Drift(path, "a key that is not valid UTF-8 (an unpaired surrogate)")
        return ("struct", {key: signature(item, f"{path}.{key}" if path else key) for key, item in value.items()})
    raise Drift(path, f"an unsupported value of type {kind.__name__}")


def unify(known: Signature, new: Signature, path: str = "") -> Signature:
    """The signature both values fit, or Drift naming where they part."""
    if known is None:
        return new
    if new is None or known == new:
        return known
    if isinstance(known, str) and isinstance(new, str):
        if {known, new} == {"int", "float"}:
            return "float"
        raise Drift(path, f"{describe(new)} where earlier rows have {describe(known)}")
    if isinstance(known, tuple) and isinstance(new, tuple) and known[0] == new[0]:
        if known[0] == "list":
            return ("list", unify(known[1], new[1], f"{path}[]"))
        merged = dict(known[1])
        for key, item in new[1].items():
            merged[key] = unify(merged.get(key), item, f"{path}.{key}" if path else key)
        return ("struct", merged)
    raise Drift(path, f"{describe(new)} where earlier rows have {describe(known)}")


def dtype(signature: Signature) -> pl.DataType:
    """The Polars type of a signature (a field never seen with a value is Null)."""
    if signature is None:
        return pl.Null()
    if isinstance(signature, str):
        return {"str": pl.String(), "int": pl.Int64(), "float": pl.Float64(), "bool": pl.Boolean()}[signature]
    if signature[0] == "list":
        return pl.List(dtype(signature[1]))
    return pl.Struct({key: dtype(item) for key, item in signature[1].items()})


class Survey:
    """The running schema of a task's columns, the first place each column had a value, and the columns each
    file has (a required column no row of a file has is a file error, not a million rejects)."""

    def __init__(self) -> None:
        self.signatures: dict[str, Signature] = {}
        self.first_seen: dict[str, str] = {}
        self.columns_by_file: dict[str, set[str]] = {}

    def admit(self, file: str, location: str, values: dict[str, Any]) -> str | None:
        """Fold one row into the schema; the reason it is rejected instead, or None."""
        try:
            updates = {}
            for column, value in values.items():
                known = self.signatures.get(column)
                new = signature(value, column)
                if new == known:
                    continue
                updates[column] = unify(known, new, column)
        except Drift as exc:
            column = exc.path.split(".")[0].split("[")[0]
            first = self.first_seen.get(column)
            seen = f" (first at {first})" if first and "earlier rows" in str(exc) else ""
            return f"field {exc.path!r}: {exc}{seen}"
        self.signatures.update(updates)
        for column, value in values.items():
            if value is not None and column not in self.first_seen:
                self.first_seen[column] = location
        self.columns_by_file.setdefault(file, set()).update(values)
        return None

    def schema(self) -> dict[str, pl.DataType]:
        return {column: dtype(sig) for column, sig in self.signatures.items()}
