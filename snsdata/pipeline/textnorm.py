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
import xxhash

# Code points above this are identity under NFKC + lowercase except for a handful of rare scripts;
# building the table only up to here keeps its one-off cost near 0.1 s.
_TABLE_LIMIT = 0x30000
_UNICODE_SIZE = 0x110000
_SPACE = 0x20


@dataclass(frozen=True)
class CodePoints:
    """Normalised text of a batch of rows: code points of row i are `cp[starts[i] : starts[i] + lengths[i]]`,
    each row followed by SEPARATOR."""

    cp: np.ndarray  # uint32
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64


_SLOW, _WIDE = 1, 2
# Rows are laid end to end with this value after each; it is no code point, so it cannot occur in text.
SEPARATOR = np.uint32(0x110000)


@dataclass(frozen=True)
class _Tables:
    """Per code point: the first code point of its NFKC + lowercase image (whitespace -> space) and flags;
    a wide character's image continues with `width - 1` code points at `tail_offset` in `tails`."""

    image: np.ndarray  # uint32
    flags: np.ndarray  # uint8: _SLOW (depends on neighbours), _WIDE (image longer than one code point)
    width: np.ndarray  # uint8
    tail_offset: np.ndarray  # int64
    tails: np.ndarray  # uint32
    space: np.ndarray  # bool: str.isspace (and NUL)


@functools.cache
def _tables() -> _Tables:
    """Build the lookup tables once per process: a pure function of the Unicode database (about 0.1 s)."""
    image = np.arange(_UNICODE_SIZE, dtype=np.uint32)
    flags = np.zeros(_UNICODE_SIZE, dtype=np.uint8)
    width = np.ones(_UNICODE_SIZE, dtype=np.uint8)
    tail_offset = np.zeros(_UNICODE_SIZE, dtype=np.int64)
    tails: list[int] = []
    space = np.zeros(_UNICODE_SIZE, dtype=bool)
    for c in range(_TABLE_LIMIT):
        ch = chr(c)
        mapped = unicodedata.normalize("NFKC", ch).casefold()
        if unicodedata.combining(ch) or any(unicodedata.combining(m) for m in mapped):
            flags[c] |= _SLOW  # combining marks reorder and compose with their neighbours
        elif len(mapped) > 1 and any(m.isspace() for m in mapped):
            flags[c] |= _SLOW
        elif len(mapped) > 1:
            flags[c] |= _WIDE
            width[c] = len(mapped)
            tail_offset[c] = len(tails)
            tails.extend(ord(m) for m in mapped[1:])
        if mapped:
            image[c] = _SPACE if mapped.isspace() else ord(mapped[0])
        space[c] = ch.isspace()
        decomposition = unicodedata.decomposition(ch)
        if decomposition and not decomposition.startswith("<"):
            parts = decomposition.split()
            if len(parts) == 2:  # the second half of a canonical pair composes with what precedes it
                flags[int(parts[1], 16)] |= _SLOW
    image[0] = _SPACE  # NUL is no character of text; treating it as space keeps it out of the way
    space[0] = True
    flags[0x1161:0x1176] |= _SLOW  # Hangul vowel and trailing jamo compose algorithmically
    flags[0x11A8:0x11C3] |= _SLOW
    return _Tables(image, flags, width, tail_offset, np.asarray(tails, dtype=np.uint32), space)


@functools.cache
def word_characters() -> np.ndarray:
    """Per code point: is it a letter, mark or digit (Unicode categories L*, M*, N*)."""
    table = np.zeros(_UNICODE_SIZE, dtype=bool)
    table[[c for c in range(_TABLE_LIMIT) if unicodedata.category(chr(c))[0] in "LMN"]] = True
    table[_TABLE_LIMIT:] = True  # beyond the table: ideographs of the later CJK extensions, treated as letters
    return table


def normalize_text(text: str) -> str:
    """The exact normalisation the tables implement: NFKC, casefold, whitespace runs (NUL counts as
    whitespace) to one space, trimmed."""
    return " ".join(unicodedata.normalize("NFKC", text.replace("\0", " ")).casefold().split())


def _starts(lengths: np.ndarray) -> np.ndarray:
    """Offsets of rows laid end to end."""
    out = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=out[1:])
    return out


def _encode(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)


def raw_codepoints(texts: pl.Series) -> CodePoints:
    """The text as it is, as flat code points with a separator after each row (nulls become empty rows)."""
    lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    cp = _encode("\0".join(texts.fill_null("").to_list()) + "\0").copy()
    ends = np.cumsum(lengths + 1) - 1
    cp[ends] = SEPARATOR
    return CodePoints(cp, ends - lengths, lengths)


def is_space(cp: np.ndarray) -> np.ndarray:
    """Whitespace code points (as str.isspace), separators excluded."""
    return _tables().space[np.minimum(cp, SEPARATOR - 1)] & (cp != SEPARATOR)


