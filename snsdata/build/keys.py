"""Stable hashes of strings (xxh3-64): the same on every machine and Polars version, unlike `Expr.hash`."""

from __future__ import annotations

import polars as pl
import xxhash


def hash_u64(values: pl.Series, prefix: str = "") -> pl.Series:
    """xxh3-64 of `prefix + value` for each string, as UInt64 (sort keys, seeded draws)."""
    head = prefix.encode()
    return pl.Series(values.name, [xxhash.xxh3_64_intdigest(head + v.encode()) for v in values.to_list()],
                     dtype=pl.UInt64)


def hash_hex(values: pl.Series, prefix: str = "") -> pl.Series:
    """xxh3-64 of `prefix + value` as 16 hex digits (record ids, like the readers')."""
    head = prefix.encode()
    return pl.Series(values.name, [xxhash.xxh3_64_hexdigest(head + v.encode()) for v in values.to_list()],
                     dtype=pl.String)
