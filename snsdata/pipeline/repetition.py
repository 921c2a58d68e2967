"""Repetition measures for a batch of texts, on flat arrays of code points instead of per-row lists.

Gopher (Rae et al. 2021), in `repetition_measures`:

Lines: share of non-empty lines that repeat an earlier line, and share of line characters in such lines.
Words (runs of letters and digits after NFKC + casefold; punctuation, which Chinese writes between every
clause, and CJK characters are left out: Chinese has no word boundaries and its character n-grams repeat in
ordinary posts, so Gopher's word thresholds would drop them; CJK text is left to the line measures,
`flood_share` and `distinct_characters`): for n in `top_sizes`, characters
of the most frequent repeated n-gram times its count over all word characters (capped at 1); for n in
`dup_sizes`, the share of word characters covered by any n-gram that occurs more than once in the text.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import numpy as np
import polars as pl

from snsdata.pipeline import minhash
from snsdata.pipeline.textnorm import SEPARATOR, CodePoints, codepoints, is_space, raw_codepoints

_SEED = 0x6095
_MULT = np.uint64(0x9E3779B97F4A7C15)  # odd: Horner base for n-gram hashes over (already mixed) word hashes
_CHAR_BITS = 12  # an n-gram's character count, capped at 4095, rides in the low bits of its sort key
_CHAR_CAP = (1 << _CHAR_BITS) - 1
_CHUNK_CHARS = 1 << 20
_CHUNK_ROWS = 4096


def _line_measures(texts: pl.Series) -> pl.DataFrame:
    """Per row: share of non-empty lines repeating an earlier line, and share of line characters in them."""
    rows = texts.len()
    lines = (
        pl.DataFrame({"row": np.arange(rows, dtype=np.int64), "line": texts.fill_null("").str.split("\n")})
        .explode("line")
        .with_columns(pl.col("line").str.strip_chars())
        .filter(pl.col("line") != "")
        .group_by("row", pl.col("line").hash(_SEED).alias("hash"))
        .agg(pl.len().alias("count"), pl.col("line").first().str.len_chars().alias("chars"))
        .group_by("row")
        .agg(
            ((pl.col("count") - 1).sum() / pl.col("count").sum()).alias("dup_line_frac"),
            (((pl.col("count") - 1) * pl.col("chars")).sum() / (pl.col("count") * pl.col("chars")).sum())
            .alias("dup_line_char_frac"),
        )
    )
    return pl.DataFrame({"row": np.arange(rows, dtype=np.int64)}).join(lines, on="row", how="left").fill_null(0.0)


def _segment_sum(values: np.ndarray, units: minhash.Units) -> np.ndarray:
    csum = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[units.starts + units.lengths] - csum[units.starts]


def _ngrams(units: minhash.Units, sizes: Sequence[int]) -> Iterator[tuple[int, np.ndarray, np.ndarray, np.ndarray]]:
    """For each n in `sizes`: (n, row, hash, flat index of the first word) of every n-gram inside a row.

    One Horner pass per size grows the (n-1)-gram hashes of every position into n-gram hashes, so all sizes
    together cost about as much as the largest alone.
    """
    values = units.values
    spans = units.lengths + 1  # each row and its separator
    row_of = np.repeat(np.arange(spans.size, dtype=np.int64), spans)
    end_of = np.repeat(units.starts + units.lengths, spans)  # the separator closing each position's row
    acc = values.copy()
    wanted = set(sizes)
    for n in range(1, max(sizes, default=0) + 1):
        if n > 1:
            acc = acc[: values.size - n + 1] * _MULT + values[n - 1 :]
        if n in wanted:
            start = np.flatnonzero(np.arange(acc.size) + (n - 1) < end_of[: acc.size])
            yield n, row_of[start], acc[start], start


def _pack(high: np.ndarray, high_bits: int, hashes: np.ndarray, low: np.ndarray, low_bits: int) -> np.ndarray:
    """Sort keys: `high` in the top bits, as many hash bits as fit, `low` in the bottom bits."""
    hash_bits = 64 - high_bits - low_bits
    return ((high.astype(np.uint64) << np.uint64(64 - high_bits))
            | ((hashes >> np.uint64(64 - hash_bits)) << np.uint64(low_bits)) | low.astype(np.uint64))


def _runs(keys: np.ndarray, low_bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted keys and, for each, the start of its run of keys equal above the low bits."""
    keys = np.sort(keys)
    prefix = keys >> np.uint64(low_bits)
    opens = np.ones(keys.size, dtype=bool)
    opens[1:] = prefix[1:] != prefix[:-1]
    return keys, np.flatnonzero(opens)


