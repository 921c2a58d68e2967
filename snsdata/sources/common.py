"""What every generator shares: per-split seeds and the split names that mean held-out data."""

from __future__ import annotations

from typing import Any

import xxhash

# Splits whose records are held out for evaluation; fixed pools (HumanEval, the shipped texts) give these splits
# a disjoint slice so that generated train and eval records never share a problem or a text.
EVAL_SPLITS = frozenset({"test", "eval", "val", "validation", "dev"})


def split_seed(params: dict[str, Any], split: str) -> int:
    """A 31-bit seed from the spec's `seed` and the split name, so splits differ and runs repeat."""
    return xxhash.xxh3_64_intdigest(f"{params.get('seed', 0)}\x1f{split}".encode()) & 0x7FFFFFFF


def stable_order(keys: list[str], seed: int) -> list[str]:
    """Keys in a seeded order that does not depend on the order they came in."""
    return sorted(keys, key=lambda key: (xxhash.xxh3_64_intdigest(f"{seed}\x1f{key}".encode()), key))


def holdout_slice(keys: list[str], split: str, count: int, seed: int, holdout_share: float) -> list[str]:
    """A split's share of a fixed pool: eval splits draw from the seeded head, others from the rest.

    The head holds `holdout_share` of the pool, so train and eval never overlap whatever counts the spec asks.
    """
    ordered = stable_order(keys, seed)
    cut = round(len(ordered) * holdout_share)
    pool = ordered[:cut] if split in EVAL_SPLITS else ordered[cut:]
    return pool[:count]
