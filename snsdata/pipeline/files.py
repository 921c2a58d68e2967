"""The standalone file commands as functions: filter a file, dedup a file, train a quality model.

Each keeps every column of the kept rows in their input order and writes each dropped row, with its reason,
to an optional rejects file (Parquet or JSONL by suffix).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from snsdata.pipeline.config import PipelineConfig, load_pipeline_config, parse_steps
from snsdata.pipeline.dedup import NearDedup
from snsdata.pipeline.fasttext_filters import train_quality
from snsdata.pipeline.io import InputError, explain, is_parquet, scan_input
from snsdata.pipeline.runner import Progress, StepCount, run_pipeline_to_files

# `snsdata filter` without --config: the rule filters that are safe for any social-media corpus.
DEFAULT_FILTERS: list[dict[str, object]] = [
    {"step": "length", "min_chars": 5},
    {"step": "html"},
    {"step": "repetition"},
    {"step": "url_share"},
    {"step": "symbol_share"},
    {"step": "char_flood"},
    {"step": "tags_only"},
]


@dataclass(frozen=True)
class FileRun:
    """What a file command did: per-step counts and how many kept rows have null text."""

    counts: list[StepCount]
    null_text_kept: int


def _run(input_path: Path, out: Path, config: PipelineConfig, rejects: Path | None,
         progress: Progress | None, batch_size: int) -> FileRun:
    frame = scan_input(input_path, config.text_column)
    try:
        counts = run_pipeline_to_files(
            frame, config, out, rejects, batch_size=batch_size, source=str(input_path),
            rescannable=is_parquet(input_path), progress=progress,
        )
    except pl.exceptions.PolarsError as exc:
        raise explain(input_path, exc) from None
    kept = pl.scan_parquet(out) if is_parquet(out) else pl.scan_ndjson(out)
    nulls = kept.select(pl.col(config.text_column).is_null().sum()).collect().item() if counts[-1].kept else 0
    return FileRun(counts, int(nulls or 0))


def filter_file(input_path: str | Path, out: str | Path, *, config: str | Path | None = None,
                rejects: str | Path | None = None, text_column: str | None = None, batch_size: int = 100_000,
                progress: Progress | None = None) -> FileRun:
    """Run a filter pipeline (YAML `config`, or DEFAULT_FILTERS) over a file."""
    pipeline = load_pipeline_config(config) if config else PipelineConfig(steps=parse_steps(DEFAULT_FILTERS))
    if text_column:
        pipeline = pipeline.model_copy(update={"text_column": text_column})
    return _run(Path(input_path), Path(out), pipeline, Path(rejects) if rejects else None, progress, batch_size)


def dedup_file(input_path: str | Path, out: str | Path, *, text_column: str = "text", threshold: float = 0.8,
               ngram: int = 5, word_ngrams: bool = False, rejects: str | Path | None = None, seed: int = 0,
               num_perm: int = 128, workers: int = 2, progress: Progress | None = None) -> FileRun:
    """Remove exact and near duplicates from a file; rows with null or empty text are kept (nothing to compare)."""
    step = NearDedup(threshold=threshold, ngram=ngram, word_ngrams=word_ngrams, seed=seed, num_perm=num_perm,
                     workers=workers)
    pipeline = PipelineConfig(text_column=text_column, steps=[step])
    return _run(Path(input_path), Path(out), pipeline, Path(rejects) if rejects else None, progress, 100_000)


def _texts(path: Path, text_column: str) -> list[str]:
    frame = scan_input(path, text_column)
    try:
        texts = frame.select(pl.col(text_column)).collect().get_column(text_column)
    except pl.exceptions.PolarsError as exc:
        raise explain(path, exc) from None
    return texts.drop_nulls().filter(texts.drop_nulls().str.strip_chars() != "").to_list()


def train_quality_file(positive: str | Path, negative: str | Path, out: str | Path, *, text_column: str = "text",
                       seed: int = 0) -> tuple[int, int]:
    """Train the fastText quality classifier from two files of texts; returns (positives, negatives) used."""
    pos = _texts(Path(positive), text_column)
    neg = _texts(Path(negative), text_column)
    for path, texts in ((positive, pos), (negative, neg)):
        if not texts:
            raise InputError(f"{path}: no non-empty texts in column {text_column!r}")
    train_quality(pos, neg, out, seed=seed)
    return len(pos), len(neg)
