#!/usr/bin/env python3
"""Benchmark `snsdata validate --data-root` on a large JSONL file: wall time and peak RSS, beside baselines.

The file is generated (never committed) for a catalogue spec read from JSONL, `rumor_weibo_zh` (a source post,
a list of reposts, a label through a label map): synthetic Chinese posts of realistic length, a few bad lines
mixed in (invalid UTF-8, invalid JSON, a field whose type drifts) so the reject paths run too. Each run is a
child process timed end to end with its process-tree peak RSS (../shared/bench/bench_common.run_measured).

Printed side by side, in one run:
  - validate on the full file (the target: at most 5 minutes and 1 GB on 2 cores for 500 MB);
  - validate on a tenth of it (memory should stay flat as the input grows: it is streamed);
  - Polars reading a clean twin of the full file (same rows, no bad lines: its native reader fails a whole file on
    one bad line) into memory with `pl.read_ndjson`, no checks: the cost of just holding the data.

    python bench/bench_validate.py                # 500 MB
    python bench/bench_validate.py --mb 100
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"
RESULTS = REPO / "bench" / "results"
SPEC = REPO / "task_specs" / "content_understanding" / "rumor_weibo_zh.yaml"
sys.path.insert(0, str(SHARED_BENCH))
from bench_common import run_measured  # noqa: E402

HANZI = ("的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过子说产种面而方后"
         "多定行学法所民得经十三之进着等部度家电力里如水化高自二理起小物现实加量都两体制机当使点从业本去把性好应开它合还因由"
         "其些然前外天政四日那社义事平形相全表间样与关各重新线内数正心反你明看原又么利比或但质气第向道命此变条只没结解问意建"
         "月公无系军很情者最立代想已通并提直题党程展五果料象员革位入常文总次品式活设及管特件长求老头基资边流路级少图山统接知较")
BAD_LINES = [b'{"eid": "bad-utf8", "label": 1, "text": "\xff\xfe\xfd"}',
             b'{"eid": "bad-json", "label": 1, "text": "unterminated',
             b'{"eid": "drift", "label": 1, "text": {"not": "a string"}}']


def _text(rng: random.Random, low: int, high: int) -> str:
    return "".join(rng.choices(HANZI, k=rng.randint(low, high)))


def generate(path: Path, megabytes: int, seed: int = 0, bad: bool = True) -> int:
    """Write about `megabytes` MB of events (one JSON object per line, 1 in 20,000 lines bad unless `bad` is
    False); rows written."""
    if path.is_file() and path.stat().st_size >= megabytes * 1_000_000:
        return sum(1 for _ in path.open("rb"))
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    written, rows = 0, 0
    with path.open("wb") as handle:
        while written < megabytes * 1_000_000:
            if bad and rows % 20_000 == 19_999:
                line = BAD_LINES[(rows // 20_000) % len(BAD_LINES)]
            else:
                event = {"eid": f"e{rows}", "label": rng.randint(0, 1), "text": _text(rng, 60, 240),
                         "reposts": [_text(rng, 4, 60) for _ in range(rng.randint(0, 8))]}
                line = json.dumps(event, ensure_ascii=False).encode()
            handle.write(line + b"\n")
            written += len(line) + 1
            rows += 1
    return rows


def data_root(megabytes: int, bad: bool = True) -> tuple[Path, int]:
    root = RESULTS / f"validate_{megabytes}mb{'' if bad else '_clean'}"
    rows = generate(root / "weibo_rumor" / "events.jsonl", megabytes, bad=bad)
    return root, rows


def native_child(path: str) -> None:
    import polars as pl

    frame = pl.read_ndjson(path, infer_schema_length=1000)
    print(json.dumps({"rows": frame.height}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=500, help="Size of the large file in MB (default 500).")
    parser.add_argument("--native-child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.native_child:
        native_child(args.native_child)
        return
    RESULTS.mkdir(parents=True, exist_ok=True)
    runs = []
    for megabytes in (max(args.mb // 10, 1), args.mb):
        root, rows = data_root(megabytes)
        log = RESULTS / f"validate_{megabytes}mb.log"
        measured = run_measured([sys.executable, "-m", "snsdata", "validate", str(SPEC), "--data-root", str(root)],
                                cwd=REPO, log_path=log)
        runs.append((f"snsdata validate, {megabytes} MB ({rows:,} lines)", measured, log))
    root, rows = data_root(args.mb, bad=False)
    path = root / "weibo_rumor" / "events.jsonl"
    log = RESULTS / "native_read.log"
    measured = run_measured([sys.executable, str(Path(__file__).resolve()), "--native-child", str(path)], cwd=REPO,
                            log_path=log)
    runs.append((f"baseline: pl.read_ndjson of a clean twin into memory, {args.mb} MB (no checks)", measured, log))
    width = max(len(name) for name, _, _ in runs)
    print(f"{'run'.ljust(width)}  {'wall s':>8}  {'peak RSS MB':>11}  rc")
    for name, measured, _ in runs:
        print(f"{name.ljust(width)}  {measured['wall_s']:>8.1f}  {measured['peak_tree_rss_mb']:>11.0f}  "
              f"{measured['rc']}")
    for name, _, log in runs[:2]:
        tail = log.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-3:]
        print(f"\n{name}, last lines of its output:\n  " + "\n  ".join(tail))


if __name__ == "__main__":
    main()
