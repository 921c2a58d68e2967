"""Sources (datasets, not tasks) as the unit of shares and caps; capability quotas; assumptions marked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from snsdata.build import build
from snsdata.build.sampling import Limits, Pool, allocate_component
from snsdata.cli.app import app
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import list_mixtures, load_mixture, mixtures_root, source_of


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def limits(**kwargs) -> Limits:
    caps = kwargs.pop("source_caps", {})
    share = kwargs.pop("max_source_share", None)
    base = {"temperature": 1.0, "max_upsample": 1.0, "capabilities": {}, "max_task_share": None}
    return Limits(**{**base, **kwargs}, source_cap=lambda s: caps.get(s, share))


def test_one_rule_names_the_dataset_of_every_spec(catalogue) -> None:
    source = {task_id: source_of(spec) for task_id, spec in catalogue.items()}
    cold = {t for t in source if t.startswith("cold_")}
    assert {source[t] for t in cold} == {"COLDataset"} and len(cold) == 4  # one of them reads test.csv only
    assert {source[t] for t in source if t.startswith("tweet_stance_")} == {"tweeteval/stance"}  # declared
    assert {source[t] for t in source if t.startswith("weibo_ner_")} == {"golden-horse/data"}  # common folder
    assert source["tweet_emoji"] == "tweeteval/datasets/emoji" != source["tweet_hate"]
    assert source["note_mrc_simple"] == source["note_mrc_answerable"] == "sns_bench_sample/Note-MRC-simple"
    assert source["note_ner"] != source["note_chlw"]  # one folder, separate files: separate datasets
    assert source["gen_math_gcd"] == "reasoning_gym/gcd" and source["gen_code_function_synthesis"] == \
        "function_synthesis"


def test_a_dataset_split_into_tasks_counts_once() -> None:
    sizes = {"cold_a": 100, "cold_b": 100, "cold_c": 100, "cold_d": 100, "wnut": 100}
    pool = Pool(sizes, {**dict.fromkeys(["cold_a", "cold_b", "cold_c", "cold_d"], "cold"), "wnut": "wnut"},
                dict.fromkeys(sizes, "x"), {("cold", ""): 100, ("wnut", ""): 100})
    per_task, detail = allocate_component(pool, 200, limits())
    assert detail["sources"]["cold"]["allocated"] == detail["sources"]["wnut"]["allocated"] == 100
    assert per_task == {"cold_a": 25, "cold_b": 25, "cold_c": 25, "cold_d": 25, "wnut": 100}


def test_source_and_task_share_caps_shrink_the_component_when_they_must() -> None:
    sizes = {"big": 1000, "b": 10, "c": 10}
    pool = Pool(sizes, {t: t for t in sizes}, dict.fromkeys(sizes, "x"), {(t, ""): n for t, n in sizes.items()})
    per_task, detail = allocate_component(pool, 500, limits(max_source_share=0.5))
    assert per_task == {"big": 20, "b": 10, "c": 10} and detail["size"] == 40  # big holds half of what there is
    per_task, _ = allocate_component(pool, 500, limits(max_source_share=0.5, source_caps={"big": 0.8}))
    assert per_task == {"big": 80, "b": 10, "c": 10}
    per_task, _ = allocate_component(pool, 500, limits(max_task_share=0.5))
    assert per_task["big"] == 20
    per_task, detail = allocate_component(pool, 30, limits(max_source_share=0.2))  # 3 sources: 0.2 cannot hold
    assert detail["not_applied"] == {"b": 0.2, "big": 0.2, "c": 0.2} and sum(per_task.values()) == 30


def test_capability_quotas_hold_and_an_empty_capability_passes_its_quota_on() -> None:
    sizes = {"cu": 1000, "ie": 1000, "sm": 1000}
    caps = {"cu": "content_understanding", "ie": "information_extraction", "sm": "semantic_matching"}
    pool = Pool(sizes, {t: t for t in sizes}, caps, {(t, caps[t]): n for t, n in sizes.items()})
    quotas = {"content_understanding": 0.5, "information_extraction": 0.3, "semantic_matching": 0.2}
    per_task, detail = allocate_component(pool, 100, limits(capabilities=quotas))
    assert per_task == {"cu": 50, "ie": 30, "sm": 20}
    per_task, detail = allocate_component(pool, 100, limits(capabilities={**quotas, "semantic_matching": 0.0,
                                                                          "dialogue": 0.2}))
    assert per_task == {"cu": 63, "ie": 37, "sm": 0}  # dialogue has no rows: 5/8 and 3/8 of the rest
    assert detail["capabilities"]["dialogue"] == {"quota": 0.2, "allocated": 0}


def test_a_source_read_by_two_capabilities_is_a_source_in_each() -> None:
    sizes = {"mrc": 100, "answerable": 100, "cu": 100}
    caps = {"mrc": "information_extraction", "answerable": "semantic_matching", "cu": "content_understanding"}
    source = {"mrc": "mrc_file", "answerable": "mrc_file", "cu": "cu"}
    distinct = {("mrc_file", "information_extraction"): 100, ("mrc_file", "semantic_matching"): 100,
                ("cu", "content_understanding"): 100}
    quotas = {"content_understanding": 0.5, "information_extraction": 0.25, "semantic_matching": 0.25}
    per_task, detail = allocate_component(Pool(sizes, source, caps, distinct), 100, limits(capabilities=quotas))
    assert per_task == {"mrc": 25, "answerable": 25, "cu": 50}
    assert set(detail["sources"]) == {"cu", "mrc_file (information_extraction)", "mrc_file (semantic_matching)"}


def test_every_number_of_every_shipped_mixture_is_marked() -> None:
    for name in list_mixtures(mixtures_root()):
        unmarked = [p for p, (_, mark) in load_mixture(name).numbers().items() if mark == "unmarked"]
        assert unmarked == [], name
    assert load_mixture("stage2_soft5").numbers()["components.general_soft.share"] == (0.05, "papers")
    assert load_mixture("stage1").numbers()["components.sns.share"] == (0.6, "assumption")


def test_a_mark_with_no_value_is_listed_not_counted(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("extends: stage2\ncomponents:\n  general_soft: null\n  weak: {share: 1.0}\n"
                    "assumptions:\n  components.nope.share: why\n", encoding="utf-8")
    mixture = load_mixture(path)  # the base's marks on the removed component do not stop it loading
    assert mixture.unmatched_marks() == ["components.general_soft.max_source_share", "components.general_soft.share",
                                         "components.nope.share"]
    assert "components.general_soft.share" not in mixture.numbers()
    for name in list_mixtures(mixtures_root()):
        assert load_mixture(name).unmatched_marks() == [], name


def test_mixtures_command_shows_assumptions() -> None:
    result = CliRunner().invoke(app, ["mixtures", "--json"])
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert {"stage2_soft0", "stage2_soft5", "stage2_soft10", "stage2_soft15", "naive_sft", "naive_rl",
            "rl_twice"} <= set(rows)
    share = rows["stage1"]["numbers"]["components.sns.share"]
    assert share["mark"] == "assumption" and "ratio" in share["why"]
    listed = CliRunner().invoke(app, ["mixtures", "--numbers"]).output
    assert "components.general_soft.share = 0.05  [papers]" in listed
    assert "components.sns.share = 0.6  [assumption]" in listed


def test_stage_builds_report_their_composition_and_keep_source_caps(catalogue, tmp_path: Path) -> None:
    result = build("stage1", out=tmp_path / "stage1", catalogue=catalogue)
    composition = result.manifest["composition"]
    assert sum(composition["by_source"].values()) == result.train.height
    assert sum(composition["by_capability"].values()) == result.train.height
    sns = result.manifest["sampling"]["components"]["sns"]
    for name, info in sns["sources"].items():
        if name not in sns.get("not_applied", {}):
            assert info["allocated"] <= 0.2 * sns["allocated"] + 1e-9, name
    assert result.manifest["tasks"]["cold_topic_zh"]["source"] == "COLDataset"
    from snsdata.build import write_report

    page = write_report(result.out).read_text(encoding="utf-8")
    assert "Composition by source and capability" in page and "COLDataset" in page


def test_the_ablation_mixtures_differ_from_stage2_only_in_the_soft_label_share(catalogue, tmp_path: Path) -> None:
    shares = {}
    for pct in (0, 5, 10, 15):
        result = build(f"stage2_soft{pct}", out=tmp_path / str(pct), catalogue=catalogue, total=2000)
        rows = result.train.height
        soft = result.train.filter(result.train["origin"] == "general").height
        shares[pct] = soft / rows
    assert shares[0] == 0
    for pct in (5, 10, 15):
        assert shares[pct] == pytest.approx(pct / 100, abs=0.02), shares
