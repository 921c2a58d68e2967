"""Builds on the shipped samples: every mixture, the manifest arithmetic, determinism, formats, splits, stage 2."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import datasets
import polars as pl
import pytest
from eval_text import BENCHMARK_WINDOW, HELD_OUT_WINDOW, eval_records, item_texts, leaks, row_texts
from typer.testing import CliRunner

from snsdata.build import (
    BuildError,
    build,
    prepare,
    prompt_hash,
    read_pairs,
    soft_label_prompts,
    write_report,
)
from snsdata.build.negatives import CONFUSION, ORDINAL, SIMILAR
from snsdata.readers import default_data_root
from snsdata.spec import load_catalogue
from snsdata.spec.mixture import Mixture, list_mixtures, load_mixture

FORMAT_COLUMNS = {
    "sft": {"messages", "target_kind", "weight"},
    "dpo": {"prompt", "chosen", "rejected", "pair_source"},
    "rl": {"prompt", "record", "reward_type", "has_rationale"},
    "cpt": {"text"},
}
COMMON = {"task_id", "record_id", "capability", "origin"}


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


@pytest.fixture(scope="module")
def builds(catalogue, tmp_path_factory):
    """Every shipped mixture, built with no options on the shipped samples."""
    root = tmp_path_factory.mktemp("builds")
    return {name: build(name, out=root / name, catalogue=catalogue) for name in list_mixtures()}


def check_arithmetic(result) -> None:
    """Rows read = rows out + rows rejected + rows not drawn + rows excluded, overall and per task, and the files
    agree; rows that sampling did not draw are not rejects."""
    manifest, rejects = result.manifest, result.rejects
    totals = manifest["totals"]
    assert totals["balanced"]
    assert totals["rows_in"] == totals["rows_out"] + totals["rows_rejected"] + totals["rows_not_drawn"] \
        + totals["rows_excluded"]
    assert totals["rows_rejected"] == pl.read_parquet(result.out / "rejects.parquet").height == rejects.height
    undrawn = pl.read_parquet(result.out / "not_drawn.parquet")
    assert undrawn.height == totals["rows_not_drawn"]
    assert "sample" not in set(rejects["step"]) and "not_drawn" not in set(rejects["step"])
    assert not set(zip(undrawn["task_id"], undrawn["record_id"], strict=True)) & \
        set(zip(rejects["task_id"], rejects["record_id"], strict=True))
    assert totals["train_rows"] == result.train.height and totals["eval_rows"] == result.eval.height
    per_task_rejects = dict(rejects.group_by("task_id").len().iter_rows())
    for task_id, info in manifest["tasks"].items():
        counts = info["counts"]
        assert counts["read"] == counts["out"] + counts["excluded"] + counts.get("not_drawn", 0) \
            + per_task_rejects.get(task_id, 0), task_id
    chunking = manifest["steps"]["chunking"]
    if chunking:  # CPT pieces: documents in, pieces out
        assert sum(chunking["documents"].values()) == totals["rows_out"] + totals["copies_added"]
        assert chunking["chunks"] == {"train": result.train.height, "eval": result.eval.height}
        return
    structural = [ORDINAL, CONFUSION, SIMILAR]  # the build's own pairs; extra DPO pairs count as `pairs:<task>`
    own = result.train.filter(pl.col("pair_source").is_in(structural)) if "pair_source" in result.train.columns \
        else result.train
    for task_id, info in manifest["tasks"].items():
        written = own.filter(pl.col("task_id") == task_id).height
        assert written == info["counts"].get("out_train_rows", written), task_id
    unique = pl.concat([result.train.select("task_id", "record_id"), result.eval.select("task_id", "record_id")])
    assert unique.n_unique() == totals["rows_out"]
    assert totals["rows_written"] - totals["rows_out"] == totals["copies_added"]
    assert not set(zip(rejects["task_id"], rejects["record_id"], strict=True)) & \
        set(zip(unique["task_id"], unique["record_id"], strict=True))


def test_no_train_row_holds_text_of_an_eval_item_on_the_shipped_samples(builds, catalogue) -> None:
    """HumanEval and GSM-Symbolic (benchmarks) and the samples' held-out records stay out of every stage's train
    rows and CPT documents; decontamination's removals are in the manifest."""
    records = eval_records(catalogue, default_data_root(), load_mixture("stage1").splits)
    assert {key[0] for key, (kind, _) in records.items() if kind == "benchmark"} == {
        "gen_code_humaneval", "math_gsm_symbolic_en"}
    for name, result in builds.items():
        benchmark, held_out = item_texts(records, result.eval)
        texts = row_texts(result.train)
        assert not leaks(benchmark, texts, BENCHMARK_WINDOW), name
        assert not leaks(held_out, texts, HELD_OUT_WINDOW), name
        assert not {"gen_code_humaneval", "math_gsm_symbolic_en"} & set(result.train["task_id"]), name
        report = result.manifest["decontamination"]
        assert report["rows_removed"] == result.rejects.filter(pl.col("step") == "decontaminate").height
        assert {"humaneval", "gsm_symbolic"} <= set(report["by_benchmark"]), name


