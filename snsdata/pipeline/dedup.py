"""Exact and near-duplicate removal: normalised-text keys, then MinHash LSH with verified Jaccard.

Three streaming passes over the input, each in batches so memory stays bounded:
1. every row: normalised code points -> exact key, compact MinHash signature and LSH band hashes (kept:
   24 + bands x rows + 4 x bands bytes a row, 234 with the defaults);
2. only the rows in a candidate pair that survives the signature estimate (a small share of the rows), in
   chunks of pairs under a shingle budget: their shingle sets, to compute the true Jaccard;
3. the output: the input split by the verdicts on the removed rows (by the runner, batch by batch).
Rows with empty or null text are never duplicates of anything: they pass through to later steps.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import ClassVar, Literal, TypeVar

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from snsdata.pipeline import minhash
from snsdata.pipeline.base import (
    DUPLICATE_OF,
    REASON,
    ROW,
    STEP,
    Step,
    StepConfig,
    StepResult,
    id_expr,
    slice_batches,
    with_row_ids,
)
from snsdata.pipeline.parallel import ordered_map
from snsdata.pipeline.textnorm import CodePoints, codepoints, row_digests

Progress = Callable[[int], None]
_POS = "__pos"
_T = TypeVar("_T")


@dataclass(frozen=True)
class NearParams:
    """Near-duplicate settings. bands/rows default to `minhash.choose_bands(threshold, num_perm)`."""

    threshold: float = 0.8
    ngram: int = 5
    word_ngrams: bool = False
    num_perm: int = 128
    bands: int | None = None
    rows: int | None = None
    seed: int = 0

    def banding(self) -> tuple[int, int]:
        if self.bands and self.rows:
            return self.bands, self.rows
        return minhash.choose_bands(self.threshold, self.num_perm)


@dataclass(frozen=True)
class Duplicates:
    """Removed rows (input positions, ascending), the position of the kept row each duplicates, and how."""

    row: np.ndarray  # int64
    of: np.ndarray  # int64
    similarity: np.ndarray  # float64: Jaccard of shingle sets with the kept row (1.0 for exact)
    exact: np.ndarray  # bool: same normalised text as some earlier row

    def reasons(self, ngram: int, word_ngrams: bool) -> list[str]:
        unit = "word" if word_ngrams else "char"
        return [
            "exact duplicate (normalised text)"
            if exact
            else f"near duplicate: jaccard {sim:.3f} ({unit} {ngram}-grams)"
            for exact, sim in zip(self.exact.tolist(), self.similarity.tolist(), strict=True)
        ]


_READ_ROWS = 100_000  # rows per slice query: smaller slices cost more per row to read from Parquet


def _batches(frame: pl.LazyFrame, column: str, batch_size: int) -> Iterator[pl.Series]:
    """The column in batches of `batch_size` rows (the unit of work on the threads), read in larger slices."""
    for _, read in slice_batches(frame.select(pl.col(column)), max(batch_size, _READ_ROWS)):
        texts = read.get_column(column)
        for start in range(0, texts.len(), batch_size):
            yield texts.slice(start, batch_size)


def _units(cps: CodePoints, params: NearParams) -> minhash.Units:
    return minhash.word_units(cps, params.seed) if params.word_ngrams else minhash.char_units(cps)


def _mapped(function: Callable[[pl.Series], _T], batches: Iterator[pl.Series], workers: int,
            progress: Progress | None) -> Iterator[_T]:
    """function over the batches on `workers` threads, in order, reporting rows done to `progress`."""
    for texts, result in ordered_map(function, batches, workers):
        yield result
        if progress:
            progress(texts.len())


@dataclass(frozen=True)
class _Hashed:
    """What the first pass keeps of a batch, or of every row (see `_first_pass`)."""

    keys: np.ndarray  # rows x 2 uint64: normalised-text digest
    lengths: np.ndarray  # int32: normalised length in characters
    shingles: np.ndarray | None  # int32: distinct-shingle upper bound (shingles per row)
    sig: np.ndarray | None  # rows x (bands x rows per band) uint8: compact MinHash signature
    bands: np.ndarray | None  # bands x rows uint32: LSH band hashes


def _hash_batch(texts: pl.Series, params: NearParams, near: bool) -> _Hashed:
    cps = codepoints(texts)
    if not near:
        return _Hashed(row_digests(cps), cps.lengths, None, None, None)
    bands, rows_per_band = params.banding()
    hashes, counts = minhash.shingle_hashes(_units(cps, params), params.ngram, params.seed)
    sig = minhash.signatures(hashes, counts, bands * rows_per_band, params.seed)
    return _Hashed(row_digests(cps), cps.lengths, counts, minhash.compact(sig),
                   minhash.band_hashes(sig, bands, rows_per_band, params.seed))


def _first_pass(frame: pl.LazyFrame, column: str, params: NearParams, near: bool, batch_size: int, workers: int,
                progress: Progress | None) -> _Hashed:
    """Every row hashed, batch by batch on `workers` threads, into arrays sized once for the whole input (no
    concatenation, so the peak is what is kept)."""
    total = frame.select(pl.len()).collect().item()
    bands, rows_per_band = params.banding()
    kept = _Hashed(
        np.zeros((total, 2), np.uint64), np.zeros(total, np.int32),
        np.zeros(total, np.int32) if near else None,
        np.zeros((total, bands * rows_per_band), np.uint8) if near else None,
        np.zeros((bands, total), np.uint32) if near else None,
    )
    start = 0
    for batch in _mapped(partial(_hash_batch, params=params, near=near), _batches(frame, column, batch_size),
                         workers, progress):
        stop = start + batch.lengths.size
        kept.keys[start:stop] = batch.keys
        kept.lengths[start:stop] = batch.lengths
        if near:
            assert kept.shingles is not None and kept.sig is not None and kept.bands is not None
            kept.shingles[start:stop] = batch.shingles
            kept.sig[start:stop] = batch.sig
            kept.bands[:, start:stop] = batch.bands
        start = stop
    return kept


def _set_batch(texts: pl.Series, params: NearParams) -> minhash.ShingleSets:
    hashes, counts = minhash.shingle_hashes(_units(codepoints(texts), params), params.ngram, params.seed)
    return minhash.shingle_sets(hashes, counts)


def _shingle_sets(frame: pl.LazyFrame, column: str, rows: np.ndarray, params: NearParams, batch_size: int,
                  workers: int) -> minhash.ShingleSets:
    """Shingle sets of the given input positions (ascending), read back slice by slice."""
    texts = frame.select(pl.col(column))
    total = texts.select(pl.len()).collect().item()

    def picked() -> Iterator[pl.Series]:
        for offset in range(0, total, _READ_ROWS):
            first, last = np.searchsorted(rows, [offset, offset + _READ_ROWS])
            if last > first:
                read = texts.slice(offset, _READ_ROWS).collect().get_column(column)
                for start in range(first, last, batch_size):
                    yield read.gather(rows[start : min(start + batch_size, last)] - offset)

    parts = list(_mapped(partial(_set_batch, params=params), picked(), workers, None))
    if not parts:
        empty = np.zeros(0, dtype=np.int64)
        return minhash.ShingleSets(np.zeros(0, dtype=np.uint64), empty, empty)
    lengths = np.concatenate([part.lengths for part in parts])
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return minhash.ShingleSets(np.concatenate([part.values for part in parts]), starts, lengths)


def _true_jaccard(frame: pl.LazyFrame, column: str, a: np.ndarray, b: np.ndarray, shingle_counts: np.ndarray,
                  params: NearParams, batch_size: int, workers: int, max_shingles: int) -> np.ndarray:
    """True Jaccard of every candidate pair (sorted by a), chunk by chunk: each chunk's rows hold at most about
    `max_shingles` shingles (8 bytes each), so memory stays bounded however many candidates a corpus has."""
    # a row's shingles count once per run of pairs that share it as `a`, and for every pair as `b`
    new_a = np.ones(a.size, dtype=bool)
    new_a[1:] = a[1:] != a[:-1]
    weight = np.cumsum(shingle_counts[b].astype(np.int64) + np.where(new_a, shingle_counts[a], 0))
    out = np.empty(a.size, dtype=np.float64)
    start = 0
    while start < a.size:
        base = weight[start - 1] if start else 0
        stop = max(start + 1, int(np.searchsorted(weight, base + max_shingles, side="right")))
        rows = np.unique(np.concatenate([a[start:stop], b[start:stop]]))
        sets = _shingle_sets(frame, column, rows, params, batch_size, workers)
        out[start:stop] = minhash.jaccard(sets, np.searchsorted(rows, a[start:stop]),
                                          np.searchsorted(rows, b[start:stop]))
        start = stop
    return out


def _first_occurrence(keys: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """For every row, the position of the first row with the same digest and length: one stable sort, which
    holds far less than a Polars window over the three keys."""
    order = np.lexsort((lengths, keys[:, 1], keys[:, 0]))  # stable: equal keys stay in input order
    ordered_keys, ordered_lengths = keys[order], lengths[order]
    starts = np.ones(order.size, dtype=bool)
    starts[1:] = (ordered_keys[1:] != ordered_keys[:-1]).any(axis=1) | (ordered_lengths[1:] != ordered_lengths[:-1])
    del ordered_keys, ordered_lengths
    group = np.cumsum(starts) - 1
    first = np.empty(order.size, dtype=np.int64)
    first[order] = order[np.flatnonzero(starts)][group]
    return first


def _near_pairs(hashed: _Hashed, eligible: np.ndarray, params: NearParams) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs (earlier, later) among eligible rows worth a true-Jaccard check."""
    assert hashed.bands is not None and hashed.sig is not None and hashed.shingles is not None
    a, b = minhash.candidate_pairs(hashed.bands, np.flatnonzero(eligible))
    bands, rows_per_band = params.banding()
    # skip pairs whose signatures already rule out the threshold; the rest get the true Jaccard
    keep = minhash.plausible(
        minhash.estimated_similarity(hashed.sig, a, b),
        np.minimum(hashed.shingles[a], hashed.shingles[b]), params.threshold, bands * rows_per_band,
    )
    return a[keep], b[keep]


