"""Two steps of each TRL trainer on CPU with a tiny random model, on builds written to the contract.

The model and tokenizer are made here (a byte-level BPE trained on a few lines, a 2-layer Qwen2 with random
weights), as in /work/shared/docs/trl_tiny_smoke.py; nothing is downloaded. The configs are the papers' presets
with only the tiny-run knobs overridden, so the presets themselves are what trains.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from test_backends import samples, write_build
from tiny_model import make_tiny_model

from snsdata.backends.trl import (
    kto_dataset,
    load_dataset,
    redone2_dapo_config,
    redone2_reward_funcs,
    redone_dpo_config,
    redone_sft_config,
)

pytestmark = pytest.mark.slow

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("tiny-qwen2")
    corpus = [m["content"] for s in samples() for m in s["prompt"]] + [s["gold"] for s in samples()] * 3
    make_tiny_model(path, corpus, vocab_size=400, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return path


def load(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    return AutoModelForCausalLM.from_pretrained(model_dir, dtype="float32"), AutoTokenizer.from_pretrained(model_dir)


def tiny(tmp_path: Path) -> dict[str, Any]:
    """Only what a two-step CPU run needs; every other hyper-parameter stays the preset's."""
    return {"output_dir": str(tmp_path / "out"), "max_steps": 2, "per_device_train_batch_size": 2,
            "gradient_accumulation_steps": 1, "learning_rate": 1e-3, "logging_steps": 1, "save_strategy": "no",
            "report_to": "none", "use_cpu": True, "bf16": False, "gradient_checkpointing": False,
            "dataloader_num_workers": 0, "seed": 0}


def losses(trainer: Any) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


def test_sft_on_a_stage2_build(tmp_path: Path, model_dir: Path) -> None:
    from trl import SFTTrainer

    build = write_build(tmp_path / "stage2", "sft")
    model, tokenizer = load(model_dir)
    config = redone_sft_config(2, **tiny(tmp_path), max_length=128)  # packing stays on, as in the paper
    trainer = SFTTrainer(model=model, args=config, train_dataset=load_dataset(build), processing_class=tokenizer)
    trainer.train()
    assert len(losses(trainer)) == 2
    assert config.packing and config.adam_beta2 == 0.95


def test_dpo_with_the_sft_term_on_a_dpo_build(tmp_path: Path, model_dir: Path) -> None:
    from trl import DPOTrainer

    build = write_build(tmp_path / "dpo", "dpo")
    model, tokenizer = load(model_dir)
    config = redone_dpo_config(**tiny(tmp_path), max_length=128)
    trainer = DPOTrainer(model=model, args=config, train_dataset=load_dataset(build), processing_class=tokenizer)
    trainer.train()
    assert len(losses(trainer)) == 2
    assert config.loss_type == ["sigmoid", "sft"]


def test_kto_on_unpaired_dpo_rows(tmp_path: Path, model_dir: Path) -> None:
    from trl import KTOConfig, KTOTrainer

    build = write_build(tmp_path / "dpo", "dpo")
    model, tokenizer = load(model_dir)
    config = KTOConfig(**tiny(tmp_path), max_length=128)
    trainer = KTOTrainer(model=model, args=config, train_dataset=kto_dataset(build), processing_class=tokenizer)
    trainer.train()
    assert len(losses(trainer)) == 2


class Recording:
    """Passes every call on to the wrapped reward and keeps what TRL handed it."""

    def __init__(self, reward: Any):
        self.reward = reward
        self.__name__ = reward.__name__
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> list[float | None]:
        result = self.reward(**kwargs)
        self.calls.append({"kwargs": kwargs, "result": result})
        return result


def test_dapo_on_a_stage1_build_with_snsdatas_rewards(tmp_path: Path, model_dir: Path) -> None:
    from trl import GRPOTrainer

    build = write_build(tmp_path / "stage1", "rl")
    model, tokenizer = load(model_dir)
    config = redone2_dapo_config(**tiny(tmp_path), num_generations=2, max_completion_length=8, temperature=1.0)
    snsdata_reward, overlong = redone2_reward_funcs(build, config)
    recording = Recording(snsdata_reward)
    train = load_dataset(build)
    trainer = GRPOTrainer(model=model, reward_funcs=[recording, overlong], args=config, train_dataset=train,
                          processing_class=tokenizer)
    trainer.train()

    assert len(recording.calls) == 2
    kwargs = recording.calls[0]["kwargs"]
    assert {"prompts", "completions", "completion_ids", "task_id", "record", "record_id", "reward_type",
            "has_rationale", "trainer_state", "log_metric"} <= set(kwargs)
    by_id = {row["record_id"]: row for row in train}
    for task_id, record_id, record in zip(kwargs["task_id"], kwargs["record_id"], kwargs["record"], strict=True):
        assert (task_id, record) == (by_id[record_id]["task_id"], by_id[record_id]["record"])
    assert isinstance(kwargs["completions"][0], list)  # conversational prompts give message-list completions
    assert all(r is not None and 0.0 <= r <= 1.0 for call in recording.calls for r in call["result"])

    logged = {key for entry in trainer.state.log_history for key in entry}
    tasks_seen = {t for call in recording.calls for t in call["kwargs"]["task_id"]}
    assert {f"snsdata/{task_id}/reward" for task_id in tasks_seen} <= logged
    assert {"rewards/snsdata/mean", "rewards/soft_overlong_punishment_reward/mean"} <= logged
