"""Runs in the OpenRLHF venv: OpenRLHF's prompt dataset and its remote-reward client on a
`snsdata export --to openrlhf`, against a running `snsdata serve-rewards`.

The flags the export printed are parsed as `openrlhf.cli.train_ppo_ray` declares them (its parser lives under
`if __name__ == "__main__"`, so the four declarations are repeated here) and nested with OpenRLHF's `hierarchize`.
The prompts come from `blending_datasets` + `PromptDataset`, as `prepare_datasets` builds them. Each completion is
scored by `SingleTurnAgentExecutor.execute`, which tokenizes the prompt, asks the engine for a continuation, decodes
prompt + response with special tokens and posts it to `--reward.remote_url`. The engine is the one stand-in: vLLM
needs a GPU, so `ScriptedEngine` answers each prompt with the completion's tokens followed by EOS, as vLLM returns
a finished generation.

Input (JSON): {"flags": [...], "data": FILE, "tokenizer": DIR, "completions": {record_id: [text, ...]}}.
Output (JSON): the dataset's rows and, per completion, the client's reward, score and extra_logs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from openrlhf.datasets import PromptDataset
from openrlhf.datasets.utils import blending_datasets
from openrlhf.utils.agent import SingleTurnAgentExecutor
from openrlhf.utils.config import hierarchize
from openrlhf.utils.utils import get_tokenizer


def parse_flags(flags: list[str], data: str, tokenizer: str) -> Any:
    """The export's flags, declared as train_ppo_ray declares them."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--reward.remote_url", type=str, default=None)
    parser.add_argument("--data.input_key", type=str, default="input")
    parser.add_argument("--data.label_key", type=str, default=None)
    parser.add_argument("--data.apply_chat_template", action="store_true", default=False)
    parser.add_argument("--data.input_template", type=str, default=None)
    parser.add_argument("--data.prompt_dataset", type=str, default=None)
    parser.add_argument("--actor.model_name_or_path", type=str, default=None)
    parser.add_argument("--use_ms", action="store_true", default=False)
    args = hierarchize(parser.parse_args([*flags, "--data.prompt_dataset", data,
                                          "--actor.model_name_or_path", tokenizer]))
    args.reward.remote_url = args.reward.remote_url.split(",")  # as train_ppo_ray does
    return args


class Strategy:
    """What the dataset path reads of OpenRLHF's DeepspeedStrategy (which needs deepspeed and a process group)."""

    def __init__(self, args: Any) -> None:
        self.args = args

    def print(self, *message: Any) -> None:
        print(*message, file=sys.stderr)

    def is_rank_0(self) -> bool:
        return True


class ScriptedEngine:
    """Stands in for the vLLM engine: its continuation of the prompt is the scripted completion + EOS."""

    def __init__(self, tokenizer: Any, completion: str) -> None:
        self.tokenizer = tokenizer
        self.completion = completion

    async def generate(self, prompt_token_ids: list[int], sampling_params: Any, multi_modal_data: Any = None) -> Any:
        token_ids = [*self.tokenizer.encode(self.completion, add_special_tokens=False), self.tokenizer.eos_token_id]
        output = SimpleNamespace(token_ids=token_ids, text=self.completion, finish_reason="stop", logprobs=None)
        return SimpleNamespace(outputs=[output])


async def score_all(executor: SingleTurnAgentExecutor, tokenizer: Any, jobs: list[tuple[str, str, str]]) -> list:
    async def one(prompt: str, label: str, completion: str) -> dict[str, Any]:
        engine = ScriptedEngine(tokenizer, completion)
        params = SimpleNamespace(max_tokens=None, logprobs=None)
        return await executor.execute(prompt, label, params, 1 << 20, tokenizer, engine)

    return await asyncio.gather(*(one(*job) for job in jobs))


def main(request_path: str, out_path: str) -> None:
    request = json.loads(Path(request_path).read_text())
    args = parse_flags(request["flags"], request["data"], request["tokenizer"])
    strategy = Strategy(args)
    tokenizer = get_tokenizer(args.actor.model_name_or_path, None, "left", strategy)
    data = blending_datasets(args.data.prompt_dataset, None, strategy, dataset_split="train")
    dataset = PromptDataset(data, tokenizer, strategy, input_template=args.data.input_template)
    rows = [dataset[i] for i in range(len(dataset))]
    executor = SingleTurnAgentExecutor(args.reward.remote_url)
    jobs, keys = [], []
    for _datasource, prompt, label, _ in rows:
        record_id = json.loads(label)["record_id"]
        for number, completion in enumerate(request["completions"].get(record_id, [])):
            jobs.append((prompt, label, completion))
            keys.append((record_id, number))
    outputs = asyncio.run(score_all(executor, tokenizer, jobs))
    result = {
        "rows": [{"datasource": d, "prompt": p, "label": label} for d, p, label, _ in rows],
        "scores": [{"record_id": record_id, "completion": number, "reward": output["reward"],
                    "scores": output["scores"], "extra_logs": output["extra_logs"]}
                   for (record_id, number), output in zip(keys, outputs, strict=True)],
    }
    Path(out_path).write_text(json.dumps(result, ensure_ascii=False))


if __name__ == "__main__":
    main(*sys.argv[1:])
