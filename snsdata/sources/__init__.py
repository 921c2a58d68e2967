"""Offline general data (RedOne 2.0's D_GEN): generators named by `reader: generated` task specs.

Each generator is a pure function of (split, count, params) returning the spec's fields as a Polars frame, so
the same spec gives the same records on every machine; `snsdata.readers` turns them into the canonical frame.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from typing import Any

import polars as pl

from snsdata.sources.common import EVAL_SPLITS, split_seed
from snsdata.sources.functions import function_synthesis_source
from snsdata.sources.humaneval import humaneval_source
from snsdata.sources.instructions import sns_instructions_source
from snsdata.sources.reasoning import reasoning_gym_source

Generator = Callable[[str, int, dict[str, Any]], pl.DataFrame]

GENERATORS: dict[str, Generator] = {
    "reasoning_gym": reasoning_gym_source,
    "humaneval": humaneval_source,
    "sns_instructions": sns_instructions_source,
    "function_synthesis": function_synthesis_source,
}

__all__ = ["EVAL_SPLITS", "GENERATORS", "Generator", "UnknownGenerator", "generate_source", "split_seed"]


class UnknownGenerator(KeyError):
    """A spec names a generator that is not registered (the message lists the registered ones)."""

    def __str__(self) -> str:
        return str(self.args[0])


def generate_source(name: str, split: str, count: int, params: dict[str, Any]) -> pl.DataFrame:
    """`count` records of generator `name` for one split; deterministic in (name, split, count, params).

    Results are kept for the life of the process (a build reads every task, and tests build many times).
    """
    if name not in GENERATORS:
        raise UnknownGenerator(f"unknown generator {name!r}; registered: {sorted(GENERATORS)}")
    if count < 0:
        raise ValueError(f"{name}: split {split!r} asks for {count} records")
    return _generated(name, split, count, json.dumps(params, sort_keys=True, default=str))


@cache
def _generated(name: str, split: str, count: int, params_json: str) -> pl.DataFrame:
    return GENERATORS[name](split, count, json.loads(params_json))
