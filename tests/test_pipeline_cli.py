"""`snsdata filter`, `dedup`, `train-quality` end to end on small Parquet/JSONL files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from snsdata.cli.pipeline import dedup_command, filter_command, train_quality_command

app = typer.Typer()
app.command("filter")(filter_command)
app.command("dedup")(dedup_command)
app.command("train-quality")(train_quality_command)
runner = CliRunner()

ROWS = [
    {"id": 10, "text": "A long enough post about our weekend hiking trip in the hills", "likes": 3},
    {"id": 11, "text": "a long enough post about our weekend hiking trip in the hills!!", "likes": 5},
    {"id": 12, "text": None, "likes": 0},
    {"id": 13, "text": "#tag #tag2 @someone", "likes": 1},
    {"id": 14, "text": "今天去了一家新开的火锅店，味道很不错，推荐大家去试试", "likes": 9},
    {"id": 15, "text": "今天去了一家新开的火锅店，味道很不错，推荐大家去试试", "likes": 2},
]


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    parquet = tmp_path / "posts.parquet"
    pl.DataFrame(ROWS).write_parquet(parquet)
    jsonl = tmp_path / "posts.jsonl"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in ROWS), encoding="utf-8")
    return {"parquet": parquet, "jsonl": jsonl, "dir": tmp_path}


def _invoke(*args: object) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.parametrize("kind", ["parquet", "jsonl"])
def test_dedup_keeps_columns_order_and_names_kept_row(files: dict[str, Path], kind: str) -> None:
    out, rejects = files["dir"] / f"out.{kind}", files["dir"] / "rejects.jsonl"
    code, output = _invoke("dedup", files[kind], "--out", out, "--rejects", rejects)
    assert code == 0, output
    kept = pl.read_parquet(out) if kind == "parquet" else pl.read_ndjson(out)
    assert kept.columns == ["id", "text", "likes"] and kept["id"].to_list() == [10, 12, 13, 14]
    dropped = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    assert [(d["record_id"], d["duplicate_of"], d["step"]) for d in dropped] == [
        ("1", "0", "near_dedup"), ("5", "4", "near_dedup")]
    assert json.loads(dropped[1]["row"]) == ROWS[5]
    assert dropped[1]["reason"] == "exact duplicate (normalised text)"
    assert "null text" in output


def test_dedup_options_change_the_method(files: dict[str, Path]) -> None:
    out = files["dir"] / "strict.parquet"
    code, _ = _invoke("dedup", files["parquet"], "--out", out, "--threshold", "0.99", "--word-ngrams", "--ngram", "3",
                      "--seed", "4")
    assert code == 0 and pl.read_parquet(out)["id"].to_list() == [10, 11, 12, 13, 14]


def test_filter_with_default_and_yaml_config(files: dict[str, Path]) -> None:
    out, rejects = files["dir"] / "f.parquet", files["dir"] / "f-rejects.parquet"
    code, output = _invoke("filter", files["jsonl"], "--out", out, "--rejects", rejects)
    assert code == 0, output
    assert pl.read_parquet(out)["id"].to_list() == [10, 11, 14, 15]
    dropped = pl.read_parquet(rejects)
    assert dropped.select("record_id", "step", "reason").rows() == [
        ("2", "length", "text is null"), ("3", "tags_only", "content_chars 0 < 2 (only tags, mentions, links, emoji)")]
    config = files["dir"] / "pipeline.yaml"
    config.write_text("- {step: langid, allowed: [zh]}\n- {step: exact_dedup}\n", encoding="utf-8")
    code, output = _invoke("filter", files["parquet"], "--out", out, "--config", config)
    assert code == 0, output
    assert pl.read_parquet(out)["id"].to_list() == [14]


def test_train_quality_command(files: dict[str, Path]) -> None:
    pos, neg = files["dir"] / "pos.jsonl", files["dir"] / "neg.jsonl"
    pos.write_text("".join(json.dumps({"body": f"a careful review of item {i}"}) + "\n" for i in range(10)))
    neg.write_text("".join(json.dumps({"body": f"click here now {i}"}) + "\n" for i in range(10)))
    model = files["dir"] / "q.bin"
    code, output = _invoke("train-quality", "--positive", pos, "--negative", neg, "--out", model,
                           "--text-column", "body")
    assert code == 0, output
    assert model.exists() and "10 positive and 10 negative" in output


def test_bad_inputs_give_clear_errors(files: dict[str, Path]) -> None:
    out = files["dir"] / "o.parquet"
    code, output = _invoke("dedup", files["dir"] / "missing.parquet", "--out", out)
    assert code == 1 and "missing.parquet: file not found" in output
    code, output = _invoke("dedup", files["parquet"], "--out", out, "--text-column", "body")
    assert code == 1 and "no column 'body'" in output and "id, text, likes" in output
    broken = files["dir"] / "broken.jsonl"
    broken.write_text('{"text": "fine"}\n{"text": "fine too"}\n{"text": oops}\n', encoding="utf-8")
    code, output = _invoke("filter", broken, "--out", out)
    assert code == 1 and "broken.jsonl:3: not valid JSON" in output
    config = files["dir"] / "bad.yaml"
    config.write_text("- {step: length, min_chars: 5, colour: red}\n", encoding="utf-8")
    code, output = _invoke("filter", files["parquet"], "--out", out, "--config", config)
    assert code == 1 and "bad.yaml:1: 0.colour: unknown key" in output
    code, output = _invoke("dedup", files["dir"] / "posts.csv", "--out", out)
    assert code == 1 and "posts.csv" in output
    numeric = files["dir"] / "numeric.parquet"
    pl.DataFrame({"text": [1, 2]}).write_parquet(numeric)
    code, output = _invoke("dedup", numeric, "--out", out)
    assert code == 1 and "holds Int64, not text" in output
