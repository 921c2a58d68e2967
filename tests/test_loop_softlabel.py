"""Soft labels: a tiny random model answers prompts, the file resumes after an interruption, never twice."""

from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
from tiny_model import SPECIAL_TOKENS, make_tiny_model

from snsdata.build.formats import MESSAGES, prompt_hash
from snsdata.loop.softlabel import (
    GenerationSettings,
    TransformersGenerator,
    generate_soft_labels,
    provenance_of,
    soft_label_rows,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 2-layer Qwen2 and a byte-level BPE trained here, with a ChatML template: no hub access."""
    pytest.importorskip("transformers")
    path = tmp_path_factory.mktemp("tiny-model")
    model, tokenizer = make_tiny_model(
        path, [f"What is {a} plus {b}? It is {a + b}." for a in range(20) for b in range(10)])
    # A random model almost never says <|im_end|>; letting half the word tokens end the answer (as models with
    # several end tokens do) gives short, finished, non-blank answers instead of ones cut at max_new_tokens.
    words = [i for i in range(len(SPECIAL_TOKENS), len(tokenizer)) if tokenizer.decode([i]).strip().isalnum()]
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, *words[::2]]
    model.save_pretrained(path)
    return path


def _prompts(n: int, shared: int = 0) -> pl.DataFrame:
    """n records; the last `shared` of them repeat the first prompt (one generation, several rows)."""
    messages = [[{"role": "user", "content": f"What is {i} plus {i % 3}?"}] for i in range(n - shared)]
    messages += [messages[0]] * shared
    return pl.DataFrame({
        "task_id": ["general_math"] * n,
        "record_id": [f"r{i}" for i in range(n)],
        "prompt_hash": [prompt_hash(m) for m in messages],
        "prompt": pl.Series(messages, dtype=MESSAGES),
    })


def test_generates_resumes_and_never_twice(tiny_model: Path, tmp_path: Path) -> None:
    settings = GenerationSettings(max_new_tokens=6, batch_size=2, seed=3)
    generator = TransformersGenerator(tiny_model, settings)
    provenance = provenance_of(tiny_model, settings, generator.engine, "stage2")
    prompts = _prompts(7, shared=1)  # 6 distinct prompts: 3 batches
    out = tmp_path / "soft.jsonl"

    first = generate_soft_labels(prompts, out, generator, provenance, settings, stop_after_batches=1)
    # The shortest prompt (the shared one) is in the first batch: 2 prompts, 3 records.
    assert (first.already_done, first.generated) == (0, 3)
    # A kill in the middle of the next write leaves a torn line; the resume cuts it and carries on.
    with out.open("a", encoding="utf-8") as handle:
        handle.write('{"record_id": "r9", "prompt_h')
    assert len(soft_label_rows(out)) == 3

    calls: list[int] = []

    class Counting:
        engine = generator.engine

        def generate(self, batch, seed):
            calls.append(len(batch))
            return generator.generate(batch, seed)

    second = generate_soft_labels(prompts, out, Counting(), provenance, settings)
    rows = soft_label_rows(out)
    assert second.already_done == 3 and second.generated == 4
    assert sum(calls) == 4  # only the 4 prompts not yet answered were generated
    assert sorted(r["record_id"] for r in rows) == [f"r{i}" for i in range(7)]
    assert len({r["record_id"] for r in rows}) == len(rows)
    shared = {r["record_id"]: r["completion"] for r in rows}
    assert shared["r6"] == shared["r0"]
    for row in rows:
        assert row["model"] == str(tiny_model) and row["generation"]["max_new_tokens"] == 6
        assert row["prompt_hash"] == prompts.filter(pl.col("record_id") == row["record_id"])["prompt_hash"][0]
        assert isinstance(row["truncated"], bool)
    assert out.read_text(encoding="utf-8").endswith("\n")
    assert all(json.loads(line) for line in out.read_text(encoding="utf-8").splitlines())

    third = generate_soft_labels(prompts, out, Counting(), provenance, settings)
    assert third.generated == 0 and sum(calls) == 4


def test_refuses_to_mix_models_in_one_file(tiny_model: Path, tmp_path: Path) -> None:
    settings = GenerationSettings(max_new_tokens=4, batch_size=4)
    generator = TransformersGenerator(tiny_model, settings)
    out = tmp_path / "soft.jsonl"
    generate_soft_labels(_prompts(2), out, generator, provenance_of(tiny_model, settings, "transformers", "stage2"),
                         settings)
    hotter = GenerationSettings(max_new_tokens=4, batch_size=4, temperature=0.7)
    with pytest.raises(ValueError, match="different settings"):
        generate_soft_labels(_prompts(3), out, generator, provenance_of(tiny_model, hotter, "transformers",
                                                                        "stage2"), hotter)


def test_stage2_trains_general_rows_on_the_soft_labels(tiny_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from snsdata.cli import app

    root = tmp_path / "data"
    root.mkdir()
    (root / "sns_bench_sample").symlink_to(shared_data / "sns_bench_sample")
    out = tmp_path / "soft_labels.jsonl"
    args = ["soft-label", "--model", str(tiny_model), "--mixture", "stage2", "--data-root", str(root),
            "--max-per-task", "4", "--batch-size", "8", "--max-new-tokens", "12", "--temperature", "1.0",
            "--out", str(out)]
    interrupted = CliRunner().invoke(app, [*args, "--max-batches", "2"])
    assert interrupted.exit_code == 0, interrupted.output
    assert "0 already there" in interrupted.output and len(soft_label_rows(out)) >= 2 * 8
    first = {r["record_id"] for r in soft_label_rows(out)}
    finished = CliRunner().invoke(app, args)
    assert finished.exit_code == 0, finished.output
    assert f"{len(first)} already there, 0 left" in finished.output
    labels = soft_label_rows(out)
    assert len({r["record_id"] for r in labels}) == len(labels) and first < {r["record_id"] for r in labels}

    stage2 = tmp_path / "stage2"
    built = CliRunner().invoke(app, ["build", "--mixture", "stage2", "--data-root", str(root), "--max-per-task", "4",
                                     "--soft-labels", str(out), "--out", str(stage2)])
    assert built.exit_code == 0, built.output
    train = pl.read_parquet(stage2 / "data" / "train.parquet")
    general = train.filter(pl.col("origin") == "general")
    assert not general.is_empty() and set(general["target_kind"]) == {"soft_label"}
    by_record = {r["record_id"]: r["completion"] for r in labels}
    for row in general.to_dicts():
        assert row["messages"][-1] == {"role": "assistant", "content": by_record[row["record_id"]]}
    assert set(train.filter(pl.col("origin") == "sns")["target_kind"]) <= {"gold", "failure_sample"}
    manifest = json.loads((stage2 / "manifest.json").read_text(encoding="utf-8"))
    soft = manifest["inputs"]["soft_labels"]
    assert soft["path"] == str(out) and soft["provenance"][0]["model"] == str(tiny_model)
    assert soft["provenance"][0]["generation"]["max_new_tokens"] == 12
    assert not any("soft" in line for line in manifest["fallbacks"])
