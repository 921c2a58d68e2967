"""Runs in the LLaMA-Factory venv: what `llamafactory-cli train` does before it loads a model, on a
`snsdata export --to llamafactory` folder.

Each run's arguments go through LLaMA-Factory's own `get_train_args` (so the documented keys must validate), then
`load_tokenizer`, `get_template_and_fix_tokenizer` and `get_dataset` with the stage its workflow passes (`sft`;
`rm` for `stage: dpo`, as `run_dpo` does; `pt`). For every tokenized example the output holds the decoded input
and the decoded text of each span the loss is taken on (labels other than IGNORE_INDEX), so the test can say what
LLaMA-Factory would train on.

Input (JSON): {"runs": [{"name": ..., "args": {...}}, ...]}. Output (JSON): {name: {"train": [...], "eval": [...],
"default_system": the template's system prompt for conversations without one}}.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from llamafactory.data import get_dataset, get_template_and_fix_tokenizer
from llamafactory.extras.constants import IGNORE_INDEX
from llamafactory.hparams import get_train_args
from llamafactory.model import load_tokenizer

DATASET_STAGE = {"sft": "sft", "dpo": "rm", "pt": "pt"}
"""The `stage` each LLaMA-Factory workflow (`run_sft`, `run_dpo`, `run_pt`) passes to `get_dataset`."""


def trained_spans(tokenizer: Any, labels: list[int]) -> list[str]:
    """The decoded runs of consecutive label tokens the loss is taken on."""
    spans, current = [], []
    for label in [*labels, IGNORE_INDEX]:
        if label != IGNORE_INDEX:
            current.append(label)
        elif current:
            spans.append(tokenizer.decode(current))
            current = []
    return spans


def describe(tokenizer: Any, example: dict[str, Any], stage: str) -> dict[str, Any]:
    if stage == "rm":
        return {side: {"input": tokenizer.decode(example[f"{side}_input_ids"]),
                       "trained": trained_spans(tokenizer, example[f"{side}_labels"])}
                for side in ("chosen", "rejected")}
    described = {"input": tokenizer.decode(example["input_ids"]), "length": len(example["input_ids"])}
    if stage == "sft":
        described["trained"] = trained_spans(tokenizer, example["labels"])
    return described


def run(args: dict[str, Any]) -> dict[str, Any]:
    model_args, data_args, training_args, finetuning_args, _ = get_train_args(args)
    stage = DATASET_STAGE[finetuning_args.stage]
    tokenizer_module = load_tokenizer(model_args)
    tokenizer = tokenizer_module["tokenizer"]
    template = get_template_and_fix_tokenizer(tokenizer, data_args)
    module = get_dataset(template, model_args, data_args, training_args, stage=stage, **tokenizer_module)
    out: dict[str, Any] = {"default_system": template.default_system,
                           "train": [describe(tokenizer, example, stage) for example in module["train_dataset"]]}
    eval_dataset = module.get("eval_dataset")
    if eval_dataset is not None:
        out["eval"] = [describe(tokenizer, example, stage) for example in eval_dataset]
    return out


def main(request_path: str, out_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    result = {item["name"]: run(item["args"]) for item in request["runs"]}
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
