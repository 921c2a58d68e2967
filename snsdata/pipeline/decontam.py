"""Decontamination: drop training rows that share long n-grams with any evaluation item.

Two n-gram families over normalised text (NFKC, casefold, whitespace collapsed): n-grams of the non-CJK
words, punctuation ignored (13 by default, as in GPT-3 and Llama), and n-grams of the CJK characters (25 by
default; Chinese has no spaces, and 25 characters carry about as much text as 13 English words).
An evaluation item shorter than n but at least `min_short_*` long counts as one n-gram of its own length, so
short items (tweets) are caught verbatim too.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field

from snsdata.pipeline import minhash
from snsdata.pipeline.base import (
    DUPLICATE_OF,
    REASON,
    SCRATCH,
    STEP,
    RuleConfig,
    StepResult,
    id_expr,
    joined,
    null_text_reason,
    with_row_ids,
)
from snsdata.pipeline.textnorm import CodePoints, codepoints

_SEED = 0x0DEC
_HITS = "__eval_ids"


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
    """Sorted n-gram hashes of the evaluation set, per (family, n), with the eval id each came from."""

    families: tuple[_Family, ...]
    grams: dict[tuple[str, int], pl.DataFrame]  # columns: hash (u64, sorted), eval_id (str)

    @classmethod
    def build(cls, eval_texts: pl.DataFrame, id_column: str, text_column: str, word_ngram: int = 13,
              cjk_ngram: int = 25, min_short_words: int = 8, min_short_cjk: int = 15,
              max_items_per_gram: int = 3) -> EvalIndex:
        """`max_items_per_gram`: an n-gram found in more distinct eval items than this is template text (an
        instruction every record of a task repeats), not any item's content, and leaks nothing: it is ignored."""
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
        return cls(families, grams)

    def matches(self, texts: pl.Series) -> pl.Series:
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


def _grams(units: minhash.Units, n: int, whole_rows_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """n-gram hashes and the row each came from; rows shorter than n give none. With `whole_rows_only`, only
    rows of exactly n units count (an evaluation item shorter than the main n, taken whole)."""
    lengths = units.lengths
    enough = lengths == n if whole_rows_only else lengths >= n
    hashes, counts = minhash.shingle_hashes(units, n, _SEED)
    rows = np.repeat(np.arange(lengths.size, dtype=np.int64), counts)
    keep = enough[rows]  # also drops the padded stand-in shingle of rows shorter than n
    return hashes[keep], rows[keep]


def _reasons(hits: pl.Expr, family_names: str) -> pl.Expr:
    count = hits.list.len()
    more = pl.when(count > 1).then(joined(" and ", count - 1, " more")).otherwise(pl.lit(""))
    return pl.when(count > 0).then(
        joined("overlaps eval item ", hits.list.first(), more, f" ({family_names} n-grams)")
    )


class Decontaminate(RuleConfig):
    """Drop rows sharing an n-gram with an evaluation file (Parquet or JSONL with an id and a text column)."""

    step: Literal["decontaminate"] = "decontaminate"
    eval: str
    eval_id_column: str = "id"
    eval_text_column: str = "text"
    word_ngram: int = Field(default=13, ge=1)
    cjk_ngram: int = Field(default=25, ge=1)
    min_short_words: int = Field(default=8, ge=1)
    min_short_cjk: int = Field(default=15, ge=1)

    def index(self) -> EvalIndex:
        path = Path(self.eval)
        if not path.exists():
            raise FileNotFoundError(f"evaluation file not found: {path}")
        frame = pl.read_parquet(path) if path.suffix in {".parquet", ".pq"} else pl.read_ndjson(path)
        return EvalIndex.build(frame, self.eval_id_column, self.eval_text_column, self.word_ngram, self.cjk_ngram,
                               self.min_short_words, self.min_short_cjk)

    def scratch(self, text: pl.Expr) -> pl.Expr:
        return text.map_batches(self.index().matches, return_dtype=pl.List(pl.String))

    def reason(self, text: pl.Expr) -> pl.Expr:
        return _reasons(pl.col(SCRATCH), f"{self.word_ngram}-word / {self.cjk_ngram}-char CJK")


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
    step: str = "decontaminate",
) -> Decontamination:
    """Split `train` into rows clean of the evaluation set and rows overlapping it (rows with null text are
    rejected as such), and list the hits per evaluation item."""
    index = EvalIndex.build(eval_texts, eval_id_column, eval_text_column, word_ngram, cjk_ngram, min_short_words,
                            min_short_cjk)
    train = with_row_ids(train)
    schema = train.collect_schema()
    hits = pl.col(text_column).map_batches(index.matches, return_dtype=pl.List(pl.String))
    annotated = train.with_columns(hits.alias(_HITS)).with_columns(
        pl.coalesce(null_text_reason(text_column),
                    _reasons(pl.col(_HITS), f"{word_ngram}-word / {cjk_ngram}-char CJK")).alias(REASON)
    )
    kept = annotated.filter(pl.col(REASON).is_null()).drop(REASON, _HITS)
    rejected = annotated.filter(pl.col(REASON).is_not_null())
    by_item = (
        rejected.select(id_expr(schema).alias("train_id"), pl.col(_HITS).alias("eval_id"))
        .explode("eval_id")
        .drop_nulls("eval_id")
        .group_by("eval_id", maintain_order=True)
        .agg(pl.col("train_id").alias("train_ids"))
        .sort("eval_id")
    )
    rejected = rejected.drop(_HITS).with_columns(
        pl.lit(step).alias(STEP), pl.lit(None, dtype=pl.String).alias(DUPLICATE_OF)
    )
    return Decontamination(StepResult(kept, rejected), by_item)
