"""Benchmarks stay benchmarks: eval-only tasks, a user's own training files, near-copy decontamination, the
standalone `snsdata decontaminate`, and rows not drawn by sampling counted apart from rejects."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from snsdata.build import build
from snsdata.cli import app
from snsdata.pipeline.base import REASON
from snsdata.pipeline.decontam import decontaminate
from snsdata.spec import TaskSpec, load_catalogue
from snsdata.spec.mixture import Mixture

POSTS = [f"Post number {i}: my honest review of the {word} cafe near the old station, with photos and prices"
         for i, word in enumerate(["blue", "green", "red", "yellow", "purple", "orange", "silver", "golden"])]
OWN = [f"My own training note {i} about weekend hiking trails, packing lists and where to park the car"
       for i in range(6)]


def _spec(**changes: object) -> TaskSpec:
    data = {
        "id": "toy_bench", "capability": "content_understanding", "languages": ["en"],
        "description": "A toy benchmark", "tags": ["toy"],
        "source": {"reader": "jsonl", "splits": {"test": "toy/test.jsonl"}, "fields": ["text", "label"]},
        "prompt": {"user": "{{ text }}"}, "target": {"template": "{{ label }}"},
        "output": {"format": "label", "labels": ["a", "b"]}, "reward": {"type": "exact_match"},
    }
    for key, value in changes.items():
        if key == "source":
            data["source"] = {**data["source"], **value}  # type: ignore[dict-item]
        else:
            data[key] = value
    return TaskSpec.model_validate(data)


def _write(path: Path, texts: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps({"text": t, "label": "ab"[i % 2]}) + "\n" for i, t in enumerate(texts)),
                    encoding="utf-8")


def _mixture(**changes: object) -> Mixture:
    return Mixture.model_validate({"name": "m", "description": "d", "format": "rl",
                                   "components": [{"name": "all", "select": {}}], **changes})


def test_every_benchmark_reading_spec_is_eval_only() -> None:
    """SNS-Bench, SNS-TransBench and General-Bench sets (and sets built from them) never train: one tag."""
    catalogue = load_catalogue()
    for spec in catalogue.values():
        paths = json.dumps(spec.source.model_dump(mode="json").get("splits"))
        reads_benchmark = "sns_bench_sample/" in paths or "redtrans_sample/" in paths or \
            getattr(spec.source, "generator", None) == "humaneval"
        if reads_benchmark:
            assert "benchmark" in spec.tags and spec.eval_only, spec.id
        assert spec.eval_only == ("benchmark" in spec.tags or spec.use == "eval"), spec.id
    general_bench = {"math_gsm8k_en", "math_competition", "knowledge_mcq_zh", "gen_code_humaneval",
                     "math_gsm_symbolic_en"}
    assert all(catalogue[t].eval_only for t in general_bench)
    assert not catalogue["tweet_emotion"].eval_only and not catalogue["cold_topic_zh"].eval_only


def test_a_benchmark_cannot_be_declared_trainable() -> None:
    with pytest.raises(ValidationError, match="eval-only"):
        _spec(tags=["benchmark"], use="train")
    with pytest.raises(ValidationError, match="`train` files are read as split 'train'"):
        _spec(source={"splits": {"train": "a.jsonl"}, "train": "b.jsonl"})


def test_eval_only_task_evaluates_all_its_records_and_trains_on_its_own_files(tmp_path: Path) -> None:
    """`use: eval`: every benchmark record in the eval split (no hold-out share); `source.train` records train,
    except one that copies a benchmark item (a leak, rejected)."""
    root = tmp_path / "data"
    _write(root / "toy/test.jsonl", POSTS)
    _write(root / "toy/own.jsonl", [*OWN, POSTS[3]])
    spec = _spec(use="eval", source={"train": "toy/own.jsonl"})
    result = build(_mixture(), data_root=root, out=tmp_path / "out", catalogue={spec.id: spec})
    evaluated = {json.loads(r)["text"] for r in result.eval["record"]}
    trained = {json.loads(r)["text"] for r in result.train["record"]}
    assert evaluated == set(POSTS)
    assert trained == set(OWN)
    leak = result.rejects.filter(pl.col("step") == "split")
    assert leak.height == 1 and json.loads(leak["row"][0])["text"] == POSTS[3]
    assert [f["path"] for f in result.manifest["inputs"]["tasks"]["toy_bench"]] == ["toy/own.jsonl", "toy/test.jsonl"]

    both = _spec()  # the same records under `use: both`: a seeded share trains
    result = build(_mixture(splits={"eval_share": 0.25}), data_root=root, out=tmp_path / "both",
                   catalogue={both.id: both})
    assert result.train.height and result.eval.height


def test_an_eval_only_task_without_its_benchmark_trains_on_its_own_files(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root / "toy/own.jsonl", OWN)
    spec = _spec(tags=["benchmark"], source={"train": "toy/own.jsonl"})
    result = build(_mixture(), data_root=root, out=tmp_path / "out", catalogue={spec.id: spec})
    assert {json.loads(r)["text"] for r in result.train["record"]} == set(OWN) and result.eval.is_empty()


def test_a_near_copy_of_an_eval_item_is_caught_where_ngrams_miss_it() -> None:
    item = ("Went to the night market on Friday with my sister, we tried the grilled squid, the mango sticky rice "
            "and the bubble tea, and the whole evening cost us less than twenty dollars in total")
    edited = item.replace("tried", "tryed").replace("bubble", "buble").replace("dollars", "dolars")  # J 0.87
    other = "Went to the gym on Friday with my sister, then we cooked dinner at home and watched an old film"
    eval_texts = pl.DataFrame({"id": ["e1"], "text": [item]})
    train = pl.LazyFrame({"record_id": ["near", "other"], "text": [edited, other]})
    ngram_only = decontaminate(train, eval_texts, near_threshold=None)
    assert ngram_only.result.kept.collect()["record_id"].to_list() == ["near", "other"]  # edits every few words
    found = decontaminate(train, eval_texts)
    kept, rejected = pl.collect_all([found.result.kept, found.result.rejected])
    assert kept["record_id"].to_list() == ["other"]
    assert rejected[REASON].to_list() == ["near copy of eval item e1 (char 5-gram Jaccard >= 0.8)"]
    assert rejected["__duplicate_of"].to_list() == ["e1"]


def test_one_side_of_a_translation_pair_is_caught_on_its_own() -> None:
    """An item of several lines (RedTrans: zh and en) is compared line by line too."""
    zh = "周末和几个老朋友一起去城郊爬山，山顶的风景真的太美了，云海和日出都看到了，" \
        "拍了好多照片，下次还要再约大家一起来"
    en = "Went hiking with friends at the weekend and the view from the top was so beautiful, will come again"
    eval_texts = pl.DataFrame({"id": ["pair"], "text": [f"{zh}\n{en}"]})
    train = pl.LazyFrame({"record_id": ["en", "zh"], "text": [en.replace("so beautiful", "so, so beautiful"),
                                                              zh.replace("太美", "很美")]})
    found = decontaminate(train, eval_texts, word_ngram=50, cjk_ngram=50)  # n-grams too long to fire
    assert found.result.kept.collect().is_empty()


def test_decontaminate_command_writes_clean_rows_and_removed_rows_with_reasons(tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    eval_file = tmp_path / "mine.jsonl"
    eval_file.write_text(json.dumps({"id": "q1", "text": POSTS[0]}) + "\n", encoding="utf-8")
    corpus.write_text("".join(json.dumps({"text": t, "n": i}) + "\n" for i, t in enumerate(
        [OWN[0], POSTS[0].replace("honest", "frank"), OWN[1]])), encoding="utf-8")
    result = CliRunner().invoke(app, ["decontaminate", str(corpus), "--against", str(eval_file), "--no-catalogue",
                                      "--out", str(tmp_path / "clean.jsonl")])
    assert result.exit_code == 0, result.output
    clean = pl.read_ndjson(tmp_path / "clean.jsonl")
    removed = pl.read_ndjson(tmp_path / "corpus.removed.jsonl")
    assert clean["n"].to_list() == [0, 2]
    assert removed["row"].to_list() == [1] and removed["eval_ids"].to_list() == [["mine.jsonl:q1"]]
    assert removed["reason"][0].startswith("overlaps eval item mine.jsonl:q1")
    assert "mine.jsonl" in result.output and "removed 1" in result.output

    shipped = CliRunner().invoke(app, ["decontaminate", str(corpus), "--out", str(tmp_path / "all.jsonl"),
                                       "--removed", str(tmp_path / "all.removed.jsonl")])
    assert shipped.exit_code == 0, shipped.output  # against the catalogue's eval items on the shipped samples
    assert pl.read_ndjson(tmp_path / "all.jsonl").height == 3
    nothing = CliRunner().invoke(app, ["decontaminate", str(corpus), "--no-catalogue"])
    assert nothing.exit_code == 1 and "nothing to check against" in nothing.output


def test_rows_sampling_did_not_draw_are_not_drawn_not_rejected(tmp_path: Path) -> None:
    root = tmp_path / "data"
    _write(root / "toy/test.jsonl", POSTS)
    spec = _spec()
    mixture = _mixture(total=2, splits={"eval_share": 0.25, "eval_max_per_task": 1},
                       components=[{"name": "all", "select": {}, "share": 1.0}])
    result = build(mixture, data_root=root, out=tmp_path / "out", catalogue={spec.id: spec})
    counts = result.manifest["tasks"]["toy_bench"]["counts"]
    undrawn = pl.read_parquet(tmp_path / "out" / "not_drawn.parquet")
    totals = result.manifest["totals"]
    assert totals["rows_not_drawn"] == counts["not_drawn"] == undrawn.height == 8 - 2 - 1
    assert set(undrawn["split"]) == {"train", "eval"} and result.rejects.is_empty()
    assert totals["rows_in"] == totals["rows_out"] + totals["rows_not_drawn"] + totals["rows_rejected"]
    summary = CliRunner().invoke(app, ["build", "--mixture", "stage1", "--max-per-task", "20", "--out",
                                       str(tmp_path / "stage1")])
    assert summary.exit_code == 0 and " not drawn, " in summary.output


def test_extra_dpo_pairs_holding_a_benchmark_item_are_dropped(tmp_path: Path) -> None:
    """An annotation may bring its own prompt: a train pair copying HumanEval text is decontaminated too."""
    from snsdata.readers import records

    catalogue = load_catalogue()
    problem = records(catalogue["gen_code_humaneval"])[0]["prompt"]
    message = pl.List(pl.Struct({"role": pl.String, "content": pl.String}))
    pairs = pl.DataFrame({
        "task_id": ["cold_offensive_zh", "cold_offensive_zh"], "record_id": ["own1", "own2"],
        "split": ["train", "train"],
        "prompt": [[{"role": "user", "content": f"Please finish:\n{problem}"}],
                   [{"role": "user", "content": "Is this post offensive? 今天天气真好，我们去公园散步吧"}]],
        "chosen": [[{"role": "assistant", "content": "ok"}], [{"role": "assistant", "content": "否"}]],
        "rejected": [[{"role": "assistant", "content": "no"}], [{"role": "assistant", "content": "是"}]],
        "pair_source": ["annotations", "annotations"],
    }, schema_overrides={"prompt": message, "chosen": message, "rejected": message})
    result = build("dpo", out=tmp_path / "dpo", extra_pairs=pairs, catalogue=catalogue)
    extra = result.train.filter(pl.col("pair_source") == "annotations")
    assert extra["record_id"].to_list() == ["own2"]
    dropped = result.rejects.filter(pl.col("task_id") == "pairs:cold_offensive_zh")
    assert dropped["step"].to_list() == ["decontaminate"] and dropped["record_id"].to_list() == ["own1"]
    assert dropped["duplicate_of"][0].startswith("gen_code_humaneval/")
    assert result.manifest["decontamination"]["by_benchmark"]["humaneval"]["removed_from"] == {
        "pairs:cold_offensive_zh": 1}
