"""verl, LLaMA-Factory and OpenRLHF exports, checked against each trainer's documented schema, and the CLI."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import polars as pl
import pyarrow.parquet as pq
import pytest
import yaml
from test_backends import samples, write_build
from typer.testing import CliRunner

import snsdata.cli.backends  # noqa: F401  (registers export and serve-rewards)
from snsdata.backends.llamafactory import export_llamafactory
from snsdata.backends.server import export_openrlhf
from snsdata.backends.trl import BuildError
from snsdata.backends.verl import export_verl
from snsdata.cli.app import app

VERL_FILE = Path(__file__).resolve().parents[1] / "backends" / "verl.py"


def load_like_verl(path: Path, name: str = "compute_score"):
    """What verl's `get_custom_reward_fn` does: import the file as a standalone module, take the function."""
    spec = importlib.util.spec_from_file_location("custom_module", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, name)


@pytest.fixture(scope="module")
def verl_rows(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict], dict]:
    root = tmp_path_factory.mktemp("verl")
    result = export_verl(write_build(root / "rl", "rl"), root / "out")
    rows = pq.read_table(result["files"]["train"]).to_pylist() + pq.read_table(result["files"]["eval"]).to_pylist()
    return rows, result


def test_verl_rows_follow_the_documented_shape(verl_rows: tuple[list[dict], dict]) -> None:
    rows, result = verl_rows
    assert len(rows) == len(samples())
    row = next(r for r in rows if r["extra_info"]["task_id"] == "redtrans_en2zh")
    assert row["data_source"] == "snsdata/redtrans_en2zh"
    assert row["ability"] == "translation"
    assert row["prompt"][0] == {"role": "system", "content": "Translate to Chinese."}
    assert row["reward_model"]["style"] == "rule"
    assert row["reward_model"]["ground_truth"] == json.loads(row["extra_info"]["record"])["zh"]
    assert row["extra_info"]["reward_type"] == "composite"
    assert json.loads(row["extra_info"]["reward"])["parts"][0]["reward"]["metric"] == "bleu"
    assert {"split", "index"} <= set(row["extra_info"])
    assert json.loads(result["specs"].read_text())["note_gender"]["id"] == "note_gender"
    assert any(o.startswith("reward.custom_reward_function.path=") and o.endswith("verl.py")
               for o in result["overrides"])


def test_compute_score_loaded_from_its_file_scores_verl_rows(verl_rows: tuple[list[dict], dict]) -> None:
    rows, result = verl_rows
    compute_score = load_like_verl(VERL_FILE)
    gold = {s["record_id"]: s for s in samples()}
    for row in rows:
        item = gold[row["extra_info"]["record_id"]]
        right = compute_score(row["data_source"], item["gold"], row["reward_model"]["ground_truth"],
                              row["extra_info"])
        wrong = compute_score(data_source=row["data_source"], solution_str=item["wrong"],
                              ground_truth=row["reward_model"]["ground_truth"], extra_info=row["extra_info"],
                              specs=str(result["specs"]))
        assert right == {"score": 1.0, "task_score": 1.0, "reward_applies": 1.0, "timed_out": 0.0}
        assert wrong["score"] < 0.5 and wrong["reward_applies"] == 1.0


