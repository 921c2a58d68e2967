"""Exact and near dedup: recall and precision on known near copies, duplicate_of, determinism, edge rows."""

from __future__ import annotations

import random

import numpy as np
import polars as pl
import pytest
from datasketch import MinHash

from snsdata.pipeline import minhash
from snsdata.pipeline.base import DUPLICATE_OF, STEP
from snsdata.pipeline.dedup import NearParams, dedup_step, find_duplicates
from snsdata.pipeline.textnorm import codepoints, normalize_text

WORDS = ["social", "media", "post", "share", "photo", "travel", "food", "coffee", "morning", "city", "night",
         "friend", "weekend", "music", "movie", "review", "great", "love", "happy", "today", "new", "style", "home",
         "life", "work", "study", "game"]
HAN = "今天天气很好我们去公园散步吧朋友分享美食旅行照片音乐电影生活工作学习周末城市夜晚咖啡"


def _char_shingles(text: str, n: int = 5) -> set[str]:
    t = normalize_text(text)
    if len(t) < n:
        return {t} if t else set()
    return {t[i : i + n] for i in range(len(t) - n + 1)}


def _jaccard(a: str, b: str) -> float:
    sa, sb = _char_shingles(a), _char_shingles(b)
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def _edit(text: str, edits: int, rng: random.Random) -> str:
    chars = list(text)
    for _ in range(edits):
        chars[rng.randrange(len(chars))] = rng.choice("abcdefghijklmnopqrstuvwxyz")
    return "".join(chars)


