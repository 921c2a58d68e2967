"""Rationales from stage-1 rollouts: correct answers that show their reasoning become rationale-bearing targets.

RedOne 2.0's stage 3 trains on "more rationale-bearing samples", and no shipped dataset has rationales, so they
come from the model's own stage-1 rollouts (`snsdata build --mixture stage3 --rollouts FILE`, the log the loop
already writes, docs/redone2_loop.md). A rollout gives its record a rationale when

- its task's target can carry one (`target.rationale_field`) and the task is in the mixture;
- its record is a train record of this build (an eval record, and so every record of an eval-only task, never
  becomes a training target);
- it is correct: the task's reward, correctness part only (`task_score`, no shaping), scored now against the
  build's record, is at least the pass threshold (`snsdata diagnose`'s: 0.5, or a per-task one);
- it shows reasoning of at least `MIN_CHARS` characters: a `<think>` block, else (explain-then-answer JSON) the
  answer object's rationale field, else the text before the answer (before the reward's extracted answer, or
  before the gold answer's last occurrence).

A record with several such rollouts takes the one with the highest correctness, then the shortest reasoning,
then a seeded hash; every rollout that gives nothing is counted under its first failing reason.
"""

from __future__ import annotations

import json
import re
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import regex

from snsdata.build.formats import field_columns, has_rationale
from snsdata.build.keys import hash_u64
from snsdata.build.splits import TRAIN
from snsdata.rewards.normalize import REGEX_TIMEOUT_S
from snsdata.spec.models import TaskSpec
from snsdata.spec.reward import CompositeReward, RewardSpec

MIN_CHARS = 20
"""Shorter "reasoning" (a restated label, "because.") teaches nothing and is not a rationale."""
RATIONALE_STEP = "rationale"

_THINK_OPEN = re.compile(r"<think\s*>", re.IGNORECASE)
_THINK_CLOSE = re.compile(r"</think\s*>", re.IGNORECASE)


def _patterns(reward: RewardSpec) -> list[str]:
    """The answer-extraction regexes of a reward tree's parts (the gate's too)."""
    if isinstance(reward, CompositeReward):
        found = [p for part in reward.parts for p in _patterns(part.reward)]
        return found + (_patterns(reward.gate) if reward.gate is not None else [])
    extract = getattr(reward, "extract", None)
    return [extract.pattern] if extract is not None else []


def reasoning_of(spec: TaskSpec, completion: str, gold: str) -> str:
    """The reasoning a completion shows before its answer ("" when it shows none); `gold` is the record's gold
    completion without a rationale (where the answer is looked for when the reward extracts none)."""
    closes = list(_THINK_CLOSE.finditer(completion))
    if closes:
        before = completion[: closes[-1].start()]
        opened = _THINK_OPEN.search(before)
        return (before[opened.end():] if opened else before).strip()
    name = spec.target.rationale_field
    start, end = completion.find("{"), completion.rfind("}")
    if name and 0 <= start < end:
        try:
            answer = json.loads(completion[start:end + 1])
        except ValueError:
            answer = None
        if isinstance(answer, dict) and isinstance(answer.get(name), str):
            return answer[name].strip()
    for pattern in _patterns(spec.reward):
        try:  # a declared pattern on model output: the scorer's time budget, a timeout counts as no match
            matches = deque(regex.finditer(pattern, completion, timeout=REGEX_TIMEOUT_S), maxlen=1)
        except TimeoutError:
            matches = deque()
        if matches:
            return completion[: matches[0].start()].strip()
    at = completion.rfind(gold.strip()) if gold.strip() else -1
    return completion[:at].strip() if at > 0 else ""


@dataclass
class Rationales:
    """Rationales found in a rollout log: `task_id, record_id, _rationale` (one per train record) and what every
    other rollout was skipped for."""

    path: Path
    rows: int
    found: pl.DataFrame
    skipped: dict[str, int]
    thresholds: dict[str, float] = field(default_factory=dict)


