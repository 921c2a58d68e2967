"""Every shipped mixture on the real data beside the checkout (../shared/data), read capped to stay quick."""

from __future__ import annotations

import json

import datasets
import polars as pl
import pytest
from eval_text import BENCHMARK_WINDOW, HELD_OUT_WINDOW, eval_records, item_texts, leaks, row_texts

from snsdata.build import build
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import list_mixtures, load_mixture

CAP = 40  # records per task: every task still takes part, the build stays a few seconds


@pytest.fixture(scope="module")
def shared_builds(shared_data, tmp_path_factory):
    catalogue = load_catalogue()
    root = tmp_path_factory.mktemp("shared")
    return catalogue, {name: build(name, data_root=shared_data, out=root / name, max_per_task=CAP,
                                   catalogue=catalogue) for name in list_mixtures()}


def test_every_mixture_builds_on_the_shared_data(shared_builds) -> None:
    _, builds = shared_builds
    for name, result in builds.items():
        totals = result.manifest["totals"]
        assert totals["balanced"], name
        assert totals["rows_in"] == totals["rows_out"] + totals["rows_rejected"] + totals["rows_not_drawn"] \
            + totals["rows_excluded"]
        assert result.train.height and result.eval.height, name
        loaded = datasets.load_from_disk(str(result.out / "dataset"))
        assert loaded["train"].num_rows == result.train.height
    tasks = set(builds["sft_step1"].train["task_id"])
    assert {"tweet_emotion", "weibo_ner_zh", "cold_topic_zh"} <= tasks
    # benchmark tasks evaluate only (SNS-Bench, SNS-TransBench, HumanEval): in eval, never in train
    assert not {"note_chlw", "redtrans_zh2en", "gen_code_humaneval"} & tasks
    assert {"note_chlw", "redtrans_zh2en", "gen_code_humaneval"} <= set(builds["sft_step1"].eval["task_id"])


def test_stage2_defaults_to_the_papers_weak_tasks(shared_builds) -> None:
    _, builds = shared_builds
    result = builds["stage2"]
    weak = set(result.manifest["targeted"]["weak_tasks"])
    assert {"note_chlw", "note_ner", "note_querygen", "note_mrc_simple"} <= weak
    sns = set(result.train.filter(pl.col("origin") == "sns")["task_id"])
    assert sns and sns <= weak


def test_redtrans_and_chlw_rules_hold_on_real_data(shared_builds) -> None:
    _, builds = shared_builds
    result = builds["stage1"]
    sides: dict[tuple[str, str], set[str]] = {}
    for split, frame in (("train", result.train), ("eval", result.eval)):
        for value in frame.filter(pl.col("task_id").str.starts_with("redtrans"))["record"]:
            record = json.loads(value)
            sides.setdefault((record["zh"], record["en"]), set()).add(split)
    assert sides and all(len(s) == 1 for s in sides.values())
    # One rule for every task now (it named CHLW with `empty_target` before): the gold's class as its reward reads it.
    assert result.manifest["balance"]["note_chlw"] == "gold_class (max_lead 0.03)"
    chlw = result.train.filter(pl.col("task_id") == "note_chlw").unique("record_id")
    empty = chlw["record"].map_elements(lambda r: json.loads(r)["answer"] in ("[]", ""), return_dtype=pl.Boolean)
    assert empty.sum() <= 0.53 * chlw.height + 1  # empty golds at most an even share + 3%


def test_no_train_row_or_document_holds_text_of_an_eval_item(shared_builds, shared_data) -> None:
    """Every mixture: no train row (prompt, target, record) or CPT document contains a 40-character window of a
    benchmark item (either side of a RedTrans pair) or an 80-character window of a held-out record, read
    independently of the build; the manifest lists per benchmark what decontamination removed."""
    catalogue, builds = shared_builds
    records = eval_records(catalogue, shared_data, load_mixture("stage1").splits)
    assert {name for name in builds if load_mixture(name).splits != load_mixture("stage1").splits} == set()
    for name, result in builds.items():
        benchmark, held_out = item_texts(records, result.eval)
        texts = row_texts(result.train)
        assert not leaks(benchmark, texts, BENCHMARK_WINDOW), name
        assert not leaks(held_out, texts, HELD_OUT_WINDOW), name
        report = result.manifest["decontamination"]
        removed = result.rejects.filter(pl.col("step") == "decontaminate")
        assert report["rows_removed"] == removed.height, name
        assert {"sns_bench", "sns_transbench", "humaneval", "tweeteval"} <= set(report["by_benchmark"]), name
        for info in report["by_benchmark"].values():
            assert info["items_hit"] <= info["items"] and sum(info["removed_from"].values()) >= info["rows_removed"]
        assert sum(info["rows_removed"] for info in report["by_benchmark"].values()) >= removed.height, name
