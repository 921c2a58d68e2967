#!/usr/bin/env python3
"""Benchmark `snsdata dedup` against the datasketch baseline on the shared near-duplicate corpus.

For every --n: builds the corpus once with ../shared/bench/make_corpus.py (cached in bench/results/), runs
`snsdata dedup` end to end in a child process (read, dedup, write kept rows and rejects) and
../shared/bench/baseline_datasketch.py in its fastest mode on the same file, measures wall time and the peak
RSS of each process tree, scores both with ../shared/bench/bench_common.evaluate, and prints them side by side.

    python bench/bench_dedup.py --n 100000 1000000
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import polars as pl

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
RESULTS = REPO / "bench" / "results"
sys.path.insert(0, str(SHARED_BENCH))
from bench_common import evaluate, run_measured  # noqa: E402
from make_corpus import jaccard_c5  # noqa: E402

# registers the pipeline commands on the app whether or not snsdata.cli imports them yet
SNSDATA = ("import sys; from snsdata.cli.app import app; import snsdata.cli.pipeline; "
           "app(sys.argv[1:], prog_name='snsdata')")


def corpus(n: int, seed: int) -> Path:
    """The benchmark corpus of n rows, built on first use."""
    path = RESULTS / f"corpus_{n}_{seed}.parquet"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        print(f"building {path.name} ...", file=sys.stderr)
        subprocess.run([sys.executable, str(SHARED_BENCH / "make_corpus.py"), "--n", str(n), "--out", str(path),
                        "--seed", str(seed)], check=True, cwd=REPO)
    return path


def run_snsdata(path: Path, args: argparse.Namespace) -> dict[str, object]:
    out, rejects = RESULTS / f"dedup_out_{path.stem}.parquet", RESULTS / f"dedup_rejects_{path.stem}.parquet"
    command = [sys.executable, "-c", SNSDATA, "dedup", str(path), "--out", str(out), "--rejects", str(rejects),
               "--threshold", str(args.threshold)]
    if args.shingle == "word":
        command.append("--word-ngrams")
    measured = run_measured(command, cwd=REPO, log_path=str(RESULTS / f"dedup_log_{path.stem}.txt"))
    if measured["rc"] != 0:
        raise SystemExit(f"snsdata dedup failed: see {RESULTS / f'dedup_log_{path.stem}.txt'}")
    truth = pl.read_parquet(path, columns=["id", "dup_of", "kind", "jaccard_c5"])
    assert truth["id"].to_list() == list(range(truth.height)), "make_corpus rows are sorted by id = position"
    dropped = pl.read_parquet(rejects, columns=["record_id", "duplicate_of"])
    # without a record_id column, snsdata names rows by input position
    positions = dropped["record_id"].cast(pl.Int64)
    kept = pl.scan_parquet(out).select(pl.len()).collect().item()
    score = evaluate(truth, positions.to_list())
    # removed originals the generator never copied (scored as false positives): their Jaccard with the kept row,
    # by make_corpus's own jaccard_c5 (the definition behind "eligible")
    clusters = truth.with_columns(pl.coalesce("dup_of", "id").alias("cluster"))
    lonely = clusters.filter(
        (pl.col("kind") == "original") & (pl.col("cluster").count().over("cluster") == 1)
    ).select("id")
    lonely_removed = (
        dropped.select(positions.alias("id"), pl.col("duplicate_of").cast(pl.Int64).alias("of"))
        .join(lonely, on="id", how="semi")
    )
    needed = pl.concat([lonely_removed["id"], lonely_removed["of"]]).unique()
    texts = dict(
        pl.scan_parquet(path).select("id", "text").filter(pl.col("id").is_in(needed.implode())).collect().iter_rows()
    )
    similarity = [jaccard_c5(texts[row], texts[of]) for row, of in lonely_removed.iter_rows()]
    within = sum(value >= args.threshold for value in similarity)
    tp, removed = score["tp"], score["removed"]
    assert isinstance(tp, int) and isinstance(removed, int)
    return {
        **measured, "rows": truth.height, "kept": kept, "removed": dropped.height,
        "rows_lost": truth.height - kept - dropped.height, "score": score,
        "lone_removed": lonely_removed.height,
        "lone_removed_jaccard_ge_threshold": within,
        "precision_counting_those_as_correct": round((tp + within) / removed, 4) if removed else None,
    }


def run_baseline(path: Path, args: argparse.Namespace) -> dict[str, object]:
    report = RESULTS / f"baseline_{args.baseline_mode}_{path.stem}.json"
    command = [sys.executable, str(SHARED_BENCH / "baseline_datasketch.py"), str(path), "--mode", args.baseline_mode,
               "--shingle", args.shingle, "--threshold", str(args.threshold), "--json", str(report)]
    measured = run_measured(command, cwd=REPO, log_path=str(RESULTS / f"baseline_log_{path.stem}.txt"))
    if measured["rc"] != 0:
        raise SystemExit(f"baseline failed: see {RESULTS / f'baseline_log_{path.stem}.txt'}")
    result = json.loads(report.read_text())
    return {**measured, "rows": result["rows"], "score": result["verified"],
            "internal_docs_per_s": result["docs_per_s"]}


def table(rows: list[tuple[str, dict[str, object]]]) -> str:
    header = ("tool", "rows", "wall s", "rows/s", "peak RSS MB", "precision", "recall", "eligible recall",
              "rows lost")
    lines = [" | ".join(header), " | ".join("---" for _ in header)]
    for name, run in rows:
        score = run["score"]
        assert isinstance(score, dict)
        lines.append(" | ".join([
            name, f"{run['rows']:,}", f"{run['wall_s']:.1f}", f"{run['rows'] / run['wall_s']:,.0f}",
            f"{run['peak_tree_rss_mb']:,.0f}", f"{score['precision']}", f"{score['recall']}",
            f"{score['recall_eligible_j>=0.8']}", str(run.get("rows_lost", "n/a (reports ids only)")),
        ]))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, nargs="+", default=[100_000])
    parser.add_argument("--seed", type=int, default=20240701, help="corpus seed (make_corpus default)")
    parser.add_argument("--threshold", type=float, default=0.8)
    parser.add_argument("--shingle", choices=["char", "word"], default="char")
    parser.add_argument("--baseline-mode", default="mp", help="baseline_datasketch mode (mp: its fastest)")
    parser.add_argument("--no-baseline", action="store_true")
    args = parser.parse_args()
    rows: list[tuple[str, dict[str, object]]] = []
    notes: list[str] = []
    for n in args.n:
        path = corpus(n, args.seed)
        ours = run_snsdata(path, args)
        rows.append((f"snsdata dedup ({args.shingle} 5-grams)", ours))
        notes.append(f"n={n:,}: snsdata removed {ours['removed']:,} rows; {ours['lone_removed']:,} are originals "
                     f"the generator never copied (scored as false positives), "
                     f"{ours['lone_removed_jaccard_ge_threshold']:,} of them with true character 5-gram Jaccard "
                     f">= {args.threshold} to the row kept (make_corpus.jaccard_c5); counting those as correct, "
                     f"precision would be {ours['precision_counting_those_as_correct']}")
        if not args.no_baseline:
            base = run_baseline(path, args)
            rows.append((f"datasketch {args.baseline_mode} (verified)", base))
        (RESULTS / f"bench_dedup_{n}.json").write_text(json.dumps(rows[-2:] if not args.no_baseline else rows[-1:],
                                                                  indent=1, default=str))
    print(table(rows))
    print("\n".join(notes))


if __name__ == "__main__":
    main()