def test_every_shipped_mixture_builds_with_no_arguments(builds) -> None:
    assert set(builds) == {"cpt", "sft_step1", "sft_step2", "dpo", "stage1", "stage2", "stage3"}
    for name, result in builds.items():
        assert result.train.height > 0 and result.eval.height > 0, name
        check_arithmetic(result)
        for part in ("manifest.json", "specs.json", "rejects.parquet", "data/train.parquet", "data/eval.parquet",
                     "dataset/dataset_dict.json"):
            assert (result.out / part).is_file(), (name, part)
        manifest = result.manifest
        assert set(manifest["outputs"]) >= {"data/train.parquet", "data/eval.parquet", "rejects.parquet"}
        assert manifest["inputs"]["mixture"]["sha256"]
        assert manifest["skipped"], name  # SNS-Bench and RedTrans are not shipped: skipped, said so
        specs = json.loads((result.out / "specs.json").read_text(encoding="utf-8"))
        assert set(result.train["task_id"]) <= set(specs) | {t for t in manifest["tasks"] if t.startswith("raw_")}


def test_loading_the_dataset_gives_trl_shapes(builds) -> None:
    for name, result in builds.items():
        fmt = result.manifest["mixture"]["format"]
        loaded = datasets.load_from_disk(str(result.out / "dataset"))
        assert set(loaded) == {"train", "eval"}
        assert set(loaded["train"].column_names) == COMMON | FORMAT_COLUMNS[fmt], name
        assert loaded["train"].num_rows == result.train.height
        row = loaded["train"][0]
        if fmt == "sft":
            assert row["messages"][-1]["role"] == "assistant" and row["messages"][-2]["role"] == "user"
            assert all(set(m) == {"role", "content"} for m in row["messages"])
        elif fmt == "dpo":
            assert row["prompt"][-1]["role"] == "user"
            assert [m["role"] for m in row["chosen"]] == [m["role"] for m in row["rejected"]] == ["assistant"]
            assert row["chosen"][0]["content"] != row["rejected"][0]["content"]
        elif fmt == "rl":
            assert row["prompt"][-1]["role"] == "user" and isinstance(json.loads(row["record"]), dict)
            assert row["task_id"] and row["reward_type"] in ("exact_match", "metric", "sandbox", "pattern",
                                                             "composite")
        else:
            assert isinstance(row["text"], str) and row["text"].strip()


def test_two_builds_are_byte_identical_and_the_seed_moves_only_sampling(catalogue, builds, tmp_path: Path) -> None:
    first = builds["sft_step1"]
    again = build("sft_step1", out=tmp_path / "again", catalogue=catalogue)
    assert again.manifest["outputs"] == first.manifest["outputs"]
    assert (tmp_path / "again" / "manifest.json").read_bytes() == (first.out / "manifest.json").read_bytes()
    other = build("sft_step1", out=tmp_path / "other", seed=7, catalogue=catalogue)
    assert other.manifest["outputs"]["data/train.parquet"] != first.manifest["outputs"]["data/train.parquet"]
    eval_ids = {name: set(result.eval["record_id"]) for name, result in (("first", first), ("other", other))}
    assert eval_ids["first"] == eval_ids["other"]


