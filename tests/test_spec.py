"""The spec language: strict validation with errors that name file, line and key path; extends; templates."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from snsdata.spec import SpecError, load_catalogue, load_spec

VALID = """\
id: tiny_task
version: 1
capability: content_understanding
languages: [en]
description: A tiny task.
source:
  reader: jsonl
  splits: {train: tiny.jsonl}
  fields: [text, label]
prompt:
  system: Classify.
  user: "Text: {{ text }}\\nAnswer: "
target:
  template: "{{ label }}"
output:
  format: label
  labels: [pos, neg]
reward:
  type: exact_match
"""


def write(tmp_path: Path, text: str, name: str = "task.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def only_issue(path: Path):
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert len(caught.value.issues) == 1, caught.value
    return caught.value.issues[0]


def test_valid_spec_loads(tmp_path: Path) -> None:
    spec = load_spec(write(tmp_path, VALID))
    assert spec.id == "tiny_task"
    assert spec.render_target({"text": "x", "label": "pos"}) == "pos"


def test_misspelt_key_names_file_line_and_key(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace("  labels: [pos, neg]", "  lables: [pos, neg]"))
    issue = only_issue(path)
    assert issue.file == str(path.resolve())
    assert issue.line == 17
    assert issue.key_path == "output.lables"
    assert "unknown key" in issue.message


def test_misspelt_key_inside_tagged_union(tmp_path: Path) -> None:
    with pytest.raises(SpecError) as caught:
        load_spec(write(tmp_path, VALID.replace("  fields: [text, label]", "  feilds: [text, label]")))
    located = {(issue.key_path, issue.line) for issue in caught.value.issues}
    assert ("source.feilds", 9) in located  # the misspelling, at its own line
    assert ("source.fields", 6) in located  # and the required key it left out, at its block


def test_template_syntax_error_names_key_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, VALID.replace('"Text: {{ text }}\\nAnswer: "', '"Text: {{ text }\\nAnswer: "'))
    issue = only_issue(path)
    assert (issue.file, issue.line, issue.key_path) == (str(path.resolve()), 12, "prompt.user")
    assert "syntax error" in issue.message


def test_template_field_missing_from_source(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, VALID.replace("{{ text }}", "{{ body }}")))
    assert issue.key_path == "prompt.user" and issue.line == 12
    assert "body" in issue.message and "does not provide" in issue.message


def test_wrong_value_and_bad_reward_type(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, VALID.replace("type: exact_match", "type: exact")))
    assert issue.key_path == "reward.type" and issue.line == 19
    issue = only_issue(write(tmp_path, VALID.replace("capability: content_understanding", "capability: vibes")))
    assert issue.key_path == "capability" and issue.line == 3


def test_unknown_normaliser_is_an_error(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, VALID + "  normalize: [strip, lowercase_everything]\n"))
    assert issue.key_path.startswith("reward.normalize")


def test_where_must_parse(tmp_path: Path) -> None:
    text = VALID.replace("  fields: [text, label]", "  fields: [text, label]\n  where: 'a = = b'")
    issue = only_issue(write(tmp_path, text))
    assert issue.key_path == "source.where"


def test_field_reference_checked(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, VALID.replace("  labels: [pos, neg]", "  candidates_field: options")))
    assert issue.key_path == "output.candidates_field" and "options" in issue.message


def test_duplicate_key_is_an_error(tmp_path: Path) -> None:
    issue = only_issue(write(tmp_path, VALID + "version: 2\n"))
    assert "duplicate key" in issue.message and issue.line == 20 and issue.key_path == "version"


def test_extends_variant_is_a_few_lines(tmp_path: Path) -> None:
    write(tmp_path, VALID, "_base.yaml")
    variant = write(tmp_path, """\
        extends: _base.yaml
        id: tiny_task_zh
        languages: [zh]
        prompt:
          system: 分类。
        """, "variant.yaml")
    spec = load_spec(variant)
    assert spec.id == "tiny_task_zh" and spec.languages == ["zh"]
    assert spec.prompt.system == "分类。" and spec.prompt.user.startswith("Text:")  # merged, not replaced
    specs = load_catalogue([tmp_path])
    assert list(specs) == ["tiny_task_zh"]  # `_base.yaml` is a base, not a task


def test_error_in_variant_points_at_variant_file(tmp_path: Path) -> None:
    write(tmp_path, VALID, "_base.yaml")
    variant = write(tmp_path, "extends: _base.yaml\nid: v\noutput:\n  formatt: label\n", "variant.yaml")
    issue = only_issue(variant)
    assert issue.file == str(variant.resolve()) and issue.line == 4 and issue.key_path == "output.formatt"


def test_circular_and_missing_extends(tmp_path: Path) -> None:
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(SpecError, match="circular"):
        load_spec(tmp_path / "a.yaml")
    with pytest.raises(SpecError, match="not found"):
        load_spec(write(tmp_path, "extends: nowhere.yaml\n", "c.yaml"))


def test_template_files_resolve_and_are_checked(tmp_path: Path) -> None:
    (tmp_path / "sys.txt").write_text("Hello {{ missing_field }}\n", encoding="utf-8")
    path = write(tmp_path, VALID.replace("  system: Classify.", "  system_file: sys.txt"))
    issue = only_issue(path)
    assert issue.key_path == "prompt.system" and "missing_field" in issue.message


def test_vars_are_template_fields(tmp_path: Path) -> None:
    text = VALID.replace("version: 1", "version: 1\nvars: {target_name: hillary}").replace(
        "{{ text }}", "{{ text }} about {{ target_name }}")
    spec = load_spec(write(tmp_path, text))
    assert spec.compiled["user"].render({**spec.vars, "text": "t"}).startswith("Text: t about hillary")


def test_shipped_catalogue_is_valid() -> None:
    specs = load_catalogue()
    assert {"note_taxonomy_single", "redtrans_zh2en", "redtrans_en2zh", "note_mrc_complex"} <= set(specs)


def test_sandboxed_templates_cannot_reach_python(tmp_path: Path) -> None:
    from jinja2.exceptions import SecurityError

    spec = load_spec(write(tmp_path, VALID.replace("{{ label }}", "{{ label.__class__.__mro__ }}")))
    with pytest.raises(SecurityError):
        spec.render_target({"text": "x", "label": "pos"})
