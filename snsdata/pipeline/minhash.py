"""Vectorised MinHash LSH: shingle hashing, one-permutation signatures, banding, exact Jaccard checks.

Every function works on flat numpy arrays of a whole batch, never on one row at a time:
- shingles: n-grams of code points (or of word-token hashes) hashed to 64 bits with a seeded polynomial over the
  units (one Horner pass over shifted slices) and a multiply-fold finaliser;
- signatures: one-permutation MinHash (Li, Owen, Zhang 2012): each shingle hash falls into one of K bins by its
  high bits and the bin keeps its minimum, so the cost is one pass over the shingles instead of K passes; empty
  bins are filled by optimal densification (Shrivastava 2017), which keeps the per-bin collision probability
  equal to the Jaccard similarity;
- LSH: 32-bit band hashes, each band bucketed by sorting packed (hash, row) integers, never with Python dicts;
- verification: the true Jaccard of two shingle sets by a merge of sorted arrays;
- clusters: greedy keep-first over the verified pairs, the one sequential walk (over pairs, not rows).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from snsdata.pipeline.textnorm import SEPARATOR, CodePoints, word_characters

_U64_MAX = np.uint64(np.iinfo(np.uint64).max)
_C1 = np.uint64(0xFF51AFD7ED558CCD)
_C2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
_HASH_BITS = 40  # bits of each shingle hash kept for the Jaccard merge; the rest of the key numbers the pair
_HASH_SHIFT = np.uint64(64 - _HASH_BITS)
_HASH_MASK = np.uint64((1 << _HASH_BITS) - 1)
_DENSIFY_ROUNDS = 48


def fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, in place: a bijection that spreads every input bit over the output."""
    x ^= x >> _S33
    x *= _C1
    x ^= x >> _S33
    x *= _C2
    x ^= x >> _S33
    return x


def _mix64(x: np.ndarray) -> np.ndarray:
    """A lighter bijective finaliser (multiply, fold the high half down), in place, for the hottest array.

    The Horner polynomial with a random odd base is already a universal hash; one more multiply puts
    every input bit into the high half (which picks the MinHash bin) and the fold spreads it to the low half.
    """
    x *= _C1
    x ^= x >> np.uint64(32)
    return x


def _constants(seed: int, count: int) -> np.ndarray:
    """Odd 64-bit multipliers derived from the seed (odd keeps multiplication invertible mod 2**64)."""
    return np.random.default_rng([seed, 0x5EED]).integers(0, 2**63, size=count, dtype=np.uint64) * np.uint64(
        2
    ) + np.uint64(1)


@dataclass(frozen=True)
class Units:
    """The sequences rows are shingled over (code points or word-token hashes), rows end to end with one
    separator unit after each; row i is `values[starts[i] : starts[i] + lengths[i]]`."""

    values: np.ndarray  # uint64
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64
    chars: np.ndarray | None = None  # characters in each unit (word units), 0 for separators


def char_units(cps: CodePoints) -> Units:
    """Characters as shingle units."""
    return Units(cps.cp.astype(np.uint64), cps.starts, cps.lengths)


def _is_cjk(cp: np.ndarray) -> np.ndarray:
    """Han, kana and Hangul code points: scripts written without spaces, where each character is a word."""
    return (
        ((cp >= 0x3040) & (cp <= 0x30FF))
        | ((cp >= 0x3400) & (cp <= 0x4DBF))
        | ((cp >= 0x4E00) & (cp <= 0x9FFF))
        | ((cp >= 0xAC00) & (cp <= 0xD7AF))
        | ((cp >= 0xF900) & (cp <= 0xFAFF))
        | ((cp >= 0x20000) & (cp <= 0x2FFFF))
    )


