"""TRL loaders and presets on build directories written to the contract; `write_build` serves the other backend tests.

The builds use real catalogue specs (note_gender: exact-match label, redtrans_en2zh: BLEU + chrF++) so that every
backend scores with the real scorers; prompts are short so a tiny model can train on them.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from snsdata.backends.trl import (
    BuildError,
    build_format,
    dpo_dataset,
    grpo_dataset,
    kto_dataset,
    load_dataset,
    redone2_dapo_config,
    redone2_reward_funcs,
    redone_dpo_config,
    redone_sft_config,
    sft_dataset,
)
from snsdata.frames import REJECT_SCHEMA
from snsdata.spec import load_catalogue

TASKS = ("note_gender", "redtrans_en2zh")
TRANSLATIONS = [("I love this city!", "我爱这座城市！"), ("Best coffee ever", "史上最好喝的咖啡"),
                ("So cute omg", "太可爱了吧"), ("Weekend vibes", "周末氛围感")]
MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
COLUMNS = {
    "sft": {"messages": pl.List(MESSAGE), "target_kind": pl.String, "weight": pl.Float64},
    "dpo": {"prompt": pl.List(MESSAGE), "chosen": pl.List(MESSAGE), "rejected": pl.List(MESSAGE),
            "pair_source": pl.String},
    "rl": {"prompt": pl.List(MESSAGE), "record": pl.String, "reward_type": pl.String, "has_rationale": pl.Boolean},
    "cpt": {"text": pl.String},
}


def samples() -> list[dict]:
    """(task, record, prompt, gold, wrong) of every test record: 8 gender notes and 4 translations."""
    out = []
    for i in range(8):
        answer = "Yes" if i % 2 == 0 else "No"
        record = {"content": f"note {i}: who should pay on a date?", "answer": answer}
        out.append({"task_id": "note_gender", "record_id": f"g{i}", "record": record,
                    "prompt": [{"role": "user", "content": f"Gender debate? note {i}. Yes or No."}],
                    "gold": answer, "wrong": "No" if answer == "Yes" else "Yes", "capability": "content_understanding"})
    for i, (en, zh) in enumerate(TRANSLATIONS):
        record = {"en": en, "zh": zh, "source": "note", "src_lang": "en", "dst_lang": "zh"}
        out.append({"task_id": "redtrans_en2zh", "record_id": f"t{i}", "record": record,
                    "prompt": [{"role": "system", "content": "Translate to Chinese."},
                               {"role": "user", "content": en}],
                    "gold": zh, "wrong": "hello", "capability": "translation"})
    return out


def _rows(fmt: str, items: list[dict]) -> list[dict]:
    rows = []
    for n, item in enumerate(items):
        row = {"task_id": item["task_id"], "record_id": item["record_id"], "capability": item["capability"],
               "origin": "sns"}
        gold = [{"role": "assistant", "content": item["gold"]}]
        if fmt == "sft":
            row |= {"messages": item["prompt"] + gold, "target_kind": "gold", "weight": 3.0 if n == 0 else 1.0}
        elif fmt == "dpo":
            row |= {"prompt": item["prompt"], "chosen": gold, "rejected": [{"role": "assistant",
                                                                            "content": item["wrong"]}],
                    "pair_source": "candidates"}
        elif fmt == "rl":
            row |= {"prompt": item["prompt"], "record": json.dumps(item["record"], ensure_ascii=False),
                    "reward_type": "exact_match" if item["task_id"] == "note_gender" else "composite",
                    "has_rationale": False}
        else:
            row |= {"text": item["prompt"][-1]["content"] + "\n\n" + item["gold"]}
        rows.append(row)
    return rows


def write_build(root: Path, fmt: str, eval_rows: int = 2) -> Path:
    """A build directory per docs/CONVENTIONS.md: manifest, specs, rejects, data/*.parquet, dataset/."""
    from datasets import Dataset, DatasetDict

    root.mkdir(parents=True, exist_ok=True)
    schema = {"task_id": pl.String, "record_id": pl.String, "capability": pl.String, "origin": pl.String,
              **COLUMNS[fmt]}
    rows = _rows(fmt, samples())
    frames = {"train": pl.DataFrame(rows[eval_rows:], schema=schema),
              "eval": pl.DataFrame(rows[:eval_rows], schema=schema)}
    (root / "data").mkdir(exist_ok=True)
    for split, frame in frames.items():
        frame.write_parquet(root / "data" / f"{split}.parquet")
    DatasetDict({split: Dataset.from_polars(frame) for split, frame in frames.items()}).save_to_disk(
        str(root / "dataset"))
    catalogue = load_catalogue()
    specs = {task_id: catalogue[task_id].model_dump(mode="json") for task_id in TASKS}
    (root / "specs.json").write_text(json.dumps(specs, ensure_ascii=False), encoding="utf-8")
    pl.DataFrame(schema=REJECT_SCHEMA).write_parquet(root / "rejects.parquet")
    manifest = {"mixture": f"test-{fmt}", "format": fmt, "seed": 0,
                "totals": {split: frame.height for split, frame in frames.items()}}
    (root / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def builds(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("builds")
    return {fmt: write_build(root / fmt, fmt) for fmt in COLUMNS}


def test_formats_are_read_from_the_columns(builds: dict[str, Path]) -> None:
    assert {fmt: build_format(path) for fmt, path in builds.items()} == {f: f for f in builds}


def test_not_a_build_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(BuildError, match="not a build directory"):
        build_format(tmp_path)


def test_sft_rows_split_the_answer_off_and_repeat_weighted_rows(builds: dict[str, Path]) -> None:
    train = sft_dataset(builds["sft"])
    assert train.column_names == ["prompt", "completion"]
    assert len(train) == 10  # 10 rows, none up-weighted in train
    first = sft_dataset(builds["sft"], "eval")
    assert len(first) == 4  # the weight-3 row three times, then the other eval row
    assert first[0]["completion"] == [{"role": "assistant", "content": "Yes"}]
    assert first[0]["prompt"][-1]["role"] == "user"
    assert len(sft_dataset(builds["sft"], "eval", repeat_by_weight=False)) == 2
    messages = sft_dataset(builds["sft"], completion_only=False)
    assert messages.column_names == ["messages"]
    assert messages[0]["messages"][-1]["role"] == "assistant"


def test_cpt_rows_are_text(builds: dict[str, Path]) -> None:
    text = load_dataset(builds["cpt"])
    assert text.column_names == ["text"]
    assert "Yes or No" in text[0]["text"]


def test_dpo_and_kto_rows(builds: dict[str, Path]) -> None:
    pairs = dpo_dataset(builds["dpo"])
    assert pairs.column_names == ["prompt", "chosen", "rejected"]
    assert pairs[0]["chosen"][0]["role"] == "assistant"
    kto = kto_dataset(builds["dpo"])
    assert kto.column_names == ["prompt", "completion", "label"]
    assert len(kto) == 2 * len(pairs)
    assert sum(kto["label"]) == len(pairs)


def test_kto_keeps_a_shared_chosen_answer_once(tmp_path: Path) -> None:
    build = write_build(tmp_path / "dpo", "dpo", eval_rows=0)
    frame = pl.read_parquet(build / "data" / "train.parquet")
    second = frame.head(1).with_columns(rejected=pl.lit([{"role": "assistant", "content": "Maybe"}],
                                                        dtype=COLUMNS["dpo"]["rejected"]))
    pl.concat([frame, second]).write_parquet(build / "data" / "train.parquet")
    shutil.rmtree(build / "dataset")  # the loader falls back to Parquet
    kto = kto_dataset(build)
    assert len(kto) == 2 * frame.height + 1  # the duplicate gold answer is not repeated


def test_grpo_rows_keep_every_column_for_the_rewards(builds: dict[str, Path]) -> None:
    rows = grpo_dataset(builds["rl"])
    assert {"prompt", "task_id", "record", "record_id", "reward_type", "has_rationale"} <= set(rows.column_names)
    assert json.loads(rows[0]["record"])


def test_load_dataset_refuses_a_trainer_that_does_not_fit(builds: dict[str, Path]) -> None:
    assert load_dataset(builds["dpo"], trainer="kto").column_names == ["prompt", "completion", "label"]
    with pytest.raises(BuildError, match="trains with grpo"):
        load_dataset(builds["rl"], trainer="sft")


def test_sft_preset_has_the_papers_numbers(tmp_path: Path) -> None:
    step1 = redone_sft_config(1, output_dir=str(tmp_path), use_cpu=True, world_size=4)
    assert (step1.learning_rate, step1.num_train_epochs, step1.warmup_steps) == (5e-6, 3, 0.1)
    assert (step1.adam_beta1, step1.adam_beta2, step1.adam_epsilon) == (0.9, 0.95, 1e-8)
    assert (step1.max_length, step1.packing) == (16_384, True)
    assert step1.per_device_train_batch_size * step1.gradient_accumulation_steps * 4 == 128
    step2 = redone_sft_config(2, output_dir=str(tmp_path), use_cpu=True, world_size=4, per_device_train_batch_size=4)
    assert (step2.learning_rate, step2.num_train_epochs, step2.gradient_accumulation_steps) == (3e-6, 2, 8)
    assert redone_sft_config(1, "32b", output_dir=str(tmp_path), use_cpu=True).learning_rate == 3e-6
    assert redone_sft_config(1, output_dir=str(tmp_path), use_cpu=True, learning_rate=1e-5).learning_rate == 1e-5
    with pytest.raises(ValueError, match="not a multiple"):
        redone_sft_config(1, output_dir=str(tmp_path), use_cpu=True, per_device_train_batch_size=3, world_size=4)


def test_dpo_preset_adds_the_sft_term(tmp_path: Path) -> None:
    config = redone_dpo_config(output_dir=str(tmp_path), use_cpu=True)
    assert (config.learning_rate, config.num_train_epochs, config.max_length) == (1e-7, 2, 4_096)
    assert (config.loss_type, config.loss_weights) == (["sigmoid", "sft"], [1.0, 0.3])
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 64


def test_dapo_preset_and_its_reward_funcs(tmp_path: Path, builds: dict[str, Path]) -> None:
    config = redone2_dapo_config(output_dir=str(tmp_path), use_cpu=True, max_completion_length=100)
    assert (config.loss_type, config.epsilon, config.epsilon_high) == ("dapo", 0.2, 0.28)
    assert config.mask_truncated_completions and config.beta == 0.0
    funcs = redone2_reward_funcs(builds["rl"], config)
    overlong = funcs[-1]
    assert overlong(completion_ids=[[1] * 70, [1] * 90, [1] * 120]) == [0.0, -0.5, -1.0]  # cache = 100 // 5
    weighted = redone2_dapo_config(output_dir=str(tmp_path), use_cpu=True, reward_weights=[1.0])
    with pytest.raises(ValueError, match="reward_weights"):
        redone2_reward_funcs(builds["rl"], weighted)
