"""Every shipped mixture on the real data beside the checkout (../shared/data), read capped to stay quick."""

from __future__ import annotations

import json

import datasets
import polars as pl
import pytest

from snsdata.build import build
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import list_mixtures

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
        assert totals["rows_in"] == totals["rows_out"] + totals["rows_rejected"] + totals["rows_excluded"]
        assert result.train.height and result.eval.height, name
        loaded = datasets.load_from_disk(str(result.out / "dataset"))
        assert loaded["train"].num_rows == result.train.height
    tasks = set(builds["sft_step1"].train["task_id"])
    assert {"note_chlw", "redtrans_zh2en", "tweet_emotion", "weibo_ner_zh", "cold_topic_zh"} <= tasks


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
