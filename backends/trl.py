"""TRL: a build directory as the dataset each trainer takes, and the RedOne / RedOne 2.0 hyper-parameters as configs.

A build's format decides its trainer (`sft` and `cpt` -> SFTTrainer, `dpo` -> DPOTrainer or KTOTrainer, `rl` ->
GRPOTrainer). The loaders only select and reshape columns; the rows are exactly what the build wrote. The reward
callables for GRPO live in `snsdata.backends.trl_rewards`; `redone2_reward_funcs` adds DAPO's soft overlong penalty.
TRL itself is imported lazily so that the exporters and `compute_score`, which share the build reader, stay light.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import polars as pl

from snsdata.spec.errors import InvalidInput

if TYPE_CHECKING:
    from datasets import Dataset
    from trl import DPOConfig, GRPOConfig, SFTConfig

Format = Literal["sft", "dpo", "rl", "cpt"]
Trainer = Literal["sft", "dpo", "kto", "grpo"]

FORMAT_COLUMNS: dict[str, tuple[str, ...]] = {
    "sft": ("messages",),
    "dpo": ("prompt", "chosen", "rejected"),
    "rl": ("prompt", "record"),
    "cpt": ("text",),
}
"""The columns that identify each format of the build directory contract (docs/CONVENTIONS.md)."""

TRAINERS_FOR: dict[str, tuple[str, ...]] = {"sft": ("sft",), "cpt": ("sft",), "dpo": ("dpo", "kto"), "rl": ("grpo",)}


class BuildError(InvalidInput):
    """A directory that is not a readable build, or a build that does not fit the trainer asked for."""


def _build_path(build: str | Path) -> Path:
    path = Path(build)
    if not (path / "data").is_dir():
        raise BuildError(f"{path}: not a build directory (no data/); `snsdata build` makes one")
    return path


def format_of(columns: list[str] | tuple[str, ...]) -> Format:
    """The build format a set of columns belongs to (the contract fixes one column set per format)."""
    for name in ("dpo", "rl", "sft", "cpt"):
        if set(FORMAT_COLUMNS[name]) <= set(columns):
            return name  # type: ignore[return-value]
    raise BuildError(f"columns {sorted(columns)} match no build format (sft, dpo, rl, cpt)")


def splits(build: str | Path) -> list[str]:
    """The splits a build wrote (`train`, `eval`), in that order when both exist."""
    names = [p.stem for p in sorted(_build_path(build).joinpath("data").glob("*.parquet"))]
    return sorted(names, key=lambda name: (name != "train", name))


def read_split(build: str | Path, split: str = "train") -> pl.DataFrame:
    """One split of a build as a Polars frame (the exporters and the reward server read builds this way)."""
    path = _build_path(build) / "data" / f"{split}.parquet"
    if not path.is_file():
        raise BuildError(f"{path} does not exist; the build has splits {splits(build)}")
    return pl.read_parquet(path)


def build_format(build: str | Path) -> Format:
    """The format of a build, read from the columns of its first split."""
    first = splits(build)
    if not first:
        raise BuildError(f"{build}: data/ holds no split")
    schema = pl.read_parquet_schema(Path(build) / "data" / f"{first[0]}.parquet")
    return format_of(list(schema))


def read_specs(build: str | Path) -> dict[str, dict[str, Any]]:
    """The build's frozen specs (`specs.json`): task id -> spec as JSON."""
    path = _build_path(build) / "specs.json"
    if not path.is_file():
        raise BuildError(f"{path} does not exist")
    return json.loads(path.read_text(encoding="utf-8"))


def _hf_split(build: str | Path, split: str) -> Dataset:
    """The split from `dataset/` (memory-mapped Arrow, no cache copy); Parquet when a build has no `dataset/`."""
    from datasets import Dataset, load_from_disk

    path = _build_path(build)
    if (path / "dataset").is_dir():
        dataset_dict = load_from_disk(str(path / "dataset"))
        if split not in dataset_dict:
            raise BuildError(f"{path}/dataset has splits {list(dataset_dict)}, not {split!r}")
        return dataset_dict[split]
    return Dataset.from_polars(read_split(path, split))


def load_dataset(build: str | Path, split: str = "train", trainer: Trainer | None = None,
                 **options: Any) -> Dataset:
    """A split of any build as the dataset its trainer takes; `trainer` picks another fit (`kto` from a DPO build).

    Options go to the loader of that trainer (`completion_only`, `repeat_by_weight` for SFT).
    """
    fmt = build_format(build)
    trainer = trainer or TRAINERS_FOR[fmt][0]  # type: ignore[assignment]
    if trainer not in TRAINERS_FOR[fmt]:
        raise BuildError(f"a {fmt!r} build trains with {' or '.join(TRAINERS_FOR[fmt])}, not {trainer!r}")
    loader: Callable[..., Dataset] = {"sft": sft_dataset, "dpo": dpo_dataset, "kto": kto_dataset,
                                      "grpo": grpo_dataset}[trainer]
    return loader(build, split, **options)


