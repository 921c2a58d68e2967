"""GRPO steps' reward tail: generation on a GPU, then the same completions' rewards two ways, per step.

RedOne 2.0's stage 1 runs GRPO-style steps (DAPO) over an `rl` build: a step generates a group of completions for
each prompt, scores them, then updates the policy. While rewards are scored the GPU waits, so the reward time
per step (its "tail") is what a slow reward path costs. This script measures both halves on one set of
completions, in three sub-commands (run from the repository root):

1. `prepare --build DIR --out PREP` (CPU machine): picks `steps x prompts` prompts of the build's train split
   with a fixed seed, renders them with a ChatML template and trains a byte-level BPE tokenizer on the split's
   prompts (no tokenizer can be downloaded). PREP is small enough to carry.
2. `generate --prep PREP --out DIR` (GPU machine: Python, torch and transformers only): builds a causal LM with
   Qwen2.5-0.5B's shape (24 layers, hidden 896, 14 query / 2 key-value heads, MLP 4864, tied embeddings, its
   151,936-token vocabulary; random weights) and samples `group` completions per prompt, `prompts x group` per
   step, timing each step; logits past the local tokenizer's vocabulary are masked, so every sampled id decodes.
   Writes the completions and timings.
3. `score --prep PREP --generated DIR --build DIR` (CPU machine, with snsdata): per step, the same completions
   scored by snsdata's batched TRL callable (one call per step, as GRPOTrainer makes) and by a per-sample loop
   (`snsdata.rewards.score` per row, as verl's naive reward manager does), and prints, per step, generation
   seconds, both reward times, the reward share of the step and the slowest task inside the batched call.

TRL and polars do not install on the GPU machine (no network there; at most 64 MiB may be carried), so the
policy update is not part of the timed step, and the rewards are timed on the CPU machine: the table says which
machine gave each column. Random weights give random text: what the rewards see is a policy at its least
trained, the case where parsers mostly fail fast.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Qwen2.5-0.5B's published configuration.
QWEN25_05B_SHAPE: dict[str, Any] = {
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 32768, "rope_theta": 1_000_000.0,
    "rms_norm_eps": 1e-6, "tie_word_embeddings": True, "hidden_act": "silu",
}
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def chatml(messages: list[dict[str, str]]) -> str:
    """Qwen's chat template (ChatML), with the assistant turn opened for generation."""
    turns = "".join(f"<|im_start|>{m['role']}\n{m['content']}<|im_end|>\n" for m in messages)
    return turns + "<|im_start|>assistant\n"