def find_duplicates(
    frame: pl.LazyFrame,
    text_column: str,
    *,
    near: bool = True,
    params: NearParams | None = None,
    batch_size: int = 10_000,
    workers: int = 2,
    progress: Progress | None = None,
    max_shingles: int = 50_000_000,
) -> Duplicates:
    """Positions of exact and near duplicates in `frame`, each mapped to the kept row it duplicates.

    Exact: equal normalised text (NFKC, casefold, whitespace collapsed); copies name the first occurrence's
    kept row. Near: MinHash LSH candidates whose true shingle-set Jaccard is >= threshold; a row is removed
    when it is that similar to an earlier kept row (`minhash.keep_first`), so every removed row is within the
    threshold of the row it names. `frame` is scanned once for all rows, then once per chunk of candidate
    pairs whose shingle sets fit in `max_shingles` values. Batches are hashed on `workers` threads; the result
    does not depend on `workers`, `batch_size` or `max_shingles`.
    """
    params = params or NearParams()
    hashed = _first_pass(frame, text_column, params, near, batch_size, workers, progress)
    keys, lengths = hashed.keys, hashed.lengths
    positions = np.arange(lengths.size, dtype=np.int64)
    exact_first = _first_occurrence(keys, lengths)
    has_text = lengths > 0
    is_exact = has_text & (exact_first != positions)
    rep = positions.copy()  # final kept row of every row's cluster
    similarity = np.ones(positions.size)
    if near and positions.size:
        a, b = _near_pairs(hashed, has_text & ~is_exact, params)
        assert hashed.shingles is not None
        shingle_counts = hashed.shingles
        del hashed
        if a.size:
            pair_similarity = _true_jaccard(frame, text_column, a, b, shingle_counts, params, batch_size, workers,
                                            max_shingles)
            keep = pair_similarity >= params.threshold
            near_rows, near_of, near_similarity = minhash.keep_first(a[keep], b[keep], pair_similarity[keep])
            rep[near_rows] = near_of
            similarity[near_rows] = near_similarity
    # an exact copy follows its first occurrence, wherever that went
    rep[is_exact] = rep[exact_first[is_exact]]
    similarity[is_exact] = 1.0
    removed = np.flatnonzero(rep != positions)
    return Duplicates(removed, rep[removed], similarity[removed], is_exact[removed])