def test_eval_records_never_reach_train_in_any_stage(builds) -> None:
    evals = {n: set(zip(r.eval["task_id"], r.eval["record_id"], strict=True)) for n, r in builds.items()}
    trains = {n: set(zip(r.train["task_id"], r.train["record_id"], strict=True)) for n, r in builds.items()}
    for name in builds:
        for other in builds:
            assert not trains[name] & evals[other], (name, other)


def test_shares_and_upsampling_caps_hold(builds) -> None:
    result = builds["stage1"]
    manifest = result.manifest
    by_origin = dict(result.train.group_by("origin").len().iter_rows())
    assert by_origin["sns"] / result.train.height == pytest.approx(0.6, abs=0.01)
    for task_id, info in manifest["tasks"].items():
        train = info["counts"]["split_train"]
        assert info["counts"]["out_train_rows"] <= 2.0 * train, task_id  # max_upsample 2
    requested = manifest["sampling"]["components"]["sns"]["requested"]
    assert requested == 12000 and manifest["sampling"]["scale"] < 1  # SNS samples are small: shares kept


def test_named_task_without_data_is_an_error_and_unnamed_is_skipped(catalogue, tmp_path: Path) -> None:
    named = Mixture.model_validate({"name": "m", "description": "d", "format": "rl",
                                    "components": [{"name": "a", "select": {"ids": ["note_chlw"]}}]})
    with pytest.raises(BuildError, match="note_chlw"):
        build(named, out=tmp_path / "named", catalogue=catalogue)
    tagged = Mixture.model_validate({"name": "m", "description": "d", "format": "rl",
                                     "components": [{"name": "a", "select": {"tags": ["sns_bench", "cold"]}}]})
    result = build(tagged, out=tmp_path / "tagged", catalogue=catalogue)
    assert "note_chlw" in {s["task_id"] for s in result.manifest["skipped"]}
    assert set(result.train["task_id"]) <= {t for t in catalogue if t.startswith("cold_")}


def redtrans_root(tmp_path: Path, pairs: int = 120) -> Path:
    """A synthetic RedTrans file in which every (zh, en) pair appears in both directions, like the real data."""
    import random

    rng = random.Random(0)
    hanzi = "咖啡店好逛推荐打卡今天真的太绝了姐妹们冲呀周末去哪玩拍照出片宝藏小众氛围感拉满"
    words = ["cafe", "visit", "weekend", "photo", "vibe", "hidden", "gem", "sisters", "go", "now", "really",
             "worth", "trip", "city", "night"]
    records = []
    for _ in range(pairs):  # random text: no template shared between records (decontamination would see one)
        zh = "".join(rng.choices(hanzi, k=30))
        en = " ".join(rng.choices(words, k=16))
        for src, dst in (("zh", "en"), ("en", "zh")):
            records.append({"en": en, "zh": zh, "source": "comment", "src_lang": src, "dst_lang": dst})
    path = tmp_path / "redtrans" / "redtrans_sample" / "RedTrans-Bench-sample.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return tmp_path / "redtrans"


def test_redtrans_pairs_never_straddle_train_and_eval(catalogue, tmp_path: Path) -> None:
    root = redtrans_root(tmp_path)
    result = build("stage1", data_root=root, out=tmp_path / "out", catalogue=catalogue, total=2000)
    check_arithmetic(result)
    assert result.manifest["tasks"]["redtrans_zh2en"]["counts"]["excluded"] == 120  # the other direction's rows
    sides = {}
    for split, frame in (("train", result.train), ("eval", result.eval)):
        for row in frame.filter(pl.col("task_id").str.starts_with("redtrans")).iter_rows(named=True):
            record = json.loads(row["record"])
            sides.setdefault((record["zh"], record["en"]), set()).add(split)
    assert sides and all(len(s) == 1 for s in sides.values())
    # SNS-TransBench is a benchmark: both directions of every pair evaluate, none trains
    assert {next(iter(s)) for s in sides.values()} == {"eval"}