def _require(dataset: Dataset, fmt: str, build: str | Path) -> None:
    missing = [c for c in FORMAT_COLUMNS[fmt] if c not in dataset.column_names]
    if missing:
        raise BuildError(f"{build} is not a {fmt!r} build: columns {missing} are missing")


def _repeat_rows(dataset: Dataset, weights: list[float]) -> Dataset:
    """Up-weighted rows repeated round(weight) times (at least once): TRL's SFT loss has no per-row weight."""
    indices = [i for i, w in enumerate(weights) for _ in range(max(1, round(w)))]
    return dataset if len(indices) == len(dataset) else dataset.select(indices)


def sft_dataset(build: str | Path, split: str = "train", completion_only: bool = True,
                repeat_by_weight: bool = True) -> Dataset:
    """SFTTrainer rows: `prompt`/`completion` (loss on the answer only, any chat template) or `messages`.

    Prompt-completion rows turn TRL's completion-only loss on by themselves, so the prompt (system text, few-shot
    turns) is never trained on and the chat template needs no `{% generation %}` markers. A `cpt` build gives
    `text` rows (pair with `packing=True`).
    """
    dataset = _hf_split(build, split)
    if "text" in dataset.column_names and "messages" not in dataset.column_names:
        return dataset.select_columns(["text"])
    _require(dataset, "sft", build)
    if repeat_by_weight and "weight" in dataset.column_names:
        dataset = _repeat_rows(dataset, dataset["weight"])
    if not completion_only:
        return dataset.select_columns(["messages"])

    def split_last(row: dict[str, Any]) -> dict[str, Any]:
        return {"prompt": row["messages"][:-1], "completion": row["messages"][-1:]}

    return dataset.map(split_last, remove_columns=dataset.column_names)


def dpo_dataset(build: str | Path, split: str = "train") -> Dataset:
    """DPOTrainer rows: conversational `prompt`, `chosen`, `rejected` exactly as the build wrote them."""
    dataset = _hf_split(build, split)
    _require(dataset, "dpo", build)
    return dataset.select_columns(["prompt", "chosen", "rejected"])


def kto_dataset(build: str | Path, split: str = "train") -> Dataset:
    """KTOTrainer rows (`prompt`, `completion`, `label`) from DPO pairs: each chosen desirable, each rejected not.

    A chosen answer shared by several pairs of one prompt (the gold against several wrong predictions) becomes one
    row, so KTO does not see the gold answer once per error.
    """
    from datasets import Dataset

    pairs = dpo_dataset(build, split)
    rows: list[dict[str, Any]] = []
    seen: set[tuple[str, str, bool]] = set()
    for pair in pairs:
        prompt_key = json.dumps(pair["prompt"], ensure_ascii=False, sort_keys=True)
        for side, label in (("chosen", True), ("rejected", False)):
            key = (prompt_key, json.dumps(pair[side], ensure_ascii=False, sort_keys=True), label)
            if key not in seen:
                seen.add(key)
                rows.append({"prompt": pair["prompt"], "completion": pair[side], "label": label})
    return Dataset.from_list(rows)


def grpo_dataset(build: str | Path, split: str = "train") -> Dataset:
    """GRPOTrainer rows: conversational `prompt` plus every other column, which TRL hands to the reward callables.

    `task_id` routes a row to its reward, `record` (JSON) is what it is scored against; both are plain strings so
    that `Dataset` never unions record fields of different tasks into one struct.
    """
    dataset = _hf_split(build, split)
    _require(dataset, "rl", build)
    return dataset


# --- presets: the papers' hyper-parameters as TRL configs ------------------------------------------------------

REDONE_SFT_LR: dict[tuple[str, int], float] = {("7b", 1): 5e-6, ("7b", 2): 3e-6, ("32b", 1): 3e-6, ("32b", 2): 3e-6}
"""RedOne SFT learning rates by model size and step (the paper: 5e-6 then 3e-6 for 7B, 3e-6 for both for 32B)."""