def _top_share(cumulative: np.ndarray, n: int, rows: np.ndarray, hashes: np.ndarray, start: np.ndarray,
               row_bits: int, word_chars: np.ndarray) -> np.ndarray:
    """Per row: count x characters of its most frequent repeated n-gram, over its word characters
    (`cumulative`: running total of characters over the flat words)."""
    chars = np.minimum(cumulative[start + n] - cumulative[start], _CHAR_CAP)
    keys, first = _runs(_pack(rows, row_bits, hashes, chars, _CHAR_BITS), 0)
    best = np.zeros(word_chars.size, dtype=np.int64)
    if keys.size:
        count = np.diff(np.append(first, keys.size))
        distinct = keys[first]
        chars = (distinct & np.uint64(_CHAR_CAP)).astype(np.int64)
        score = np.where(count > 1, (count << _CHAR_BITS) | chars, 0)  # most frequent first, then longest
        np.maximum.at(best, (distinct >> np.uint64(64 - row_bits)).astype(np.int64), score)
    covered = (best >> _CHAR_BITS) * (best & _CHAR_CAP)
    return np.minimum(np.divide(covered, word_chars, out=np.zeros(best.size), where=word_chars > 0), 1.0)


def _dup_share(units: minhash.Units, n: int, rows: np.ndarray, hashes: np.ndarray, start: np.ndarray,
               row_bits: int, word_chars: np.ndarray) -> np.ndarray:
    """Per row: share of word characters inside n-grams that occur more than once in the row."""
    assert units.chars is not None
    position_bits = max(1, int(units.values.size).bit_length())
    keys, first = _runs(_pack(rows, row_bits, hashes, start, position_bits), position_bits)
    size = np.diff(np.append(first, keys.size))
    repeated = (keys[np.repeat(size > 1, size)] & np.uint64((1 << position_bits) - 1)).astype(np.int64)
    depth = np.zeros(units.values.size + 1, dtype=np.int64)
    np.add.at(depth, repeated, 1)
    np.add.at(depth, repeated + n, -1)
    covered = _segment_sum(units.chars * (np.cumsum(depth[:-1]) > 0), units)
    return np.divide(covered, word_chars, out=np.zeros(word_chars.size), where=word_chars > 0)


def _word_measures(texts: pl.Series, top_sizes: Sequence[int], dup_sizes: Sequence[int]) -> dict[str, np.ndarray]:
    units = minhash.word_units(codepoints(texts), _SEED, cjk_words=False, letters_only=True)
    assert units.chars is not None
    row_bits = max(1, int(texts.len()).bit_length())
    word_chars = _segment_sum(units.chars, units).astype(np.float64)
    cumulative = np.concatenate([[0], np.cumsum(units.chars)])
    out = {}
    for n, rows, hashes, start in _ngrams(units, [*top_sizes, *dup_sizes]):
        if n in top_sizes:
            out[f"top_{n}gram_share"] = _top_share(cumulative, n, rows, hashes, start, row_bits, word_chars)
        if n in dup_sizes:
            out[f"dup_{n}gram_share"] = _dup_share(units, n, rows, hashes, start, row_bits, word_chars)
    return out


