"""LLaMA-Factory: a build as JSON Lines plus the `dataset_info.json` entries that describe them.

RedOne was trained with LLaMA-Factory, so its SFT and DPO stages map directly: SFT rows become ShareGPT-formatted
`messages` with OpenAI role tags, DPO rows a prompt conversation with single-message `chosen` / `rejected` and
`ranking: true`, CPT rows alpaca `text`. LLaMA-Factory silently skips conversations whose roles do not alternate
user/assistant, so the export checks that itself and fails with the row's id instead.

LLaMA-Factory's SFT trains on every assistant turn of a conversation unless `mask_history: true` is set, so a
build whose prompts carry few-shot turns would train on the examples' answers. The export writes the data arguments
of its training config (`<name>_args.yaml`: stage, dataset, `mask_history: true` for SFT) for the config to include.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import polars as pl
import yaml

from snsdata.backends.trl import BuildError, build_format, read_split, splits

TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
        "system_tag": "system"}
"""OpenAI-style messages as LLaMA-Factory's ShareGPT converter reads them (its defaults are from/value/human/gpt)."""


def _check_turns(messages: list[dict[str, Any]], ends_with: str, row_id: str) -> None:
    """LLaMA-Factory's rule: optional system first, then user/assistant alternating, ending as the format needs."""
    turns = messages[1:] if messages and messages[0]["role"] == "system" else messages
    expected = ["user" if i % 2 == 0 else "assistant" for i in range(len(turns))]
    roles = [m["role"] for m in turns]
    if not turns or roles != expected or roles[-1] != ends_with:
        raise BuildError(f"row {row_id}: roles {roles} do not alternate user/assistant ending with {ends_with}; "
                         "LLaMA-Factory would skip it")


def _plain(messages: list[dict[str, Any]]) -> list[dict[str, str]]:
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _rows(fmt: str, frame_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in frame_rows:
        row_id = f"{row.get('task_id')}/{row.get('record_id')}"
        if fmt == "sft":
            _check_turns(row["messages"], "assistant", row_id)
            out.append({"messages": _plain(row["messages"])})
        elif fmt == "dpo":
            _check_turns(row["prompt"], "user", row_id)
            chosen, rejected = _plain(row["chosen"])[-1], _plain(row["rejected"])[-1]
            if chosen["role"] != "assistant" or rejected["role"] != "assistant":
                raise BuildError(f"row {row_id}: chosen and rejected must be assistant messages")
            out.append({"messages": _plain(row["prompt"]), "chosen": chosen, "rejected": rejected})
        else:
            out.append({"text": row["text"]})
    return out


def dataset_info_entry(fmt: str, file_name: str) -> dict[str, Any]:
    """The `dataset_info.json` entry of one exported file, per LLaMA-Factory's data/README."""
    if fmt == "sft":
        return {"file_name": file_name, "formatting": "sharegpt", "columns": {"messages": "messages"},
                "tags": dict(TAGS)}
    if fmt == "dpo":
        return {"file_name": file_name, "formatting": "sharegpt", "ranking": True,
                "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected"}, "tags": dict(TAGS)}
    return {"file_name": file_name, "columns": {"prompt": "text"}}


STAGES = {"sft": "sft", "dpo": "dpo", "cpt": "pt"}
"""LLaMA-Factory's `stage` for each build format."""


def history_rows(build: str | Path) -> dict[str, int]:
    """Per split, the SFT rows with assistant turns before the last (few-shot examples): what LLaMA-Factory would
    also train on without `mask_history`."""
    if build_format(build) != "sft":
        return {}
    assistant_turns = pl.col("messages").list.eval(pl.element().struct.field("role") == "assistant").list.sum()
    return {split: read_split(build, split).select((assistant_turns > 1).sum()).item() for split in splits(build)}


def training_arguments(build: str | Path, out: str | Path, name: str | None = None) -> dict[str, Any]:
    """The data arguments of a LLaMA-Factory training config for this build's export under `out`.

    SFT gets `mask_history: true` whatever the rows hold: the build's target is the last assistant turn only
    (TRL's loaders train on it alone too), and earlier turns are few-shot examples. LLaMA-Factory refuses
    `mask_history` outside SFT, and its DPO and pre-training stages never train on earlier turns.
    """
    fmt = build_format(build)
    if fmt == "rl":
        raise BuildError("an `rl` build has no targets to train on in LLaMA-Factory; export it with --to verl")
    name = name or Path(build).resolve().name
    names = splits(build)
    args: dict[str, Any] = {"stage": STAGES[fmt], "dataset_dir": str(Path(out).resolve()),
                            "dataset": f"{name}_{names[0]}"}
    if "eval" in names and names[0] != "eval":
        args["eval_dataset"] = f"{name}_eval"
    if fmt == "sft":
        args["mask_history"] = True
    return args


def export_llamafactory(build: str | Path, out: str | Path, name: str | None = None) -> dict[str, Any]:
    """Write `<name>_<split>.jsonl` per split and `dataset_info.json` (merged into an existing one) under `out`.

    Returns the entries written, and writes `<name>_args.yaml` (`training_arguments`): `dataset_dir: OUT`,
    `dataset: <name>_train`, the stage and, for SFT, `mask_history: true`, to put in the LLaMA-Factory config
    (with `pref_ftx: 0.3` for RedOne's DPO SFT term).
    """
    fmt = build_format(build)
    if fmt == "rl":
        raise BuildError("an `rl` build has no targets to train on in LLaMA-Factory; export it with --to verl")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    name = name or Path(build).resolve().name
    info_path = out / "dataset_info.json"
    info: dict[str, Any] = json.loads(info_path.read_text(encoding="utf-8")) if info_path.is_file() else {}
    written = {}
    for split in splits(build):
        file_name = f"{name}_{split}.jsonl"
        rows = _rows(fmt, read_split(build, split).to_dicts())
        with (out / file_name).open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        written[f"{name}_{split}"] = dataset_info_entry(fmt, file_name)
    info.update(written)
    info_path.write_text(json.dumps(info, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    args = training_arguments(build, out, name)
    (out / f"{name}_args.yaml").write_text(args_yaml(args, history_rows(build)), encoding="utf-8")
    return written


def args_yaml(args: dict[str, Any], history: dict[str, int]) -> str:
    """The data arguments as YAML, with a comment on what `mask_history` keeps out of training."""
    lines = ["# LLaMA-Factory data arguments for this export (snsdata export --to llamafactory)."]
    if args.get("mask_history"):
        counted = ", ".join(f"{count} {split}" for split, count in history.items())
        lines += ["# mask_history: train on the last assistant turn only. Without it LLaMA-Factory also trains on",
                  f"# earlier (few-shot) assistant turns; rows that have them: {counted}."]
    return "\n".join(lines) + "\n" + yaml.safe_dump(args, sort_keys=False, allow_unicode=True)
