"""The reward audit, and each attack issue 12 measured on the full benchmarks, as a test that the attack now fails.

The audit runs over every data root at hand (the shipped samples, ../shared/data, the catalogue fixtures and the
synthetic audit fixtures, which have the shape of the full-benchmark cases on enough rows) and must find no flag.
"""

from __future__ import annotations

import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

import snsdata.cli.rewards  # noqa: F401  (registers `audit`)
from snsdata.audit import audit, audit_task, balance_rules, document, drawn_rows, summary
from snsdata.build.sampling import balance, lead_cap
from snsdata.cli.app import app
from snsdata.readers import data_found, default_data_root, read_task
from snsdata.rewards import evaluate, get_scorer
from snsdata.rewards.policies import (
    benign_variants,
    candidates,
    gold_classes,
    input_text,
    policies,
    skeletons,
)
from snsdata.spec import TaskSpec, load_catalogue
from snsdata.spec.searchpath import configure

REPO = Path(__file__).resolve().parents[1]
SHARED = Path("..") / "shared" / "data"
CATALOGUE_FIXTURES = Path("tests") / "fixtures" / "catalogue"
AUDIT_FIXTURES = Path("tests") / "fixtures" / "audit"
DOC_COMMAND = ("snsdata audit --data-root ../shared/data --data-root tests/fixtures/catalogue "
               "--data-root tests/fixtures/audit --markdown docs/reward_audit.md")


@cache
def catalogue() -> dict[str, TaskSpec]:
    return load_catalogue()


def spec(task_id: str) -> TaskSpec:
    return catalogue()[task_id]


@cache
def rows(task_id: str, root: str) -> list[dict[str, Any]]:
    path = REPO / root
    if not data_found(spec(task_id), path):
        pytest.skip(f"{task_id}: no data under {root}")
    return read_task(spec(task_id), path).frame.collect().to_dicts()


def scores(task_id: str, answers: list[str], records: list[dict[str, Any]]) -> list[float | None]:
    return get_scorer(task_id)(answers, records)


def mean(values: list[float | None]) -> float:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept)


@pytest.fixture(scope="module")
def results() -> list:
    """The audit of every spec on every data root at hand (paths relative to the repository, as the docs'
    command gives them)."""
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        roots = [r for r in (SHARED, CATALOGUE_FIXTURES, AUDIT_FIXTURES) if r.is_dir()]
        if not SHARED.is_dir():
            roots.insert(0, default_data_root())
        yield audit(catalogue(), roots), SHARED.is_dir()
    finally:
        os.chdir(cwd)


def test_audit_of_every_spec_with_data_finds_no_flag(results) -> None:
    found, _ = results
    flags = [f"{r.task_id} ({r.data}): {flag}" for r in found for flag in r.flags]
    assert not flags, "\n".join(flags)
    counts = summary(found)
    assert counts["ok"] >= 20  # enough tasks had enough rows to be judged at all


def test_committed_audit_page_is_current(results) -> None:
    found, with_shared = results
    if not with_shared:
        pytest.skip("the committed page is made with ../shared/data")
    committed = (REPO / "docs" / "reward_audit.md").read_text(encoding="utf-8")
    assert committed == document(found, DOC_COMMAND), f"run: {DOC_COMMAND}"


def test_cli_exits_1_on_a_flag_and_writes_json(tmp_path: Path) -> None:
    # A reward that pays any non-empty answer: every degenerate policy beats its ceiling.
    spec_dir = tmp_path / "specs"
    spec_dir.mkdir()
    data = tmp_path / "data"
    data.mkdir()
    (data / "t.jsonl").write_text("".join(json.dumps({"text": f"post {i}", "label": "a" if i % 2 else "b"}) + "\n"
                                          for i in range(40)), encoding="utf-8")
    (spec_dir / "lenient.yaml").write_text("""
id: lenient
capability: content_understanding
languages: [en]
description: "A reward that pays any reply."
source: {reader: jsonl, splits: {test: t.jsonl}, fields: [text, label]}
prompt: {user: "{{ text }}"}
target: {template: "{{ label }}"}
output: {format: text}
reward: {type: pattern, checks: [{min_chars: 1}]}
""", encoding="utf-8")
    try:
        result = CliRunner().invoke(app, ["audit", "--specs", str(spec_dir), "--task", "lenient",
                                          "--data-root", str(data), "--json"])
        assert result.exit_code == 1
        (audited,) = json.loads(result.output)
        assert audited["status"] == "flagged" and any(f.startswith("copy_input") for f in audited["flags"])
        page = tmp_path / "audit.md"
        result = CliRunner().invoke(app, ["audit", "--specs", str(spec_dir), "--task", "lenient",
                                          "--data-root", str(data), "--markdown", str(page)])
        assert result.exit_code == 1 and "| lenient |" in page.read_text(encoding="utf-8")
    finally:
        configure([])  # the spec folder was added to this process's search path