def dedup_step(frame: pl.LazyFrame, text_column: str, *, near: bool, params: NearParams, batch_size: int = 10_000,
               workers: int = 2, max_shingles: int = 50_000_000, step: str = "dedup",
               progress: Progress | None = None) -> StepResult:
    """Dedup as a pipeline step: kept rows in input order; rejected rows name the kept row's id.

    `frame` is scanned several times (a Parquet scan is ideal); kept and rejected are lazy views of it, and
    the verdicts let a runner split the input batch by batch.
    """
    frame = with_row_ids(frame)
    dups = find_duplicates(frame, text_column, near=near, params=params, batch_size=batch_size, workers=workers,
                           progress=progress, max_shingles=max_shingles)
    row_ids = frame.select(ROW).collect(engine="streaming").get_column(ROW)
    targets = np.unique(dups.of)
    ids = (
        frame.with_row_index(_POS)
        .filter(pl.col(_POS).is_in(pl.Series(targets, dtype=pl.UInt32).implode()))
        .select(pl.col(_POS).alias("__of"), id_expr(frame.collect_schema()).alias(DUPLICATE_OF))
        .collect(engine="streaming")
    )
    verdicts = (
        pl.DataFrame(
            {
                ROW: row_ids.gather(dups.row),
                "__of": pl.Series(dups.of, dtype=pl.UInt32),
                REASON: pl.Series(dups.reasons(params.ngram, params.word_ngrams), dtype=pl.String),
            }
        )
        .join(ids, on="__of", how="left", maintain_order="left")
        .select(ROW, REASON, pl.lit(step).alias(STEP), DUPLICATE_OF)
    )
    annotated = frame.join(verdicts.lazy(), on=ROW, how="left", maintain_order="left")
    kept = annotated.filter(pl.col(REASON).is_null()).drop(REASON, STEP, DUPLICATE_OF)
    return StepResult(kept, annotated.filter(pl.col(REASON).is_not_null()), verdicts)


