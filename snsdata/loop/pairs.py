"""DPO pairs from model errors (RedOne's preference stage) and from user annotations.

Objective tasks: chosen = the gold answer, rejected = a prediction of the model that scores below a threshold with
the task's own reward. Subjective tasks (dialogue, role-play: tagged `subjective` or of the `dialogue` capability)
have no reward that can call an answer wrong, so their pairs come only from an annotation file.

Both return rows in the build's `PAIR_COLUMNS` shape, handed to the dpo mixture build as extra pairs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import polars as pl
import xxhash

from snsdata.build import PAIR_COLUMNS, Prepared, prepare
from snsdata.build.formats import MESSAGES, record_json
from snsdata.loop.logs import fill_task_ids, prompt_hash, read_log
from snsdata.spec import TaskSpec
from snsdata.spec.errors import InvalidInput
from snsdata.spec.jsonl import read_jsonl

SKIP_SCHEMA = {"task_id": pl.String, "record_id": pl.String, "reason": pl.String}
"""Predictions or annotations that made no pair, and why (the build may count them in its manifest)."""
RENDERED_COLUMNS = ("task_id", "record_id", "split", "prompt", "target", "record")
"""What the build hands over per record: prompt messages, the gold target text, the record's fields as JSON."""


def is_subjective(spec: TaskSpec) -> bool:
    """Tasks whose answers no reward can rank: preference pairs for them come from annotations only."""
    return "subjective" in spec.tags or spec.capability == "dialogue"


def _assistant(texts: list[str]) -> pl.Series:
    return pl.Series([[{"role": "assistant", "content": t}] for t in texts], dtype=MESSAGES)


def _skips(frame: pl.DataFrame, reason: str) -> pl.DataFrame:
    return frame.select("task_id", "record_id", reason=pl.lit(reason)).cast(SKIP_SCHEMA)


def _scores(task_id: str, completions: list[str], records: list[str], specs: Mapping[str, TaskSpec]
            ) -> list[float | None]:
    from snsdata.rewards import get_scorer

    return get_scorer(task_id, "fixed", specs)(completions, [json.loads(r) for r in records])


def match_predictions(predictions: pl.DataFrame, rendered: pl.DataFrame, specs: Mapping[str, TaskSpec]
                      ) -> tuple[pl.DataFrame, list[pl.DataFrame]]:
    """Predictions joined to their build records (`RENDERED_COLUMNS`) by record id, or by prompt hash when the
    log has only prompts; objective tasks of `specs` only. Returns (joined, skipped with reasons)."""
    by_hash = rendered.with_columns(
        _hash=pl.Series([prompt_hash(p) for p in rendered["prompt"].to_list()], dtype=pl.String))
    log = fill_task_ids(predictions, rendered)
    if log["record_id"].null_count():
        hashes = pl.Series([prompt_hash(p) if p is not None else None for p in log["prompt"].to_list()],
                           dtype=pl.String)
        lookup = by_hash.select("task_id", "_hash", _rid="record_id").unique(["task_id", "_hash"])
        log = (log.with_columns(_hash=hashes).join(lookup, on=["task_id", "_hash"], how="left")
               .with_columns(record_id=pl.coalesce("record_id", "_rid")).drop("_hash", "_rid"))
    joined = log.drop("record", "prompt").join(
        rendered.select(*RENDERED_COLUMNS), on=["task_id", "record_id"], how="left")
    skipped = [_skips(joined.filter(pl.col("target").is_null()), "no such record in the build")]
    joined = joined.filter(pl.col("target").is_not_null())
    subjective = [t for t in joined["task_id"].unique().to_list() if t in specs and is_subjective(specs[t])]
    unknown = [t for t in joined["task_id"].unique().to_list() if t not in specs]
    skipped.append(_skips(joined.filter(pl.col("task_id").is_in(subjective)),
                          "subjective task: pairs come from --annotations"))
    skipped.append(_skips(joined.filter(pl.col("task_id").is_in(unknown)), "task not in the build's specs"))
    joined = joined.filter(~pl.col("task_id").is_in(subjective + unknown))
    return joined, skipped


