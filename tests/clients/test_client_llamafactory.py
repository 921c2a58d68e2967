"""LLaMA-Factory 0.9.5's own `get_train_args` and `get_dataset` on `snsdata export --to llamafactory` of SFT, DPO and
CPT builds: every exported row becomes one example, and the loss falls on the answer alone."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import yaml
from client_venvs import REPO, run_driver

pytestmark = pytest.mark.slow  # each starts a trainer's venv; CI runs them (tools/setup_clients.sh)

EOS = "<|im_end|>"


def render(messages: list[dict], default_system: str) -> str:
    """LLaMA-Factory's `qwen` template, turn after turn; like Qwen2.5's own chat template it starts a conversation
    that has no system prompt with its default one."""
    if messages[0]["role"] != "system":
        messages = [{"role": "system", "content": default_system}, *messages]
    return "".join(f"<|im_start|>{m['role']}\n{m['content']}{EOS}\n" for m in messages)


def exported_rows(folder: Path, dataset: str) -> list[dict]:
    info = json.loads((folder / "dataset_info.json").read_text())
    return [json.loads(line) for line in (folder / info[dataset]["file_name"]).read_text().splitlines()]


def few_shot_build(root: Path) -> Path:
    """An SFT build whose prompts carry two few-shot turns: a user spec folder that gives a shipped task
    `few_shot: {k: 2, split: train}`, and a mixture of that task alone."""
    specs = root / "specs"
    (specs / "mixtures").mkdir(parents=True)
    shipped = next((REPO / "task_specs").rglob("cold_offensive_zh.yaml"))
    (specs / "cold_offensive_zh.yaml").write_text(yaml.safe_dump(
        {"extends": str(shipped), "id": "cold_offensive_zh", "prompt": {"few_shot": {"k": 2, "split": "train"}}}))
    (specs / "mixtures" / "fewshot_sft.yaml").write_text(yaml.safe_dump(
        {"name": "fewshot_sft", "description": "SFT rows with few-shot turns.", "format": "sft",
         "components": [{"name": "cold", "select": {"ids": ["cold_offensive_zh"]}}]}))
    build = root / "fewshot_sft"
    subprocess.run([sys.executable, "-m", "snsdata", "--specs", str(specs), "build", "--mixture", "fewshot_sft",
                    "--out", str(build), "--max-per-task", "40"], check=True, capture_output=True)
    return build


@pytest.fixture(scope="module")
def lf_run(llamafactory_venv: Path, builds: dict[str, Path], tokenizer_dir: Path,
           tmp_path_factory: pytest.TempPathFactory) -> dict:
    out = tmp_path_factory.mktemp("llamafactory")
    folder = out / "data"
    exports = {**builds, "fewshot_sft": few_shot_build(out)}
    data_args = {}
    for mixture, name in (("stage2", "sns_sft"), ("dpo", "sns_dpo"), ("cpt", "sns_cpt"), ("fewshot_sft", "sns_fs")):
        subprocess.run([sys.executable, "-m", "snsdata", "export", "--build", str(exports[mixture]), "--to",
                        "llamafactory", "--out", str(folder), "--name", name], check=True, capture_output=True)
        data_args[name] = yaml.safe_load((folder / f"{name}_args.yaml").read_text())  # what the export says to use
    # The rest of a config, at sizes a tiny model takes; a cutoff no row reaches, so nothing is cut.
    model = {"model_name_or_path": str(tokenizer_dir), "template": "qwen", "cutoff_len": 65536, "do_train": True,
             "finetuning_type": "full", "overwrite_cache": True, "report_to": "none"}

    def config(name: str, run: str, **extra: object) -> dict:
        return {"name": run, "args": {**model, **data_args[name], "output_dir": str(out / run), **extra}}

    runs = [config("sns_sft", "sft", packing=False), config("sns_sft", "sft_packed", packing=True),
            config("sns_dpo", "dpo", pref_ftx=0.3), config("sns_cpt", "pt", packing=False),
            config("sns_fs", "sft_fewshot"), config("sns_fs", "sft_fewshot_unmasked", mask_history=False)]
    return {"answer": run_driver("llamafactory", {"runs": runs}, out), "folder": folder, "data_args": data_args}


def test_the_exported_data_arguments_name_stage_datasets_and_mask_history(lf_run: dict) -> None:
    folder = str(lf_run["folder"])
    assert lf_run["data_args"]["sns_fs"] == {"stage": "sft", "dataset_dir": folder, "dataset": "sns_fs_train",
                                             "eval_dataset": "sns_fs_eval", "mask_history": True}
    assert {name: args["stage"] for name, args in lf_run["data_args"].items()} == {
        "sns_sft": "sft", "sns_dpo": "dpo", "sns_cpt": "pt", "sns_fs": "sft"}


@pytest.mark.parametrize("split", ["train", "eval"])
def test_sft_rows_train_on_the_answer_only(lf_run: dict, split: str) -> None:
    rows = exported_rows(lf_run["folder"], f"sns_sft_{split}")
    answer = lf_run["answer"]["sft"]
    examples = answer[split]
    assert len(examples) == len(rows) > 0  # LLaMA-Factory skips malformed rows with only a warning
    for row, example in zip(rows, examples, strict=True):
        assert example["input"] == render(row["messages"], answer["default_system"])
        assert example["trained"] == [row["messages"][-1]["content"] + EOS + "\n"]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_few_shot_turns_are_not_trained_on_with_the_exported_arguments(lf_run: dict, split: str) -> None:
    rows = exported_rows(lf_run["folder"], f"sns_fs_{split}")
    answer = lf_run["answer"]["sft_fewshot"]
    examples = answer[split]
    assert len(examples) == len(rows) > 0
    assert all(len(row["messages"]) == 7 for row in rows)  # system, two example turns, the record's turn
    for row, example in zip(rows, examples, strict=True):
        assert example["input"] == render(row["messages"], answer["default_system"])
        assert example["trained"] == [row["messages"][-1]["content"] + EOS + "\n"]


def test_without_mask_history_llamafactory_trains_on_the_few_shot_answers(lf_run: dict) -> None:
    rows = exported_rows(lf_run["folder"], "sns_fs_train")
    for row, example in zip(rows, lf_run["answer"]["sft_fewshot_unmasked"]["train"], strict=True):
        assert example["trained"] == [m["content"] + EOS + "\n" for m in row["messages"] if m["role"] == "assistant"]


def test_packed_sft_trains_on_every_answer_once(lf_run: dict) -> None:
    rows = exported_rows(lf_run["folder"], "sns_sft_train")
    trained = [span for example in lf_run["answer"]["sft_packed"]["train"] for span in example["trained"]]
    assert Counter(trained) == Counter(row["messages"][-1]["content"] + EOS + "\n" for row in rows)


@pytest.mark.parametrize("split", ["train", "eval"])
def test_dpo_pairs_keep_prompt_chosen_and_rejected(lf_run: dict, split: str) -> None:
    rows = exported_rows(lf_run["folder"], f"sns_dpo_{split}")
    answer = lf_run["answer"]["dpo"]
    examples = answer[split]
    assert len(examples) == len(rows) > 0
    for row, example in zip(rows, examples, strict=True):
        for side in ("chosen", "rejected"):
            assert example[side]["input"] == render([*row["messages"], row[side]], answer["default_system"])
            assert example[side]["trained"] == [row[side]["content"] + EOS + "\n"]
        assert example["chosen"]["trained"] != example["rejected"]["trained"]


@pytest.mark.parametrize("split", ["train", "eval"])
def test_cpt_documents_load_whole(lf_run: dict, split: str) -> None:
    rows = exported_rows(lf_run["folder"], f"sns_cpt_{split}")
    examples = lf_run["answer"]["pt"][split]
    assert [example["input"] for example in examples] == [row["text"] + EOS for row in rows]
    assert rows