def test_batch_form_matches_single_calls(verl_rows: tuple[list[dict], dict]) -> None:
    rows, _ = verl_rows
    batch = load_like_verl(VERL_FILE, "compute_score_batch")
    single = load_like_verl(VERL_FILE)
    solutions = ["Yes", "No", "我爱这座城市", "<think>x</think>Yes"] * (len(rows) // 4)
    kwargs = {"data_sources": [r["data_source"] for r in rows], "solution_strs": solutions,
              "ground_truths": [r["reward_model"]["ground_truth"] for r in rows],
              "extra_infos": [r["extra_info"] for r in rows]}
    expected = [single(r["data_source"], s, r["reward_model"]["ground_truth"], r["extra_info"])
                for r, s in zip(rows, solutions, strict=True)]
    assert batch(**kwargs) == expected
    assert single(**kwargs) == expected  # the batch manager calls the configured name with plural keywords


def test_the_rows_reward_declaration_wins_over_the_catalogue(verl_rows: tuple[list[dict], dict]) -> None:
    rows, _ = verl_rows
    compute_score = load_like_verl(VERL_FILE)
    row = next(r for r in rows if r["extra_info"]["task_id"] == "note_gender")
    info = dict(row["extra_info"])
    # A build whose spec accepted only answers matching a pattern: the row carries that declaration.
    info["reward"] = json.dumps({"type": "pattern", "checks": [{"must_match": "^Maybe$"}]})
    assert compute_score(row["data_source"], "Maybe", "", info)["score"] == 1.0
    assert compute_score(row["data_source"], "Maybe", "", row["extra_info"])["score"] == 0.0


def test_unknown_task_fails_loudly_and_missing_record_does_not_apply() -> None:
    compute_score = load_like_verl(VERL_FILE)
    with pytest.raises(KeyError, match=r"reward_kwargs\.specs"):
        compute_score("snsdata/no_such_task", "x", "", {"task_id": "no_such_task", "record": "{}"})
    assert compute_score("snsdata/note_gender", "Yes", "Yes", None) == {"score": 0.0, "task_score": 0.0,
                                                                        "reward_applies": 0.0, "timed_out": 0.0}


def test_verl_export_refuses_other_formats(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not an `rl` build"):
        export_verl(write_build(tmp_path / "sft", "sft"), tmp_path / "out")


# --- LLaMA-Factory: data/README.md's dataset_info.json schema -------------------------------------------------------

ENTRY_KEYS = {"file_name", "formatting", "ranking", "columns", "tags", "hf_hub_url", "ms_hub_url", "script_url",
              "subset", "split", "folder", "num_samples"}
COLUMN_KEYS = {"prompt", "query", "response", "history", "messages", "system", "tools", "images", "videos",
               "audios", "chosen", "rejected", "kto_tag"}
TAG_KEYS = {"role_tag", "content_tag", "user_tag", "assistant_tag", "observation_tag", "function_tag", "system_tag"}


def check_sharegpt(entry: dict, example: dict) -> None:
    """The checks LLaMA-Factory's ShareGPT converter applies; a failing row would be skipped with a warning."""
    columns, tags = entry["columns"], entry["tags"]
    messages = example[columns["messages"]]
    if messages and messages[0][tags["role_tag"]] == tags["system_tag"]:
        messages = messages[1:]
    for turn, message in enumerate(messages):
        allowed = tags["user_tag"] if turn % 2 == 0 else tags["assistant_tag"]
        assert message[tags["role_tag"]] == allowed
        assert isinstance(message[tags["content_tag"]], str)
    if entry.get("ranking"):
        assert len(messages) % 2 == 1
        for side in ("chosen", "rejected"):
            answer = example[columns[side]]
            assert answer[tags["role_tag"]] == tags["assistant_tag"] and isinstance(answer[tags["content_tag"]], str)
    else:
        assert len(messages) % 2 == 0 and messages


@pytest.mark.parametrize("fmt", ["sft", "dpo", "cpt"])
def test_llamafactory_export_matches_the_documented_schema(tmp_path: Path, fmt: str) -> None:
    out = tmp_path / "lf"
    entries = export_llamafactory(write_build(tmp_path / fmt, fmt), out, name=f"sns_{fmt}")
    info = json.loads((out / "dataset_info.json").read_text())
    assert set(info) == set(entries) == {f"sns_{fmt}_train", f"sns_{fmt}_eval"}
    for entry in info.values():
        assert set(entry) <= ENTRY_KEYS and set(entry["columns"]) <= COLUMN_KEYS
        assert set(entry.get("tags", {})) <= TAG_KEYS
        lines = (out / entry["file_name"]).read_text().splitlines()
        assert lines
        for line in lines:
            example = json.loads(line)
            if fmt == "cpt":
                assert entry.get("formatting", "alpaca") == "alpaca" and isinstance(example["text"], str)
            else:
                assert entry["formatting"] == "sharegpt" and entry.get("ranking", False) == (fmt == "dpo")
                check_sharegpt(entry, example)
    if fmt == "sft":
        first = json.loads((out / "sns_sft_train.jsonl").read_text().splitlines()[0])
        assert first["messages"][-1] == {"role": "assistant", "content": "Yes"}


def test_llamafactory_export_merges_dataset_info_and_rejects_broken_turns(tmp_path: Path) -> None:
    out = tmp_path / "lf"
    out.mkdir()
    (out / "dataset_info.json").write_text(json.dumps({"mine": {"file_name": "mine.json"}}))
    export_llamafactory(write_build(tmp_path / "sft", "sft"), out, name="sns")
    assert "mine" in json.loads((out / "dataset_info.json").read_text())
    with pytest.raises(BuildError, match="has no targets"):
        export_llamafactory(write_build(tmp_path / "rl", "rl"), out)
    build = tmp_path / "sft"
    frame = pl.read_parquet(build / "data" / "train.parquet")
    broken = frame.with_columns(pl.col("messages").list.slice(1))  # drop the user turn: assistant first
    broken.write_parquet(build / "data" / "train.parquet")
    with pytest.raises(BuildError, match="do not alternate"):
        export_llamafactory(build, out)


def test_openrlhf_export_labels_carry_the_record(tmp_path: Path) -> None:
    files = export_openrlhf(write_build(tmp_path / "rl", "rl"), tmp_path / "orl")
    line = json.loads(files["train"].read_text().splitlines()[0])
    label = json.loads(line["label"])
    assert line["input"][-1]["role"] == "user"
    assert set(label) == {"task_id", "record_id", "record"} and isinstance(label["record"], dict)


def test_cli_export(tmp_path: Path) -> None:
    runner = CliRunner()
    rl = write_build(tmp_path / "rl", "rl")
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "verl", "--out", str(tmp_path / "v")])
    assert result.exit_code == 0, result.output
    assert "custom_reward_function.path" in result.output
    assert (tmp_path / "v" / "train.parquet").is_file()
    sft = write_build(tmp_path / "sft", "sft")
    result = runner.invoke(app, ["export", "--build", str(sft), "--to", "llamafactory", "--out", str(tmp_path / "l")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "l" / "dataset_info.json").is_file()
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "openrlhf", "--out", str(tmp_path / "o")])
    assert result.exit_code == 0 and (tmp_path / "o" / "train.jsonl").is_file(), result.output
    result = runner.invoke(app, ["export", "--build", str(sft), "--to", "verl", "--out", str(tmp_path / "x")])
    assert result.exit_code == 1 and "not an `rl` build" in result.output