def confusion_counts(predictions: pl.DataFrame, rendered: pl.DataFrame, specs: Mapping[str, TaskSpec]
                     ) -> dict[str, dict[tuple[str, str], int]]:
    """Per label task, how often the model answered each wrong label for each gold label: task id -> {(gold,
    predicted): count}, both folded as the task compares labels and read as its reward reads them (a prediction
    that names no label, or several, counts nowhere). The DPO build's `confusion` negatives come from it."""
    from snsdata.build.formats import label_fold, pair_field
    from snsdata.rewards import get_scorer

    joined, _ = match_predictions(predictions, rendered, specs)
    out: dict[str, dict[tuple[str, str], int]] = {}
    for (task_id,), group in joined.sort("task_id", "record_id").group_by("task_id", maintain_order=True):
        spec = specs[str(task_id)]
        if pair_field(spec) is None:
            continue
        scorer = get_scorer(spec.id, "fixed", specs)
        records = [json.loads(r) for r in group["record"].to_list()]
        answered = scorer.answer_texts(group["completion"].to_list(), records)
        gold = scorer.answer_texts(group["target"].to_list(), records)
        fold = label_fold(spec)
        counts: dict[tuple[str, str], int] = {}
        for said, right in zip(answered, gold, strict=True):
            if said and right and fold(said) != fold(right):
                key = (fold(right), fold(said))
                counts[key] = counts.get(key, 0) + 1
        out[spec.id] = counts
    return out