def _chunks(texts: pl.Series) -> list[tuple[int, int]]:
    """Row ranges of about _CHUNK_CHARS characters (at most _CHUNK_ROWS rows): arrays stay small enough to
    reuse memory, and row and position numbers leave 30+ bits of each packed sort key for the hash."""
    lengths = texts.str.len_chars().fill_null(0).to_numpy().astype(np.int64)
    bounds = [0]
    while bounds[-1] < lengths.size:
        start = bounds[-1]
        fits = int(np.searchsorted(np.cumsum(lengths[start:]), _CHUNK_CHARS, side="right"))
        bounds.append(min(lengths.size, start + min(max(fits, 1), _CHUNK_ROWS)))
    return list(itertools.pairwise(bounds))


def repetition_measures(texts: pl.Series, top_sizes: Sequence[int], dup_sizes: Sequence[int]) -> pl.DataFrame:
    """One row per text: dup_line_frac, dup_line_char_frac, top_{n}gram_share, dup_{n}gram_share."""
    out = _line_measures(texts).drop("row")
    parts = [_word_measures(texts[a:b], top_sizes, dup_sizes) for a, b in _chunks(texts)]
    names = [f"top_{n}gram_share" for n in top_sizes] + [f"dup_{n}gram_share" for n in dup_sizes]
    return out.with_columns(
        pl.Series(name, np.concatenate([p[name] for p in parts]) if parts else np.zeros(0)) for name in names
    )


def _visible(texts: pl.Series) -> tuple[CodePoints, np.ndarray]:
    """Raw code points without whitespace (rows still end in a separator), and each row's character count."""
    cps = raw_codepoints(texts)
    cp = cps.cp[~is_space(cps.cp)]
    seps = np.flatnonzero(cp == SEPARATOR)
    starts = np.zeros(seps.size, dtype=np.int64)
    starts[1:] = seps[:-1] + 1
    return CodePoints(cp, starts, seps - starts), seps - starts


def distinct_characters(texts: pl.Series) -> pl.Series:
    """Number of different non-whitespace characters in each text (a sort of (row, character) keys)."""
    parts = [_distinct(texts[a:b]) for a, b in _chunks(texts)]
    return pl.Series(texts.name, np.concatenate(parts) if parts else [], dtype=pl.Int64)


def _distinct(texts: pl.Series) -> np.ndarray:
    cps, lengths = _visible(texts)
    keep = cps.cp != SEPARATOR
    rows = np.repeat(np.arange(lengths.size, dtype=np.uint64), lengths + 1)[keep]
    keys = (rows << np.uint64(21)) | cps.cp[keep].astype(np.uint64)
    keys.sort()  # a plain sort: far faster here than np.unique's hashing
    first = np.ones(keys.size, dtype=bool)
    first[1:] = keys[1:] != keys[:-1]
    return np.bincount((keys[first] >> np.uint64(21)).astype(np.int64), minlength=lengths.size)


def flood_share(texts: pl.Series, min_run: int) -> pl.Series:
    """Share of each text's non-whitespace characters in runs of one character at least `min_run` long."""
    parts = [_flood(texts[a:b], min_run) for a, b in _chunks(texts)]
    return pl.Series(texts.name, np.concatenate(parts) if parts else [], dtype=pl.Float64)


def _flood(texts: pl.Series, min_run: int) -> np.ndarray:
    cps, lengths = _visible(texts)
    cp = cps.cp
    opens = np.ones(cp.size, dtype=bool)
    opens[1:] = cp[1:] != cp[:-1]
    first = np.flatnonzero(opens)
    run = np.diff(np.append(first, cp.size))
    flooded = np.where((run >= min_run) & (cp[first] != SEPARATOR), run, 0)
    per_char = np.repeat(flooded, run)  # every character carries its run's flooded length (0 if short)
    csum = np.concatenate([[0], np.cumsum(per_char > 0)])
    in_floods = csum[cps.starts + cps.lengths] - csum[cps.starts]
    return np.divide(in_floods, lengths, out=np.zeros(lengths.size), where=lengths > 0)
