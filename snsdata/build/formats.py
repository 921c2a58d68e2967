"""Rendered records into the columns of each output format (the build directory contract, docs/CONVENTIONS.md)."""

from __future__ import annotations

import ast
import json
from collections.abc import Callable, Mapping
from typing import Any

import polars as pl
import xxhash

from snsdata.render import RenderError, render_messages, render_target
from snsdata.spec.mixture import Format, origin_of
from snsdata.spec.models import TaskSpec
from snsdata.spec.templating import template_variables

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
MESSAGES = pl.List(MESSAGE)
COMMON = {"task_id": pl.String, "record_id": pl.String, "capability": pl.String, "origin": pl.String}
COLUMNS: dict[str, dict[str, pl.DataType]] = {
    "sft": {**COMMON, "messages": MESSAGES, "target_kind": pl.String, "weight": pl.Float64},
    "dpo": {**COMMON, "prompt": MESSAGES, "chosen": MESSAGES, "rejected": MESSAGES, "pair_source": pl.String},
    "rl": {**COMMON, "prompt": MESSAGES, "record": pl.String, "reward_type": pl.String, "has_rationale": pl.Boolean},
    "cpt": {**COMMON, "text": pl.String},
}
"""Every output column, by format, in the order they are written."""
PAIR_COLUMNS = {"task_id": pl.String, "record_id": pl.String, "split": pl.String, "prompt": MESSAGES,
                "chosen": MESSAGES, "rejected": MESSAGES, "pair_source": pl.String}
"""What extra DPO pairs (from predictions or annotations) bring: `split` is `train` or `eval`."""
KEYS = ("task_id", "record_id", "split")


def prompt_hash(messages: list[dict[str, Any]]) -> str:
    """Stable id of a rendered prompt: xxh3-64 of its compact, key-sorted JSON (role and content only).

    Soft-label files may key rows by it instead of record ids; `snsdata.loop` should import this one.
    """
    clean = [{"role": m.get("role"), "content": m.get("content")} for m in messages]
    text = json.dumps(clean, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return xxhash.xxh3_64_hexdigest(text.encode("utf-8"))


def messages_series(name: str, conversations: list[list[dict[str, str]]]) -> pl.Series:
    """A `MESSAGES` column from Python message lists, built through Arrow offsets (Polars' per-row struct
    construction costs more than rendering the templates)."""
    import pyarrow as pa

    offsets, roles, contents = [0], [], []
    for messages in conversations:
        for message in messages:
            roles.append(message["role"])
            contents.append(message["content"])
        offsets.append(len(roles))
    structs = pa.StructArray.from_arrays([pa.array(roles, pa.large_string()), pa.array(contents, pa.large_string())],
                                         names=["role", "content"])
    array = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), structs)
    return pl.Series(name, array).cast(MESSAGES)


def field_columns(frame: pl.DataFrame) -> list[str]:
    """The record's own fields: everything but the key columns and the build's working columns (`_...`)."""
    return [c for c in frame.columns if c not in KEYS and not c.startswith("_")]


def record_json(frame: pl.DataFrame) -> pl.Expr:
    """The record's fields as one JSON object string (what rewards score against)."""
    fields = field_columns(frame)
    return pl.struct(fields).struct.json_encode() if fields else pl.lit("{}")