def _batch(global_batch_size: int, per_device: int, world_size: int | None) -> dict[str, int]:
    """Per-device batch and gradient accumulation that give the paper's global batch on `world_size` processes
    (default: $WORLD_SIZE as torchrun and accelerate set it, else 1)."""
    world = world_size or int(os.environ.get("WORLD_SIZE", "1"))
    if global_batch_size % (per_device * world):
        raise ValueError(f"global batch {global_batch_size} is not a multiple of per-device batch {per_device} x "
                         f"{world} processes")
    return {"per_device_train_batch_size": per_device,
            "gradient_accumulation_steps": global_batch_size // (per_device * world)}


def _merge(defaults: dict[str, Any], overrides: dict[str, Any], global_batch_size: int,
           world_size: int | None) -> dict[str, Any]:
    """Overrides win; the accumulation steps follow an overridden per-device batch unless set explicitly too."""
    per_device = overrides.get("per_device_train_batch_size", 1)
    args = {**defaults, **_batch(global_batch_size, per_device, world_size), **overrides}
    if "gradient_accumulation_steps" in overrides:
        args["gradient_accumulation_steps"] = overrides["gradient_accumulation_steps"]
    return args


def redone_sft_config(step: Literal[1, 2] = 1, model_size: Literal["7b", "32b"] = "7b",
                      output_dir: str = "redone_sft", global_batch_size: int = 128, world_size: int | None = None,
                      **overrides: Any) -> SFTConfig:
    """RedOne's two-step SFT: lr 5e-6 / 3e-6 (7B; 3e-6 both steps for 32B), linear warm-up 0.1, AdamW (0.9, 0.95,
    1e-8), global batch 128, 3 / 2 epochs, max length 16,384 with packing. Keyword overrides win."""
    from trl import SFTConfig

    defaults = {
        "output_dir": output_dir,
        "learning_rate": REDONE_SFT_LR[(model_size, step)],
        "lr_scheduler_type": "linear",
        "warmup_steps": 0.1,  # transformers 5: a float below 1 is a ratio of the total steps
        "adam_beta1": 0.9,
        "adam_beta2": 0.95,
        "adam_epsilon": 1e-8,
        "num_train_epochs": 3 if step == 1 else 2,
        "max_length": 16_384,
        "packing": True,
    }
    return SFTConfig(**_merge(defaults, overrides, global_batch_size, world_size))


def redone_dpo_config(output_dir: str = "redone_dpo", global_batch_size: int = 64, world_size: int | None = None,
                      **overrides: Any) -> DPOConfig:
    """RedOne's DPO: lr 1e-7, global batch 64, max length 4,096, 2 epochs, SFT loss on the chosen answer with
    coefficient 0.3 (TRL: `loss_type=["sigmoid", "sft"]`, `loss_weights=[1.0, 0.3]`). Keyword overrides win."""
    from trl import DPOConfig

    defaults = {
        "output_dir": output_dir,
        "learning_rate": 1e-7,
        "num_train_epochs": 2,
        "max_length": 4_096,
        "loss_type": ["sigmoid", "sft"],
        "loss_weights": [1.0, 0.3],
    }
    return DPOConfig(**_merge(defaults, overrides, global_batch_size, world_size))


def redone2_dapo_config(output_dir: str = "redone2_dapo", **overrides: Any) -> GRPOConfig:
    """RedOne 2.0's DAPO as GRPOConfig: token-level loss (`loss_type="dapo"`), clip-higher (epsilon 0.2 / 0.28),
    truncated completions masked out of the loss, no KL term. Pair it with `redone2_reward_funcs`, which adds the
    soft overlong penalty. TRL has no dynamic sampling: zero-variance groups get zero advantage and are counted
    as `frac_reward_zero_std`. Keyword overrides win."""
    from trl import GRPOConfig

    defaults = {
        "output_dir": output_dir,
        "loss_type": "dapo",
        "epsilon": 0.2,
        "epsilon_high": 0.28,
        "mask_truncated_completions": True,
        "beta": 0.0,
        "scale_rewards": "group",
    }
    return GRPOConfig(**{**defaults, **overrides})


def redone2_reward_funcs(build: str | Path, config: GRPOConfig, overlong_cache_tokens: int | None = None,
                         asynchronous: bool = False) -> list[Callable[..., Any]]:
    """snsdata's reward callables for a build, plus DAPO's soft overlong penalty as one more reward component.

    The penalty is linear from 0 to -1 over the last `overlong_cache_tokens` (default a fifth, the DAPO paper's
    4,096 of 20,480) before `config.max_completion_length`, and sums with the task reward. `asynchronous=True`:
    snsdata's callable is the coroutine form (`reward_funcs(..., asynchronous=True)`).
    """
    from trl.rewards import get_soft_overlong_punishment

    from snsdata.backends.trl_rewards import reward_funcs

    max_len = config.max_completion_length
    cache = overlong_cache_tokens if overlong_cache_tokens is not None else max(1, max_len // 5)
    funcs = [*reward_funcs(build, asynchronous=asynchronous), get_soft_overlong_punishment(max_len, cache)]
    if config.reward_weights is not None and len(config.reward_weights) != len(funcs):
        raise ValueError(f"config.reward_weights has {len(config.reward_weights)} weights for {len(funcs)} reward "
                         "functions (snsdata's, then the overlong penalty)")
    return funcs
