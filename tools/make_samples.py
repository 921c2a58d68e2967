"""Draw the small samples shipped in `snsdata/sample_data/` from the full public data.

Only permissively licensed sets are shipped: COLDataset (Apache-2.0) and WNUT17 / emerging_entities_17 (CC BY 4.0).
Rows are copied byte for byte (the CSV byte-order mark, the unnamed index column, quoting, the WNUT17 tab-only
separator lines), at the same relative paths as in the source folder, so every spec reads the sample exactly as it
reads the full data. The draw is seeded and stratified, so re-running it gives the same files.

    python tools/make_samples.py --source ../shared/data --out snsdata/sample_data
"""

from __future__ import annotations

import argparse
import csv
import io
import random
import shutil
from collections import defaultdict
from pathlib import Path

SEED = 20240917
COLD_ROWS = 300
WNUT_SENTENCES = 200
COLD_FILES = ("COLDataset/COLDataset/train.csv", "COLDataset/COLDataset/dev.csv", "COLDataset/COLDataset/test.csv")
WNUT_FILES = (
    "emerging_entities_17/wnut17train.conll",
    "emerging_entities_17/emerging.dev.conll",
    "emerging_entities_17/emerging.test.annotated",
)
LICENCE_FILES = ("COLDataset/LICENSE", "emerging_entities_17/LICENSE_from_README.txt")


def allocate(sizes: dict[tuple[str, ...], int], total: int) -> dict[tuple[str, ...], int]:
    """Per-stratum quotas proportional to stratum size (largest remainder), summing to `total`."""
    population = sum(sizes.values())
    exact = {key: total * size / population for key, size in sizes.items()}
    quota = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(sizes, key=lambda key: (exact[key] - quota[key], key), reverse=True)
    for key in by_remainder[: total - sum(quota.values())]:
        quota[key] += 1
    return quota


def sample_cold(source: Path, out: Path, relative: str, rows: int, rng: random.Random) -> dict[str, int]:
    """A stratified draw of whole CSV lines (stratum: topic x label, plus fine-grained-label where present)."""
    raw = (source / relative).read_bytes()
    lines = raw.split(b"\n")
    trailing_newline = lines[-1] == b""
    if trailing_newline:
        lines.pop()
    header, body = lines[0], lines[1:]
    parsed = list(csv.DictReader(io.StringIO(raw.decode("utf-8-sig"), newline="")))
    if len(parsed) != len(body):
        raise SystemExit(f"{relative}: {len(parsed)} records but {len(body)} lines; a field spans lines")
    keys = [k for k in ("topic", "label", "fine-grained-label") if k in parsed[0]]
    strata: dict[tuple[str, ...], list[int]] = defaultdict(list)
    for index, row in enumerate(parsed):
        strata[tuple(row[k] for k in keys)].append(index)
    quota = allocate({key: len(members) for key, members in strata.items()}, rows)
    chosen: list[int] = []
    for key in sorted(strata):
        chosen.extend(rng.sample(strata[key], quota[key]))
    kept = [header] + [body[i] for i in sorted(chosen)]
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(b"\n".join(kept) + (b"\n" if trailing_newline else b""))
    return {"/".join(key): quota[key] for key in sorted(strata)}


def sample_conll(source: Path, out: Path, relative: str, sentences: int, rng: random.Random) -> int:
    """A seeded draw of whole sentences, in file order, each with the separator line that followed it."""
    text = (source / relative).read_text(encoding="utf-8")
    blocks: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        current.append(line)
        if not line.strip() and len(current) > 1:
            blocks.append("\n".join(current))
            current = []
        elif not line.strip():
            current = []
    if any(line.strip() for line in current):
        blocks.append("\n".join(current))
    chosen = sorted(rng.sample(range(len(blocks)), min(sentences, len(blocks))))
    target = out / relative
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("\n".join(blocks[i] for i in chosen) + "\n", encoding="utf-8")
    return len(chosen)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "snsdata" / "sample_data")
    args = parser.parse_args()
    for relative in COLD_FILES:
        quotas = sample_cold(args.source, args.out, relative, COLD_ROWS, random.Random(f"{SEED}:{relative}"))
        print(relative, quotas)
    for relative in WNUT_FILES:
        count = sample_conll(args.source, args.out, relative, WNUT_SENTENCES, random.Random(f"{SEED}:{relative}"))
        print(relative, count, "sentences")
    for relative in LICENCE_FILES:
        shutil.copyfile(args.source / relative, args.out / relative)


if __name__ == "__main__":
    main()
