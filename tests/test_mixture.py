"""Mixture YAML: strict validation with located errors, selectors, and the shipped mixtures against the catalogue."""

from __future__ import annotations

from pathlib import Path

import pytest

from snsdata.spec import SpecError, load_catalogue
from snsdata.spec.mixture import Mixture, Select, check_against_catalogue, list_mixtures, load_mixture

SHIPPED = {"cpt", "sft_step1", "sft_step2", "dpo", "stage1", "stage2", "stage3"}
ABLATIONS = {"stage2_soft0": "sft", "stage2_soft5": "sft", "stage2_soft10": "sft", "stage2_soft15": "sft",
             "naive_sft": "sft", "naive_rl": "rl", "rl_twice": "rl"}
"""RedOne 2.0's suggested experiments, shipped as mixtures beside the stages."""


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue()


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "mix.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_mixtures_load_and_name_only_known_tasks(catalogue) -> None:
    assert set(list_mixtures()) == SHIPPED | set(ABLATIONS)
    formats = {}
    for name in SHIPPED | set(ABLATIONS):
        mixture = load_mixture(name)
        assert mixture.name == name
        assert check_against_catalogue(mixture, catalogue) == []
        formats[name] = mixture.format
    assert formats == {"cpt": "cpt", "sft_step1": "sft", "sft_step2": "sft", "dpo": "dpo", "stage1": "rl",
                       "stage2": "sft", "stage3": "rl", **ABLATIONS}
    step1, step2 = load_mixture("sft_step1"), load_mixture("sft_step2")
    share = {m.name: next(c.share for c in m.components if c.name == "sns") for m in (step1, step2)}
    assert share["sft_step2"] > share["sft_step1"]  # RedOne: step 2 has the higher SNS share
    splits = {load_mixture(name).splits.model_dump_json() for name in SHIPPED}
    assert len(splits) == 1  # every stage holds out the same eval records


def test_unknown_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, "name: m\ndescription: d\nformat: sft\ncomponents:\n  - name: a\n    selct: {}\n")
    with pytest.raises(SpecError) as info:
        load_mixture(path)
    issue = info.value.issues[0]
    assert (issue.file, issue.line, issue.key_path) == (str(path), 6, "components.0.selct")
    assert "unknown key" in issue.message


@pytest.mark.parametrize(("body", "message"), [
    ("total: 10\ncomponents:\n  - {name: a, select: {}, share: 0.5}\n  - {name: b, select: {}, share: 0.4}\n",
     "sum to 0.9"),
    ("components:\n  - {name: a, select: {}, share: 1.0}\n", "need the mixture's `total`"),
    ("total: 10\ncomponents:\n  - {name: a, select: {}}\n", "every component has a `share` or a `count`"),
    ("components:\n  - {name: a, raw: {paths: [x.txt], format: txt}}\n", "only a `cpt` mixture"),
    ("components:\n  - {name: a, select: {}, target: soft_label}\n", "SFT targets"),
    ("components:\n  - {name: a, select: {weak: true}}\n", "no `targeted` block"),
    ("components:\n  - {name: a, select: {}, raw: {paths: [x], format: txt}}\n", "exactly one of"),
])
def test_inconsistent_mixtures_are_refused(tmp_path: Path, body: str, message: str) -> None:
    fmt = "rl" if "soft_label" in body or "raw" in body else "sft"
    path = write(tmp_path, f"name: m\ndescription: d\nformat: {fmt}\n{body}")
    with pytest.raises(SpecError, match=message):
        load_mixture(path)


def test_unknown_task_ids_are_located(tmp_path: Path, catalogue) -> None:
    path = write(tmp_path, "name: m\ndescription: d\nformat: rl\ncomponents:\n"
                           "  - name: a\n    select: {ids: [cold_topic_zh, no_such_task]}\n")
    issues = check_against_catalogue(load_mixture(path), catalogue)
    assert [(i.line, i.key_path) for i in issues] == [(6, "components.0.select.ids.1")]
    assert "no_such_task" in issues[0].message


def test_steps_follow_the_pipeline_registry_with_located_errors(tmp_path: Path) -> None:
    from snsdata.build.steps import plan_steps

    mixture = Mixture.model_validate({"name": "m", "description": "d", "format": "cpt",
                                      "steps": ["exact_dedup", {"step": "length", "min_chars": 3},
                                                "decontaminate", {"step": "chunk", "max_len": 500}],
                                      "components": [{"name": "a", "select": {}}]})
    assert mixture.steps[0] == {"step": "exact_dedup"}
    plan = plan_steps(mixture)
    assert plan.names == ["exact_dedup", "length", "decontaminate", "chunk"] and plan.chunk.max_len == 500
    path = write(tmp_path, "name: m\ndescription: d\nformat: rl\nsteps:\n  - {step: length, min_chr: 3}\n"
                           "  - {step: no_such_step}\n  - {step: chunk}\ncomponents:\n  - {name: a, select: {}}\n")
    with pytest.raises(SpecError) as info:
        plan_steps(load_mixture(path))
    found = {(i.line, i.key_path) for i in info.value.issues}
    assert found == {(5, "steps.0.min_chr"), (6, "steps.1"), (7, "steps.2")}
    assert any("cpt mixtures only" in i.message for i in info.value.issues)
    with pytest.raises(SpecError, match="shipped: cpt"):
        load_mixture("no_such_mixture")


def test_selectors_combine_with_and(catalogue) -> None:
    cold = catalogue["cold_offensive_zh"]
    general = catalogue["gen_math_gcd"]
    assert Select().matches(cold) and Select().matches(general)
    assert Select(origin="sns").matches(cold) and not Select(origin="sns").matches(general)
    assert Select(languages=["zh"], tags=["cold"]).matches(cold)
    assert not Select(languages=["en"], tags=["cold"]).matches(cold)
    assert not Select(origin="sns", exclude_ids=["cold_offensive_zh"]).matches(cold)
    assert Select(weak=True).matches(cold, ["cold_offensive_zh"]) and not Select(weak=True).matches(cold, [])
    assert Select(rationale=True).matches(catalogue["cold_offensive_explain_zh"])
    assert Select(output_formats=["label"]).matches(cold) and not Select(output_formats=["label"]).matches(general)
