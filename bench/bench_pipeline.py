#!/usr/bin/env python3
"""Benchmark the filter chain: rows/s and peak RSS per step, and memory staying flat as the input grows.

Input: the shared benchmark corpus (real tweets and Chinese posts with HTML, repeated-line, empty and very
long junk; built with ../shared/bench/make_corpus.py and cached in bench/results/), read lazily and tiled
for sizes beyond it. Every run is a child process writing kept rows and rejects to Parquet, timed end to
end with its process-tree peak RSS measured (../shared/bench/bench_common.run_measured).

    python bench/bench_pipeline.py --n 1000000 10000000            # whole chain at each size
    python bench/bench_pipeline.py --n 1000000 --per-step 200000   # and each step alone on 200k rows
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(SHARED_BENCH))
from bench_common import run_measured  # noqa: E402

CORPUS_ROWS = 1_000_000
CHAIN: list[dict[str, object]] = [
    {"step": "length", "min_chars": 5},
    {"step": "html"},
    {"step": "repetition"},
    {"step": "url_share"},
    {"step": "hashtag_share"},
    {"step": "mention_share"},
    {"step": "emoji_share"},
    {"step": "symbol_share"},
    {"step": "sticker_share"},
    {"step": "distinct_chars"},
    {"step": "char_flood"},
    {"step": "tags_only"},
    {"step": "langid", "allowed": ["zh", "en"], "min_confidence": 0.5},
]


def corpus(seed: int) -> Path:
    path = RESULTS / f"corpus_{CORPUS_ROWS}_{seed}.parquet"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        subprocess.run([sys.executable, str(SHARED_BENCH / "make_corpus.py"), "--n", str(CORPUS_ROWS), "--out",
                        str(path), "--seed", str(seed)], check=True, cwd=REPO)
    return path


def child(args: argparse.Namespace) -> None:
    """Run the steps over n rows of the (tiled) corpus; print counts and timing as JSON."""
    from snsdata.pipeline.runner import run_pipeline_to_files

    rows = args.n[0]
    tiles = -(-rows // CORPUS_ROWS)
    frame = pl.scan_parquet([args.corpus] * tiles).head(rows)
    started = time.time()
    counts = run_pipeline_to_files(frame, json.loads(args.steps), args.out, args.rejects, rescannable=True)
    print(json.dumps({"seconds": time.time() - started, "counts": [vars(c) for c in counts]}))


def measure(corpus_path: Path, n: int, steps: list[dict[str, object]], label: str) -> dict[str, object]:
    out, rejects = RESULTS / f"pipeline_out_{label}.parquet", RESULTS / f"pipeline_rejects_{label}.parquet"
    log = RESULTS / f"pipeline_log_{label}.txt"
    command = [sys.executable, __file__, "--child", "--corpus", str(corpus_path), "--n", str(n), "--steps",
               json.dumps(steps), "--out", str(out), "--rejects", str(rejects)]
    measured = run_measured(command, cwd=REPO, log_path=str(log))
    if measured["rc"] != 0:
        raise SystemExit(f"pipeline run failed: see {log}")
    report = json.loads(log.read_text().strip().splitlines()[-1])
    kept = pl.scan_parquet(out).select(pl.len()).collect().item()
    dropped = pl.scan_parquet(rejects).select(pl.len()).collect().item()
    out.unlink()
    rejects.unlink()
    return {**measured, "rows": n, "kept": kept, "rejected": dropped, "counts": report["counts"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000], help="rows for the whole chain")
    parser.add_argument("--per-step", type=int, default=0, help="also run each step alone on this many rows")
    parser.add_argument("--seed", type=int, default=20240701)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--corpus", help=argparse.SUPPRESS)
    parser.add_argument("--steps", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    parser.add_argument("--rejects", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    path = corpus(args.seed)
    lines = []
    if args.per_step:
        lines += ["step | rows | wall s | rows/s | peak RSS MB | rejected", "--- | --- | --- | --- | --- | ---"]
        for step in CHAIN:
            run = measure(path, args.per_step, [step], f"step_{step['step']}")
            lines.append(f"{step['step']} | {args.per_step:,} | {run['wall_s']:.1f} | "
                         f"{args.per_step / run['wall_s']:,.0f} | {run['peak_tree_rss_mb']:,.0f} | {run['rejected']:,}")
        lines.append("")
    lines += ["whole chain | rows | wall s | rows/s | peak RSS MB | kept | rejected | rows lost",
              "--- | --- | --- | --- | --- | --- | --- | ---"]
    for n in args.n:
        run = measure(path, n, CHAIN, f"chain_{n}")
        lost = n - run["kept"] - run["rejected"]
        lines.append(f"{len(CHAIN)} steps | {n:,} | {run['wall_s']:.1f} | {n / run['wall_s']:,.0f} | "
                     f"{run['peak_tree_rss_mb']:,.0f} | {run['kept']:,} | {run['rejected']:,} | {lost}")
        (RESULTS / f"bench_pipeline_{n}.json").write_text(json.dumps(run, indent=1, default=str))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
