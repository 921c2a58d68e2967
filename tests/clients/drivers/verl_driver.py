"""Runs in the verl venv: verl's own config, `RLHFDataset` and reward-loop worker on a `snsdata export --to verl`.

The config is verl's `ppo_trainer` composed with the overrides the export printed (so they must compose), the
dataset is what `create_rl_dataset` builds from `data.train_files` / `data.val_files`, and every completion is
scored by `RewardLoopWorker.compute_score` on a `DataProto` laid out as the agent loop's `_compute_score` lays
one out (prompt ids from the chat template, response ids ending in EOS), all rows at once as concurrent
trajectories. Nothing of snsdata is imported here: verl loads the reward function from the path in the config.

Input (JSON): {"overrides": [...], "tokenizer": DIR, "completions": {record_id: [text, ...]}}.
Output (JSON): per split the dataset's length and rows, and per completion verl's decoded response, reward and
reward_extra_info.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
import verl
from hydra import compose, initialize_config_dir
from tensordict import TensorDict
from verl import DataProto
from verl.experimental.reward_loop import RewardLoopWorker
from verl.trainer.ppo.utils import create_rl_dataset
from verl.utils import hf_tokenizer


def load_config(overrides: list[str], tokenizer: str) -> Any:
    config_dir = Path(verl.__file__).parent / "trainer" / "config"
    with initialize_config_dir(config_dir=str(config_dir), version_base=None):
        return compose(config_name="ppo_trainer",
                       overrides=[*overrides, f"actor_rollout_ref.model.path={tokenizer}"])


def plain(value: Any) -> Any:
    """numpy scalars and arrays from verl's rows as JSON values."""
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def trajectory(tokenizer: Any, row: dict[str, Any], completion: str) -> DataProto:
    """One finished single-turn trajectory, as `AgentLoopWorker._compute_score` hands it to a reward worker."""
    prompt_ids = tokenizer.apply_chat_template(row["raw_prompt"], add_generation_prompt=True, tokenize=True)
    if not isinstance(prompt_ids, list):  # transformers 5 returns a BatchEncoding
        prompt_ids = prompt_ids["input_ids"]
    response_ids = [*tokenizer.encode(completion, add_special_tokens=False), tokenizer.eos_token_id]
    prompts = torch.tensor(prompt_ids, dtype=torch.int64)
    responses = torch.tensor(response_ids, dtype=torch.int64)
    input_ids = torch.cat([prompts, responses])
    attention_mask = torch.ones_like(input_ids)
    batch = TensorDict({"prompts": prompts[None], "responses": responses[None], "input_ids": input_ids[None],
                        "attention_mask": attention_mask[None],
                        "position_ids": torch.arange(len(input_ids))[None]}, batch_size=1)
    kwargs = {k: v for k, v in row.items() if not isinstance(v, torch.Tensor)}
    non_tensor = {k: np.array([v], dtype=object) for k, v in kwargs.items()}
    non_tensor |= {"__num_turns__": np.array([2]), "tool_extra_fields": np.array([{}], dtype=object),
                   "prompt_len": np.array([len(prompt_ids)]), "response_len": np.array([len(response_ids)])}
    return DataProto(batch=batch, non_tensor_batch=non_tensor)


async def score_all(worker: RewardLoopWorker, jobs: list[DataProto]) -> list[dict[str, Any]]:
    return await asyncio.gather(*(worker.compute_score(job) for job in jobs))


def main(request_path: str, out_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    config = load_config(request["overrides"], request["tokenizer"])
    tokenizer = hf_tokenizer(request["tokenizer"])
    worker = RewardLoopWorker(config)
    result: dict[str, Any] = {"splits": {}, "scores": [],
                              "reward_manager": type(worker.reward_manager).__name__}
    jobs, keys = [], []
    for split, files in (("train", config.data.train_files), ("eval", config.data.val_files)):
        dataset = create_rl_dataset(files, config.data, tokenizer, None, is_train=split == "train")
        rows = [dataset[i] for i in range(len(dataset))]
        result["splits"][split] = {"length": len(dataset), "rows": [
            {key: plain(row[key]) for key in ("data_source", "raw_prompt", "reward_model", "extra_info", "index")}
            for row in rows]}
        for row in rows:
            record_id = row["extra_info"]["record_id"]
            for number, completion in enumerate(request["completions"].get(record_id, [])):
                jobs.append(trajectory(tokenizer, row, completion))
                keys.append((split, record_id, number, completion))
    outputs = worker.loop.run_until_complete(score_all(worker, jobs))
    for (split, record_id, number, completion), job, output in zip(keys, jobs, outputs, strict=True):
        response = job.batch["responses"][0]
        result["scores"].append({
            "split": split, "record_id": record_id, "completion": number,
            "decoded": tokenizer.decode(response, skip_special_tokens=True) == completion,
            "reward_score": plain(output["reward_score"]),
            "reward_extra_info": plain(output.get("reward_extra_info", {}))})
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