def render_frame(spec: TaskSpec, frame: pl.DataFrame, pool: list[dict[str, Any]] | None, seed: int,
                 batch_rows: int = 4096) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add `_prompt` (messages) and `_target` (gold) to every record; rows that fail to render come back apart.

    Works in batches so that only one batch of rendered Python objects is alive at a time. Returns (rendered,
    failed) where `failed` carries `_reason`.
    """
    parts = []
    fields = ["record_id", *field_columns(frame)]
    for batch in frame.iter_slices(batch_rows):
        prompts, targets, errors = [], [], []
        for record in batch.select(fields).iter_rows(named=True):
            try:
                prompts.append(render_messages(spec, record, pool, seed))
                targets.append(render_target(spec, record))
                errors.append(None)
            except RenderError as exc:
                prompts.append([])
                targets.append("")
                errors.append(str(exc))
        parts.append(batch.with_columns(
            messages_series("_prompt", prompts),
            pl.Series("_target", targets, dtype=pl.String),
            pl.Series("_reason", errors, dtype=pl.String),
        ))
    if not parts:
        out = frame.with_columns(_prompt=pl.lit([], dtype=MESSAGES), _target=pl.lit(""),
                                 _reason=pl.lit(None, dtype=pl.String))
    else:
        out = pl.concat(parts)
    failed = out.filter(pl.col("_reason").is_not_null()).drop("_prompt", "_target")
    return out.filter(pl.col("_reason").is_null()).drop("_reason"), failed


def _candidates(spec: TaskSpec, record: dict[str, Any]) -> list[str]:
    """The answer options of a record: the spec's fixed labels, or the record's candidate field parsed."""
    if spec.output.candidates_field is None:
        return list(spec.output.labels or [])
    value = record.get(spec.output.candidates_field)
    if isinstance(value, str):
        for parse in (json.loads, ast.literal_eval):
            try:
                parsed = parse(value)
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                continue
            if isinstance(parsed, list):
                value = parsed
                break
        else:
            value = value.split(spec.output.separator)
    if not isinstance(value, list):
        return []
    return [str(c).strip() for c in value if str(c).strip()]


def label_fold(spec: TaskSpec) -> Callable[[str], str]:
    """How the task compares labels: trimmed, and casefolded unless `output.case_sensitive`."""
    return (lambda s: s.strip()) if spec.output.case_sensitive else (lambda s: s.strip().casefold())


def pair_field(spec: TaskSpec) -> str | None:
    """The one field the gold template reads, which a wrong candidate replaces; None when pairs can't be made.

    Only single-label outputs with a fixed label set or a candidate field qualify: for those, one wrong option
    is unambiguously a worse answer (RedOne's "pairs from the structure of the question").
    """
    if spec.output.format != "label" or not (spec.output.labels or spec.output.candidates_field):
        return None
    names = template_variables(spec.target.template) & spec.source.provided_fields()
    return next(iter(names)) if len(names) == 1 else None


def add_rejected(spec: TaskSpec, frame: pl.DataFrame, seed: int, confusion: Mapping[tuple[str, str], int] | None = None,
                 threshold: float = 0.5) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Add `_rejected` and `_pair_source`: the gold template rendered with the record's hardest wrong option in
    place of the answer (`snsdata.build.negatives`), checked with the task's reward: an option that scores at
    least `threshold` (an alias of the gold) is never a rejected answer.

    Returns (paired, unpaired); unpaired rows carry `_reason`.
    """
    from snsdata.build.negatives import LabelSimilarity, hardest
    from snsdata.rewards import get_scorer

    field = pair_field(spec)
    if field is None:
        reason = "task has no single-label candidates to build a wrong answer from"
        return (frame.clear().with_columns(_rejected=pl.lit(""), _pair_source=pl.lit("")),
                frame.with_columns(_reason=pl.lit(reason)))
    fold = label_fold(spec)
    records = frame.select("record_id", *field_columns(frame)).to_dicts()
    options = [_candidates(spec, record) for record in records]
    golds = [str(record.get(field, "")).strip() for record in records]
    spellings = {text for texts in options for text in texts} | set(golds)
    folded = {text: fold(text) for text in spellings}
    similarity = LabelSimilarity(sorted(spellings))
    levels = [fold(label) for label in spec.output.labels or []] if spec.output.ordered else None
    rejected: list[str | None] = []
    kinds: list[str | None] = []
    for record, gold, offered in zip(records, golds, options, strict=True):
        wrong = sorted({c for c in offered if folded[c] != folded[gold]})
        if not wrong:
            rejected.append(None)
            kinds.append(None)
            continue
        choice, kind = hardest(gold, wrong, levels=levels, confusion=confusion or {}, similarity=similarity,
                               fold=folded, key=(seed, spec.id, record["record_id"]))
        blank = {spec.target.rationale_field: None} if spec.target.rationale_field else {}
        rejected.append(render_target(spec, {**record, field: choice, **blank}))
        kinds.append(kind)
    checked = [i for i, text in enumerate(rejected) if text is not None]
    scores = get_scorer(spec.id, "fixed", {spec.id: spec})([rejected[i] for i in checked],
                                                           [records[i] for i in checked])
    reasons: list[str | None] = [None if text is not None else "no candidate differs from the gold answer"
                                 for text in rejected]
    for i, score in zip(checked, scores, strict=True):
        if score is None or score >= threshold:
            reasons[i] = (f"the wrong option scores {score} (at least {threshold}) with the task's reward"
                          if score is not None else "the task's reward does not apply to the record")
    out = frame.with_columns(pl.Series("_rejected", rejected, dtype=pl.String),
                             pl.Series("_pair_source", kinds, dtype=pl.String),
                             pl.Series("_reason", reasons, dtype=pl.String))
    unpaired = out.filter(pl.col("_reason").is_not_null()).drop("_rejected", "_pair_source")
    return out.filter(pl.col("_reason").is_null()).drop("_reason"), unpaired


def has_rationale(spec: TaskSpec, frame: pl.DataFrame) -> pl.Expr:
    """Rows whose record carries a non-empty rationale (`target.rationale_field`)."""
    name = spec.target.rationale_field
    if not name or name not in frame.columns:
        return pl.lit(False)
    return (pl.col(name).cast(pl.String).str.strip_chars().str.len_chars() > 0).fill_null(False)


def _assistant(text: pl.Expr) -> pl.Expr:
    return pl.concat_list(pl.struct(role=pl.lit("assistant"), content=text))


def format_rows(spec: TaskSpec, frame: pl.DataFrame, fmt: Format) -> pl.DataFrame:
    """One task's drawn rows in the output format's columns (`_copies` already expanded by the caller).

    Working columns read: `_prompt`, `_target`; SFT also `_completion`, `_target_kind`, `_weight`; DPO `_rejected`;
    `_pair_source`; CPT `_doc`.
    """
    common = [pl.col("task_id"), pl.col("record_id"), pl.lit(spec.capability).alias("capability"),
              pl.lit(origin_of(spec)).alias("origin")]
    if fmt == "sft":
        answer = pl.coalesce("_completion", "_target")  # a soft label where there is one, else the gold
        columns = [pl.col("_prompt").list.concat(_assistant(answer)).alias("messages"),
                   pl.col("_target_kind").alias("target_kind"), pl.col("_weight").alias("weight")]
    elif fmt == "dpo":
        columns = [pl.col("_prompt").alias("prompt"), _assistant(pl.col("_target")).alias("chosen"),
                   _assistant(pl.col("_rejected")).alias("rejected"), pl.col("_pair_source").alias("pair_source")]
    elif fmt == "rl":
        columns = [pl.col("_prompt").alias("prompt"), record_json(frame).alias("record"),
                   pl.lit(spec.reward.type).alias("reward_type"), has_rationale(spec, frame).alias("has_rationale")]
    else:
        columns = [pl.col("_doc").alias("text")]
    return frame.select(*common, *columns).cast(COLUMNS[fmt])


def cpt_text(frame: pl.DataFrame, text_fields: list[str] | None) -> pl.Expr:
    """A record as a pretraining document: the named fields joined by blank lines, else its user turn + gold."""
    if text_fields:
        present = [f for f in text_fields if f in frame.columns]
        parts = [pl.col(f).cast(pl.String) for f in present]
        return pl.concat_str(parts, separator="\n\n", ignore_nulls=True) if parts else pl.lit("")
    user = pl.col("_prompt").list.eval(
        pl.element().filter(pl.element().struct.field("role") == "user").struct.field("content")).list.last()
    return pl.concat_str([user, pl.col("_target")], separator="\n\n", ignore_nulls=True)