def codepoints(texts: pl.Series) -> CodePoints:
    """Normalise a string column into flat code points, as `normalize_text` would (nulls become empty rows).

    Two table lookups over the whole batch do nearly all the work. Characters that compose with or reorder
    against their neighbours (combining marks) are normalised exactly by `unicodedata`, together with the
    character before them: NFKC never looks back past a character that cannot compose with what precedes it,
    and casefolding is context-free, so normalising just those runs gives the same text.
    """
    values = texts.fill_null("").to_list()
    lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    raw = _encode("\0".join(values) + "\0")
    tables = _tables()
    special = np.flatnonzero(tables.flags[raw])
    if special.size:
        slow = special[(tables.flags[raw[special]] & _SLOW) != 0]
        if slow.size:
            raw = _renormalise(raw, values, lengths, slow)
            special = np.flatnonzero(tables.flags[raw] & _WIDE)
    out = tables.image[raw]
    out[np.cumsum(lengths + 1) - 1] = SEPARATOR
    if special.size:
        out = _expand(out, raw, special, tables)
    return _collapse_space(out)


def _renormalise(raw: np.ndarray, values: list[str], lengths: np.ndarray, slow: np.ndarray) -> np.ndarray:
    """Normalise each run of slow characters, with the character before it, exactly; splice the rows back.

    `slow` are positions in `raw` (rows each followed by one separator); `lengths` is updated in place.
    """
    ends = np.cumsum(lengths + 1)  # one past each row's separator
    rows = np.searchsorted(ends, slow, side="right")
    starts = ends - lengths - 1
    new_run = np.ones(slow.size, dtype=bool)
    new_run[1:] = (np.diff(slow) != 1) | (rows[1:] != rows[:-1])
    run_rows = rows[new_run]
    run_first = np.maximum(slow[new_run] - 1, starts[run_rows]) - starts[run_rows]
    run_stop = slow[np.append(np.flatnonzero(new_run)[1:], slow.size) - 1] + 1 - starts[run_rows]
    pieces = []
    done = 0
    run = 0
    for row in np.unique(run_rows).tolist():
        text = values[row]
        parts = []
        at = 0
        while run < run_rows.size and run_rows[run] == row:
            first, stop = int(run_first[run]), int(run_stop[run])
            parts.append(text[at:first])
            parts.append(unicodedata.normalize("NFKC", text[first:stop]).casefold())
            at = stop
            run += 1
        parts.append(text[at:])
        text = "".join(parts)
        pieces.append(raw[done : starts[row]])
        pieces.append(_encode(text))
        lengths[row] = len(text)
        done = int(ends[row] - 1)
    pieces.append(raw[done:])
    return np.concatenate(pieces)


def _expand(out: np.ndarray, raw: np.ndarray, wide: np.ndarray, tables: _Tables) -> np.ndarray:
    """Insert the tails of wide images (e.g. "…" -> "...") after their first code point."""
    extra = tables.width[raw[wide]].astype(np.int64) - 1
    at = np.repeat(wide + 1, extra)
    first = np.repeat(tables.tail_offset[raw[wide]] - _starts(extra), extra)
    return np.insert(out, at, tables.tails[first + np.arange(at.size)])


def _collapse_space(cp: np.ndarray) -> CodePoints:
    """Whitespace runs to one space, none at either end of a row: the vectorised `" ".join(s.split())`.

    `cp` holds rows each followed by SEPARATOR. Pass one keeps only the last space of a run and drops a run
    that ends a row; pass two drops the run that started a row, now one space right after a separator.
    """
    space = cp == _SPACE
    drop = np.zeros(cp.size, dtype=bool)
    drop[:-1] = space[:-1] & ((cp[1:] == _SPACE) | (cp[1:] == SEPARATOR))
    cp = cp[~drop]
    leading = cp == _SPACE
    leading[1:] &= cp[:-1] == SEPARATOR
    cp = cp[~leading]
    seps = np.flatnonzero(cp == SEPARATOR)
    starts = np.zeros(seps.size, dtype=np.int64)
    starts[1:] = seps[:-1] + 1
    return CodePoints(cp, starts, seps - starts)


def row_digests(cps: CodePoints) -> np.ndarray:
    """128-bit xxh3 digest of each row's normalised text (rows x 2, uint64): the exact-duplicate key.

    One C hash call per row over a slice of the batch buffer: about 20x cheaper than any column
    formulation (a polynomial over prefix sums needs several passes over every character).
    """
    view = memoryview(cps.cp).cast("B")
    first = (cps.starts * 4).tolist()
    stop = ((cps.starts + cps.lengths) * 4).tolist()
    digests = b"".join([xxhash.xxh3_128_digest(view[a:b]) for a, b in zip(first, stop, strict=True)])
    return np.frombuffer(digests, dtype=np.uint64).reshape(-1, 2)
