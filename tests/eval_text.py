"""An independent check that no training row holds text of an eval item: long verbatim windows, not the build's
own n-grams or MinHash.

Eval items are read here with the readers, not taken from the build: every record of an eval-only task (a
benchmark), every record of a task's own eval split where it also has a train split, and every row the build
wrote to its eval split. Each string of an item (every field, both sides of a translation pair) is a text. A
training row leaks when it contains a window of an item text: 40 characters of a benchmark item, 80 (about the
13 words of the n-gram rule) of another task's held-out record. Windows found in more than 3 distinct item texts
are template text (a check-in line, a hashtag signature), not an item's own content, as in the build's rule.
Generated tasks that may train are left out, as in the build: their eval records are other problems from the same
templates.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from snsdata.readers import data_found, read_task
from snsdata.spec import TaskSpec
from snsdata.spec.mixture import Splits

BENCHMARK_WINDOW, HELD_OUT_WINDOW = 40, 80
_BASE = np.uint64(0x9E3779B97F4A7C15)
_META = ("task_id", "record_id", "capability", "origin", "split")


def strings(value: Any) -> Iterator[str]:
    """Every string inside a value, JSON text parsed (a record column, chat messages)."""
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = None
        if isinstance(parsed, (dict, list)):
            yield from strings(parsed)
        else:
            yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)


def squash(text: str) -> str:
    """Whitespace collapsed; TweetEval's anonymised mention `@user` (a placeholder, no item's text) left out."""
    return " ".join(token for token in text.split() if token != "@user")


def window_hashes(texts: list[str], width: int) -> tuple[np.ndarray, np.ndarray]:
    """A 64-bit polynomial hash of every `width`-character window of each text, and the text it lies in."""
    cp = np.frombuffer(("\0".join(texts) + "\0").encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    inverse = np.uint64(pow(int(_BASE), -1, 2**64))
    with np.errstate(over="ignore"):
        down = np.concatenate([[np.uint64(1)], np.cumprod(np.full(cp.size - 1, inverse), dtype=np.uint64)])
        up = np.concatenate([[np.uint64(1)], np.cumprod(np.full(cp.size - 1, _BASE), dtype=np.uint64)])
        prefix = np.concatenate([[np.uint64(0)], np.cumsum(cp * down, dtype=np.uint64)])
        starts = np.arange(max(cp.size - width + 1, 0))
        hashes = (prefix[starts + width] - prefix[starts]) * up[starts]
    text = np.cumsum(cp == 0) - (cp == 0)
    inside = text[starts] == text[starts + width - 1]
    inside &= cp[starts + width - 1] != 0
    return hashes[inside], text[starts][inside]


def eval_records(catalogue: dict[str, TaskSpec], root: Path,
                 policy: Splits) -> dict[tuple[str, str], tuple[str, list[str]]]:
    """Every record of every task with data under `root`, as (task, record) -> (kind, its texts): kind
    `benchmark` (a record of an eval-only task), `held_out` (of a task's own eval split, where it has a train
    split) or `other` (an eval item only where a build wrote it to its eval split)."""
    out = {}
    for task_id, spec in sorted(catalogue.items()):
        if not data_found(spec, root) or (spec.source.reader == "generated" and not spec.eval_only):
            continue
        frame = read_task(spec, root, purpose="eval").frame.collect()
        names = list(spec.source.splits)
        fixed = len(names) > 1 and any(name not in policy.eval_splits for name in names)
        for row in frame.iter_rows(named=True):
            own = spec.source.train is None or row["split"] != "train"
            kind = "benchmark" if spec.eval_only and own else \
                "held_out" if fixed and row["split"] in policy.eval_splits else "other"
            texts = [squash(s) for name, value in row.items() if name not in _META for s in strings(value)]
            out[(task_id, row["record_id"])] = (kind, texts)
    return out


def item_texts(records: dict[tuple[str, str], tuple[str, list[str]]],
               eval_rows: pl.DataFrame) -> tuple[set[str], set[str]]:
    """(benchmark item texts, held-out item texts) for a build whose eval split holds `eval_rows`."""
    written = set(zip(eval_rows["task_id"], eval_rows["record_id"], strict=True))
    benchmark, held_out = set(), set()
    for key, (kind, texts) in records.items():
        if kind == "benchmark":
            benchmark.update(texts)
        elif kind == "held_out" or key in written:
            held_out.update(texts)
    return benchmark, held_out


def row_texts(frame: pl.DataFrame) -> list[str]:
    """Every training row as one text: all its strings (prompt, completion, record, document)."""
    columns = [c for c in frame.columns if c not in _META]
    return [" \n ".join(squash(s) for s in strings(row)) for row in frame.select(columns).to_dicts()]


def leaks(items: set[str], texts: list[str], width: int) -> dict[int, str]:
    """Rows of `texts` containing a `width`-character window of an item text (not template text), with the
    window found."""
    kept = sorted(t for t in items if len(t) >= width)
    if not kept or not texts:
        return {}
    hashes, owner = window_hashes(kept, width)
    pairs = np.unique(np.stack([hashes, owner.astype(np.uint64)], axis=1), axis=0)
    distinct, counts = np.unique(pairs[:, 0], return_counts=True)
    content = distinct[counts <= 3]  # sorted

    def known(found: np.ndarray) -> np.ndarray:
        at = np.minimum(np.searchsorted(content, found), max(content.size - 1, 0))
        return content[at] == found if content.size else np.zeros(found.size, dtype=bool)

    found, rows = window_hashes(texts, width)
    out: dict[int, str] = {}
    for row in np.unique(rows[known(found)]).tolist():
        own, _ = window_hashes([texts[row]], width)
        at = int(np.flatnonzero(known(own))[0])
        out[row] = texts[row][at:at + width]
    return out