def prediction_pairs(
    predictions: pl.DataFrame,
    rendered: pl.DataFrame,
    specs: Mapping[str, TaskSpec],
    *,
    threshold: float = 0.5,
    max_per_task: int | None = None,
    seed: int = 0,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs (gold, wrong prediction) for objective tasks; returns (pairs, skipped with reasons).

    `predictions` is a log in `snsdata.loop.logs.LOG_SCHEMA`; `rendered` holds `RENDERED_COLUMNS` for the records
    the predictions answered (rows are matched by record id, or by prompt hash when the log has only prompts).
    A prediction makes a pair when its reward (from the log, else scored now) is below `threshold`, its text differs
    from the gold, and the gold itself reaches the threshold (a broken gold ranks nothing). Pairs are unique per
    (record, rejected text); with `max_per_task` the cap takes one pair per record before a second of any record,
    records in a seeded order, so a few records with many wrong rollouts cannot fill a task's quota.
    """
    joined, skipped = match_predictions(predictions, rendered, specs)
    parts = []
    for (task_id,), group in joined.group_by("task_id"):
        gold = _scores(str(task_id), group["target"].to_list(), group["record"].to_list(), specs)
        group = group.with_columns(_gold=pl.Series(gold, dtype=pl.Float64), _row=pl.int_range(pl.len()))
        unscored = group.filter(pl.col("reward").is_null())
        scored = _scores(str(task_id), unscored["completion"].to_list(), unscored["record"].to_list(), specs)
        fill = pl.DataFrame({"_row": unscored["_row"], "_new": pl.Series(scored, dtype=pl.Float64)})
        parts.append(group.join(fill, on="_row", how="left")
                     .with_columns(reward=pl.coalesce("reward", "_new")).drop("_row", "_new"))
    if not parts:
        return pl.DataFrame(schema=PAIR_COLUMNS), pl.concat(skipped)
    rows = pl.concat(parts).with_columns(_same=pl.col("completion").str.strip_chars()
                                         == pl.col("target").str.strip_chars())
    reasons = [
        (pl.col("completion").str.strip_chars() == "", "empty prediction"),
        (pl.col("reward").is_null(), "reward does not apply to the record"),
        (pl.col("_same"), "prediction equals the gold"),
        (pl.col("reward") >= threshold, f"prediction scores at least {threshold}"),
        (pl.col("_gold").is_null() | (pl.col("_gold") < threshold), f"gold scores below {threshold}"),
    ]
    for condition, reason in reasons:
        skipped.append(_skips(rows.filter(condition), reason))
        rows = rows.filter(~condition)
    rows = rows.with_columns(_dup=pl.int_range(pl.len()).over(
        "task_id", "record_id", pl.col("completion").str.strip_chars()) > 0)
    skipped.append(_skips(rows.filter("_dup"), "duplicate of a pair already made"))
    rows = rows.filter(~pl.col("_dup"))
    rows = _capped(rows, max_per_task, seed, skipped)
    pairs = rows.select(
        "task_id", "record_id", "split", "prompt",
        chosen=_assistant(rows["target"].to_list()),
        rejected=_assistant(rows["completion"].to_list()),
        pair_source=pl.lit("predictions"),
    ).cast(PAIR_COLUMNS)
    return pairs.sort("task_id", "record_id", maintain_order=True), pl.concat(skipped)


def _capped(rows: pl.DataFrame, max_per_task: int | None, seed: int, skipped: list[pl.DataFrame]) -> pl.DataFrame:
    keys = [xxhash.xxh3_64_intdigest(f"{seed}\x1f{t}\x1f{r}\x1f{c}".encode())
            for t, r, c in rows.select("task_id", "record_id", "completion").iter_rows()]
    ordered = (rows.with_columns(_key=pl.Series(keys, dtype=pl.UInt64))
               .sort("task_id", "record_id", "reward", "_key")
               .with_columns(_nth=pl.int_range(pl.len()).over("task_id", "record_id"))
               .sort("task_id", "_nth", "_key"))
    if max_per_task is None:
        return ordered
    ordered = ordered.with_columns(_rank=pl.int_range(pl.len()).over("task_id"))
    skipped.append(_skips(ordered.filter(pl.col("_rank") >= max_per_task), f"over the cap of {max_per_task} per task"))
    return ordered.filter(pl.col("_rank") < max_per_task)


def read_annotations(path: str | Path) -> pl.DataFrame:
    """An annotation file: JSONL rows with `record_id` or `prompt` (text or messages), `chosen`, `rejected`, and
    optionally `task_id` (needed with a bare prompt that the build does not hold)."""
    rows = []
    for number, row in read_jsonl(path):
        missing = [key for key in ("chosen", "rejected") if not isinstance(row.get(key), str)]
        if missing or (row.get("record_id") is None and row.get("prompt") is None):
            raise InvalidInput(f"{path}:{number}: an annotation needs `record_id` or `prompt`, and `chosen` and "
                             f"`rejected` as text (missing or not text: {missing or ['record_id/prompt']})")
        prompt = row.get("prompt")
        rows.append({"task_id": row.get("task_id"), "record_id": row.get("record_id"),
                     "prompt": prompt if prompt is None or isinstance(prompt, str) else json.dumps(prompt),
                     "chosen": row["chosen"], "rejected": row["rejected"]})
    return pl.DataFrame(rows, schema={"task_id": pl.String, "record_id": pl.String, "prompt": pl.String,
                                      "chosen": pl.String, "rejected": pl.String})


def annotation_pairs(annotations: pl.DataFrame, rendered: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Pairs from annotations: a row naming a build record takes the record's prompt and split; a row with its own
    prompt keeps it (split `train`, record id = its prompt hash). Identical chosen and rejected are skipped."""
    known = rendered.select("task_id", "record_id", "split", "prompt", _hash=pl.Series(
        [prompt_hash(p) for p in rendered["prompt"].to_list()], dtype=pl.String))
    rows = annotations.with_columns(_hash=pl.Series(
        [prompt_hash(p) if p is not None else None for p in annotations["prompt"].to_list()], dtype=pl.String))
    by_id = rows.filter(pl.col("record_id").is_not_null()).drop("task_id", "prompt", "_hash").join(
        known.drop("_hash"), on="record_id", how="left")
    by_prompt = rows.filter(pl.col("record_id").is_null()).drop("record_id").join(
        known.select("_hash", _task="task_id", record_id="record_id", split="split"), on="_hash", how="left")
    own = [json.loads(p) if p.startswith("[") else [{"role": "user", "content": p}]
           for p in by_prompt["prompt"].to_list()]
    by_prompt = by_prompt.with_columns(
        task_id=pl.coalesce("_task", "task_id"), record_id=pl.coalesce("record_id", "_hash"),
        split=pl.col("split").fill_null("train"), prompt=pl.Series(own, dtype=MESSAGES)).drop("_task", "_hash")
    skipped = [_skips(by_id.filter(pl.col("prompt").is_null()), "annotation names no record of the build"),
               _skips(by_prompt.filter(pl.col("task_id").is_null()), "annotation prompt has no task_id")]
    rows = pl.concat([by_id.filter(pl.col("prompt").is_not_null()),
                      by_prompt.filter(pl.col("task_id").is_not_null()).select(by_id.columns)])
    same = pl.col("chosen").str.strip_chars() == pl.col("rejected").str.strip_chars()
    skipped.append(_skips(rows.filter(same), "chosen equals rejected"))
    rows = rows.filter(~same).unique(["task_id", "record_id", "chosen", "rejected"], keep="first", maintain_order=True)
    pairs = rows.select("task_id", "record_id", "split", "prompt",
                        chosen=_assistant(rows["chosen"].to_list()), rejected=_assistant(rows["rejected"].to_list()),
                        pair_source=pl.lit("annotations")).cast(PAIR_COLUMNS)
    return pairs, pl.concat(skipped)


def rendered_records(prepared: Prepared) -> pl.DataFrame:
    """The build's rendered records in `RENDERED_COLUMNS`: what predictions and annotations are matched against."""
    parts = [frame.select("task_id", "record_id", split="_split", prompt="_prompt", target="_target",
                          record=record_json(frame))
             for frame in prepared.frames.values() if not frame.is_empty()]
    schema = {"task_id": pl.String, "record_id": pl.String, "split": pl.String, "prompt": MESSAGES,
              "target": pl.String, "record": pl.String}
    return pl.concat(parts).cast(schema) if parts else pl.DataFrame(schema=schema)


def extra_pairs(
    mixture: str | Path,
    *,
    predictions: str | Path | None = None,
    annotations: str | Path | None = None,
    data_root: str | Path | None = None,
    max_per_task_records: int | None = None,
    threshold: float = 0.5,
    max_pairs_per_task: int | None = None,
    seed: int = 0,
    catalogue: Mapping[str, TaskSpec] | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The pairs `snsdata build --mixture dpo --predictions F [--annotations F]` adds (`build(extra_pairs=...)`).

    Prepares the mixture exactly as the build does (same data root, split seed, per-task read limit), so record
    ids, prompts and splits agree with the build's own rows; `catalogue` replaces the search path's specs (e.g. a
    build's frozen ones). Returns (pairs, skipped with reasons).
    """
    prepared = prepare(mixture, data_root=data_root, max_per_task=max_per_task_records,
                       catalogue=dict(catalogue) if catalogue is not None else None)
    rendered = rendered_records(prepared)
    pairs, skipped = [pl.DataFrame(schema=PAIR_COLUMNS)], [pl.DataFrame(schema=SKIP_SCHEMA)]
    if predictions is not None:
        made, skip = prediction_pairs(read_log(predictions), rendered, prepared.specs, threshold=threshold,
                                      max_per_task=max_pairs_per_task, seed=seed)
        pairs.append(made)
        skipped.append(skip)
    if annotations is not None:
        made, skip = annotation_pairs(read_annotations(annotations), rendered)
        pairs.append(made)
        skipped.append(skip)
    return pl.concat(pairs), pl.concat(skipped)