def test_a_record_duplicated_across_source_splits_is_a_rejected_leak(catalogue, tmp_path: Path) -> None:
    root = tmp_path / "cold"
    shutil.copytree(default_data_root() / "COLDataset", root / "COLDataset")
    test_csv = pl.read_csv(root / "COLDataset/COLDataset/test.csv", infer_schema=False)
    train_path = root / "COLDataset/COLDataset/train.csv"
    train_csv = pl.read_csv(train_path, infer_schema=False)
    leaked = test_csv.head(1).select(train_csv.columns).with_columns(split=pl.lit("train"))
    long_post = test_csv.filter(pl.col("TEXT").str.len_chars() > 60).tail(1)
    overlapping = long_post.select(train_csv.columns).with_columns(split=pl.lit("train"),
                                                                  TEXT=pl.col("TEXT") + "，真的是这样吗")
    pl.concat([train_csv, leaked, overlapping]).write_csv(train_path)
    mixture = Mixture.model_validate({"name": "m", "description": "d", "format": "rl", "steps": ["decontaminate"],
                                      "components": [{"name": "a", "select": {"ids": ["cold_offensive_zh"]}}]})
    result = build(mixture, data_root=root, out=tmp_path / "out", catalogue=catalogue)
    check_arithmetic(result)
    leaks = result.rejects.filter(pl.col("step") == "split")
    assert leaks.height == 1 and leaks["source"][0] == "cold_offensive_zh:train"
    text = json.loads(leaks["row"][0])["text"]
    assert leaks["duplicate_of"][0] in set(result.eval["record_id"])
    assert all(json.loads(r)["text"] != text for r in result.train["record"])
    # not the same text, so not one group, but it contains an eval post: decontamination drops it
    decontaminated = result.rejects.filter(pl.col("step") == "decontaminate")
    assert json.loads(decontaminated["row"][0])["text"].endswith("，真的是这样吗")
    assert decontaminated.height == 1 and "overlaps eval item cold_" in decontaminated["reason"][0]


def test_stage2_with_a_diagnosis_has_exactly_the_failure_samples(catalogue, tmp_path: Path) -> None:
    weak = ["cold_offensive_zh", "wnut17_ner_en"]
    prepared = prepare("stage1", catalogue=catalogue)  # the same split seed as stage2: the same train records
    train_ids = {t: prepared.frames[t].filter(pl.col("_split") == "train")["record_id"].sort().to_list()
                 for t in ("cold_offensive_zh", "wnut17_ner_en", "cold_topic_zh")}
    eval_id = prepared.frames["cold_offensive_zh"].filter(pl.col("_split") == "eval")["record_id"][0]
    failures = {"cold_offensive_zh": [*train_ids["cold_offensive_zh"][:7], eval_id, "not-a-record"],
                "wnut17_ner_en": train_ids["wnut17_ner_en"][:5],
                "cold_topic_zh": train_ids["cold_topic_zh"][:3]}  # not weak: ignored
    path = tmp_path / "diagnosis.json"
    path.write_text(json.dumps({"tasks": {t: {"mean_reward": 0.1} for t in weak}, "weak_tasks": weak,
                                "failures": failures}), encoding="utf-8")
    result = build("stage2", diagnosis=path, out=tmp_path / "out", catalogue=catalogue)
    check_arithmetic(result)
    train = result.train
    marked = train.filter(pl.col("target_kind") == "failure_sample")
    expected = {("cold_offensive_zh", r) for r in failures["cold_offensive_zh"][:7]} | \
        {("wnut17_ner_en", r) for r in failures["wnut17_ner_en"]}
    assert set(zip(marked["task_id"], marked["record_id"], strict=True)) == expected
    assert set(marked["weight"]) == {3.0}
    copies = marked.group_by("record_id").len()["len"]
    assert copies.min() >= 1 and copies.max() <= 3  # repeated like any row of its task (max_upsample 3), no more
    assert set(train.filter(pl.col("target_kind") != "failure_sample")["weight"]) == {1.0}
    assert set(train.filter(pl.col("origin") == "sns")["task_id"]) == set(weak)
    targeted = result.manifest["targeted"]
    assert targeted["source"] == "diagnosis" and targeted["failures"]["cold_offensive_zh"] == \
        {"listed": 9, "used": 7, "eval_records": 1, "not_found": 1}
    assert not any("diagnosis" in line for line in result.manifest["fallbacks"])