def prepare(build: Path, out: Path, steps: int, prompts: int, seed: int, vocab_size: int) -> None:
    import polars as pl
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from snsdata.backends.trl import read_split

    train = read_split(build, "train").select("task_id", "record_id", "prompt", "record")
    picked = train.sample(n=steps * prompts, seed=seed, shuffle=True)
    out.mkdir(parents=True, exist_ok=True)
    rows = [{"step": i // prompts, "task_id": r["task_id"], "record_id": r["record_id"], "record": r["record"],
             "text": chatml(r["prompt"])} for i, r in enumerate(picked.iter_rows(named=True))]
    with (out / "prompts.jsonl").open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    corpus = train.get_column("prompt").list.eval(pl.element().struct.field("content")).list.join("\n")
    tokenizer.train_from_iterator(corpus.to_list(), trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer.save(str(out / "tokenizer.json"))
    print(f"{len(rows)} prompts ({steps} steps x {prompts}) and a {tokenizer.get_vocab_size()}-token tokenizer "
          f"-> {out}")


def generate(prep: Path, out: Path, group: int, max_new_tokens: int, seed: int, device: str) -> None:
    import torch
    from transformers import LogitsProcessor, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    class TokenizerVocabulary(LogitsProcessor):
        """Only ids the local tokenizer has: the model keeps Qwen's full output layer, so its compute is real."""

        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
            scores[:, len(tokenizer):] = float("-inf")
            return scores

    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(prep / "tokenizer.json"), eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", padding_side="left")
    config = Qwen2Config(bos_token_id=tokenizer.pad_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                         **QWEN25_05B_SHAPE)
    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2ForCausalLM(config).to(torch.bfloat16).eval()
    synchronize = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    params = sum(p.numel() for p in model.parameters())
    prompts = [json.loads(line) for line in (prep / "prompts.jsonl").open(encoding="utf-8")]
    by_step: dict[int, list[dict[str, Any]]] = {}
    for row in prompts:
        by_step.setdefault(row["step"], []).append(row)
    out.mkdir(parents=True, exist_ok=True)
    timings = []
    with (out / "completions.jsonl").open("w", encoding="utf-8") as f, torch.inference_mode():
        for step, rows in sorted(by_step.items()):
            batch = tokenizer([r["text"] for r in rows], return_tensors="pt", padding=True).to(device)
            synchronize()
            started = time.perf_counter()
            generated = model.generate(**batch, do_sample=True, temperature=1.0, top_p=1.0,
                                       num_return_sequences=group, max_new_tokens=max_new_tokens,
                                       pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
                                       logits_processor=[TokenizerVocabulary()])
            synchronize()
            seconds = time.perf_counter() - started
            new = generated[:, batch["input_ids"].shape[1]:]
            lengths = (new != tokenizer.pad_token_id).sum(dim=1).tolist()
            texts = tokenizer.batch_decode(new, skip_special_tokens=True)
            for i, (text, length) in enumerate(zip(texts, lengths, strict=True)):
                row = rows[i // group]
                f.write(json.dumps({"step": step, "task_id": row["task_id"], "record_id": row["record_id"],
                                    "completion": text, "tokens": length}, ensure_ascii=False) + "\n")
            timings.append({"step": step, "completions": len(texts), "generation_s": seconds,
                            "new_tokens": sum(lengths), "prompt_tokens": int(batch["attention_mask"].sum())})
            print(f"step {step}: {len(texts)} completions, {sum(lengths)} new tokens in {seconds:.2f} s", flush=True)
    (out / "timings.json").write_text(json.dumps({
        "device": torch.cuda.get_device_name() if device == "cuda" else device, "torch": torch.__version__,
        "parameters": params, "tokenizer_vocabulary": len(tokenizer), "group": group,
        "max_new_tokens": max_new_tokens, "steps": timings}, indent=2))


def score(prep: Path, generated: Path, build: Path, repeats: int) -> None:
    import torch

    from snsdata.backends.trl_rewards import reward_funcs
    from snsdata.rewards import score as score_row

    torch.set_num_threads(1)
    records = {(r["task_id"], r["record_id"]): r["record"]
               for r in map(json.loads, (prep / "prompts.jsonl").open(encoding="utf-8"))}
    rows = [json.loads(line) for line in (generated / "completions.jsonl").open(encoding="utf-8")]
    timings = json.loads((generated / "timings.json").read_text())
    (reward,) = reward_funcs(build)
    warm_records: dict[str, dict[str, Any]] = {}
    for (task_id, _), record in records.items():
        warm_records.setdefault(task_id, json.loads(record))
    for task_id, record in warm_records.items():  # warm both paths' scorers (and MiniLM) before timing
        score_row(task_id, "", record, specs=reward.specs)
    print(f"generation: {timings['device']}, {timings['parameters'] / 1e6:.0f}M parameters (Qwen2.5-0.5B shape, "
          f"random weights, sampling from a {timings['tokenizer_vocabulary']}-token tokenizer), "
          f"{timings['group']} completions per prompt, up to "
          f"{timings['max_new_tokens']} new tokens; rewards: this machine, median of {repeats} runs per step")
    print(f"{'step':>4}{'rows':>6}{'tasks':>6}{'gen s':>8}{'batched s':>11}{'loop s':>9}{'speed-up':>10}"
          f"{'tail % (batched)':>18}{'tail % (loop)':>15}  slowest task (loop seconds)")
    for step_timing in timings["steps"]:
        step_rows = [r for r in rows if r["step"] == step_timing["step"]]
        columns = {"task_id": [r["task_id"] for r in step_rows], "record_id": [r["record_id"] for r in step_rows],
                   "record": [records[r["task_id"], r["record_id"]] for r in step_rows]}
        completions = [r["completion"] for r in step_rows]
        parsed = [json.loads(r) for r in columns["record"]]
        batched_s, loop_s = [], []
        for _ in range(repeats):
            started = time.perf_counter()
            batched = reward(prompts=[""] * len(step_rows), completions=completions, completion_ids=None, **columns)
            batched_s.append(time.perf_counter() - started)
            looped, per_task = [], Counter[str]()
            for task_id, completion, record in zip(columns["task_id"], completions, parsed, strict=True):
                started = time.perf_counter()
                looped.append(score_row(task_id, completion, record, specs=reward.specs))
                per_task[task_id] += time.perf_counter() - started
            loop_s.append(per_task.total())
        mismatches = sum((a is None) != (b is None) or (a is not None and abs(a - b) > 1e-6)
                         for a, b in zip(batched, looped, strict=True))
        if mismatches:
            sys.exit(f"step {step_timing['step']}: {mismatches} rows score differently on the two paths")
        gen_s, b_s, l_s = step_timing["generation_s"], statistics.median(batched_s), statistics.median(loop_s)
        slowest, slowest_s = per_task.most_common(1)[0]
        print(f"{step_timing['step']:>4}{len(step_rows):>6}{len(set(columns['task_id'])):>6}{gen_s:>8.2f}"
              f"{b_s:>11.3f}{l_s:>9.3f}{l_s / b_s:>9.1f}x{100 * b_s / (gen_s + b_s):>17.1f}%"
              f"{100 * l_s / (gen_s + l_s):>14.1f}%  {slowest} {slowest_s:.3f} s")
    print("tail %: reward seconds / (generation + reward seconds) of the step; both paths gave the same rewards")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("prepare")
    p.add_argument("--build", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--steps", type=int, default=4)
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--seed", type=int, default=0)
    g = commands.add_parser("generate")
    g.add_argument("--prep", type=Path, required=True)
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--group", type=int, default=8)
    g.add_argument("--max-new-tokens", type=int, default=256)
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--device", default="cuda", help="cuda for the figures; cpu only to try the script")
    s = commands.add_parser("score")
    s.add_argument("--prep", type=Path, required=True)
    s.add_argument("--generated", type=Path, required=True)
    s.add_argument("--build", type=Path, required=True)
    s.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.command == "prepare":
        prepare(args.build, args.out, args.steps, args.prompts, args.seed, args.vocab_size)
    elif args.command == "generate":
        generate(args.prep, args.out, args.group, args.max_new_tokens, args.seed, args.device)
    else:
        score(args.prep, args.generated, args.build, args.repeats)


if __name__ == "__main__":
    main()