class ExactDedup(StepConfig):
    """Drop rows whose normalised text (NFKC, casefold, whitespace collapsed) equals an earlier row's."""

    step: Literal["exact_dedup"] = "exact_dedup"
    scope: ClassVar[Literal["row", "global"]] = "global"
    batch_size: int = Field(default=10_000, ge=1)

    def build(self, text_column: str, progress: Progress | None = None) -> Step:
        return partial(dedup_step, text_column=text_column, near=False, params=NearParams(),
                       batch_size=self.batch_size, step=self.step, progress=progress)


class NearDedup(StepConfig):
    """Drop exact and near duplicates (MinHash LSH, verified Jaccard >= threshold); clusters keep their
    earliest row."""

    step: Literal["near_dedup"] = "near_dedup"
    scope: ClassVar[Literal["row", "global"]] = "global"
    threshold: float = Field(default=0.8, gt=0, le=1)
    ngram: int = Field(default=5, ge=1)
    word_ngrams: bool = False
    num_perm: int = Field(default=128, ge=8, le=1024)
    bands: int | None = Field(default=None, ge=1)
    rows: int | None = Field(default=None, ge=1)
    seed: int = 0
    batch_size: int = Field(default=10_000, ge=1)
    workers: int = Field(default=2, ge=1)
    max_shingles: int = Field(default=50_000_000, ge=1)  # shingles held at once while verifying (8 bytes each)

    @model_validator(mode="after")
    def _banding(self) -> NearDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both bands and rows, or neither (then they are chosen for the threshold)")
        if self.bands and self.rows and self.bands * self.rows > self.num_perm:
            raise ValueError(f"bands x rows = {self.bands * self.rows} exceeds num_perm = {self.num_perm}")
        return self

    def params(self) -> NearParams:
        return NearParams(self.threshold, self.ngram, self.word_ngrams, self.num_perm, self.bands, self.rows,
                          self.seed)

    def build(self, text_column: str, progress: Progress | None = None) -> Step:
        return partial(dedup_step, text_column=text_column, near=True, params=self.params(),
                       batch_size=self.batch_size, workers=self.workers, max_shingles=self.max_shingles,
                       step=self.step, progress=progress)


DEDUP_STEPS: tuple[type[StepConfig], ...] = (ExactDedup, NearDedup)