def test_stage2_soft_labels_replace_general_targets(catalogue, tmp_path: Path) -> None:
    prompts = soft_label_prompts(prepare("stage2", catalogue=catalogue))
    assert prompts.height and set(prompts["prompt_hash"]) == {prompt_hash(p) for p in prompts["prompt"].to_list()}
    lines = []
    for i, row in enumerate(prompts.iter_rows(named=True)):
        key = {"record_id": row["record_id"]} if i % 2 else {"prompt_hash": row["prompt_hash"]}
        lines.append({"task_id": row["task_id"], **key, "completion": f"stage-1 answer {i}", "truncated": i == 4,
                      "model": "ckpt", "schema": "snsdata.soft_labels/1"})
    path = tmp_path / "soft.jsonl"
    path.write_text("\n".join(json.dumps(x) for x in lines) + "\n", encoding="utf-8")
    result = build("stage2", soft_labels=path, out=tmp_path / "out", catalogue=catalogue)
    check_arithmetic(result)
    general = result.train.filter(pl.col("origin") == "general")
    assert general.height and set(general["target_kind"]) == {"soft_label"}
    answers = general["messages"].list.last().struct.field("content")
    assert answers.str.starts_with("stage-1 answer ").all() and "stage-1 answer 4" not in set(answers)
    rejected = result.rejects.filter(pl.col("step") == "soft_label")
    assert rejected["record_id"].to_list() == [prompts["record_id"][4]]
    soft = result.manifest["inputs"]["soft_labels"]
    assert soft["unusable"]["truncated"] == 1 and soft["provenance"] == [{"schema": "snsdata.soft_labels/1",
                                                                          "model": "ckpt"}]
    assert not any("soft-labels" in line for line in result.manifest["fallbacks"])


def test_stage2_without_inputs_falls_back_and_says_so(builds) -> None:
    manifest = builds["stage2"].manifest
    assert manifest["targeted"]["source"] == "default"
    assert any("no --diagnosis" in line for line in manifest["fallbacks"])
    assert any("no --soft-labels" in line for line in manifest["fallbacks"])
    assert set(builds["stage2"].train["target_kind"]) == {"gold"}


def test_dpo_pairs_use_a_wrong_option_and_take_extra_pairs(catalogue, builds, tmp_path: Path) -> None:
    train = builds["dpo"].train
    specs = {t: catalogue[t] for t in set(train["task_id"])}
    for row in train.head(50).iter_rows(named=True):
        labels = specs[row["task_id"]].output.labels
        chosen, rejected = row["chosen"][0]["content"], row["rejected"][0]["content"]
        # the same target template with one label swapped for another
        assert any(chosen.replace(a, b) == rejected for a in labels for b in labels if a != b), row
    pairs_file = tmp_path / "pairs.jsonl"
    pair = {"task_id": "cold_topic_zh", "record_id": "x1", "prompt": [{"role": "user", "content": "q"}],
            "chosen": "good", "rejected": "bad"}
    pairs_file.write_text(json.dumps(pair) + "\n", encoding="utf-8")
    result = build("dpo", out=tmp_path / "out", catalogue=catalogue, extra_pairs=read_pairs(pairs_file))
    check_arithmetic(result)
    extra = result.train.filter(pl.col("pair_source") == "predictions")
    assert extra.height == 1 and extra["rejected"][0][0]["content"] == "bad"
    assert result.manifest["totals"]["rows_in"] == builds["dpo"].manifest["totals"]["rows_in"] + 1


