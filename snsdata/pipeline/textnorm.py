"""Text normalisation on flat code-point arrays.

Dedup hashes hundreds of millions of characters, so it works on one numpy array of code points per batch
instead of per-row Python strings. Per-character NFKC + lowercase comes from a lookup table; the rare rows whose
normalisation is not per character (ligatures, combining marks that compose) take the exact `unicodedata` path.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass

import numpy as np
import polars as pl

# Code points above this are identity under NFKC + lowercase except for a handful of rare scripts;
# building the table only up to here keeps its one-off cost near 0.1 s.
_TABLE_LIMIT = 0x30000
_UNICODE_SIZE = 0x110000
_SPACE = 0x20


@dataclass(frozen=True)
class CodePoints:
    """Normalised text of a batch of rows: code points of row i are `cp[starts[i] : starts[i] + lengths[i]]`."""

    cp: np.ndarray  # uint32
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64


@dataclass(frozen=True)
class _Tables:
    """Per code point: NFKC + lowercase image, as up to `width` code points starting at `offset` in `chars`."""

    width: np.ndarray  # uint8: code points in the image (1 for most)
    offset: np.ndarray  # int64 into chars
    chars: np.ndarray  # uint32: all images, concatenated
    slow: np.ndarray  # bool: the image depends on neighbouring characters; use unicodedata on the whole row
    space: np.ndarray  # bool: whitespace


@functools.cache
def _tables() -> _Tables:
    """Build the lookup tables once per process: a pure function of the Unicode database (about 0.1 s)."""
    width = np.ones(_UNICODE_SIZE, dtype=np.uint8)
    offset = np.arange(_UNICODE_SIZE, dtype=np.int64)
    slow = np.zeros(_UNICODE_SIZE, dtype=bool)
    space = np.zeros(_UNICODE_SIZE, dtype=bool)
    extra: list[int] = []
    for c in range(_TABLE_LIMIT):
        ch = chr(c)
        mapped = unicodedata.normalize("NFKC", ch).lower()
        if mapped != ch:
            if any(unicodedata.combining(m) for m in mapped):
                slow[c] = True  # combining marks may reorder or compose with their neighbours
            else:
                width[c] = len(mapped)
                offset[c] = _UNICODE_SIZE + len(extra)
                extra.extend(ord(m) for m in mapped)
        if unicodedata.combining(ch):
            slow[c] = True
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:  # the second half of a canonical pair composes with what precedes it
                slow[int(parts[1], 16)] = True
        if ch.isspace():
            space[c] = True
    slow[0x3A3] = True  # capital sigma lowercases by context (final sigma)
    chars = np.concatenate([np.arange(_UNICODE_SIZE, dtype=np.uint32), np.asarray(extra, dtype=np.uint32)])
    return _Tables(width, offset, chars, slow, space)


def normalize_text(text: str) -> str:
    """The exact normalisation the tables implement: NFKC, lowercase, whitespace runs to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def _cumsum0(values: np.ndarray) -> np.ndarray:
    """Cumulative sum with a leading 0, as int64 (bool input summed as 0/1)."""
    out = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values.astype(np.int64, copy=False), out=out[1:])
    return out


def _segment_sums(values: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Sum of `values` over each segment; empty segments give 0 (unlike np.add.reduceat)."""
    csum = _cumsum0(values)
    return csum[starts + lengths] - csum[starts]


def _starts(lengths: np.ndarray) -> np.ndarray:
    return _cumsum0(lengths)[:-1]


def _flat(values: list[str]) -> np.ndarray:
    return np.frombuffer("".join(values).encode("utf-32-le"), dtype=np.uint32)


def codepoints(texts: pl.Series) -> CodePoints:
    """Normalise a string column into flat code points (nulls become empty rows)."""
    values = texts.fill_null("").to_list()
    lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    starts = _starts(lengths)
    cp = _flat(values)
    tables = _tables()
    slow_rows = np.flatnonzero(_segment_sums(tables.slow[cp], starts, lengths))
    if slow_rows.size:
        for i in slow_rows.tolist():
            values[i] = unicodedata.normalize("NFKC", values[i]).lower()
            lengths[i] = len(values[i])
        starts = _starts(lengths)
        cp = _flat(values)
    width = tables.width[cp]
    wide = np.flatnonzero(width != 1)
    if wide.size:
        # expand the few characters whose image is not exactly one code point (e.g. "…" -> "...")
        lengths = _segment_sums(width, starts, lengths)
        out_pos = _cumsum0(width)
        mapped = np.empty(int(out_pos[-1]), dtype=np.uint32)
        one = width == 1
        mapped[out_pos[:-1][one]] = tables.chars[tables.offset[cp[one]]]
        wide_width = width[wide]
        for k in range(int(wide_width.max())):
            sel = wide[wide_width > k]
            mapped[out_pos[sel] + k] = tables.chars[tables.offset[cp[sel]] + k]
        cp = mapped
        starts = _starts(lengths)
    else:
        cp = tables.chars[tables.offset[cp]]
    return _collapse_space(cp, starts, lengths, tables.space[cp])


def _collapse_space(cp: np.ndarray, starts: np.ndarray, lengths: np.ndarray, is_space: np.ndarray) -> CodePoints:
    """Whitespace runs to one space, none at either end of a row: the vectorised form of `" ".join(s.split())`."""
    n = cp.size
    if n == 0:
        return CodePoints(cp, starts, lengths)
    row_of = np.repeat(np.arange(lengths.size), lengths)
    # a space survives if the next character is in the same row and not a space, and some non-space precedes it
    next_same_row = np.zeros(n, dtype=bool)
    next_same_row[:-1] = row_of[1:] == row_of[:-1]
    next_nonspace = np.zeros(n, dtype=bool)
    next_nonspace[:-1] = ~is_space[1:]
    nonspace = _cumsum0(~is_space)
    nonspace_before = nonspace[1:] - np.repeat(nonspace[starts], lengths)
    keep = ~is_space | (next_same_row & next_nonspace & (nonspace_before > 0))
    out = cp[keep]
    out[is_space[keep]] = _SPACE
    new_lengths = _segment_sums(keep, starts, lengths)
    return CodePoints(out, _starts(new_lengths), new_lengths)
