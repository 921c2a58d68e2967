"""Bad inputs: each is a clear error or a reject naming its file and line, never a traceback or a crash.

One test per case of the hardening issue (invalid UTF-8 in validate and build, JSONL type drift, ragged CSV,
JSONL rejects with line numbers, a non-numeric tweet_intimacy label, Jinja limits, internal errors).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest
from typer.testing import CliRunner

from snsdata.cli import app
from snsdata.readers import SourceError, read_task
from snsdata.render import RenderError, render_messages, render_target
from snsdata.spec import SpecError, load_catalogue, load_spec
from snsdata.spec.mixture import Mixture

REPO = Path(__file__).resolve().parents[1]

SPEC = """\
id: {id}
capability: content_understanding
languages: [en]
description: input test
source:
{source}
prompt: {{user: "{user}"}}
target: {{template: "{{{{ label }}}}"}}
output: {{format: label, labels: [x, y, z]}}
reward: {{type: exact_match}}
"""


def spec_file(tmp_path: Path, source: str, user: str = "{{ text }}", task_id: str = "input_test") -> Path:
    path = tmp_path / f"{task_id}.yaml"
    path.write_text(SPEC.format(id=task_id, source=source, user=user.replace('"', '\\"')), encoding="utf-8")
    return path


JSONL_SOURCE = "  reader: jsonl\n  splits: {train: d.jsonl}\n  fields: [text, label]"


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output, result.output
    return result.exit_code, result.output


def test_invalid_utf8_in_jsonl_is_one_reject_with_its_line(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "a", "label": "x"}\n{"text": "\xff\xfe", "label": "y"}\n'
                                       b'{"text": "c", "label": "z"}\n')
    result = read_task(load_spec(spec_file(tmp_path, JSONL_SOURCE)), tmp_path)
    assert result.frame.collect()["text"].to_list() == ["a", "c"]
    assert result.rejects["source"].to_list() == [f"{tmp_path}/d.jsonl:2"]
    assert "invalid UTF-8" in result.rejects["reason"][0]


def test_invalid_utf8_in_validate_is_reported_with_its_place(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "a", "label": "x"}\n{"text": "\xc3\x28", "label": "y"}\n')
    code, output = invoke("validate", str(spec_file(tmp_path, JSONL_SOURCE)), "--data-root", str(tmp_path))
    assert code == 0, output
    assert "d.jsonl:2" in output and "invalid UTF-8" in output


@pytest.mark.parametrize(("name", "reader", "data", "where"), [
    ("d.csv", "csv", b"text,label\nok,x\n\xff\xfebad,y\nfine,z\n", ":3"),
    ("d.json", "json", b'[{"text": "ok", "label": "x"},\n {"text": "b\xffd", "label": "y"},\n'
                       b' {"text": "fine", "label": "z"}]', "#1"),
])
def test_invalid_utf8_in_csv_and_json_lists_is_a_located_reject(tmp_path: Path, name: str, reader: str,
                                                                 data: bytes, where: str) -> None:
    (tmp_path / name).write_bytes(data)
    spec = load_spec(spec_file(tmp_path, f"  reader: {reader}\n  splits: {{train: {name}}}\n  fields: [text, label]"))
    result = read_task(spec, tmp_path)
    assert result.frame.collect()["text"].to_list() == ["ok", "fine"]
    assert result.rejects["source"].to_list() == [f"{tmp_path}/{name}{where}"]
    assert "UTF-8" in result.rejects["reason"][0]


def _one_task_mixture(task_id: str) -> Mixture:
    return Mixture.model_validate({"name": "m", "description": "d", "format": "sft",
                                   "components": [{"name": "a", "select": {"ids": [task_id]}}]})


def test_invalid_utf8_and_drift_in_a_build_are_rejects_with_line_numbers(tmp_path: Path) -> None:
    from snsdata.build import build

    lines = [json.dumps({"text": f"post number {i} about cafes", "label": "xyz"[i % 3]}).encode() for i in range(30)]
    lines[4] = b'{"text": "caf\xe9 latte", "label": "x"}'  # Latin-1, not UTF-8
    lines[9] = b'{"text": {"nested": true}, "label": "y"}'  # text drifts from string to object
    lines[14] = b'{"text": "broken'
    (tmp_path / "d.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    spec = load_spec(spec_file(tmp_path, JSONL_SOURCE))
    result = build(_one_task_mixture(spec.id), data_root=tmp_path, out=tmp_path / "out",
                   catalogue={spec.id: spec})
    rejects = pl.read_parquet(tmp_path / "out" / "rejects.parquet").filter(pl.col("step") == "read")
    by_line = dict(zip(rejects["source"], rejects["reason"], strict=True))
    assert set(by_line) == {f"{tmp_path}/d.jsonl:{n}" for n in (5, 10, 15)}
    assert "invalid UTF-8" in by_line[f"{tmp_path}/d.jsonl:5"]
    assert "'text'" in by_line[f"{tmp_path}/d.jsonl:10"] and "first at" in by_line[f"{tmp_path}/d.jsonl:10"]
    assert "not valid JSON" in by_line[f"{tmp_path}/d.jsonl:15"]
    assert result.manifest["totals"]["rows_in"] == 30


def test_jsonl_type_drift_rejects_the_drifting_row_not_the_file(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(
        '{"text": "a", "label": "x", "n": 1}\n{"text": "b", "label": "y", "n": "two"}\n'
        '{"text": "c", "label": "z", "n": 3.5}\n{"text": ["d"], "label": "x", "n": 4}\n', encoding="utf-8")
    source = "  reader: jsonl\n  splits: {train: d.jsonl}\n  fields: [text, label, n]"
    result = read_task(load_spec(spec_file(tmp_path, source)), tmp_path)
    frame = result.frame.collect()
    assert frame["text"].to_list() == ["a", "c"] and frame["n"].to_list() == [1.0, 3.5]
    reasons = dict(zip(result.rejects["source"], result.rejects["reason"], strict=True))
    assert reasons[f"{tmp_path}/d.jsonl:2"] == (f"field 'n': a string where earlier rows have a number "
                                                f"(first at {tmp_path}/d.jsonl:1)")
    assert "field 'text': a list" in reasons[f"{tmp_path}/d.jsonl:4"]
    assert result.counts["train"] == {"read": 4, "rejected": 2, "excluded": 0, "kept": 2}


def test_ragged_csv_lines_are_rejects_with_their_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text('text,label\nok,x\ntoo,many,fields\nshort\n"multi\nline",y\nlast,z\n')
    spec = load_spec(spec_file(tmp_path, "  reader: csv\n  splits: {train: d.csv}\n  fields: [text, label]"))
    result = read_task(spec, tmp_path)
    assert result.frame.collect()["text"].to_list() == ["ok", "multi\nline", "last"]
    reasons = dict(zip(result.rejects["source"], result.rejects["reason"], strict=True))
    assert reasons == {f"{tmp_path}/d.csv:3": "3 field(s) where the header has 2",
                       f"{tmp_path}/d.csv:4": "1 field(s) where the header has 2"}


def test_jsonl_rejects_carry_their_line_numbers(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n\n{"text": "b"}\n{"text": "c", "label": "w"}\n'
                                      '"just a string"\n', encoding="utf-8")
    result = read_task(load_spec(spec_file(tmp_path, JSONL_SOURCE)), tmp_path)
    located = dict(zip(result.rejects["source"], result.rejects["step"], strict=True))
    assert located == {f"{tmp_path}/d.jsonl:3": "read", f"{tmp_path}/d.jsonl:4": "label",
                       f"{tmp_path}/d.jsonl:5": "read"}
    label = result.rejects.filter(pl.col("step") == "label")
    assert label["reason"][0] == "field 'label': w is not one of the declared labels (x, y, z)"


def test_a_non_numeric_tweet_intimacy_label_is_rejected_not_gold_zero(tmp_path: Path) -> None:
    spec = load_catalogue()["tweet_intimacy"]
    shutil.copytree(REPO / "tests/fixtures/catalogue/tweet_intimacy", tmp_path / "tweet_intimacy")
    path = tmp_path / "tweet_intimacy" / "train.csv"
    path.write_text(path.read_text(encoding="utf-8") + "not rated yet,n/a,English\n", encoding="utf-8")
    result = read_task(spec, tmp_path)
    texts = result.frame.collect()["text"].to_list()
    assert "not rated yet" not in texts and texts
    bad = result.rejects.filter(pl.col("step") == "label")
    assert bad.height == 1 and bad["source"][0] == f"{path}:{len(texts) + 2}"
    assert "'n/a' is not a finite number" in bad["reason"][0] and "reads label" in bad["reason"][0]
    with pytest.raises(RenderError, match="'n/a' is not a finite number"):
        render_target(spec, {"text": "t", "label": "n/a", "language": "English"})


def test_a_too_large_constant_range_fails_validate_with_the_limit(tmp_path: Path) -> None:
    path = spec_file(tmp_path, JSONL_SOURCE, user="{{ text }}{% for i in range(10**7) %}.{% endfor %}")
    with pytest.raises(SpecError, match=r"prompt.user: range of 10,000,000 items \(the limit is 100,000\)"):
        load_spec(path)
    code, output = invoke("validate", str(path))
    assert code == 1 and "range of 10,000,000 items" in output


def test_a_too_large_range_at_render_time_is_a_render_error(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, JSONL_SOURCE, user="{{ range(text | int) | length }}"))
    assert render_messages(spec, {"text": "3", "label": "x"})[-1]["content"] == "3"
    with pytest.raises(RenderError, match="range of 10,000,000 items"):
        render_messages(spec, {"text": "10000000", "label": "x"})


def test_string_repetition_is_refused_at_validate_before_it_allocates(tmp_path: Path) -> None:
    path = spec_file(tmp_path, JSONL_SOURCE, user="{{ text }}{{ 'a' * 10**9 }}")
    code, output = invoke("validate", str(path))
    assert code == 1 and "repetition would make a string or list of 1,000,000,000" in output


def test_string_repetition_from_data_is_refused_at_render_time(tmp_path: Path) -> None:
    spec = load_spec(spec_file(tmp_path, JSONL_SOURCE, user="{{ 'a' * (text | int) }}"))
    with pytest.raises(RenderError, match="repetition would make a string or list of 1,000,000,000"):
        render_messages(spec, {"text": "1000000000", "label": "x"})


@pytest.mark.parametrize("user", [
    "{{ text | center(10**9) }}",
    "{{ '%1000000000s' % text }}",
    "{{ text.ljust(1000000000) }}",
    "{% set ns = namespace(s=text) %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s }}",
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{% macro f(n) %}{{ f(n) }}{% endmacro %}{{ f(1) }}",
    "{{ text | list | join(text * 1000) }}",
])
def test_other_resource_bombs_are_render_errors(tmp_path: Path, user: str) -> None:
    spec = load_spec(spec_file(tmp_path, JSONL_SOURCE, user=user))
    with pytest.raises(RenderError):
        render_messages(spec, {"text": "abcd" * 100, "label": "x"})


def test_an_internal_error_prints_one_line_and_logs_the_traceback(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import snsdata.cli.tasks as tasks

    def broken(*args: object, **kwargs: object) -> None:
        raise ZeroDivisionError("a bug somewhere")

    monkeypatch.setattr(tasks, "data_found", broken)
    monkeypatch.setenv("SNSDATA_LOG_DIR", str(tmp_path / "logs"))
    code, output = invoke("tasks", "list")
    assert code == 3
    assert output.strip().count("\n") == 0 and "internal error" in output and "ZeroDivisionError" in output
    logs = list((tmp_path / "logs").glob("snsdata-*.log"))
    assert len(logs) == 1 and str(logs[0]) in output.replace("\n", "")
    assert "Traceback" in logs[0].read_text() and "a bug somewhere" in logs[0].read_text()


def test_exit_codes_usage_2_invalid_input_1(tmp_path: Path) -> None:
    assert invoke("validate", "--no-such-option")[0] == 2
    assert invoke("tasks", "show", "no_such_task")[0] == 1
    (tmp_path / "bad.yaml").write_bytes(b"id: \xff\xfe\n")
    code, output = invoke("validate", str(tmp_path / "bad.yaml"))
    assert code == 1 and "bad.yaml" in output and "UTF-8" in output


def test_missing_required_column_is_still_a_file_error(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(SourceError, match=r"d.jsonl: column\(s\) \['label'\] not found"):
        read_task(load_spec(spec_file(tmp_path, JSONL_SOURCE)), tmp_path)