def test_too_little_data_is_reported_not_flagged() -> None:
    example = [{"task_id": "tweet_hate", "record_id": "x", "split": "test", "text": "hello", "label": "hate"}]
    result = audit_task(spec("tweet_hate"), example, "example")
    assert result.status == "insufficient data" and not result.flags
    majority = next(p for p in result.policies if p.name == "all_candidates")
    assert majority.mean == 0.0


# --- the policy generator --------------------------------------------------------------------------------


def test_skeletons_follow_the_output_format_tags_and_schema() -> None:
    assert skeletons(spec("note_mrc_complex"))["skeleton:tags[]"] == "<Result>[]</Result>"
    assert skeletons(spec("note_chlw")) == {"skeleton:[]": "[]"}
    soft_ad = skeletons(spec("soft_ad_detection_zh"))
    assert json.loads(soft_ad["skeleton:schema"]) == {"ad": "", "evidence": ""} and soft_ad["skeleton:{}"] == "{}"
    assert "skeleton:tags" in skeletons(spec("gen_math_gcd"))  # the <answer> tag of its extraction


def test_candidates_and_input_text() -> None:
    record = rows("query_note_retrieval", str(AUDIT_FIXTURES))[0]
    assert candidates(spec("query_note_retrieval"), record) == [n["note_id"] for n in record["notes"]]
    assert candidates(spec("tweet_offensive"), {}) == ["not-offensive", "offensive"]
    assert input_text(spec("note_gender"), {"content": "body", "answer": "Yes"}) == "body"


def test_benign_variants_by_format() -> None:
    label = benign_variants(spec("tweet_offensive"), "offensive")
    assert {"quotes", "period", "bold", "answer_prefix", "think", "lowercase", "uppercase"} <= set(label)
    assert "lowercase" not in benign_variants(spec("note_taxonomy_single"), "Food")  # case-sensitive spec
    assert set(benign_variants(spec("redtrans_zh2en"), "Hi")) == {"whitespace", "think"}
    assert benign_variants(spec("cold_offensive_zh"), "冒犯")["period"] == "冒犯。"


def test_gold_classes_label_value_and_emptiness() -> None:
    assert gold_classes(spec("tweet_offensive"), [{"text": "x", "label": "offensive"}]) == ["offensive"]
    chlw = gold_classes(spec("note_chlw"), [{"content": "c", "answer": "[]"}, {"content": "c x", "answer": "['x']"}])
    assert chlw == ["empty", "non_empty"]
    mrc = gold_classes(spec("note_mrc_complex"), [{"content": "c", "answer": "<Result>[]</Result>"}])
    assert mrc == ["empty"]  # the reward's view: an empty option list
    assert gold_classes(spec("gen_math_gcd"), [{"question": "q", "answer": "7"}]) == ["7.0"]


def test_lead_cap_and_one_balance_rule_for_every_task() -> None:
    assert lead_cap([70, 30], 0.03) == 33  # two classes: at most 53:47 (33 of 63)
    assert lead_cap([10, 10, 10], 0.03) == 10  # balanced already
    assert lead_cap([135] + [3] * 100, 0.03) <= 0.04 * (lead_cap([135] + [3] * 100, 0.03) + 300)
    (rule,) = balance_rules()
    assert rule.by == "gold_class" and all(rule.select.matches(s) for s in catalogue().values())
    records = [{"task_id": "tweet_hate", "record_id": str(i), "text": f"t{i}", "label": "hate" if i < 10 else
                "not-hate", "_pinned": False} for i in range(100)]
    kept, dropped = balance(pl.DataFrame(records), rule.by, rule.ratio, 0, spec("tweet_hate"), rule.max_lead)
    labels = kept["label"].value_counts()
    assert dict(zip(labels["label"], labels["count"], strict=True)) == {"hate": 10, "not-hate": 11}
    assert kept.height + dropped.height == 100 and "_gold_class" not in kept.columns


