"""`source.known_bad`: a benchmark's own bad records, kept in evaluation, out of training, known to validate.

The fixture reproduces the shape of SNS-Bench's three Note-Taxonomy-single records whose gold is not among their
own candidates (synthetic text: the benchmark's licence forbids shipping its own).
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from snsdata.build import build
from snsdata.cli import app
from snsdata.readers import read_task
from snsdata.spec import SpecError, load_catalogue, load_spec
from snsdata.spec.mixture import Mixture

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests" / "fixtures" / "known_bad"
SPEC = REPO / "task_specs" / "content_understanding" / "note_taxonomy_single.yaml"
KNOWN = {2: "Travel Guide", 4: "Art Exhibition", 6: "Cream"}  # record index in the fixture -> gold


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def fixture_records() -> list[dict]:
    return json.loads((FIXTURE / "sns_bench_sample" / "Note-Taxonomy-single.json").read_text(encoding="utf-8"))


def test_the_fixture_has_the_shape_of_the_three_records() -> None:
    records = fixture_records()
    for index, gold in KNOWN.items():
        candidates = [c.strip() for c in records[index]["candidates"].split(",")]
        assert records[index]["answer"] == gold and gold not in candidates
    assert all(r["answer"] in r["candidates"] for i, r in enumerate(records) if i not in KNOWN)


def test_validate_lists_them_as_known_and_exits_0() -> None:
    code, output = invoke("validate", str(SPEC), "--data-root", str(FIXTURE))
    assert code == 0, output
    known = [line for line in output.splitlines() if line.startswith("known ")]
    assert len(known) == 3
    for index, gold in KNOWN.items():
        assert any(f"Note-Taxonomy-single.json#{index})" in line and f"gold '{gold}'" in line for line in known)
    assert "5 records read, rendered and gold-checked (3 declared known-bad set aside)" in output
    assert "3 declared known-bad record(s) set aside" in output


def test_without_the_declarations_the_gold_self_check_fails(tmp_path: Path) -> None:
    undeclared = tmp_path / "note_taxonomy_single.yaml"
    undeclared.write_text(f"extends: {SPEC}\nsource:\n  known_bad: []\n", encoding="utf-8")
    code, output = invoke("validate", str(undeclared), "--data-root", str(FIXTURE))
    assert code == 1 and output.count("gold self-check") == 3, output


def test_a_build_leaves_them_out_with_their_reason(tmp_path: Path) -> None:
    spec = load_catalogue()["note_taxonomy_single"]
    mixture = Mixture.model_validate({"name": "m", "description": "d", "format": "sft",
                                      "components": [{"name": "a", "select": {"ids": [spec.id]}}]})
    result = build(mixture, data_root=FIXTURE, out=tmp_path / "b", catalogue={spec.id: spec})
    known = result.rejects.filter(pl.col("step") == "known_bad")
    assert known.height == 3
    assert sorted(known["reason"]) == sorted(k.reason for k in spec.source.known_bad)
    assert sorted(json.loads(row)["answer"] for row in known["row"]) == sorted(KNOWN.values())
    written = set(result.train["record_id"]) | set(result.eval["record_id"])
    assert written and not written & set(known["record_id"])
    totals = result.manifest["totals"]
    assert totals["rows_in"] == 8 and totals["rows_in"] == totals["rows_out"] + totals["rows_rejected"] \
        + totals["rows_excluded"]


def test_eval_keeps_and_scores_them(tmp_path: Path) -> None:
    records = fixture_records()
    predictions = tmp_path / "p.jsonl"
    predictions.write_text("".join(json.dumps({"prediction": "Wrong" if i in KNOWN else r["answer"]}) + "\n"
                                   for i, r in enumerate(records)))
    code, output = invoke("eval", "--task", "note_taxonomy_single", "--data-root", str(FIXTURE),
                          "--predictions", str(predictions), "--compat", "official", "--json")
    assert code == 0, output
    assert json.loads(output)["accuracy"] == pytest.approx(100 * 5 / 8)  # all 8 scored; the 3 answered wrong
    golds = tmp_path / "golds.jsonl"
    golds.write_text("".join(json.dumps({"prediction": r["answer"]}) + "\n" for r in records))
    code, output = invoke("eval", "--task", "note_taxonomy_single", "--data-root", str(FIXTURE),
                          "--predictions", str(golds), "--compat", "official", "--json")
    assert json.loads(output)["accuracy"] == pytest.approx(100.0)  # the benchmark's own gold counts as right


def test_reading_for_eval_keeps_them_and_for_training_rejects_them() -> None:
    spec = load_catalogue()["note_taxonomy_single"]
    for_eval = read_task(spec, FIXTURE, purpose="eval")
    assert for_eval.frame.collect().height == 8 and for_eval.rejects.is_empty()
    for_train = read_task(spec, FIXTURE)
    assert for_train.frame.collect().height == 5
    assert for_train.rejects["step"].to_list() == ["known_bad"] * 3
    assert for_train.counts["test"] == {"read": 8, "rejected": 3, "excluded": 0, "kept": 5}


SYNTHETIC = """\
id: kb_task
capability: content_understanding
languages: [en]
description: known-bad test
source:
  reader: jsonl
  splits: {{train: d.jsonl}}
  fields: [text, label]
  known_bad:
{declared}
prompt: {{user: "{{{{ text }}}}"}}
target: {{template: "{{{{ label }}}}"}}
output: {{format: label, labels: [x, y]}}
reward: {{type: exact_match}}
"""


def synthetic(tmp_path: Path, declared: str):
    (tmp_path / "d.jsonl").write_text('{"text": "alpha one", "label": "x"}\n{"text": "beta two", "label": "y"}\n'
                                      '{"text": "gamma three", "label": "q"}\n', encoding="utf-8")
    path = tmp_path / "kb_task.yaml"
    path.write_text(SYNTHETIC.format(declared=declared), encoding="utf-8")
    return path


def test_declared_by_record_id_alone(tmp_path: Path) -> None:
    path = synthetic(tmp_path, "    - {reason: placeholder, match: {text: nothing}}")
    record_id = read_task(load_spec(path), tmp_path, purpose="eval").frame.collect()["record_id"][1]
    path = synthetic(tmp_path, f"    - {{reason: 'mislabelled at the source', record_id: '{record_id}'}}")
    result = read_task(load_spec(path), tmp_path)
    assert result.frame.collect()["text"].to_list() == ["alpha one"]
    known = result.rejects.filter(pl.col("step") == "known_bad")
    assert known.select("record_id", "reason").rows() == [(record_id, "mislabelled at the source")]
    assert result.rejects.filter(pl.col("step") == "label")["source"].to_list() == [f"{tmp_path}/d.jsonl:3"]


def test_a_known_bad_record_is_exempt_from_the_label_check_in_eval(tmp_path: Path) -> None:
    declared = "    - {reason: 'label q is a typo at the source', match: {label: q, text: {prefix: gamma}}}"
    path = synthetic(tmp_path, declared)
    spec = load_spec(path)
    assert read_task(spec, tmp_path, purpose="eval").frame.collect()["label"].to_list() == ["x", "y", "q"]
    train = read_task(spec, tmp_path)
    assert train.frame.collect()["label"].to_list() == ["x", "y"]
    assert train.rejects["step"].to_list() == ["known_bad"]


def test_a_declaration_that_matches_nothing_is_info_not_an_error(tmp_path: Path) -> None:
    path = synthetic(tmp_path, "    - {reason: 'not in this copy', match: {text: {contains: omega}}}")
    code, output = invoke("validate", str(path), "--data-root", str(tmp_path))
    assert code == 0, output
    assert "source.known_bad[0] matched no record" in output
    assert "label: 1" in output and "d.jsonl:3" in output  # the undeclared bad label is a reject, with its line


@pytest.mark.parametrize(("declared", "message"), [
    ("    - {reason: r}", "identified by `match`"),
    ("    - {reason: r, match: {nope: 1}}", "field 'nope' is not provided"),
    ("    - {reason: r, record_id: xyz}", "record_id"),
    ("    - {match: {text: a}}", "reason"),
])
def test_bad_declarations_are_located_spec_errors(tmp_path: Path, declared: str, message: str) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(synthetic(tmp_path, declared))
    assert message in str(caught.value)
    assert all(issue.line >= 9 for issue in caught.value.issues), caught.value
