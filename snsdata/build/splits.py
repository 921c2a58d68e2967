"""Train/eval splits that never leak: records sharing content form one group, and a group goes to one split.

Two records are linked when they share a normalised string value long enough to be content (a post, a sentence;
not a label or a topic name), across tasks too: RedTrans' two directions share their (zh, en) pair, and COLD's
task variants share their posts. Linked records form connected components (label propagation in Polars), and
each component is assigned whole:

1. a component holding a record that must evaluate (any record of an eval-only task such as a benchmark, or of
   a task's own evaluation split `test`/`val`/`dev` where it also has a train split) is evaluation; its records
   that must train (such tasks' train splits, `source.train` files, `use: train` tasks) are leaks and go to the
   rejects;
2. else a component holding a record of a task's train split is train;
3. else (tasks with a single split, or with no train split) a seeded hash of the component decides.

Values repeated in several records of one source split (a shared candidate list) are boilerplate, not content: they link
nothing. A mixture's `splits.group_by` names the fields that key a task instead (their values sorted, so the pair
(zh, en) is one key whatever the direction).
"""

from __future__ import annotations

import polars as pl

from snsdata.build.keys import hash_u64
from snsdata.spec.mixture import GroupBy, Splits
from snsdata.spec.models import TRAIN_SOURCE_SPLIT, TaskSpec

TRAIN, EVAL, LEAK = "train", "eval", "leak"
LINK_MIN_CHARS = 16
"""Shorter values (labels, topics, `comment`) do not link records."""
LINK_MIN_DISTINCT = 0.9
"""Only fields whose values are (nearly) all different within a task hold content (posts, sentences); a field
that repeats (constraint sets, candidate lists, templated answers) could chain unrelated records through a
chance coincidence between its train and test values."""
LINK_MAX_PER_SPLIT = 1
"""A value in more records of one source split of a task than this is boilerplate (a candidate list, a constraint
set), not content: letting it link would chain unrelated records into one group. The same value in a task's train
and test files still links them (that is the leak to catch); duplicates inside one file are the dedup step's
business (and identical records share their own key anyway)."""
_U64 = 2.0**64


def _normalised(expr: pl.Expr) -> pl.Expr:
    return (expr.str.normalize("NFKC").str.to_lowercase().str.replace_all(r"\s+", " ").str.strip_chars())


def _as_text(frame: pl.DataFrame, field: str) -> pl.Expr:
    dtype = frame.schema[field]
    if dtype == pl.String:
        return pl.col(field)
    if isinstance(dtype, (pl.List, pl.Struct, pl.Array)):
        return pl.struct(pl.col(field).alias("v")).struct.json_encode()
    return pl.col(field).cast(pl.String)


def fixed_roles(spec: TaskSpec, policy: Splits) -> tuple[pl.Expr, pl.Expr]:
    """(is fixed eval, is fixed train) per record of a task; a record that is neither goes by its group.

    Records of `source.train` always train. An eval-only task's own records always evaluate (a benchmark is
    never trained on), a `use: train` task's always train; a task whose source has a train split and named eval
    splits keeps them; other tasks (one split, or no train split) are split by the seeded hash of their groups.
    """
    own = pl.col("split") != TRAIN_SOURCE_SPLIT if spec.source.train is not None else pl.lit(True)
    if spec.eval_only:
        return own, ~own
    if spec.use == "train":
        return pl.lit(False), pl.lit(True)
    names = list(spec.source.splits)
    if len(names) > 1 and any(name not in policy.eval_splits for name in names):
        return own & pl.col("split").is_in(policy.eval_splits), ~own | ~pl.col("split").is_in(policy.eval_splits)
    return pl.lit(False), ~own


def content_fields(frame: pl.DataFrame) -> list[str]:
    """String fields of a task whose values are (nearly) all different: its posts and sentences, not its labels,
    candidate lists or instructions (see LINK_MIN_DISTINCT)."""
    fields = [f for f in frame.columns if not f.startswith("_") and f not in ("task_id", "record_id", "split")
              and frame.schema[f] == pl.String]
    if not fields:
        return []
    distinct = frame.select(pl.col(f).n_unique() / pl.col(f).count().clip(1) for f in fields).row(0)
    return [f for f, share in zip(fields, distinct, strict=True) if share >= LINK_MIN_DISTINCT]


def _rule(spec: TaskSpec, policy: Splits) -> GroupBy | None:
    return next((rule for rule in policy.group_by if rule.select.matches(spec)), None)