def collect(path: str | Path, frames: Mapping[str, pl.DataFrame], specs: Mapping[str, TaskSpec],
            pass_threshold: float, task_thresholds: Mapping[str, float], seed: int) -> Rationales:
    """Rationales for the train records in `frames` (per task, after splits) from a rollout log."""
    from snsdata.loop.logs import fill_task_ids, read_log
    from snsdata.rewards import get_scorer

    path = Path(path)
    log = read_log(path)
    known = pl.concat([f.select("task_id", "record_id") for f in frames.values()]) if frames else \
        pl.DataFrame(schema={"task_id": pl.String, "record_id": pl.String})
    log = fill_task_ids(log, known)
    read = log.height
    skipped: dict[str, int] = {}

    def skip(rows: pl.DataFrame | int, reason: str) -> None:
        count = rows if isinstance(rows, int) else rows.height
        if count:
            skipped[reason] = skipped.get(reason, 0) + count

    skip(log.filter(pl.col("task_id").is_null() | pl.col("record_id").is_null()),
         "no task id or record id (the loop's log carries both)")
    log = log.filter(pl.col("task_id").is_not_null() & pl.col("record_id").is_not_null())
    skip(log.filter(~pl.col("task_id").is_in(list(frames))), "task not in this mixture")
    log = log.filter(pl.col("task_id").is_in(list(frames)))
    capable = [t for t in frames if specs[t].target.rationale_field]
    skip(log.filter(~pl.col("task_id").is_in(capable)), "task's target has no rationale field")
    log = log.filter(pl.col("task_id").is_in(capable))
    found, thresholds = [], {}
    for task_id in sorted(set(log["task_id"].to_list())):
        spec, frame = specs[task_id], frames[task_id]
        rows = log.filter(pl.col("task_id") == task_id).select("record_id", _completion="completion").join(
            frame.select("record_id", "_split", *field_columns(frame)), on="record_id", how="left")
        skip(rows.filter(pl.col("_split").is_null()), "no such record in this build (same --data-root and "
                                                      "--max-per-task as stage 1?)")
        skip(rows.filter(pl.col("_split").is_not_null() & (pl.col("_split") != TRAIN)),
             "eval record (held out, or an eval-only task): never a training target")
        rows = rows.filter(pl.col("_split") == TRAIN)
        if rows.is_empty():
            continue
        threshold = task_thresholds.get(task_id, pass_threshold)
        thresholds[task_id] = threshold
        records = rows.select(field_columns(frame)).with_columns(
            pl.lit(None, dtype=pl.String).alias(spec.target.rationale_field)).to_dicts()
        details = get_scorer(task_id, "fixed", specs).details(rows["_completion"].to_list(), records)
        golds = [spec.render_target(record) for record in records]
        reasons = [reasoning_of(spec, text, gold)
                   for text, gold in zip(rows["_completion"].to_list(), golds, strict=True)]
        scored = rows.select("record_id", "_completion").with_columns(
            _score=pl.Series([d.task_score for d in details], dtype=pl.Float64),
            _rationale=pl.Series(reasons, dtype=pl.String))
        skip(scored.filter(pl.col("_score").is_null()), "the task's reward does not apply to the record")
        wrong = pl.col("_score") < threshold
        skip(scored.filter(wrong), f"not correct (correctness below the pass threshold {threshold:g})")
        short = pl.col("_rationale").str.len_chars() < MIN_CHARS
        skip(scored.filter(~wrong & short), f"no reasoning of at least {MIN_CHARS} characters")
        good = scored.filter(pl.col("_score").is_not_null() & ~wrong & ~short)
        ties = hash_u64(good.select(pl.format("{}\x1f{}", "record_id", "_completion")).to_series(),
                        f"{seed}\x1f{task_id}\x1f")
        best = (good.with_columns(_tie=ties, _len=pl.col("_rationale").str.len_chars())
                .sort(["record_id", "_score", "_len", "_tie"], descending=[False, True, False, False])
                .unique("record_id", keep="first", maintain_order=True))
        skip(good.height - best.height, "another rollout of the record is used")
        found.append(best.select(pl.lit(task_id).alias("task_id"), "record_id", "_rationale"))
    schema = {"task_id": pl.String, "record_id": pl.String, "_rationale": pl.String}
    table = pl.concat(found) if found else pl.DataFrame(schema=schema)
    return Rationales(path, read, table.cast(schema), dict(sorted(skipped.items())), thresholds)


def attach(frames: dict[str, pl.DataFrame], specs: Mapping[str, TaskSpec],
           rationales: Rationales) -> dict[str, pl.DataFrame]:
    """Write each found rationale into its record's rationale field (a rationale the data already has stays)."""
    out = dict(frames)
    for (task_id,), found in rationales.found.group_by("task_id"):
        name = str(specs[str(task_id)].target.rationale_field)
        frame = out[str(task_id)]
        if name not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.String).alias(name))
        joined = frame.join(found.select("record_id", "_rationale"), on="record_id", how="left")
        own = pl.col(name).cast(pl.String).str.strip_chars().str.len_chars() > 0
        out[str(task_id)] = joined.with_columns(
            pl.when(own.fill_null(False)).then(pl.col(name).cast(pl.String)).otherwise(pl.col("_rationale"))
            .alias(name)).drop("_rationale")
    return out


def rationale_summary(drawn: list[tuple[str, pl.DataFrame]], specs: Mapping[str, TaskSpec],
                      declared: float | None, rationales: Rationales | None) -> dict[str, Any]:
    """What the manifest records: train rows (copies counted) with a rationale, per task and in all, the share
    against the mixture's declared one, and where the rationales came from."""
    per_task, total = {}, 0
    for task_id, frame in drawn:
        if task_id not in specs or frame.is_empty():
            continue
        train = frame.filter(pl.col("_split") == TRAIN)
        total += int(train["_copies"].sum()) if train.height else 0
        with_one = train.filter(has_rationale(specs[task_id], train))
        if with_one.height:
            per_task[task_id] = int(with_one["_copies"].sum())
    rows = sum(per_task.values())
    share = rows / total if total else 0.0
    return {
        "declared_share": declared,
        "train_rows": total,
        "train_rows_with_rationale": rows,
        "share": round(share, 6),
        "shortfall": declared is not None and share + 1e-9 < declared,
        "tasks": dict(sorted(per_task.items())),
        "rollouts": None if rationales is None else {
            "path": str(rationales.path), "rows": rationales.rows, "records_with_rationale": rationales.found.height,
            "pass_thresholds": rationales.thresholds, "skipped": rationales.skipped, "min_chars": MIN_CHARS},
    }
