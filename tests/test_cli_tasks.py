"""The spec commands from the terminal: validate, tasks list/show, schema."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from snsdata.cli import app
from snsdata.cli.tasks import spec_json_schema

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_validate_shipped_specs_passes() -> None:
    result = runner.invoke(app, ["validate"])
    assert result.exit_code == 0, result.output
    assert "task specs valid" in result.output


def test_validate_bad_spec_exits_1_naming_file_line_and_key(tmp_path: Path) -> None:
    good = (REPO / "task_specs" / "content_understanding" / "note_gender.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    bad.write_text(good.replace("extends: ../_sns_bench.yaml", f"extends: {REPO}/task_specs/_sns_bench.yaml")
                   .replace("  format: label", "  fromat: label"))
    result = runner.invoke(app, ["validate", str(bad)])
    assert result.exit_code == 1
    assert f"{bad.resolve()}:" in result.output and "output.fromat" in result.output
    assert "unknown key" in result.output


def test_tasks_list_json_and_show() -> None:
    result = runner.invoke(app, ["tasks", "list", "--json"])
    assert result.exit_code == 0, result.output
    rows = {row["id"]: row for row in json.loads(result.output)}
    assert rows["note_ner"]["capability"] == "information_extraction"
    assert {"languages", "output", "reward", "availability", "data_found"} <= set(rows["note_ner"])
    shown = runner.invoke(app, ["tasks", "show", "redtrans_en2zh"])
    assert json.loads(shown.output)["source"]["where"] == "src_lang = 'en'"
    missing = runner.invoke(app, ["tasks", "show", "no_such_task"])
    assert missing.exit_code == 1 and "unknown task" in missing.output


def test_render_unknown_data_root_says_how_to_fix(tmp_path: Path) -> None:
    result = runner.invoke(app, ["render", "note_gender", "--data-root", str(tmp_path)])
    assert result.exit_code == 1 and "--data-root" in result.output


def test_committed_schema_is_current() -> None:
    committed = json.loads((REPO / "docs" / "task_spec.schema.json").read_text())
    assert committed == spec_json_schema()
    assert committed["additionalProperties"] is False  # editors flag misspelt keys too
