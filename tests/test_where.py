"""`source.where`: a column expression parsed by snsdata, never SQL; same rows as before, nothing else runs."""

from __future__ import annotations

import textwrap
from pathlib import Path

import polars as pl
import pytest

from snsdata.readers import data_found, default_data_root, read_task
from snsdata.readers.formats import PARSERS
from snsdata.spec import SpecError, load_catalogue, load_spec
from snsdata.spec.models import TableSource
from snsdata.spec.where import WhereError, parse_where, where_expression

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO / "tests" / "fixtures" / "catalogue"


def _without_where(spec):
    return spec.model_copy(update={"source": spec.source.model_copy(update={"where": None})})


def _roots(shared_data: Path | None) -> list[Path]:
    return [r for r in (shared_data, default_data_root(), FIXTURES) if r is not None]


def test_every_shipped_where_selects_the_rows_sql_selected(request: pytest.FixtureRequest) -> None:
    """Each shipped filter, unchanged, against `pl.sql_expr` (today's engine) on every data root that has the
    task's files (the real data where present), plus the spec's own example record."""
    shared = REPO.parent / "shared" / "data"
    roots = _roots(shared if shared.is_dir() else None)
    specs = [s for s in load_catalogue().values() if s.source.where]
    assert {s.id for s in specs} >= {"code_stdio_sandbox", "group_chat_roleplay_zh", "offense_target_en",
                                     "redtrans_en2zh", "redtrans_zh2en"}
    compared = 0
    for spec in specs:
        where = spec.source.where
        fields = spec.source.provided_fields()
        frames = [read_task(_without_where(spec), root).frame.collect() for root in roots if data_found(spec, root)]
        if spec.source.example:
            frames.append(pl.DataFrame([spec.source.example]))
        for frame in frames:
            ours = frame.filter(where_expression(where, fields))
            sql = frame.filter(pl.sql_expr(where))
            assert ours.equals(sql), (spec.id, where)
            compared += frame.height
    assert compared > 100


def test_the_generated_sources_where_selects_the_rows_sql_selected() -> None:
    spec = load_catalogue()["gen_if_sns_rewrite"]
    for kind in ("train", "eval"):
        for text in spec.source.params["texts"][kind]:
            if not text.get("where"):
                continue
            source = TableSource(reader="csv", splits={"all": text["path"]}, fields=[text["field"]])
            frame = PARSERS["csv"](default_data_root() / text["path"], source).frame.collect()
            ours = frame.filter(where_expression(text["where"], frame.columns))
            assert ours.equals(frame.filter(pl.sql_expr(text["where"])))
            assert 0 < ours.height < frame.height


FRAME = pl.DataFrame({
    "label": ["a", "b", None, "ab", "A%", "c"],
    "n": [1, 2, 3, None, -1, 10],
    "x": [0.5, 1.5, None, 2.0, -3.25, 0.0],
    "flag": [True, False, None, True, False, True],
    "s": [{"lang": [3, 1], "name": "p"}, {"lang": [1], "name": "q"}, None, {"lang": [], "name": None},
          {"lang": [3], "name": "it's"}, {"lang": None, "name": "r"}],
    "two words": ["x", "y", "z", "x", None, "y"],
})

SAME_AS_SQL = [
    "label = 'a'", "label != 'a'", "label <> 'a'", "n > 1", "n >= 2", "n < 3", "n <= 2", "x = 1.5", "n = -1",
    "x > -3.5", "flag", "NOT flag", "flag = TRUE", "flag = false", "label IN ('a', 'ab')",
    "label NOT IN ('a', 'ab')", "NOT (label IN ('a'))", "n IN (1, 10)", "n NOT IN (1, 10)", "label IS NULL",
    "label IS NOT NULL", "n IS NULL AND label IS NOT NULL", "label = 'a' OR n = 10", "label = 'a' OR n > 1 AND flag",
    "(label = 'a' OR n > 1) AND flag", "NOT label = 'a'", "NOT NOT flag", "label LIKE 'a%'", "label LIKE '_b'",
    "label NOT LIKE 'a%'", "label ILIKE 'a%'", "label LIKE 'A\\%'", "array_contains(s.lang, 3)",
    "NOT array_contains(s.lang, 3)", "s.name = 'it''s'", "s.name IS NULL", "starts_with(label, 'a')",
    "ends_with(label, 'b')", "label = 'a' and n = 1", "\"two words\" = 'x'", "n = 1 OR n = 2 OR n = 3",
    "n > 0 AND x > 0 AND flag",
]


@pytest.mark.parametrize("text", SAME_AS_SQL)
def test_grammar_agrees_with_sql_on_nulls_and_precedence(text: str) -> None:
    ours = FRAME.with_row_index().filter(where_expression(text, FRAME.columns))["index"].to_list()
    sql = FRAME.with_row_index().filter(pl.sql_expr(text))["index"].to_list()
    assert ours == sql, text


