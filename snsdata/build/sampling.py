"""Quotas and draws: temperature-weighted shares with upsampling caps, class balancing, seeded selection.

Every draw orders rows by a seeded hash of (task, record id), never by position, so a build does not change when
unrelated rows come and go, and the same seed always draws the same rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl

from snsdata.build.keys import hash_u64
from snsdata.spec.mixture import GOLD_CLASS
from snsdata.spec.models import TaskSpec

EMPTY_GOLDS = ("", "[]", "{}", "null", "none", "''", '""')
"""Rendered targets that mean "nothing to extract" (CHLW's `[]`, an unanswerable MRC record)."""


def fill(weights: dict[str, float], caps: dict[str, int], quota: int) -> dict[str, int]:
    """Split `quota` among the keys of `caps` in proportion to `weights` (a key without weight gets none), no
    key above its cap.

    A key that hits its cap keeps the cap and the rest is shared again among the others (water filling);
    integer rounding gives leftover rows to the largest remainders (ties by key). The sum falls short of `quota`
    only when every weighted key is capped.
    """
    free = sorted(key for key, w in weights.items() if w > 0)
    out = dict.fromkeys(caps, 0)
    remaining = quota
    while free:
        total = sum(weights[key] for key in free)
        ideal = {key: remaining * weights[key] / total for key in free}
        capped = [key for key in free if ideal[key] >= caps[key]]
        if not capped:
            floors = {key: math.floor(value) for key, value in ideal.items()}
            left = remaining - sum(floors.values())
            by_remainder = sorted(free, key=lambda key: (-(ideal[key] - floors[key]), key))
            for key in by_remainder[:left]:
                floors[key] += 1
            out.update(floors)
            break
        for key in capped:
            out[key] = caps[key]
            remaining -= caps[key]
            free.remove(key)
    return out


@dataclass(frozen=True)
class Pool:
    """One component's train rows as sampling sees them: per task its rows, source and capability, and the
    distinct records (a dataset read by several tasks counts once) per (source, capability) and per (source, "")
    over all its tasks."""

    sizes: dict[str, int]
    source: dict[str, str]
    capability: dict[str, str]
    distinct: dict[tuple[str, str], int]


@dataclass(frozen=True)
class Limits:
    """A component's quota rules: temperature, upsampling cap, capability quotas and share caps."""

    temperature: float
    max_upsample: float
    capabilities: dict[str, float]
    source_cap: Callable[[str], float | None]
    max_task_share: float | None


def allocate_component(pool: Pool, quota: int, limits: Limits) -> tuple[dict[str, int], dict[str, Any]]:
    """Train rows per task of one component: capabilities (quotas), then sources (temperature over distinct
    records), then the tasks of a source (temperature over their rows), each level capped. With quotas, a source
    read by tasks of two capabilities is a source in each (`SOURCE (capability)`).

    Share caps are shares of the rows the component really gets: when the sources cannot fill `quota` under
    them, the component shrinks to the largest size at which every cap holds (`share_capped_size`). A cap below
    an even split (0.2 with two sources) cannot hold at any size: it is not applied, and the detail says so
    (`not_applied`), rather than shrinking the component to nothing.
    """
    tasks = sorted(t for t, n in pool.sizes.items() if n > 0)
    if limits.capabilities:
        tasks = [t for t in tasks if limits.capabilities.get(pool.capability[t], 0) > 0]
    group_of = {t: pool.capability[t] if limits.capabilities else "" for t in tasks}
    units = sorted({(group_of[t], pool.source[t]) for t in tasks})
    members = {u: [t for t in tasks if (group_of[t], pool.source[t]) == u] for u in units}
    spread = {source for _, source in units if sum(1 for _, other in units if other == source) > 1}
    label = {u: f"{u[1]} ({u[0]})" if u[1] in spread else u[1] for u in units}
    room = {t: math.floor(pool.sizes[t] * limits.max_upsample) for t in tasks}
    not_applied: dict[str, float] = {}
    task_share = _holdable(limits.max_task_share, len(tasks), "tasks", not_applied)
    unit_share = {u: _holdable(limits.source_cap(u[1]), len(units), label[u], not_applied) for u in units}

    def capacity(size: int) -> tuple[dict[str, int], dict[tuple[str, str], int]]:
        task_caps = {t: _capped(room[t], task_share, size) for t in tasks}
        unit_caps = {u: _capped(sum(task_caps[t] for t in members[u]), unit_share[u], size) for u in units}
        return task_caps, unit_caps

    size = share_capped_size(lambda n: sum(capacity(n)[1].values()), quota)
    task_caps, unit_caps = capacity(size)
    groups = sorted({g for g, _ in units})
    if limits.capabilities:
        per_group = fill({g: limits.capabilities[g] for g in groups},
                         {g: sum(c for u, c in unit_caps.items() if u[0] == g) for g in groups}, size)
    else:
        per_group = {"": size}
    per_unit: dict[tuple[str, str], int] = {}
    for group in groups:
        names = [u for u in units if u[0] == group]
        weights = {u: pool.distinct[(u[1], group)] ** (1 / limits.temperature) for u in names}
        per_unit |= fill(weights, {u: unit_caps[u] for u in names}, per_group[group])
    per_task = dict.fromkeys(pool.sizes, 0)
    for unit in units:
        weights = {t: pool.sizes[t] ** (1 / limits.temperature) for t in members[unit]}
        per_task |= fill(weights, {t: task_caps[t] for t in members[unit]}, per_unit[unit])
    detail: dict[str, Any] = {"size": size, "sources": {
        label[u]: {"distinct_records": pool.distinct[(u[1], u[0])], "allocated": per_unit[u], "cap": unit_caps[u],
                   "tasks": members[u]} for u in units}}
    if not_applied:
        detail["not_applied"] = not_applied
    if limits.capabilities:
        detail["capabilities"] = {c: {"quota": q, "allocated": per_group.get(c, 0)}
                                  for c, q in sorted(limits.capabilities.items())}
    return per_task, detail


def _holdable(share: float | None, count: int, name: str, not_applied: dict[str, float]) -> float | None:
    """A share cap, or None (noted in `not_applied`) where `count` sources or tasks cannot all stay under it."""
    if share is None or share * count >= 1 - 1e-9:
        return share
    not_applied[name] = share
    return None


def _capped(room: int, share: float | None, size: int) -> int:
    return room if share is None else min(room, math.floor(share * size))


def share_capped_size(capacity: Callable[[int], int], quota: int) -> int:
    """The largest n <= quota with capacity(n) >= n: the most rows a component can hold when each source or task
    may take only a share of them. capacity(n) - n is concave in n (caps grow with n until a source runs out of
    rows), so the feasible sizes run from 0 to that n and a binary search finds it."""
    if capacity(quota) >= quota:
        return quota
    low, high = 0, quota
    while low < high:
        mid = (low + high + 1) // 2
        if capacity(mid) >= mid:
            low = mid
        else:
            high = mid - 1
    return low


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
