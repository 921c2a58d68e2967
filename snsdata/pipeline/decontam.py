"""Decontamination: drop training rows that share long n-grams with, or nearly copy, any evaluation item.

Two tests over normalised text (NFKC, casefold, whitespace collapsed); a row failing either is contaminated:

- shared n-grams: n-grams of the non-CJK words, punctuation ignored (13 by default, as in GPT-3 and Llama), and
  n-grams of the CJK characters (25 by default; Chinese has no spaces, and 25 characters carry about as much
  text as 13 English words). An evaluation item shorter than n but at least `min_short_*` long counts as one
  n-gram of its own length, so short items (tweets) are caught verbatim too;
- near copies: the Jaccard similarity of character 5-gram sets at least `near_threshold` (0.8), found by MinHash
  LSH (`snsdata.pipeline.minhash`) and confirmed by the exact Jaccard. This catches edits n-grams miss (a word
  changed every few words, a short item retyped). A text and each of its lines are compared (`near_units`), so
  one field of a multi-field item (the English side of a translation pair) is caught on its own too.

Text that many evaluation items repeat (an instruction, a template) is no item's content and is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from snsdata.pipeline import minhash
from snsdata.pipeline.base import (
    DUPLICATE_OF,
    REASON,
    STEP,
    Step,
    StepConfig,
    StepResult,
    id_expr,
    joined,
    null_text_reason,
    with_row_ids,
)
from snsdata.pipeline.textnorm import CodePoints, codepoints, row_digests

_SEED = 0x0DEC
_HITS = "__eval_ids"
NEAR_MIN_CHARS = 20
"""Shorter texts and lines (normalised characters) are not compared as near copies: a short phrase ("thank you
so much!") is no item's own content. Whole short items are still caught by the n-gram test's short items."""
NEAR_NUM_PERM = 128
_NEAR_BATCH = 20_000  # query units per candidate search: bounds the candidate pairs held at once
_MATCHES = pl.Struct({"ngram": pl.List(pl.String), "near": pl.List(pl.String)})


def near_units(texts: pl.Series) -> tuple[pl.Series, np.ndarray]:
    """The texts compared as near copies, and the row each comes from: every text, and each line of a text of
    several lines, at least NEAR_MIN_CHARS characters long (one row's equal units once)."""
    frame = pl.DataFrame({"text": texts.fill_null("")}).with_row_index("row")
    lines = frame.select("row", text=pl.col("text").str.split("\n")).explode("text")
    units = pl.concat([frame, lines.filter(pl.len().over("row") > 1)])
    units = units.filter(pl.col("text").str.strip_chars().str.len_chars() >= NEAR_MIN_CHARS).unique(
        ["row", "text"], maintain_order=True)
    return units["text"], units["row"].to_numpy().astype(np.int64)


def _shingled(texts: pl.Series) -> tuple[np.ndarray, np.ndarray, CodePoints]:
    cps = codepoints(texts)
    hashes, counts = minhash.shingle_hashes(minhash.char_units(cps), 5, _SEED)
    return hashes, counts, cps


@dataclass(frozen=True)
class _NearIndex:
    """Evaluation units' MinHash band hashes (each band sorted), compact signatures and shingle sets."""

    threshold: float
    bands: int
    rows_per_band: int
    band_sorted: np.ndarray  # bands x units uint32, each band sorted
    band_order: np.ndarray  # bands x units int64: unit of each sorted entry
    sig: np.ndarray  # units x num_perm uint8
    units: pl.Series  # the unit texts, shingled again for the few candidates that need the exact Jaccard
    shingles: np.ndarray  # int64 per unit
    eval_id: np.ndarray  # object: the eval id of each unit

    @classmethod
    def build(cls, ids: pl.Series, texts: pl.Series, threshold: float, max_items: int) -> _NearIndex:
        units, owner = near_units(texts)
        hashes, counts, cps = _shingled(units)
        digests = row_digests(cps)
        # a unit (normalised) found in more distinct eval items than `max_items` is template text, not content
        table = pl.DataFrame({"d0": digests[:, 0], "d1": digests[:, 1], "item": texts.hash().gather(owner)})
        specific = table.select(pl.col("item").n_unique().over("d0", "d1") <= max_items).to_series().to_numpy()
        units, owner = units.filter(pl.Series(specific)), owner[specific]
        hashes, counts = hashes[np.repeat(specific, counts)], counts[specific]
        bands, rows_per_band = minhash.choose_bands(threshold, NEAR_NUM_PERM)
        sig = minhash.signatures(hashes, counts, NEAR_NUM_PERM, _SEED)
        band = minhash.band_hashes(sig, bands, rows_per_band, _SEED)
        order = np.argsort(band, axis=1, kind="stable")
        return cls(threshold, bands, rows_per_band, np.take_along_axis(band, order, axis=1), order,
                   minhash.compact(sig), units, counts,
                   ids.to_numpy().astype(object)[owner] if owner.size else np.zeros(0, dtype=object))

    def matches(self, texts: pl.Series) -> pl.Series:
        """For every text, the sorted distinct eval ids it (or one of its lines) nearly copies."""
        units, owner = near_units(texts)
        found_rows, found_ids = [], []
        if self.eval_id.size:
            for start in range(0, units.len(), _NEAR_BATCH):
                rows, ids = self._batch(units.slice(start, _NEAR_BATCH))
                found_rows.append(owner[start + rows])
                found_ids.append(ids)
        pairs = pl.DataFrame({
            "row": np.concatenate(found_rows) if found_rows else np.zeros(0, dtype=np.int64),
            "eval_id": pl.Series(np.concatenate(found_ids) if found_ids else [], dtype=pl.String),
        })
        per_row = pairs.group_by("row").agg(pl.col("eval_id").unique().sort())
        lists = pl.DataFrame({"row": np.arange(texts.len(), dtype=np.int64)}).join(per_row, on="row", how="left")
        return lists.get_column("eval_id").fill_null([]).alias(texts.name)

    def _batch(self, units: pl.Series) -> tuple[np.ndarray, np.ndarray]:
        """(query unit, eval id) of every verified near copy among these units."""
        hashes, counts, _ = _shingled(units)
        sig = minhash.signatures(hashes, counts, NEAR_NUM_PERM, _SEED)
        band = minhash.band_hashes(sig, self.bands, self.rows_per_band, _SEED)
        keys = []
        total = self.band_order.shape[1]
        for b in range(self.bands):
            low = np.searchsorted(self.band_sorted[b], band[b], side="left")
            high = np.searchsorted(self.band_sorted[b], band[b], side="right")
            sizes = high - low
            query = np.repeat(np.arange(units.len(), dtype=np.int64), sizes)
            at = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(low - (np.cumsum(sizes) - sizes), sizes)
            keys.append(query * total + self.band_order[b][at])
        pairs = np.unique(np.concatenate(keys)) if keys else np.zeros(0, dtype=np.int64)
        query, unit = pairs // total, pairs % total
        estimate = minhash.estimated_similarity(minhash.compact(sig), query, unit, other=self.sig)
        plausible = minhash.plausible(estimate, np.minimum(counts[query], self.shingles[unit]), self.threshold,
                                      NEAR_NUM_PERM)
        query, unit = query[plausible], unit[plausible]
        if not query.size:
            return query, np.zeros(0, dtype=str)
        # exact Jaccard of the candidates only: their texts shingled again, queries first, then index units
        asked, asked_at = np.unique(query, return_inverse=True)
        known, known_at = np.unique(unit, return_inverse=True)
        texts = pl.concat([units.gather(asked), self.units.gather(known)])
        hashes, counts, _ = _shingled(texts)
        similar = minhash.jaccard(minhash.shingle_sets(hashes, counts), asked_at, known_at + asked.size)
        similar = similar >= self.threshold
        return query[similar], self.eval_id[unit[similar]].astype(str)


@dataclass(frozen=True)
class _Family:
    """One kind of n-gram: how rows become units, the main n, and the shortest whole item that counts."""

    name: str
    n: int
    min_short: int
    words: bool

    def units(self, cps: CodePoints) -> minhash.Units:
        if self.words:
            return minhash.word_units(cps, _SEED, cjk_words=False, letters_only=True)
        return minhash.cjk_units(cps)


@dataclass(frozen=True)
class EvalIndex:
    """The evaluation set, indexed for both tests: sorted n-gram hashes per (family, n) with the eval id each
    came from, and the near-copy MinHash index (None: near copies are not looked for)."""

    families: tuple[_Family, ...]
    grams: dict[tuple[str, int], pl.DataFrame]  # columns: hash (u64, sorted), eval_id (str)
    near: _NearIndex | None = None

    @classmethod
    def build(cls, eval_texts: pl.DataFrame, id_column: str, text_column: str, word_ngram: int = 13,
              cjk_ngram: int = 25, min_short_words: int = 8, min_short_cjk: int = 15,
              max_items_per_gram: int = 3, near_threshold: float | None = 0.8) -> EvalIndex:
        """`max_items_per_gram`: an n-gram (or a whole line, for near copies) found in more distinct eval items
        than this is template text (an instruction every record of a task repeats), not any item's content, and
        leaks nothing: it is ignored."""
        for column in (id_column, text_column):
            if column not in eval_texts.columns:
                raise ValueError(f"evaluation set has no column {column!r} (columns: {eval_texts.columns})")
        families = (
            _Family(f"{word_ngram}-word", word_ngram, min(min_short_words, word_ngram), words=True),
            _Family(f"{cjk_ngram}-char CJK", cjk_ngram, min(min_short_cjk, cjk_ngram), words=False),
        )
        ids = eval_texts.get_column(id_column).cast(pl.String)
        texts = eval_texts.get_column(text_column).hash()
        cps = codepoints(eval_texts.get_column(text_column))
        grams: dict[tuple[str, int], pl.DataFrame] = {}
        for family in families:
            units = family.units(cps)
            sizes = np.unique(units.lengths[(units.lengths >= family.min_short) & (units.lengths < family.n)])
            for n in (family.n, *sizes.tolist()):
                hashes, rows = _grams(units, n, whole_rows_only=n != family.n)
                table = pl.DataFrame({"hash": hashes, "eval_id": ids.gather(rows), "text": texts.gather(rows)})
                # Items are counted by distinct text: one post evaluated by several tasks is still one item.
                specific = pl.col("text").n_unique().over("hash") <= max_items_per_gram
                grams[(family.name, n)] = table.filter(specific).drop("text").unique().sort("hash", "eval_id")
        near = None if near_threshold is None else _NearIndex.build(
            ids, eval_texts.get_column(text_column).cast(pl.String), near_threshold, max_items_per_gram)
        return cls(families, grams, near)

    def ngram_matches(self, texts: pl.Series) -> pl.Series:
        """For every text, the sorted distinct eval ids it shares an n-gram with (empty list: clean)."""
        cps = codepoints(texts)
        found = []
        for family in self.families:
            units = family.units(cps)
            for (name, n), table in self.grams.items():
                if name != family.name or table.height == 0:
                    continue
                hashes, rows = _grams(units, n, whole_rows_only=False)
                known = table.get_column("hash").to_numpy()
                at = np.minimum(np.searchsorted(known, hashes), known.size - 1)
                hit = known[at] == hashes
                found.append(pl.DataFrame({"row": rows[hit], "hash": hashes[hit]}).join(table, on="hash"))
        pairs = pl.concat(found) if found else pl.DataFrame(schema={"row": pl.Int64, "eval_id": pl.String})
        per_row = pairs.group_by("row").agg(pl.col("eval_id").unique().sort())
        lists = pl.DataFrame({"row": np.arange(texts.len(), dtype=np.int64)}).join(per_row, on="row", how="left")
        return lists.get_column("eval_id").fill_null([]).alias(texts.name)

    def matches(self, texts: pl.Series) -> pl.Series:
        """For every text, the eval ids it shares an n-gram with (`ngram`) and those it nearly copies (`near`)."""
        texts = texts.cast(pl.String)
        near = self.near.matches(texts) if self.near is not None else pl.Series([[]] * texts.len(),
                                                                                 dtype=pl.List(pl.String))
        return pl.DataFrame({"ngram": self.ngram_matches(texts), "near": near}).to_struct(texts.name)

    @property
    def ngram_label(self) -> str:
        return " / ".join(f.name for f in self.families) + " n-grams"

    @property
    def near_label(self) -> str:
        return f"char 5-gram Jaccard >= {self.near.threshold:g}" if self.near is not None else ""


def _grams(units: minhash.Units, n: int, whole_rows_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """n-gram hashes and the row each came from; rows shorter than n give none. With `whole_rows_only`, only
    rows of exactly n units count (an evaluation item shorter than the main n, taken whole)."""
    lengths = units.lengths
    enough = lengths == n if whole_rows_only else lengths >= n
    hashes, counts = minhash.shingle_hashes(units, n, _SEED)
    rows = np.repeat(np.arange(lengths.size, dtype=np.int64), counts)
    keep = enough[rows]  # also drops the padded stand-in shingle of rows shorter than n
    return hashes[keep], rows[keep]


def _reasons(hits: pl.Expr, index: EvalIndex) -> pl.Expr:
    def named(found: pl.Expr, lead: str, how: str) -> pl.Expr:
        count = found.list.len()
        more = pl.when(count > 1).then(joined(" and ", count - 1, " more")).otherwise(pl.lit(""))
        return pl.when(count > 0).then(joined(lead, found.list.first(), more, f" ({how})"))

    return pl.coalesce(named(hits.struct.field("ngram"), "overlaps eval item ", index.ngram_label),
                       named(hits.struct.field("near"), "near copy of eval item ", index.near_label))


def flag_contaminated(frame: pl.LazyFrame, text_column: str, index: EvalIndex, step: str) -> pl.LazyFrame:
    """Every row with `_HITS` (its matches), REASON (null: clean), STEP and DUPLICATE_OF (the eval ids it
    overlaps or copies, comma-joined)."""
    hits = pl.col(text_column).map_batches(index.matches, return_dtype=_MATCHES)
    found = pl.concat_list(pl.col(_HITS).struct.field("ngram"), pl.col(_HITS).struct.field("near")).list.unique()
    return frame.with_columns(hits.alias(_HITS)).with_columns(
        pl.coalesce(null_text_reason(text_column), _reasons(pl.col(_HITS), index)).alias(REASON),
    ).with_columns(
        pl.when(pl.col(REASON).is_not_null()).then(pl.lit(step)).alias(STEP),
        pl.when(found.list.len() > 0).then(found.list.sort().list.join(",")).alias(DUPLICATE_OF),
    )


def _run_flags(frame: pl.LazyFrame, text_column: str, index: EvalIndex, step: str) -> StepResult:
    annotated = flag_contaminated(frame, text_column, index, step)
    kept = annotated.filter(pl.col(REASON).is_null()).drop(REASON, STEP, DUPLICATE_OF, _HITS)
    return StepResult(kept, annotated.filter(pl.col(REASON).is_not_null()).drop(_HITS))


class Decontaminate(StepConfig):
    """Drop rows sharing an n-gram with, or nearly copying, an item of an evaluation file (Parquet or JSONL with
    an id and a text column); a reject's `duplicate_of` lists the eval ids it hit."""

    step: Literal["decontaminate"] = "decontaminate"
    eval: str
    eval_id_column: str = "id"
    eval_text_column: str = "text"
    word_ngram: int = Field(default=13, ge=1)
    cjk_ngram: int = Field(default=25, ge=1)
    min_short_words: int = Field(default=8, ge=1)
    min_short_cjk: int = Field(default=15, ge=1)
    near_threshold: float | None = Field(default=0.8, gt=0, le=1)
    """Character 5-gram Jaccard at which a row is a near copy of an item; null: n-grams only."""

    def index(self) -> EvalIndex:
        path = Path(self.eval)
        if not path.exists():
            raise FileNotFoundError(f"evaluation file not found: {path}")
        frame = pl.read_parquet(path) if path.suffix in {".parquet", ".pq"} else pl.read_ndjson(path)
        return self.index_of(frame, self.eval_id_column, self.eval_text_column)

    def index_of(self, frame: pl.DataFrame, id_column: str, text_column: str) -> EvalIndex:
        return EvalIndex.build(frame, id_column, text_column, self.word_ngram, self.cjk_ngram, self.min_short_words,
                               self.min_short_cjk, near_threshold=self.near_threshold)

    def build(self, text_column: str, progress: Callable[[int], None] | None = None) -> Step:
        # the index is built once here and reused for every batch
        return partial(_run_flags, text_column=text_column, index=self.index(), step=self.step)


@dataclass(frozen=True)
class Decontamination:
    """A decontamination step's result plus, per hit evaluation item, the training rows that overlap it.

    Collect them together (`pl.collect_all([result.kept, result.rejected, hits])`) to match texts once."""

    result: StepResult
    hits: pl.LazyFrame  # eval_id, train_ids (list of record ids, or input positions without record_id)


def decontaminate(
    train: pl.LazyFrame,
    eval_texts: pl.DataFrame,
    *,
    text_column: str = "text",
    eval_id_column: str = "id",
    eval_text_column: str = "text",
    word_ngram: int = 13,
    cjk_ngram: int = 25,
    min_short_words: int = 8,
    min_short_cjk: int = 15,
    near_threshold: float | None = 0.8,
    step: str = "decontaminate",
    index: EvalIndex | None = None,
) -> Decontamination:
    """Split `train` into rows clean of the evaluation set and rows overlapping or nearly copying it (rows with
    null text are rejected as such), and list the hits per evaluation item. `index` reuses a built index."""
    if index is None:
        index = EvalIndex.build(eval_texts, eval_id_column, eval_text_column, word_ngram, cjk_ngram,
                                min_short_words, min_short_cjk, near_threshold=near_threshold)
    train = with_row_ids(train)
    schema = train.collect_schema()
    annotated = flag_contaminated(train, text_column, index, step)
    kept = annotated.filter(pl.col(REASON).is_null()).drop(REASON, STEP, DUPLICATE_OF, _HITS)
    rejected = annotated.filter(pl.col(REASON).is_not_null())
    by_item = (
        rejected.select(id_expr(schema).alias("train_id"), pl.col(DUPLICATE_OF).str.split(",").alias("eval_id"))
        .explode("eval_id")
        .drop_nulls("eval_id")
        .group_by("eval_id", maintain_order=True)
        .agg(pl.col("train_id").alias("train_ids"))
        .sort("eval_id")
    )
    return Decontamination(StepResult(kept, rejected.drop(_HITS)), by_item)