def test_llamafactory_sft_export_names_mask_history_for_few_shot_turns(tmp_path: Path) -> None:
    build = write_build(tmp_path / "sft", "sft")
    frame = pl.read_parquet(build / "data" / "train.parquet")
    shot = [{"role": "user", "content": "Gender debate? example. Yes or No."}, {"role": "assistant", "content": "No"}]
    few_shot = frame.with_columns(pl.when(pl.int_range(pl.len()) < 3)
                                  .then(pl.lit(shot, dtype=frame.schema["messages"]).list.concat("messages"))
                                  .otherwise("messages").alias("messages"))
    few_shot.write_parquet(build / "data" / "train.parquet")
    out = tmp_path / "lf"
    export_llamafactory(build, out, name="sns")
    text = (out / "sns_args.yaml").read_text()
    args = yaml.safe_load(text)
    assert args == {"stage": "sft", "dataset_dir": str(out.resolve()), "dataset": "sns_train",
                    "eval_dataset": "sns_eval", "mask_history": True}
    assert "rows that have them: 3 train, 0 eval" in text
    rows = [json.loads(line) for line in (out / "sns_train.jsonl").read_text().splitlines()]
    assert rows[0]["messages"][:2] == shot and rows[0]["messages"][-1]["role"] == "assistant"
    check_sharegpt(json.loads((out / "dataset_info.json").read_text())["sns_train"], rows[0])
    result = CliRunner().invoke(app, ["export", "--build", str(build), "--to", "llamafactory", "--out", str(out),
                                      "--name", "sns"])
    assert result.exit_code == 0 and "mask_history: true" in result.output, result.output


@pytest.mark.parametrize(("fmt", "stage"), [("dpo", "dpo"), ("cpt", "pt")])
def test_llamafactory_other_stages_get_no_mask_history(tmp_path: Path, fmt: str, stage: str) -> None:
    out = tmp_path / "lf"
    export_llamafactory(write_build(tmp_path / fmt, fmt), out, name="sns")
    args = yaml.safe_load((out / "sns_args.yaml").read_text())
    assert args["stage"] == stage and "mask_history" not in args  # LLaMA-Factory refuses it outside SFT
