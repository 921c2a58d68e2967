"""Continued-pretraining text preparation (RedOne §3.1.1): long texts cut into pieces, short texts packed.

Lengths are characters by default, or tokens when a token counter is given. Everything is a column operation:
- a long text (> max_len) is cut into sentence-like units (text up to and including end punctuation or a
  newline; units longer than `unit_cap` are sliced), and unit i goes to piece floor(offset_i / T) with
  T = max_len - (longest unit of the text), which keeps every piece <= max_len without a sequential loop;
- short texts (< min_len) are packed in input order, joined by `separator`, into groups of floor(offset / T)
  with T = max_len - min_len (each short text is < min_len, so a group stays <= max_len);
- the rest pass through whole.
Output rows follow the position of their first source row, so the result is deterministic.
"""

from __future__ import annotations

from collections.abc import Callable

import polars as pl

from snsdata.pipeline.base import id_expr, with_row_ids

# A unit: text up to and including a run of end punctuation or newlines (plus trailing spaces), or such a run.
_END = r"\n。！？!?.…；;"
_UNIT = rf"[^{_END}]+[{_END}]*\s*|[{_END}]+\s*"

TokenCounter = Callable[[pl.Series], pl.Series]


def _measure(texts: pl.Expr, counter: TokenCounter | None) -> pl.Expr:
    if counter is None:
        return texts.str.len_chars().cast(pl.Int64)
    return texts.map_batches(lambda s: counter(s).cast(pl.Int64), return_dtype=pl.Int64)


def prepare_cpt(
    frame: pl.LazyFrame,
    text_column: str = "text",
    *,
    max_len: int = 2048,
    min_len: int | None = None,
    unit_cap: int | None = None,
    separator: str = "\n\n",
    pack_within: str | None = None,
    token_counter: TokenCounter | None = None,
) -> pl.LazyFrame:
    """Pieces of text for continued pretraining, none longer than `max_len`.

    Columns: `text`, `length` (characters, or tokens with `token_counter`: a function from a String Series to
    counts; token lengths of pieces are sums over units), `kind` ("whole", "piece" or "packed"), `part` (index
    of a piece within its source), `source_ids` (ids of the source rows: `record_id`, else input positions).
    `pack_within` names a column whose value packed rows must share (e.g. a language or source column).
    Rows with null or empty text yield nothing: filter them earlier to see them in rejects.
    """
    min_len = max_len // 8 if min_len is None else min_len
    unit_cap = max_len // 4 if unit_cap is None else unit_cap
    if not 0 <= min_len < max_len or not 0 < unit_cap < max_len:
        raise ValueError(f"need 0 <= min_len < max_len and 0 < unit_cap < max_len (got {min_len}, {unit_cap}, "
                         f"{max_len})")
    frame = with_row_ids(frame)
    schema = frame.collect_schema()
    group = [pl.col(pack_within)] if pack_within else []
    rows = frame.select(
        pl.col("__row").alias("first_row"),
        id_expr(schema).alias("id"),
        pl.col(text_column).alias("text"),
        *([pl.col(pack_within).alias("pack")] if pack_within else []),
    ).filter(pl.col("text").is_not_null() & (pl.col("text").str.len_chars() > 0))
    rows = rows.with_columns(_measure(pl.col("text"), token_counter).alias("length"))
    whole = rows.filter(pl.col("length").is_between(min_len, max_len)).select(
        "first_row", "text", "length", pl.lit("whole").alias("kind"), pl.lit(0, pl.Int64).alias("part"),
        pl.concat_list(pl.col("id")).alias("source_ids"),
    )
    pieces = _cut(rows.filter(pl.col("length") > max_len), max_len, unit_cap, token_counter)
    short = rows.filter(pl.col("length") < min_len)
    packed = _pack(short, max_len, min_len, separator, ["pack"] if group else [], token_counter)
    return pl.concat([whole, pieces, packed], how="vertical").sort("first_row", "part").drop("first_row")


def _cut(long: pl.LazyFrame, max_len: int, unit_cap: int, counter: TokenCounter | None) -> pl.LazyFrame:
    units = (
        long.select("first_row", "id", pl.col("text").str.extract_all(_UNIT).alias("unit"))
        .explode("unit")
        .with_columns(_measure(pl.col("unit"), counter).alias("size"), pl.col("unit").str.len_chars().alias("chars"))
    )
    # slice units over the cap into equal character slices
    slices = pl.max_horizontal((pl.col("size") + unit_cap - 1) // unit_cap, 1)
    step = (pl.col("chars") + pl.col("slices") - 1) // pl.col("slices")
    units = (
        units.with_columns(slices.alias("slices"))
        .with_columns(pl.int_ranges(0, pl.col("slices")).alias("slice"), step.alias("step"))
        .explode("slice")
        .with_columns(pl.col("unit").str.slice(pl.col("slice") * pl.col("step"), pl.col("step")))
        .filter(pl.col("unit").str.len_chars() > 0)
        .with_columns(_measure(pl.col("unit"), counter).alias("size"))
    )
    budget = max_len - pl.col("size").max().over("first_row")
    offset = pl.col("size").cum_sum().over("first_row") - pl.col("size")
    return (
        units.with_columns((offset // pl.max_horizontal(budget, 1)).alias("part"))
        .group_by("first_row", "part", maintain_order=True)
        .agg(pl.col("unit").str.join("").alias("text"), pl.col("size").sum().alias("length"), pl.col("id").first())
        .select("first_row", "text", "length", pl.lit("piece").alias("kind"),
                (pl.col("part").rank("dense").over("first_row").cast(pl.Int64) - 1).alias("part"),
                pl.concat_list(pl.col("id")).alias("source_ids"))
    )


def _pack(short: pl.LazyFrame, max_len: int, min_len: int, separator: str, group: list[str],
          counter: TokenCounter | None) -> pl.LazyFrame:
    sep_len = len(separator) if counter is None else int(counter(pl.Series([separator]))[0])
    budget = max(max_len - min_len - sep_len, 1)
    offset = (pl.col("length") + sep_len).cum_sum() - (pl.col("length") + sep_len)
    if group:
        offset = offset.over(group)
    keys = [*group, "bin"]
    return (
        short.with_columns((offset // budget).alias("bin"))
        .group_by(keys, maintain_order=True)
        .agg(
            pl.col("first_row").min(),
            pl.col("text").str.join(separator),
            (pl.col("length").sum() + (pl.len() - 1) * sep_len).alias("length"),
            pl.col("id").alias("source_ids"),
        )
        .select("first_row", "text", "length", pl.lit("packed").alias("kind"), pl.lit(0, pl.Int64).alias("part"),
                "source_ids")
    )