def word_units(cps: CodePoints, seed: int, cjk_words: bool = True, letters_only: bool = False) -> Units:
    """Word tokens as shingle units: runs of non-space characters, each CJK character a token of its own.

    `cjk_words=False` leaves CJK characters out (n-grams of the other words only); `letters_only` splits
    words at anything but letters, marks and digits, so "here," and "here" are one word.
    A token's unit is a polynomial hash of its code points, summed over its span with `np.add.reduceat`.
    """
    cp = cps.cp
    cjk = _is_cjk(cp)
    gap = (cp == 0x20) | (cp == SEPARATOR)
    if letters_only:
        gap |= ~word_characters()[np.minimum(cp, SEPARATOR - 1)]
    if not cjk_words:
        gap |= cjk
        cjk = np.zeros(cp.size, dtype=bool)
    prev_gap = np.ones(cp.size, dtype=bool)
    prev_gap[1:] = gap[:-1]
    prev_cjk = np.zeros(cp.size, dtype=bool)
    prev_cjk[1:] = cjk[:-1]
    token_start = ~gap & (prev_gap | cjk | prev_cjk)
    first_char = np.flatnonzero(token_start)
    if first_char.size == 0:
        lengths = np.zeros(cps.lengths.size, dtype=np.int64)
        return Units(np.zeros(lengths.size, dtype=np.uint64), np.arange(lengths.size, dtype=np.int64), lengths,
                     np.zeros(lengths.size, dtype=np.int64))
    # each token's polynomial hash sum(c_i * M**i), summed over its contiguous span (gaps contribute 0)
    token_id = np.cumsum(token_start) - 1
    pos = np.arange(cp.size) - first_char[np.maximum(token_id, 0)]
    pos = np.where(token_id >= 0, pos, 0)  # characters before a row's first token are gaps: contribute nothing
    mult = _constants(seed, 1)[0]
    powers = np.cumprod(np.full(int(pos.max()) + 1, mult, dtype=np.uint64))
    contrib = cp.astype(np.uint64) * powers[pos]
    contrib[gap] = 0
    token_hash = fmix64(np.add.reduceat(contrib, first_char))
    token_chars = np.add.reduceat((~gap).astype(np.int64), first_char)
    # lay tokens out like characters: each row's tokens, then one separator unit
    seps = np.flatnonzero(cp == SEPARATOR)
    tokens_before_sep = np.searchsorted(first_char, seps)
    lengths = np.diff(np.concatenate([[0], tokens_before_sep]))
    values = np.insert(token_hash, tokens_before_sep, np.uint64(0))
    chars = np.insert(token_chars, tokens_before_sep, 0)
    starts = np.zeros(lengths.size, dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return Units(values, starts, lengths.astype(np.int64), chars)


def cjk_units(cps: CodePoints) -> Units:
    """The CJK characters of each row, everything else left out, as shingle units."""
    keep = _is_cjk(cps.cp) | (cps.cp == SEPARATOR)
    cp = cps.cp[keep]
    seps = np.flatnonzero(cp == SEPARATOR)
    starts = np.zeros(seps.size, dtype=np.int64)
    starts[1:] = seps[:-1] + 1
    return Units(cp.astype(np.uint64), starts, seps - starts)


def shingle_hashes(units: Units, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """64-bit hashes of every n-gram of units inside each row, rows in order.

    `units.values` holds the rows end to end with one separator after each: the hash of every window comes
    from a Horner pass over shifted slices, and the windows that reach a separator are masked out. A row
    shorter than n (but not empty) has one shingle, itself padded with zeros, as in the usual `[text]`
    convention. Returns (hashes, counts) with counts[i] shingles for row i.
    """
    values, starts, lengths = units.values, units.starts, units.lengths
    counts = np.where(lengths >= n, lengths - n + 1, (lengths > 0).astype(np.int64))
    mult, salt = _constants(seed, 2)
    width = values.size - n + 1
    if width > 0:
        acc = values[:width].copy()
        for k in range(1, n):
            acc *= mult
            acc += values[k : k + width]
        valid = np.ones(width, dtype=bool)
        ends = starts + lengths  # separator positions
        for k in range(n):
            hit = ends - k
            valid[hit[(hit >= 0) & (hit < width)]] = False
        out = acc[valid]
    else:
        out = np.zeros(0, dtype=np.uint64)
    short = np.flatnonzero((lengths > 0) & (lengths < n))
    if short.size:
        padded = np.zeros(short.size, dtype=np.uint64)
        for k in range(n):
            padded *= mult
            padded += np.where(k < lengths[short], values[np.minimum(starts[short] + k, values.size - 1)], 0)
        first_out = np.cumsum(counts) - counts
        out = np.insert(out, first_out[short] - np.arange(short.size), padded)
    out ^= salt
    return _mix64(out), counts


def signatures(hashes: np.ndarray, counts: np.ndarray, num_perm: int, seed: int) -> np.ndarray:
    """One-permutation MinHash signatures (rows x num_perm, uint64) with optimal densification.

    Rows without shingles keep the all-max signature; callers leave them out of LSH.
    """
    rows = counts.size
    sig = np.full(rows * num_perm, _U64_MAX, dtype=np.uint64)
    # Lemire's multiply-shift maps the high 32 bits onto [0, num_perm) without a modulo bias worth noting
    bins = hashes >> np.uint64(32)
    bins *= np.uint64(num_perm)
    bins >>= np.uint64(32)
    index = np.repeat(np.arange(0, rows * num_perm, num_perm, dtype=np.int64), counts)
    index += bins.view(np.int64)
    np.minimum.at(sig, index, hashes)
    sig = sig.reshape(rows, num_perm)
    _densify(sig, counts > 0, seed)
    return sig


def _densify(sig: np.ndarray, has_shingles: np.ndarray, seed: int) -> None:
    """Fill empty bins in place from other bins along a probe sequence shared by all rows.

    Two rows probe the same bins in the same order, so a filled bin agrees between them exactly when the first
    bin non-empty in either agrees, which happens with probability equal to their Jaccard similarity.
    Bins still empty after the probe rounds (rows with very few shingles) take the next non-empty bin.
    """
    rows, num_perm = sig.shape
    flat = sig.reshape(-1)
    filled = flat != _U64_MAX
    filled.reshape(rows, num_perm)[~has_shingles] = True  # rows without shingles stay empty
    todo = np.flatnonzero(~filled)
    if todo.size == 0:
        return
    probes = np.random.default_rng([seed, 0xD3]).integers(0, num_perm, size=(_DENSIFY_ROUNDS, num_perm))
    column = todo % num_perm
    for t in range(_DENSIFY_ROUNDS):
        src = todo + (probes[t][column] - column)
        found = filled[src]
        flat[todo[found]] = flat[src[found]]
        missing = ~found
        todo, column = todo[missing], column[missing]
        if todo.size == 0:
            return
    offsets = (column[:, None] + np.arange(1, num_perm + 1)[None, :]) % num_perm + (todo - column)[:, None]
    flat[todo] = flat[offsets[np.arange(todo.size), np.argmax(filled[offsets], axis=1)]]


_FINGERPRINT_BITS = 8


def compact(sig: np.ndarray) -> np.ndarray:
    """Keep 8 bits of each bin (b-bit minwise hashing, Li and Koenig 2010): one byte a bin for the whole
    corpus instead of eight. Unequal minima agree on 8 bits one time in 256; `estimated_similarity` takes
    that chance out. Banding uses the full bins before they are cut."""
    return sig.astype(np.uint8)


def band_hashes(sig: np.ndarray, bands: int, rows_per_band: int, seed: int) -> np.ndarray:
    """One 32-bit hash per band of full signatures, as bands x rows (each band contiguous for LSH); the band
    number is mixed in through a per-band salt. 32 bits put a false bucket-mate in a band about once per
    2**32 / rows pairs; the signature estimate and the true Jaccard drop those."""
    n = sig.shape[0]
    block = sig[:, : bands * rows_per_band].reshape(n, bands, rows_per_band)
    mult = _constants(seed ^ 0xBA4D, 1)[0]
    acc = block[:, :, 0].copy()
    for k in range(1, rows_per_band):
        acc *= mult
        acc += block[:, :, k]
    acc += _constants(seed ^ 0x5A17, bands)[None, :]
    return np.ascontiguousarray((fmix64(acc) >> np.uint64(32)).astype(np.uint32).T)


def estimated_similarity(sig: np.ndarray, a: np.ndarray, b: np.ndarray, chunk: int = 65_536,
                         other: np.ndarray | None = None) -> np.ndarray:
    """MinHash Jaccard estimate of rows a[p] and b[p] from compact signatures: the share of equal bins, less
    the chance that two different minima agree on their kept bits. With `other`, b indexes its rows (a query
    batch against an index) instead of `sig`'s."""
    chance = 2.0**-_FINGERPRINT_BITS
    second = sig if other is None else other
    out = np.empty(a.size, dtype=np.float64)
    for start in range(0, a.size, chunk):
        stop = start + chunk
        out[start:stop] = (sig[a[start:stop]] == second[b[start:stop]]).mean(axis=1)
    out -= chance
    out /= 1.0 - chance
    return np.clip(out, 0.0, 1.0, out=out)


def plausible(estimate: np.ndarray, shingles: np.ndarray, threshold: float, num_perm: int) -> np.ndarray:
    """Pairs whose estimate leaves a real chance of true Jaccard >= threshold: within 4 standard errors, so a
    pair exactly at the threshold is skipped with probability about 3e-5 (less the higher it is).

    A row with few shingles fills few bins itself (densification copies the rest), so the estimate rests on
    min(shingles, num_perm) samples; short rows therefore get a wide margin and are nearly always verified.
    """
    samples = np.minimum(shingles, num_perm).clip(min=1)
    margin = 4.0 * np.sqrt(threshold * (1.0 - threshold) / samples)
    return estimate >= threshold - margin


def collision_probability(similarity: float, bands: int, rows_per_band: int) -> float:
    """Chance that a pair with this Jaccard similarity shares at least one band."""
    return 1.0 - (1.0 - similarity**rows_per_band) ** bands


def choose_bands(threshold: float, num_perm: int, min_recall: float = 0.995) -> tuple[int, int]:
    """(bands, rows): the most rows per band (fewest false candidates to verify) such that a pair exactly at
    the threshold still collides with probability >= min_recall; pairs above it collide even more often."""
    best = (num_perm, 1)
    for rows_per_band in range(1, num_perm + 1):
        bands = num_perm // rows_per_band
        if collision_probability(threshold, bands, rows_per_band) >= min_recall:
            best = (bands, rows_per_band)
    return best


def candidate_pairs(bands: np.ndarray, rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (earlier, later) of rows sharing a band bucket; `bands` is bands x rows of 32-bit hashes and
    `rows` (ascending) the columns taking part (None: all).

    Each band is bucketed by one sort of (hash << 32 | column) packed in a uint64, so a bucket's rows come
    out contiguous and in row order. Each member is paired with its bucket's earliest row and with the member
    just before it, so one stray collision cannot hide a true pair.
    """
    rows = np.arange(bands.shape[1], dtype=np.int64) if rows is None else rows
    count = rows.size
    low = np.uint64(0xFFFFFFFF)
    index = rows.astype(np.uint64)
    firsts: list[np.ndarray] = []
    seconds: list[np.ndarray] = []
    for hashes in bands:
        packed = hashes[rows].astype(np.uint64)
        packed <<= np.uint64(32)
        packed |= index
        packed.sort()
        bucket = packed >> np.uint64(32)
        same = bucket[1:] == bucket[:-1]  # same[i]: entry i + 1 shares the bucket of entry i
        if not same.any():
            continue
        members = (packed & low).astype(np.int64)
        del packed, bucket
        opens = np.ones(count, dtype=bool)
        opens[1:] = ~same
        first = members[np.maximum.accumulate(np.where(opens, np.arange(count), 0))]
        inner = np.flatnonzero(same) + 1
        firsts += [first[inner], members[inner - 1]]
        seconds += [members[inner], members[inner]]
    if not firsts:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty
    # one sorted, duplicate-free list of pairs: encode (a, b) in one int64 (row counts < 2**31)
    pairs = np.unique(np.concatenate(firsts) << 31 | np.concatenate(seconds))
    return pairs >> 31, pairs & ((1 << 31) - 1)


@dataclass(frozen=True)
class ShingleSets:
    """Sorted distinct shingle hashes (top bits) of a set of rows, in CSR layout."""

    values: np.ndarray  # uint64, each < 2**_HASH_BITS, sorted within a row
    starts: np.ndarray  # int64
    lengths: np.ndarray  # int64


def shingle_sets(hashes: np.ndarray, counts: np.ndarray) -> ShingleSets:
    """Distinct shingles per row, sorted, from the flat hashes of `shingle_hashes`."""
    rows = counts.size
    if rows >= 1 << (64 - _HASH_BITS):
        raise ValueError(f"too many rows in one shingle-set batch: {rows}")
    row_of = np.repeat(np.arange(rows, dtype=np.uint64), counts)
    keys = (row_of << np.uint64(_HASH_BITS)) | (hashes >> _HASH_SHIFT)
    keys.sort()
    distinct = np.ones(keys.size, dtype=bool)
    distinct[1:] = keys[1:] != keys[:-1]
    keys = keys[distinct]
    lengths = np.bincount((keys >> np.uint64(_HASH_BITS)).astype(np.int64), minlength=rows).astype(np.int64)
    starts = np.zeros(rows, dtype=np.int64)
    np.cumsum(lengths[:-1], out=starts[1:])
    return ShingleSets(keys & _HASH_MASK, starts, lengths)


def _pair_keys(sets: ShingleSets, rows: np.ndarray) -> np.ndarray:
    """Shingles of rows[p], each keyed by its pair number p above the hash bits."""
    lengths = sets.lengths[rows]
    first = np.cumsum(lengths) - lengths
    take = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(sets.starts[rows] - first, lengths)
    pair = np.repeat(np.arange(rows.size, dtype=np.uint64), lengths)
    pair <<= np.uint64(_HASH_BITS)
    pair |= sets.values[take]
    return pair


def jaccard(sets: ShingleSets, a: np.ndarray, b: np.ndarray, chunk_elements: int = 2_000_000) -> np.ndarray:
    """True Jaccard similarity of the shingle sets of rows a[p] and b[p], for every p.

    Both sets of a pair are distinct values, so after sorting the pair-keyed shingles of both sides together
    every equal neighbour is one shared shingle.
    """
    out = np.zeros(a.size, dtype=np.float64)
    sizes = sets.lengths[a] + sets.lengths[b]
    limit = 1 << (64 - _HASH_BITS)
    bounds = np.cumsum(sizes)
    start = 0
    while start < a.size:
        # chunk so the pair number fits beside the hash bits and the sort stays small
        base = bounds[start - 1] if start else 0
        stop = int(np.searchsorted(bounds, base + chunk_elements, side="right"))
        stop = min(max(stop, start + 1), start + limit, a.size)
        keys = np.concatenate([_pair_keys(sets, a[start:stop]), _pair_keys(sets, b[start:stop])])
        keys.sort()
        shared = keys[1:][keys[1:] == keys[:-1]] >> np.uint64(_HASH_BITS)
        inter = np.bincount(shared.astype(np.int64), minlength=stop - start)
        union = sizes[start:stop] - inter
        out[start:stop] = np.divide(inter, union, out=np.ones(stop - start), where=union > 0)
        start = stop
    return out


def keep_first(a: np.ndarray, b: np.ndarray, similarity: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy keep-first clustering of verified pairs (a < b): (removed rows, kept row each duplicates, Jaccard).

    Rows are decided in input order: a row is removed only when it is similar to an earlier row that is kept,
    and it names the most similar such row. Unlike connected components this never chains: every removed row
    is within the threshold of the row it points to. The walk is sequential by nature (a row's fate depends on
    earlier decisions), so it runs in Python, but only over verified pairs, a small share of the rows.
    """
    order = np.lexsort((a, -similarity, b))  # by later row, then most similar, then earliest partner
    removed: dict[int, tuple[int, float]] = {}
    for earlier, later, sim in zip(a[order].tolist(), b[order].tolist(), similarity[order].tolist(), strict=True):
        if later not in removed and earlier not in removed:
            removed[later] = (earlier, sim)
    rows = np.fromiter(removed, dtype=np.int64, count=len(removed))
    of = np.fromiter((kept for kept, _ in removed.values()), dtype=np.int64, count=len(removed))
    sims = np.fromiter((sim for _, sim in removed.values()), dtype=np.float64, count=len(removed))
    return rows, of, sims