def _corpus(seed: int = 7) -> tuple[list[str], list[int | None]]:
    """Originals (English and Chinese), exact copies (case/space variants) and near copies, shuffled."""
    rng = random.Random(seed)
    originals = []
    for i in range(150):
        if i % 3 == 0:
            originals.append("".join(rng.choice(HAN) for _ in range(rng.randint(30, 80))))
        else:
            originals.append(" ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))))
    rows: list[tuple[str, int | None]] = [(t, None) for t in originals]
    for src in rng.sample(range(len(originals)), 40):
        rows.append((originals[src].upper().replace(" ", "  "), src))
    for src in rng.sample(range(len(originals)), 60):
        rows.append((_edit(originals[src], max(1, len(originals[src]) // 60), rng), src))
    order = list(range(len(rows)))
    rng.shuffle(order)
    position = {old: new for new, old in enumerate(order)}
    texts = [rows[old][0] for old in order]
    dup_of = [None if rows[old][1] is None else position[rows[old][1]] for old in order]
    return texts, dup_of


def test_near_dedup_recall_and_precision_on_known_copies() -> None:
    texts, dup_of = _corpus()
    dups = find_duplicates(pl.LazyFrame({"text": texts}), "text", batch_size=64)
    removed = dict(zip(dups.row.tolist(), dups.of.tolist(), strict=True))
    # every removed row really is similar to the row it is said to duplicate, and that row is kept
    for row, of in removed.items():
        assert of not in removed and of < row
        assert _jaccard(texts[row], texts[of]) >= 0.8 or normalize_text(texts[row]) == normalize_text(texts[of])
    # every injected copy whose true Jaccard with its original is >= 0.8 is caught (it or its original)
    eligible = [i for i, src in enumerate(dup_of) if src is not None and _jaccard(texts[i], texts[src]) >= 0.8]
    caught = [i for i in eligible if i in removed or dup_of[i] in removed]
    assert len(eligible) > 60 and len(caught) == len(eligible)
    # originals that nothing copies are never removed
    copied = {src for src in dup_of if src is not None}
    lonely = [i for i, src in enumerate(dup_of) if src is None and i not in copied]
    assert not set(lonely) & set(removed)


def test_exact_duplicates_point_at_first_occurrence_and_are_marked_exact() -> None:
    texts = ["Hello World", "b text that is different", "hello   world", "HELLO WORLD", "b text that is different"]
    dups = find_duplicates(pl.LazyFrame({"text": texts}), "text", near=False)
    assert dups.row.tolist() == [2, 3, 4]
    assert dups.of.tolist() == [0, 0, 1]
    assert dups.exact.all()


def test_exact_copy_of_a_near_duplicate_names_the_kept_row() -> None:
    base = "the quick brown fox jumps over the lazy dog near the river bank today"
    near = base.replace("today", "todax")
    dups = find_duplicates(pl.LazyFrame({"text": [base, near, near.upper()]}), "text")
    assert dict(zip(dups.row.tolist(), dups.of.tolist(), strict=True)) == {1: 0, 2: 0}


def test_empty_and_null_rows_pass_through() -> None:
    texts = ["", None, "   ", None, "", "some text here that is long enough", "x"]
    dups = find_duplicates(pl.LazyFrame({"text": pl.Series(texts, dtype=pl.String)}), "text")
    assert dups.row.size == 0


def test_short_rows_are_compared_whole() -> None:
    dups = find_duplicates(pl.LazyFrame({"text": ["ok", "Ok", "ok!", "no"]}), "text")
    assert dups.row.tolist() == [1]


def test_result_does_not_depend_on_batching_and_is_deterministic() -> None:
    texts, _ = _corpus(seed=3)
    frame = pl.LazyFrame({"text": texts})
    runs = [find_duplicates(frame, "text", batch_size=size, workers=w) for size, w in ((13, 1), (1000, 2), (64, 2))]
    # a shingle budget this small verifies the candidate pairs in many chunks, one scan each
    runs.append(find_duplicates(frame, "text", max_shingles=500))
    assert runs[0].row.size > 10
    for other in runs[1:]:
        assert np.array_equal(runs[0].row, other.row) and np.array_equal(runs[0].of, other.of)
        assert np.array_equal(runs[0].similarity, other.similarity)


def test_word_ngrams_find_reordered_punctuation_variants() -> None:
    base = "we went to the city market this morning and bought fresh coffee beans and bread for the week"
    texts = [base, base + " #weekend", "completely different words about music and movies for everyone to enjoy"]
    dups = find_duplicates(pl.LazyFrame({"text": texts}), "text", params=NearParams(word_ngrams=True, ngram=3))
    assert dups.row.tolist() == [1]


def test_dedup_step_conserves_rows_and_names_kept_ids() -> None:
    texts, _ = _corpus(seed=5)
    frame = pl.LazyFrame({"record_id": [f"r{i}" for i in range(len(texts))], "text": texts})
    result = dedup_step(frame, "text", near=True, params=NearParams(), step="near_dedup")
    kept, rejected = pl.collect_all([result.kept, result.rejected])
    assert kept.height + rejected.height == len(texts)
    assert rejected.height > 50
    assert set(rejected[DUPLICATE_OF].to_list()) <= set(kept["record_id"].to_list())
    assert kept["record_id"].to_list() == sorted(kept["record_id"].to_list(), key=lambda r: int(r[1:]))
    assert rejected[STEP].unique().to_list() == ["near_dedup"]


def test_true_jaccard_matches_python_sets() -> None:
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 25))) for _ in range(40)]
    texts += ["".join(rng.choice(HAN) for _ in range(rng.randint(2, 40))) for _ in range(20)]
    units = minhash.char_units(codepoints(pl.Series(texts)))
    sets = minhash.shingle_sets(*minhash.shingle_hashes(units, 5, seed=0))
    a = np.array([i for i in range(len(texts)) for j in range(len(texts)) if i < j])
    b = np.array([j for i in range(len(texts)) for j in range(len(texts)) if i < j])
    ours = minhash.jaccard(sets, a, b, chunk_elements=500)
    expected = np.array([_jaccard(texts[i], texts[j]) for i, j in zip(a, b, strict=True)])
    assert np.allclose(ours, expected)


def test_signature_estimates_agree_with_datasketch() -> None:
    """Compatibility check: our one-permutation estimate and datasketch's classic MinHash both track the
    true Jaccard on the same shingles."""
    rng = random.Random(2)
    base = [" ".join(rng.choice(WORDS) for _ in range(60)) for _ in range(12)]
    variants = [_edit(t, edits, rng) for t, edits in zip(base, range(1, 25, 2), strict=True)]
    texts = base + variants
    cps = codepoints(pl.Series(texts))
    hashes, counts = minhash.shingle_hashes(minhash.char_units(cps), 5, seed=0)
    sig = minhash.compact(minhash.signatures(hashes, counts, 128, seed=0))
    a, b = np.arange(12), np.arange(12, 24)
    ours = minhash.estimated_similarity(sig, a, b)
    truth = np.array([_jaccard(x, y) for x, y in zip(base, variants, strict=True)])
    theirs = []
    for x, y in zip(base, variants, strict=True):
        mx, my = MinHash(num_perm=128, seed=1), MinHash(num_perm=128, seed=1)
        mx.update_batch([s.encode() for s in _char_shingles(x)])
        my.update_batch([s.encode() for s in _char_shingles(y)])
        theirs.append(mx.jaccard(my))
    assert np.abs(ours - truth).max() < 0.15
    assert np.abs(np.array(theirs) - truth).max() < 0.15
    assert abs(float(np.mean(ours - truth))) < 0.05


def test_compact_estimate_takes_out_chance_agreement() -> None:
    # 8-bit bins of unrelated rows agree 1 time in 256; the estimate must not read that as similarity
    rng = np.random.default_rng(0)
    sig = minhash.compact(rng.integers(0, 2**63, size=(10_000, 126), dtype=np.uint64))
    a, b = np.arange(5_000), np.arange(5_000, 10_000)
    assert float(minhash.estimated_similarity(sig, a, b).mean()) < 0.003  # raw share of equal bins: 1/256
    assert (minhash.estimated_similarity(sig, a, a) == 1.0).all()


def test_banding_choice_finds_pairs_at_the_threshold() -> None:
    bands, rows = minhash.choose_bands(0.8, 128)
    assert bands * rows <= 128
    assert minhash.collision_probability(0.8, bands, rows) >= 0.995
    assert minhash.collision_probability(0.8, 128 // (rows + 1), rows + 1) < 0.995  # rows is the largest that fits
    assert minhash.collision_probability(0.3, bands, rows) < 0.05


def test_candidate_pairs_link_each_bucket_member_to_first_and_previous() -> None:
    table = (minhash.fmix64(np.array([[5, 9, 5, 7, 5, 9]], dtype=np.uint64)) >> np.uint64(32)).astype(np.uint32)
    a, b = minhash.candidate_pairs(table)
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 2), (0, 4), (1, 5), (2, 4)]
    a, b = minhash.candidate_pairs(table, np.array([0, 1, 3, 4, 5]))  # row 2 takes no part
    assert sorted(zip(a.tolist(), b.tolist(), strict=True)) == [(0, 4), (1, 5)]


