"""Gopher repetition measures (Rae et al. 2021) for a batch of texts, on flat arrays instead of per-row lists.

Lines: share of non-empty lines that repeat an earlier line, and share of line characters in such lines.
Words (whitespace tokens, a CJK character one word, after NFKC + casefold): for n in `top_sizes`, characters
of the most frequent repeated n-gram times its count over all word characters (capped at 1); for n in
`dup_sizes`, the share of word characters covered by any n-gram that occurs more than once in the text.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from snsdata.pipeline import minhash
from snsdata.pipeline.textnorm import codepoints

_SEED = 0x6095
_ROW_SHIFT = np.uint64(40)  # n-gram key: row number above 40 bits of the n-gram hash


def _line_measures(texts: pl.Series) -> pl.DataFrame:
    rows = texts.len()
    lines = (
        pl.DataFrame({"row": np.arange(rows, dtype=np.int64), "line": texts.fill_null("").str.split("\n")})
        .explode("line")
        .with_columns(pl.col("line").str.strip_chars())
        .filter(pl.col("line") != "")
        .with_columns(pl.col("line").str.len_chars().alias("chars"),
                      (~pl.col("line").is_first_distinct().over("row")).alias("repeat"))
        .group_by("row")
        .agg(
            (pl.col("repeat").sum() / pl.len()).alias("dup_line_frac"),
            (pl.col("chars").filter(pl.col("repeat")).sum() / pl.col("chars").sum()).alias("dup_line_char_frac"),
        )
    )
    return pl.DataFrame({"row": np.arange(rows, dtype=np.int64)}).join(lines, on="row", how="left").fill_null(0.0)


def _segment_sum(values: np.ndarray, units: minhash.Units) -> np.ndarray:
    csum = np.zeros(values.size + 1, dtype=np.int64)
    np.cumsum(values, out=csum[1:])
    return csum[units.starts + units.lengths] - csum[units.starts]


def _ngrams(units: minhash.Units, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For every n-gram fully inside a row: its key (row and hash), row, and flat index of its first word."""
    hashes, counts = minhash.shingle_hashes(units, n, _SEED)
    rows = np.repeat(np.arange(counts.size, dtype=np.int64), counts)
    first_out = np.cumsum(counts) - counts
    start = units.starts[rows] + np.arange(rows.size) - first_out[rows]
    full = units.lengths[rows] >= n  # rows shorter than n have a padded stand-in, not an n-gram
    rows, start, hashes = rows[full], start[full], hashes[full]
    keys = (rows.astype(np.uint64) << _ROW_SHIFT) | (hashes >> np.uint64(64 - int(_ROW_SHIFT)))
    return keys, rows, start


def repetition_measures(texts: pl.Series, top_sizes: Sequence[int], dup_sizes: Sequence[int]) -> pl.DataFrame:
    """One row per text: dup_line_frac, dup_line_char_frac, top_{n}gram_share, dup_{n}gram_share."""
    out = _line_measures(texts).drop("row")
    units = minhash.word_units(codepoints(texts), _SEED)
    assert units.chars is not None
    rows = units.lengths.size
    word_chars = _segment_sum(units.chars, units).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        for n in top_sizes:
            keys, key_rows, start = _ngrams(units, n)
            chars = np.cumsum(np.concatenate([[0], units.chars]))
            top = (
                pl.DataFrame({"key": keys, "row": key_rows, "chars": chars[start + n] - chars[start]})
                .group_by("key")
                .agg(pl.len().alias("count"), pl.col("row").first(), pl.col("chars").first())
                .filter(pl.col("count") > 1)
                .sort("row", "count", "chars", descending=[False, True, True])
                .group_by("row", maintain_order=True)
                .first()
            )
            covered = np.zeros(rows)
            covered[top["row"].to_numpy()] = (top["count"] * top["chars"]).to_numpy()
            share = np.minimum(np.where(word_chars > 0, covered / word_chars, 0.0), 1.0)
            out = out.with_columns(pl.Series(f"top_{n}gram_share", share))
        for n in dup_sizes:
            keys, key_rows, start = _ngrams(units, n)
            repeated = start[pl.Series(keys).is_duplicated().to_numpy()]
            depth = np.zeros(units.values.size + 1, dtype=np.int64)
            np.add.at(depth, repeated, 1)
            np.add.at(depth, repeated + n, -1)
            in_repeat = np.cumsum(depth[:-1]) > 0
            covered = _segment_sum(units.chars * in_repeat, units)
            share = np.where(word_chars > 0, covered / word_chars, 0.0)
            out = out.with_columns(pl.Series(f"dup_{n}gram_share", share))
    return out