def _link_values(spec: TaskSpec, frame: pl.DataFrame, policy: Splits) -> pl.DataFrame:
    """Rows (row, value) linking this task's records by content."""
    rule = _rule(spec, policy)
    if rule is not None:
        parts = [_normalised(_as_text(frame, f)).fill_null("") for f in rule.fields]
        keyed = frame.select("_row", value=pl.concat_list(parts).list.sort().list.join("\x1f"))
        return keyed.filter(pl.col("value").str.len_chars() > 0)
    fields = content_fields(frame)
    if not fields:
        return pl.DataFrame(schema={"_row": pl.UInt32, "value": pl.String})
    long = frame.select("_row", "split", *[_normalised(pl.col(f)).alias(f) for f in fields]).unpivot(
        index=["_row", "split"], value_name="value").drop("variable")
    long = long.filter(pl.col("value").str.len_chars() >= LINK_MIN_CHARS).unique(["_row", "value"])
    return long.filter(pl.len().over("split", "value") <= LINK_MAX_PER_SPLIT).select("_row", "value")


def _components(rows: pl.DataFrame, links: pl.DataFrame) -> pl.DataFrame:
    """Connected components of records through shared values, labelled by the smallest value hash in each."""
    links = links.with_columns(value_key=hash_u64(links["value"])).select("_row", "value_key")
    labels = links.group_by("_row").agg(label=pl.col("value_key").min())
    while True:
        value_label = links.join(labels, on="_row").group_by("value_key").agg(vlabel=pl.col("label").min())
        updated = links.join(value_label, on="value_key").group_by("_row").agg(label=pl.col("vlabel").min())
        changed = updated.join(labels, on="_row", suffix="_old").filter(pl.col("label") != pl.col("label_old"))
        labels = updated
        if changed.is_empty():
            break
    return rows.join(labels, on="_row", how="left").with_columns(
        group=pl.coalesce("label", "_own_key")).drop("label")


def assign_splits(frames: dict[str, pl.DataFrame], specs: dict[str, TaskSpec], policy: Splits) -> pl.DataFrame:
    """Every record of every task (read together, so groups span tasks) as train, eval or leak.

    Returns task_id, record_id, split, group (component key) and leak_of (an eval record of a leak's group).
    """
    rows, links, offset = [], [], 0
    for task_id in sorted(frames):
        frame = frames[task_id]
        if frame.is_empty():
            continue
        spec = specs[task_id]
        frame = frame.with_row_index("_row", offset=offset)
        offset += frame.height
        fixed_eval, fixed_train = fixed_roles(spec, policy)
        fields = [c for c in frame.columns if c not in ("_row", "task_id", "record_id", "split")]
        own = frame.select(pl.struct(fields).struct.json_encode()).to_series() if fields else frame["record_id"]
        rows.append(frame.select("_row", "task_id", "record_id", fixed_eval=fixed_eval, fixed_train=fixed_train)
                    .with_columns(_own_key=hash_u64(own, f"{task_id}\x1f")))
        links.append(_link_values(spec, frame, policy))
    if not rows:
        empty = {"task_id": pl.String, "record_id": pl.String, "split": pl.String, "group": pl.UInt64,
                 "leak_of": pl.String}
        return pl.DataFrame(schema=empty)
    table = _components(pl.concat(rows), pl.concat(links))
    groups = table.group_by("group").agg(
        any_eval=pl.col("fixed_eval").any(),
        any_train=pl.col("fixed_train").any(),
        eval_witness=pl.col("record_id").filter(pl.col("fixed_eval")).min(),
    )
    draws = hash_u64(groups["group"].cast(pl.String), f"{policy.seed}\x1f").cast(pl.Float64) / _U64
    groups = groups.with_columns(group_eval=pl.when(pl.col("any_eval")).then(True)
                                 .when(pl.col("any_train")).then(False)
                                 .otherwise(draws < policy.eval_share))
    table = table.join(groups, on="group")
    split = (pl.when(pl.col("fixed_train") & pl.col("group_eval")).then(pl.lit(LEAK))
             .when(pl.col("group_eval")).then(pl.lit(EVAL)).otherwise(pl.lit(TRAIN)))
    return table.select(
        "task_id", "record_id", split=split, group="group",
        leak_of=pl.when(pl.col("fixed_train") & pl.col("group_eval")).then(pl.col("eval_witness")),
    ).sort("task_id", "record_id")