def test_contains_is_a_literal_substring() -> None:
    rows = FRAME.filter(where_expression("contains(label, '%')", FRAME.columns))["label"].to_list()
    assert rows == ["A%"]


@pytest.mark.parametrize(("text", "column", "needle"), [
    ("label IN (SELECT label FROM t)", 11, "SQL `SELECT`"),
    ("read_csv('/etc/passwd') = 1", 1, "unknown function 'read_csv'"),
    ("label = 'a'; DROP TABLE t", 12, "unexpected character"),
    ("label = ", 9, "expression ended"),
    ("label = 'a", 9, "unterminated quote"),
    ("label = 'a' AND", 16, "expression ended"),
    ("'a'", 1, "a literal is not a condition"),
    ("label = NULL", 9, "IS NULL"),
    ("n = 1 = 2", 7, "do not chain"),
    ("label IN ('a', 1)", None, "mixes"),
    ("label + 1 > 2", 7, "unexpected character"),
    ("(label = 'a'", 13, "expected ')'"),
    ("", 1, "empty"),
    ("label LIKE 3", 12, "quoted pattern"),
    ("starts_with(label, 1)", 1, "quoted string"),
    ("label = 'a' UNION SELECT 1", 13, "SQL `UNION`"),
])
def test_what_is_not_the_language_is_a_located_error(text: str, column: int | None, needle: str) -> None:
    with pytest.raises(WhereError) as caught:
        parse_where(text)
    assert needle in str(caught.value), str(caught.value)
    if column is not None:
        assert caught.value.column == column, str(caught.value)


SPEC = """\
id: where_task
capability: content_understanding
languages: [en]
description: where test
source:
  reader: csv
  splits: {{train: d.csv}}
  fields: [text, label]
  where: {where}
prompt: {{user: "{{{{ text }}}}"}}
target: {{template: "{{{{ label }}}}"}}
output: {{format: label}}
reward: {{type: exact_match}}
"""


def test_subquery_reading_a_file_is_refused_at_load_without_reading_it(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    secret = tmp_path / "secret.csv"
    secret.write_text("label\nTOP-SECRET-FIRST-LINE\n")
    attack = f"label IN (SELECT label FROM read_csv('{secret}'))"
    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(where=f'"{attack}"'))

    def no_sql(*args: object, **kwargs: object) -> None:
        raise AssertionError("a where reached a SQL engine or a file reader")

    monkeypatch.setattr(pl, "sql_expr", no_sql)
    monkeypatch.setattr(pl, "read_csv", no_sql)
    monkeypatch.setattr(pl, "scan_csv", no_sql)
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    issue = caught.value.issues[0]
    assert (issue.key_path, issue.line) == ("source.where", 9)
    assert "SELECT" in issue.message and "TOP-SECRET" not in str(caught.value)


def test_unknown_where_field_is_a_spec_error_naming_the_fields(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(where="\"lang = 'zh'\""))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    issue = caught.value.issues[0]
    assert (issue.key_path, issue.line) == ("source.where", 9)
    assert "unknown field 'lang'" in issue.message and "['label', 'text']" in issue.message


def test_unknown_where_field_at_validate_exits_1_without_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from snsdata.cli import app

    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(where="\"lang = 'zh'\""))
    (tmp_path / "d.csv").write_text("text,label\nhello,a\n")
    result = CliRunner().invoke(app, ["validate", str(path), "--data-root", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert "source.where" in result.output and "lang" in result.output
    assert "Traceback" not in result.output


def test_a_where_of_the_wrong_type_for_its_column_is_a_source_error(tmp_path: Path) -> None:
    from snsdata.readers import SourceError

    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(where="\"label > 3\""))
    (tmp_path / "d.csv").write_text("text,label\nhello,a\n")
    with pytest.raises(SourceError, match=r"source.where 'label > 3' cannot be applied to .*d.csv"):
        read_task(load_spec(path), tmp_path)


def test_where_on_a_struct_sub_field_reads_parquet(tmp_path: Path) -> None:
    pl.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "z"],
                  "meta": [{"lang": "zh"}, {"lang": "en"}, {"lang": None}]}).write_parquet(tmp_path / "d.parquet")
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent(SPEC.format(where="\"meta.lang = 'zh'\"")).replace(
        "reader: csv", "reader: parquet").replace("d.csv", "d.parquet").replace("[text, label]",
                                                                                 "[text, label, meta]"))
    result = read_task(load_spec(path), tmp_path)
    assert result.frame.collect()["text"].to_list() == ["a"]
    assert result.counts["train"]["excluded"] == 2
