"""reasoning-gym: procedurally generated math and logic problems with one verifiable answer each."""

from __future__ import annotations

import json
from typing import Any

import polars as pl

from snsdata.sources.common import split_seed

SCHEMA = {"question": pl.String, "answer": pl.String, "source_dataset": pl.String, "metadata": pl.String}


def reasoning_gym_source(split: str, count: int, params: dict[str, Any]) -> pl.DataFrame:
    """`params`: `dataset` (a reasoning-gym name), optional `config` (its keyword arguments) and `seed`.

    Fields: `question`, `answer` (string), `source_dataset`, and `metadata` as JSON, which is what
    reasoning-gym's own `score_answer` needs to rebuild the entry.
    """
    import reasoning_gym

    name = params.get("dataset")
    if not isinstance(name, str):
        raise ValueError("reasoning_gym: params.dataset (a reasoning-gym dataset name) is required")
    if count == 0:
        return pl.DataFrame(schema=SCHEMA)
    dataset = reasoning_gym.create_dataset(name, size=count, seed=split_seed(params, split),
                                           **params.get("config", {}))
    rows = []
    for entry in dataset:
        if entry["answer"] is None:
            raise ValueError(f"reasoning_gym: {name} has no single reference answer; choose another dataset")
        rows.append({
            "question": entry["question"],
            "answer": str(entry["answer"]),
            "source_dataset": name,
            "metadata": json.dumps(entry["metadata"], ensure_ascii=False, sort_keys=True, default=str),
        })
    return pl.DataFrame(rows, schema=SCHEMA)