def test_keep_first_never_chains_and_names_the_most_similar_kept_row() -> None:
    # 0~1, 1~2 (2 is not close to 0): 1 goes, 2 stays because its only neighbour is gone
    # 3~5 and 4~5: 5 names 4, the more similar kept row; 6~5 alone: 6 stays
    a = np.array([0, 1, 3, 4, 5])
    b = np.array([1, 2, 5, 5, 6])
    similarity = np.array([0.9, 0.85, 0.82, 0.95, 0.99])
    rows, of, sims = minhash.keep_first(a, b, similarity)
    assert dict(zip(rows.tolist(), zip(of.tolist(), sims.tolist(), strict=True), strict=True)) == {
        1: (0, 0.9), 5: (4, 0.95)}


@pytest.mark.parametrize("threshold", [0.5, 0.9])
def test_threshold_is_respected(threshold: float) -> None:
    texts, _ = _corpus(seed=11)
    dups = find_duplicates(pl.LazyFrame({"text": texts}), "text", params=NearParams(threshold=threshold))
    near = ~dups.exact
    assert (dups.similarity[near] >= threshold).all()  # every removed row is that close to the row it names
    direct = [_jaccard(texts[r], texts[o]) for r, o in zip(dups.row[near], dups.of[near], strict=True)]
    assert np.allclose(direct, dups.similarity[near])


def test_word_units_with_leading_empty_rows() -> None:
    texts = ["", "   ", None, *[f"post number {i} about the same long topic today" for i in range(3)]]
    units = minhash.word_units(codepoints(pl.Series(texts, dtype=pl.String)), seed=0)
    assert units.lengths.tolist() == [0, 0, 0, 9, 9, 9]
    dups = find_duplicates(pl.LazyFrame({"text": pl.Series(["", "", *texts], dtype=pl.String)}), "text",
                           params=NearParams(word_ngrams=True, ngram=3, threshold=0.3))
    assert dups.row.tolist() == [6, 7]
