"""Quotas and draws: temperature-weighted shares with upsampling caps, class balancing, seeded selection.

Every draw orders rows by a seeded hash of (task, record id), never by position, so a build does not change when
unrelated rows come and go, and the same seed always draws the same rows.
"""

from __future__ import annotations

import math

import polars as pl

from snsdata.build.keys import hash_u64
from snsdata.spec.mixture import GOLD_CLASS
from snsdata.spec.models import TaskSpec

EMPTY_GOLDS = ("", "[]", "{}", "null", "none", "''", '""')
"""Rendered targets that mean "nothing to extract" (CHLW's `[]`, an unanswerable MRC record)."""


def allocate(sizes: dict[str, int], quota: int, temperature: float, max_upsample: float) -> dict[str, int]:
    """Split `quota` rows among tasks in proportion to size^(1/T), no task above max_upsample x its size.

    A task that hits its cap keeps the cap and the rest is shared again among the others (water filling);
    integer rounding gives leftover rows to the largest remainders (ties by task id). The sum falls short of
    `quota` only when every task is capped.
    """
    caps = {task: math.floor(n * max_upsample) for task, n in sizes.items()}
    free = sorted(task for task, n in sizes.items() if n > 0)
    out = dict.fromkeys(sizes, 0)
    remaining = quota
    while free:
        weights = {task: sizes[task] ** (1 / temperature) for task in free}
        total = sum(weights.values())
        ideal = {task: remaining * w / total for task, w in weights.items()}
        capped = [task for task in free if ideal[task] >= caps[task]]
        if not capped:
            floors = {task: math.floor(value) for task, value in ideal.items()}
            left = remaining - sum(floors.values())
            by_remainder = sorted(free, key=lambda task: (-(ideal[task] - floors[task]), task))
            for task in by_remainder[:left]:
                floors[task] += 1
            out.update(floors)
            break
        for task in capped:
            out[task] = caps[task]
            remaining -= caps[task]
            free.remove(task)
    return out


def draw_order(frame: pl.DataFrame, seed: int) -> pl.Series:
    """A seeded rank key per row: xxh3 of (seed, task, record id)."""
    keys = frame.select(pl.format("{}\x1f{}", "task_id", "record_id")).to_series()
    return hash_u64(keys, f"{seed}\x1f").alias("_order")


def draw(frame: pl.DataFrame, quota: int, seed: int) -> pl.DataFrame:
    """Add `_copies`: how many times each row of one task appears to reach `quota` rows.

    Rows with `_pinned` come first and always get at least one copy; the rest follow in seeded order. Above the
    task's size, every row repeats `quota // n` times and the first `quota % n` once more.
    """
    if frame.is_empty():
        return frame.with_columns(_copies=pl.lit(0, dtype=pl.UInt32))
    ranked = frame.with_columns(draw_order(frame, seed)).sort(
        [pl.col("_pinned"), pl.col("_order"), pl.col("record_id")], descending=[True, False, False]
    ).with_row_index("_rank")
    full, rest = divmod(quota, frame.height)
    copies = pl.lit(full) + (pl.col("_rank") < rest).cast(pl.Int64)
    copies = pl.when(pl.col("_pinned")).then(pl.max_horizontal(copies, pl.lit(1))).otherwise(copies)
    return ranked.with_columns(_copies=copies.cast(pl.UInt32)).drop("_rank", "_order")


def class_key(frame: pl.DataFrame, by: str) -> pl.Expr:
    """The class of each row: a field's value, whether the gold answer is empty (`empty_target`), or the gold's
    class as the task's reward reads it (`gold_class`, in the `_gold_class` column)."""
    if by == GOLD_CLASS:
        return pl.col("_gold_class").fill_null("<unparsed>")
    if by == "empty_target":
        empty = pl.col("_target").str.strip_chars().str.to_lowercase().is_in(EMPTY_GOLDS)
        return pl.when(empty).then(pl.lit("empty")).otherwise(pl.lit("non_empty"))
    dtype = frame.schema[by]
    if isinstance(dtype, (pl.List, pl.Struct)):
        return pl.struct(pl.col(by).alias("v")).struct.json_encode()
    return pl.col(by).cast(pl.String).fill_null("<null>")


def with_gold_classes(frame: pl.DataFrame, spec: TaskSpec) -> pl.DataFrame:
    """Add `_gold_class`: each row's gold class (`snsdata.rewards.policies.gold_class`: its label for label
    tasks, else whether the reward's view of the gold is empty), null where the gold does not parse."""
    from snsdata.rewards.policies import gold_classes

    fields = [c for c in frame.columns if not c.startswith("_")]
    classes = gold_classes(spec, frame.select(fields).to_dicts())
    return frame.with_columns(_gold_class=pl.Series(classes, dtype=pl.String))


def lead_cap(counts: list[int], lead: float) -> int:
    """The largest per-class cap c under which no class exceeds an even share plus `lead` of the kept rows:
    c <= (1/K + lead) x sum(min(n, c)). That set of c is an interval from 0 (the right side grows at least as
    fast at first), so a binary search finds its end."""
    share = min(1.0, 1.0 / len(counts) + lead)
    low, high = 1, max(counts)
    if high <= share * sum(counts):
        return high
    while low < high:
        mid = (low + high + 1) // 2
        if mid <= share * sum(min(n, mid) for n in counts):
            low = mid
        else:
            high = mid - 1
    return low


def balance(frame: pl.DataFrame, by: str, max_ratio: float | None, seed: int,
            spec: TaskSpec | None = None, max_lead: float | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Keep at most max_ratio x the smallest class's rows of every class, and no class above an even share plus
    max_lead of the kept rows (`lead_cap`); pinned rows first, then seeded.

    `by` is a field, `empty_target` (needs `_target`) or `gold_class` (needs `spec`: classes as its reward reads
    the gold, so that one rule covers labels, multi-label sets, extraction lists and tagged answers alike). Rows
    whose gold does not parse are their own class but do not set the cap. Returns (kept, dropped); a task with
    one class only is left as it is.
    """
    if frame.is_empty():
        return frame, frame
    if by == GOLD_CLASS:
        if spec is None:
            raise ValueError("balance by gold_class needs the task's spec")
        frame = with_gold_classes(frame, spec)
    keyed = frame.with_columns(_class=class_key(frame, by), _order=draw_order(frame, seed))
    sizes = keyed.group_by("_class").len()
    counted = sizes.filter(pl.col("_class") != "<unparsed>") if by == GOLD_CLASS else sizes
    if counted.height < 2:
        return frame.drop("_gold_class", strict=False), frame.clear().drop("_gold_class", strict=False)
    counts = counted["len"].to_list()
    caps = [math.floor(max_ratio * min(counts))] if max_ratio is not None else []
    caps += [lead_cap(counts, max_lead)] if max_lead is not None else []
    cap = min(caps) if caps else min(counts)
    ranked = keyed.sort([pl.col("_pinned"), pl.col("_order"), pl.col("record_id")],
                        descending=[True, False, False]).with_columns(
        _rank=pl.int_range(pl.len()).over("_class"))
    keep = (pl.col("_rank") < cap) | pl.col("_pinned")
    helpers = ["_class", "_order", "_rank", *(["_gold_class"] if by == GOLD_CLASS else [])]
    kept = ranked.filter(keep).drop(helpers)
    dropped = ranked.filter(~keep).with_columns(
        _reason=pl.format("class {} over {} rows (max_ratio {}, max_lead {})", pl.col("_class"), pl.lit(cap),
                          pl.lit(str(max_ratio)), pl.lit(str(max_lead)))
    ).drop(helpers)
    return kept, dropped
