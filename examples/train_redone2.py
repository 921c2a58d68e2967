"""RedOne 2.0 with TRL: exploratory DAPO -> diagnosis -> targeted SFT with soft labels -> refinement DAPO.

    python examples/train_redone2.py --model Qwen/Qwen3-4B --work runs/redone2 [--data-root ../shared/data]
    python examples/train_redone2.py --model /tmp/tiny --work /tmp/r2 --smoke     # two steps per stage, on CPU

Between the trainers it calls the snsdata commands a user would run by hand:
  1. `snsdata build --mixture stage1`                      (SNS + general RL prompts)
  2. DAPO on stage 1, logging every rollout (task, record, completion, reward, step) to rollouts.jsonl
  3. `snsdata diagnose rollouts.jsonl --build ...`          (per-task rewards -> the weak tasks, failure samples)
  4. `snsdata soft-label --model <stage-1 model>`           (the stage-1 model answers the general prompts)
  5. `snsdata build --mixture stage2 --diagnosis --soft-labels`, then SFT on it
  6. `snsdata build --mixture stage3 --rollouts rollouts.jsonl`, then DAPO again from the stage-2 model
Each stage's model is saved under WORK/<stage>/model. The DAPO settings are `redone2_dapo_config`'s; RedOne 2.0
gives no SFT hyper-parameters, so stage 2 uses RedOne's SFT step 2 (`redone_sft_config(2)`, lr 3e-6, 2 epochs).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import threading
from pathlib import Path
from typing import Any

from snsdata.backends.trl import (
    load_dataset,
    redone2_dapo_config,
    redone2_reward_funcs,
    redone_sft_config,
)

SMOKE = {"max_steps": 2, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
         "save_strategy": "no", "report_to": "none", "use_cpu": True, "bf16": False,
         "gradient_checkpointing": False, "learning_rate": 1e-4}
"""What `--smoke` overrides: a two-step CPU run of every stage, to check the pipeline end to end."""


class RolloutLog:
    """Wraps a reward callable and appends every scored rollout to a JSONL log `snsdata diagnose` reads."""

    def __init__(self, reward: Any, path: Path):
        self.reward = reward
        self.__name__ = reward.__name__  # TRL names the logged metrics after it
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list[float | None]:
        rewards = self.reward(prompts=prompts, completions=completions, **kwargs)
        step = kwargs["trainer_state"].global_step if kwargs.get("trainer_state") is not None else None
        with self._lock, self.path.open("a", encoding="utf-8") as log:
            for i, reward in enumerate(rewards):
                completion = completions[i]
                text = completion[-1]["content"] if isinstance(completion, list) else completion
                log.write(json.dumps({"task_id": kwargs["task_id"][i], "record_id": kwargs["record_id"][i],
                                      "prompt": json.dumps(prompts[i], ensure_ascii=False), "completion": text,
                                      "reward": reward, "record": kwargs["record"][i], "step": step},
                                     ensure_ascii=False) + "\n")
        return rewards


def snsdata(*args: str | Path) -> None:
    command = ["snsdata", *map(str, args)]
    print("$", " ".join(command), flush=True)
    subprocess.run(command, check=True)


def dapo(model: str, build: Path, out: Path, overrides: dict[str, Any], log: Path | None = None) -> Path:
    """One RL stage; returns the saved model's directory."""
    from trl import GRPOTrainer

    config = redone2_dapo_config(output_dir=str(out), **overrides)
    funcs = redone2_reward_funcs(build, config)
    if log is not None:
        funcs[0] = RolloutLog(funcs[0], log)
    trainer = GRPOTrainer(model=model, reward_funcs=funcs, args=config, train_dataset=load_dataset(build))
    trainer.train()
    trainer.save_model(str(out / "model"))
    return out / "model"


def sft(model: str, build: Path, out: Path, overrides: dict[str, Any]) -> Path:
    from trl import SFTTrainer

    config = redone_sft_config(2, output_dir=str(out), **overrides)
    trainer = SFTTrainer(model=model, args=config, train_dataset=load_dataset(build))
    trainer.train()
    trainer.save_model(str(out / "model"))
    return out / "model"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="Starting model: a local path or a hub id.")
    parser.add_argument("--work", type=Path, required=True, help="Directory for builds, logs and models.")
    parser.add_argument("--data-root", type=Path, help="Data root for the builds (default: shipped samples).")
    parser.add_argument("--max-per-task", type=int, help="Read at most N records per task (quick runs).")
    parser.add_argument("--smoke", action="store_true", help="Two CPU steps per stage with short sequences.")
    args = parser.parse_args()

    work: Path = args.work
    work.mkdir(parents=True, exist_ok=True)
    data = [*(["--data-root", args.data_root] if args.data_root else []),
            *(["--max-per-task", str(args.max_per_task)] if args.max_per_task else [])]
    rl = {**SMOKE, "num_generations": 2, "max_completion_length": 16} if args.smoke else {}
    supervised = {**SMOKE, "global_batch_size": 2, "max_length": 256} if args.smoke else {}

    snsdata("build", "--mixture", "stage1", "--out", work / "builds/stage1", *data)
    rollouts = work / "stage1" / "rollouts.jsonl"
    rollouts.parent.mkdir(parents=True, exist_ok=True)
    rollouts.unlink(missing_ok=True)
    stage1 = dapo(args.model, work / "builds/stage1", work / "stage1", rl, rollouts)

    diagnosis = work / "diagnosis.json"
    snsdata("diagnose", rollouts, "--build", work / "builds/stage1", "--out", diagnosis)
    soft_labels = work / "soft_labels.jsonl"
    soft_labels.unlink(missing_ok=True)
    snsdata("soft-label", "--model", stage1, "--mixture", "stage2", "--diagnosis", diagnosis, "--out", soft_labels,
            *data, *(["--max-batches", "1", "--max-new-tokens", "16"] if args.smoke else []))
    snsdata("build", "--mixture", "stage2", "--diagnosis", diagnosis, "--soft-labels", soft_labels,
            "--out", work / "builds/stage2", *data)
    stage2 = sft(str(stage1), work / "builds/stage2", work / "stage2", supervised)

    # Stage 3 draws its rationale-bearing rows from the stage-1 rollouts that were correct and showed reasoning; a
    # tiny or random model leaves few, and the build says so (a shortfall against the share stage3.yaml declares).
    snsdata("build", "--mixture", "stage3", "--rollouts", rollouts, "--out", work / "builds/stage3", *data)
    stage3 = dapo(str(stage2), work / "builds/stage3", work / "stage3", rl)
    print(f"stage 1: {stage1}\nstage 2: {stage2}\nstage 3: {stage3}")


if __name__ == "__main__":
    main()