# --- the attacks of issue 12, each failing now ----------------------------------------------------------


def test_mrc_complex_skeleton_earns_chance_on_balanced_rows() -> None:
    records = rows("note_mrc_complex", str(AUDIT_FIXTURES))
    empty = sum("<Result>[]</Result>" in r["answer"] for r in records) / len(records)
    assert empty > 0.6  # the shape of the full benchmark: ~69% empty golds
    natural = mean(scores("note_mrc_complex", ["<Result>[]</Result>"] * len(records), records))
    assert natural == pytest.approx(empty)  # right on the empty golds, and only there
    drawn, _ = drawn_rows(spec("note_mrc_complex"), records, balance_rules(), 0, 200)
    assert mean(scores("note_mrc_complex", ["<Result>[]</Result>"] * len(drawn), drawn)) <= 0.55


@pytest.mark.parametrize("task_id", ["tweet_offensive", "tweet_irony", "tweet_hate", "tweet_stance_abortion",
                                     "cold_offense_type_zh", "cold_offensive_zh"])
def test_every_label_at_once_is_wrong(task_id: str) -> None:
    records = rows(task_id, str(SHARED))[:300]
    labels = list(spec(task_id).output.labels or [])
    for answer in (", ".join(labels), ", ".join(reversed(labels)), " / ".join(labels), "\n".join(labels)):
        assert set(scores(task_id, [answer] * len(records), records)) == {0.0}, answer
    golds = [spec(task_id).render_target(r) for r in records]
    assert set(scores(task_id, [f"**{g}**." for g in golds], records)) == {1.0}


def test_every_label_at_once_on_note_gender_agrees_in_fixed_evaluation() -> None:
    records = rows("note_gender", str(AUDIT_FIXTURES))
    assert set(scores("note_gender", ["Yes, No"] * len(records), records)) == {0.0}
    assert evaluate("note_gender", records, ["Yes, No"] * len(records))["accuracy"] == 0.0
    # "yes" is Yes, in the RL reward and in fixed-mode evaluation alike (case declared once, in the spec).
    lower = [r["answer"].lower() for r in records]
    assert set(scores("note_gender", lower, records)) == {1.0}
    assert evaluate("note_gender", records, lower)["accuracy"] == 100.0


@pytest.mark.parametrize("task_id", ["tweet_offensive", "tweet_stance_climate", "cold_offense_type_zh"])
def test_majority_label_earns_chance_on_the_rows_rl_draws(task_id: str) -> None:
    records = rows(task_id, str(SHARED))
    golds = [spec(task_id).render_target(r) for r in records]
    majority = max(set(golds), key=golds.count)
    assert golds.count(majority) / len(golds) > 0.45  # skewed as read
    drawn, _ = drawn_rows(spec(task_id), records, balance_rules(), 0, 10_000)
    k = len(spec(task_id).output.labels or [])
    assert mean(scores(task_id, [majority] * len(drawn), drawn)) <= 1 / k + 0.05


@pytest.mark.parametrize(("task_id", "source", "target"), [("redtrans_zh2en", "zh", "en"),
                                                           ("redtrans_en2zh", "en", "zh")])
def test_translation_echo_and_wrong_script(task_id: str, source: str, target: str) -> None:
    records = rows(task_id, str(SHARED))
    echo = [f"{r[source]}\n{r[target]}" for r in records]
    details = get_scorer(task_id).details(echo, records)
    assert mean([d.score for d in details]) < 0.05
    assert mean([d.task_score for d in details]) > 0.5  # BLEU/chrF alone still pay the echo: shaping stops it
    assert mean(scores(task_id, [r[source] for r in records], records)) < 0.05  # the source back, untranslated
    assert set(scores(task_id, [r[target] for r in records], records)) == {1.0}


def test_rewrite_with_junk_words_in_the_posts_shape_earns_little() -> None:
    records = rows("gen_if_sns_rewrite", str(SHARED))[:300]
    golds = [spec("gen_if_sns_rewrite").render_target(r) for r in records]
    plan = {p.name: p for p in policies(spec("gen_if_sns_rewrite"), records, golds)}
    junk = list(plan["junk_in_gold_shape"].answers)
    details = get_scorer("gen_if_sns_rewrite").details(junk, records)
    assert mean([d.task_score for d in details]) > 0.3  # the constraint checkers alone are partly satisfied
    assert mean([d.score for d in details]) <= 0.05
    assert set(scores("gen_if_sns_rewrite", golds, records)) == {1.0}


