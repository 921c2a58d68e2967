"""`snsdata eval` on the fixture specs: both alignments, the data sources, and errors that name file and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

import snsdata.cli.rewards  # noqa: F401  (registers `eval`)
from snsdata.cli.app import app

FIXTURES = Path(__file__).parent / "fixtures" / "reward_specs"
DATA = FIXTURES / "data"
runner = CliRunner()


def write_jsonl(path: Path, rows: list[object]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def run(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, ["eval", "--specs", str(FIXTURES), *args])
    return result.exit_code, result.output


def test_positional_predictions_with_a_data_file(tmp_path: Path) -> None:
    preds = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "Food"}, {"prediction": "Travel"},
                                               {"prediction": [{"role": "assistant", "content": "Education"}]}])
    code, out = run("--task", "fx_label", "--predictions", str(preds), "--data", str(DATA / "fx_label.jsonl"),
                    "--json")
    assert code == 0, out
    metrics = json.loads(out)
    assert metrics["accuracy"] == pytest.approx(2 / 3) and metrics["n"] == 3


def test_predictions_keyed_by_record_id_from_the_data_root(tmp_path: Path) -> None:
    from snsdata.readers import read_task
    from snsdata.spec import load_catalogue

    spec = load_catalogue([FIXTURES])["fx_extract"]
    records = read_task(spec, DATA).frame.collect().to_dicts()
    lines = [{"record_id": r["record_id"], "prediction": f"Score: {r['answer']}"} for r in reversed(records)]
    preds = write_jsonl(tmp_path / "p.jsonl", lines)
    code, out = run("--task", "fx_extract", "--predictions", str(preds), "--data-root", str(DATA),
                    "--split", "test", "--json")
    assert code == 0, out
    assert json.loads(out)["accuracy"] == 1.0
    code, out = run("--task", "fx_extract", "--predictions", str(preds), "--data-root", str(DATA))
    assert code == 0 and "accuracy" in out and "1.0000" in out


@pytest.mark.parametrize(("lines", "message"), [
    (['{"prediction": "Food"}', "{broken"], "p.jsonl:2: not valid JSON"),
    (['{"prediction": "Food"}', '{"answer": "x"}'], "p.jsonl:2: each line is a JSON object with a `prediction`"),
    (['{"prediction": 3}'], "p.jsonl:1: `prediction` is a string"),
    (['{"prediction": "Food"}'], "1 prediction line(s) but 3 record(s)"),
    (['{"prediction": "a", "record_id": "x"}'], "no prediction for 3 of 3 record(s)"),
    ([], "no predictions"),
])
def test_bad_prediction_files_name_the_file_and_line(tmp_path: Path, lines: list[str], message: str) -> None:
    preds = tmp_path / "p.jsonl"
    preds.write_text("\n".join(lines) + "\n", encoding="utf-8")
    code, out = run("--task", "fx_label", "--predictions", str(preds), "--data", str(DATA / "fx_label.jsonl"))
    assert code == 1
    assert message in " ".join(out.split())


def test_argument_errors(tmp_path: Path) -> None:
    preds = write_jsonl(tmp_path / "p.jsonl", [{"prediction": "Food"}] * 3)
    data = str(DATA / "fx_label.jsonl")
    assert "unknown task" in run("--task", "nope", "--predictions", str(preds), "--data", data)[1]
    assert "not both" in run("--task", "fx_label", "--predictions", str(preds), "--data", data,
                             "--data-root", str(DATA))[1]
    code, out = run("--task", "fx_label", "--predictions", str(preds), "--data", data, "--compat", "official")
    assert code == 1 and "official" in out
    code, out = run("--task", "fx_label", "--predictions", str(preds), "--data-root", str(DATA), "--split", "train")
    assert code == 1 and "no records of split" in out


def test_benchmark_task_official_compat(tmp_path: Path, shared_data: Path) -> None:
    rows = json.loads((shared_data / "sns_bench_sample" / "Note-Gender.json").read_text(encoding="utf-8"))
    preds = write_jsonl(tmp_path / "p.jsonl", [{"prediction": f"**{r['answer']}**"} for r in rows])
    result = runner.invoke(app, ["eval", "--task", "note_gender", "--predictions", str(preds),
                                 "--data-root", str(shared_data), "--compat", "official", "--json"])
    assert result.exit_code == 0, result.output
    output = json.loads(result.output)
    baselines = output.pop("baselines")
    assert output == {"accuracy": 0.0}  # the official parser does not unwrap **Yes**; baselines stay apart
    # The trivial answers on the same records: the official parser cuts "Yes, No" at the comma, so answering
    # both labels scores like "Yes" (every gold of this sample is Yes); fixed mode refuses it.
    assert baselines["empty"] == {"accuracy": 0.0} and baselines["all_candidates"] == {"accuracy": 100.0}
    result = runner.invoke(app, ["eval", "--task", "note_gender", "--predictions", str(preds),
                                 "--data-root", str(shared_data), "--json"])
    fixed = json.loads(result.output)
    assert fixed["accuracy"] == 100.0 and fixed["baselines"]["all_candidates"]["accuracy"] == 0.0


def test_eval_data_file_applies_the_specs_where(tmp_path: Path, shared_data: Path) -> None:
    # RedTrans holds both directions in one file; each direction's spec selects its own with `where`.
    rows = json.loads((shared_data / "redtrans_sample" / "RedTrans-Bench-sample.json").read_text(encoding="utf-8"))
    data = tmp_path / "redtrans.json"
    data.write_text(json.dumps(rows, ensure_ascii=False), encoding="utf-8")
    zh_rows = [r for r in rows if r["src_lang"] == "zh"]
    assert 0 < len(zh_rows) < len(rows)
    preds = write_jsonl(tmp_path / "p.jsonl", [{"prediction": r["en"]} for r in zh_rows])
    result = runner.invoke(app, ["eval", "--task", "redtrans_zh2en", "--predictions", str(preds),
                                 "--data", str(data), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.output)
    assert metrics["n"] == len(zh_rows) and metrics["bleu_score"] == pytest.approx(100.0)
    assert "empty" in metrics["baselines"] and metrics["baselines"]["empty"]["bleu_score"] == 0.0