def test_cli_build_default_out_and_report(monkeypatch, tmp_path: Path) -> None:
    import snsdata.cli.build  # noqa: F401  (registers the commands)
    from snsdata.cli import app

    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    done = runner.invoke(app, ["build", "--mixture", "dpo", "--max-per-task", "30"])
    assert done.exit_code == 0, done.output
    assert (tmp_path / "builds" / "dpo" / "manifest.json").is_file()
    report = runner.invoke(app, ["report", "builds/dpo"])
    assert report.exit_code == 0, report.output
    page = (tmp_path / "builds" / "dpo" / "report.html").read_text(encoding="utf-8")
    assert page.count("<svg") >= 5 and "src=" not in page and "href=" not in page
    not_stage2 = ["build", "--mixture", "stage1", "--diagnosis", str(tmp_path / "builds/dpo/manifest.json")]
    bad = runner.invoke(app, not_stage2)
    assert bad.exit_code == 1 and "targeted" in bad.output


def test_report_is_self_contained(builds) -> None:
    for name in ("sft_step1", "cpt", "stage1"):
        page = write_report(builds[name].out).read_text(encoding="utf-8")
        assert "Filter funnel" in page and "rows by capability" in page and "Lengths" in page
        assert "not drawn (usable, beyond the quotas)" in page and "<h2>Decontamination</h2>" in page
        assert "<td>humaneval</td><td>gen_code_humaneval</td>" in page  # per benchmark: items, hits, removals
        assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "") and "https://" not in page


def test_cpt_takes_raw_text_files_and_content_fields(catalogue, builds, tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "raw_text").mkdir(parents=True)
    docs = [f"document {i}: a long enough general text line about cafes and trains" for i in range(30)]
    (root / "raw_text" / "general.txt").write_text("\n".join([*docs, "", docs[0]]) + "\n", encoding="utf-8")
    mixture = Mixture.model_validate({
        "name": "m", "description": "d", "format": "cpt", "total": 40,
        "components": [{"name": "corpus", "raw": {"paths": ["raw_text/general.txt", "raw_text/absent.txt"],
                                                  "format": "txt"}, "share": 0.5},
                       {"name": "general", "select": {"origin": "general"}, "share": 0.5}]})
    result = build(mixture, data_root=root, out=tmp_path / "out", catalogue=catalogue)
    check_arithmetic(result)
    raw = result.train.filter(pl.col("task_id") == "raw_corpus")
    assert raw.height == 20 and set(raw["capability"]) == {"raw_text"} and set(raw["text"]) <= set(docs)
    assert result.manifest["tasks"]["raw_corpus"]["counts"]["read"] == 31  # the repeated line is its own record
    assert any("absent.txt" in line for line in result.manifest["notes"])
    sns = builds["cpt"].train.filter(pl.col("origin") == "sns")
    texts = set(sns["text"])
    assert texts and not any("Answer:" in t or "帖子：" in t for t in texts)  # content, not task instructions


def test_allocation_follows_temperature_and_caps() -> None:
    from snsdata.build.sampling import allocate, draw

    sizes = {"big": 900, "small": 100}
    assert allocate(sizes, 100, 1.0, 1.0) == {"big": 90, "small": 10}  # natural proportions
    flat = allocate(sizes, 100, 1e6, 1.0)
    assert abs(flat["big"] - 50) <= 1 and sum(flat.values()) == 100  # high temperature: near uniform
    capped = allocate(sizes, 1500, 1e6, 1.5)
    assert capped == {"big": 1350, "small": 150}  # small hits 1.5x, the rest goes to big, which hits its cap too
    assert allocate({"a": 0, "b": 10}, 5, 1.0, 3.0) == {"a": 0, "b": 5}
    frame = pl.DataFrame({"task_id": ["t"] * 4, "record_id": list("abcd"), "_pinned": [False, True, False, False]})
    copies = dict(draw(frame, 10, 0).select("record_id", "_copies").iter_rows())
    assert sum(copies.values()) == 10 and set(copies.values()) == {2, 3} and copies["b"] == 3  # pinned first
    assert dict(draw(frame, 1, 0).select("record_id", "_copies").iter_rows())["b"] == 1