def test_retrieval_returning_every_id_is_penalised() -> None:
    records = [r for r in rows("query_note_retrieval", str(AUDIT_FIXTURES)) if r["relevant"]]
    every = [json.dumps([n["note_id"] for n in r["notes"]]) for r in records]
    details = get_scorer("query_note_retrieval").details(every, records)
    assert mean([d.task_score for d in details]) > 0.6  # NDCG alone pays it
    assert mean([d.score for d in details]) < 0.4
    assert set(scores("query_note_retrieval", [json.dumps(r["relevant"]) for r in records], records)) == {1.0}


def test_mrc_simple_whole_note_and_invented_spans() -> None:
    records = [r for r in rows("note_mrc_simple", str(AUDIT_FIXTURES)) if r["answer"]]
    whole = [json.dumps([r["content"]]) for r in records]
    assert mean(scores("note_mrc_simple", whole, records)) < 0.3
    invented = [json.dumps([s.replace(" was ", " is ") for s in r["answer"]]) for r in records]
    assert set(scores("note_mrc_simple", invented, records)) == {0.0}  # not in the note: wrong spans
    assert set(scores("note_mrc_simple", [json.dumps(r["answer"]) for r in records], records)) == {1.0}


@pytest.mark.parametrize(("task_id", "root"), [("weibo_ner_zh", SHARED), ("weibo_ner_loc_zh", SHARED),
                                               ("wnut17_ner_en", SHARED), ("note_chlw", AUDIT_FIXTURES)])
def test_the_gold_earns_full_marks_where_it_was_discounted(task_id: str, root: Path) -> None:
    records = rows(task_id, str(root))[:400]
    golds = [spec(task_id).render_target(r) for r in records]
    assert set(scores(task_id, golds, records)) == {1.0}
    empty = [r for r, g in zip(records, golds, strict=True) if g.strip() in ("[]", "")]
    assert empty and set(scores(task_id, ["[]"] * len(empty), empty)) == {1.0}


@pytest.mark.parametrize(("task_id", "answer"), [("tweet_offensive", "offensive."), ("tweet_offensive", "'offensive'"),
                                                 ("cold_offensive_zh", "冒犯。"), ("cold_offensive_zh", "「冒犯」"),
                                                 ("note_gender", "Yes."), ("cold_topic_zh", "答案是地域。")])
def test_trailing_period_quotes_and_prefix_are_fine_on_every_label_task(task_id: str, answer: str) -> None:
    gold = answer.strip("。.'「」").removeprefix("答案是")
    field = {"note_gender": "answer", "cold_topic_zh": "topic"}.get(task_id, "label")
    text = "content" if task_id == "note_gender" else "text"
    assert scores(task_id, [answer], [{text: "x", field: gold}]) == [1.0]


def test_fraction_answers_by_the_generators_own_verifier() -> None:
    records = rows("gen_math_fraction_simplification", str(SHARED))
    record = next(r for r in records if "/" in r["answer"])
    meta = json.loads(record["metadata"])
    n, d = meta["simplified_numerator"], meta["simplified_denominator"]
    answers = [f"<answer>{n}/{d}</answer>", f"<answer>$\\dfrac{{{n}}}{{{d}}}$</answer>",
               f"<answer>{2 * n}/{2 * d}</answer>", f"<answer>{n}/{d + 1}</answer>", "<answer></answer>"]
    assert scores("gen_math_fraction_simplification", answers, [record] * len(answers)) == [1.0, 1.0, 0.0, 0.0, 0.0]


def test_math_competition_compares_values() -> None:
    record = {"problem": "p", "solution": "so \\boxed{\\frac{1}{2}}"}
    answers = ["\\boxed{0.5}", "\\boxed{1/2}", "\\boxed{\\dfrac{1}{2}}", "\\boxed{\\frac{2}{3}}",
               "\\boxed{9^{9^{9^{9}}}}"]
    assert scores("math_competition", answers, [record] * len(answers)) == [1.0, 1.0, 1.0, 0.0, 0.0]
