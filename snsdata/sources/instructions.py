"""Instruction following on SNS posts: IFEval-style verifiable constraints with a reference that meets them.

Each record asks to rewrite a post from the shipped samples under 2-4 constraints drawn from if-verifiable's
IFEval registry (instruction ids + kwargs, scored by the pattern reward). Because the task is a rewrite, a
compliant reference can be built by applying the constraints to the post itself; every reference is checked with
if-verifiable's own checkers before it is emitted, so the gold always earns full reward. Checkers that need NLTK
data (sentence counts, capital-word frequency) or language detection (non-deterministic) are not used.
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.sources.common import EVAL_SPLITS, split_seed, stable_order

FIELDS = ("text", "language", "prompt", "instruction_ids", "kwargs", "reference")
SCHEMA = {"text": pl.String, "language": pl.String, "prompt": pl.String, "instruction_ids": pl.List(pl.String),
          "kwargs": pl.String, "reference": pl.String}

_CJK = re.compile(r"[\u4e00-\u9fff]")
_CJK_RUN = re.compile(r"[\u4e00-\u9fff]{2,}")
_WORD = re.compile(r"\b[A-Za-z]{4,}\b")
# English words that a rewrite never needs; the checker matches them as whole words (`\b`), so only Latin words
# are usable here (a CJK word inside a sentence has no word boundary).
_FORBIDDEN_POOL = ("basically", "literally", "honestly", "seriously", "totally", "awesome", "whatever", "anyway")
_END_PHRASES = ("Any other questions?", "Is there anything else I can help with?", "Let me know what you think.")
_POSTSCRIPTS = (("P.S.", "P.S. Thanks for reading."), ("P.P.S", "P.P.S Share your thoughts below."))
_EXCLUSIVE = "detectable_format:json_format"
_KINDS = (
    "punctuation:no_comma",
    "keywords:existence",
    "keywords:frequency",
    "keywords:forbidden_words",
    "detectable_format:title",
    "detectable_format:number_highlighted_sections",
    "detectable_content:postscript",
    "startend:end_checker",
    "startend:quotation",
    "length_constraints:number_words",
    _EXCLUSIVE,
)
_INTRO = ("Rewrite the social-media post below, keeping its content and language, so that your answer follows "
          "every instruction.")


@dataclass
class _Draft:
    """A reference being built: the body, the decorations around it, and the chosen instructions."""

    body: str
    keywords: list[str]
    title: str | None = None
    highlights: int = 0
    postscript: str | None = None
    end_phrase: str | None = None
    quoted: bool = False
    as_json: bool = False
    chosen: dict[str, dict[str, Any]] = field(default_factory=dict)

    def render(self) -> str:
        if self.as_json:
            return json.dumps({"post": self.body}, ensure_ascii=False)
        parts = [f"<<{self.title}>>", self.body] if self.title else [self.body]
        if self.postscript:
            parts.append(self.postscript)
        text = "\n\n".join(parts)
        if self.end_phrase:
            text = f"{text}\n{self.end_phrase}"
        return f'"{text}"' if self.quoted else text


@cache
def _registry() -> tuple[dict[str, Any], dict[str, set[str]]]:
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_CONFLICTS, INSTRUCTION_DICT

    return INSTRUCTION_DICT, INSTRUCTION_CONFLICTS


def _keyword_candidates(text: str) -> list[str]:
    """Words of the post usable as regex keywords: Latin words of 4+ letters, or 2-character CJK pieces."""
    if _CJK.search(text):
        found = [run[i:i + 2] for run in _CJK_RUN.findall(text) for i in range(0, len(run) - 1, 2)]
    else:
        found = _WORD.findall(text)
    seen: set[str] = set()
    return [w for w in found if not (w.casefold() in seen or seen.add(w.casefold()))]


def _describe(instruction_id: str, kwargs: dict[str, Any]) -> str:
    checker = _registry()[0][instruction_id](instruction_id)
    return checker.build_description(**kwargs)


def _passes(response: str, chosen: dict[str, dict[str, Any]]) -> bool:
    registry = _registry()[0]
    for instruction_id, kwargs in chosen.items():
        checker = registry[instruction_id](instruction_id)
        checker.build_description(**kwargs)
        if not checker.check_following(response):
            return False
    return True


def _pick_kinds(rng: random.Random, count: int, has_keywords: bool) -> list[str]:
    """Up to `count` instruction ids with no conflict between them (if-verifiable's own conflict table)."""
    conflicts = _registry()[1]
    pool = [k for k in _KINDS if has_keywords or not k.startswith(("keywords:existence", "keywords:frequency",
                                                                    "detectable_format:number_highlighted"))]
    rng.shuffle(pool)
    chosen: list[str] = []
    for kind in pool:
        if len(chosen) == count:
            break
        if any(kind in conflicts.get(c, set()) or c in conflicts.get(kind, set()) for c in chosen):
            continue
        chosen.append(kind)
    return chosen


def _apply(draft: _Draft, kinds: list[str], rng: random.Random) -> None:
    """Shape the reference for each instruction; length and keyword counts are read off the finished text."""
    if "punctuation:no_comma" in kinds:
        draft.body = draft.body.replace(",", "")
        draft.chosen["punctuation:no_comma"] = {}
    if "detectable_format:number_highlighted_sections" in kinds:
        draft.body = draft.body.replace("*", "")
        wanted = rng.randint(1, min(3, len(draft.keywords)))
        marked: list[str] = []
        for keyword in draft.keywords:
            folded = keyword.casefold()
            if len(marked) == wanted or any(folded in m or m in folded for m in marked) or keyword not in draft.body:
                continue
            draft.body = draft.body.replace(keyword, f"*{keyword}*", 1)
            marked.append(folded)
        draft.highlights = len(marked)
        if draft.highlights:
            draft.chosen["detectable_format:number_highlighted_sections"] = {"num_highlights": draft.highlights}
    if "detectable_format:title" in kinds:
        draft.title = draft.keywords[0] if draft.keywords else "My post"
        draft.chosen["detectable_format:title"] = {}
    if "detectable_content:postscript" in kinds:
        marker, line = rng.choice(_POSTSCRIPTS)
        draft.postscript = line
        draft.chosen["detectable_content:postscript"] = {"postscript_marker": marker}
    if "startend:end_checker" in kinds:
        draft.end_phrase = rng.choice(_END_PHRASES)
        draft.chosen["startend:end_checker"] = {"end_phrase": draft.end_phrase}
    if "startend:quotation" in kinds:
        draft.quoted = True
        draft.chosen["startend:quotation"] = {}
    if _EXCLUSIVE in kinds:
        draft.as_json = True
        draft.chosen[_EXCLUSIVE] = {}
    reference = draft.render()
    if "keywords:existence" in kinds:
        present = [k for k in draft.keywords if re.search(k, reference, flags=re.IGNORECASE)]
        if present:
            draft.chosen["keywords:existence"] = {"keywords": sorted(present[: rng.randint(1, 2)])}
    if "keywords:frequency" in kinds:
        keyword = rng.choice(draft.keywords)
        occurrences = len(re.findall(keyword, reference, flags=re.IGNORECASE))
        draft.chosen["keywords:frequency"] = {"keyword": keyword, "frequency": occurrences, "relation": "at least"}
    if "keywords:forbidden_words" in kinds:
        absent = [w for w in _FORBIDDEN_POOL if not re.search(rf"\b{w}\b", reference, flags=re.IGNORECASE)]
        if absent:
            words = sorted(rng.sample(absent, min(2, len(absent))))
            draft.chosen["keywords:forbidden_words"] = {"forbidden_words": words}
    if "length_constraints:number_words" in kinds:
        from if_verifiable.ifeval.instructions_util import count_words

        words = count_words(reference)
        if rng.random() < 0.5:
            draft.chosen["length_constraints:number_words"] = {"relation": "less than",
                                                               "num_words": words + rng.randint(1, 20)}
        else:
            draft.chosen["length_constraints:number_words"] = {"relation": "at least",
                                                               "num_words": max(1, words - rng.randint(0, 10))}


def _record(text: str, rng: random.Random, low: int, high: int) -> dict[str, Any]:
    keywords = _keyword_candidates(text)
    kinds = _pick_kinds(rng, rng.randint(low, high), bool(keywords))
    draft = _Draft(body=text, keywords=keywords)
    _apply(draft, kinds, rng)
    reference = draft.render()
    ids = [k for k in _KINDS if k in draft.chosen]
    kwargs = [draft.chosen[k] for k in ids]
    if not _passes(reference, dict(zip(ids, kwargs, strict=True))):
        raise AssertionError(f"sns_instructions: reference fails its own constraints {ids}: {reference!r}")
    lines = "\n".join(f"{n}. {_describe(k, kw)}" for n, (k, kw) in enumerate(zip(ids, kwargs, strict=True), 1))
    return {
        "text": text,
        "language": "zh" if _CJK.search(text) else "en",
        "prompt": f"{_INTRO}\n\nInstructions:\n{lines}\n\nPost:\n{text}",
        "instruction_ids": ids,
        "kwargs": json.dumps(kwargs, ensure_ascii=False, sort_keys=True),
        "reference": reference,
    }


def _read_texts(spec: dict[str, Any], root: Path) -> list[str]:
    """One text column of a file under the shipped samples, read with the project's own parsers."""
    from snsdata.readers.formats import PARSERS
    from snsdata.spec.models import ConllSource, TableSource

    path = root / spec["path"]
    reader = spec.get("reader", "csv")
    column = spec.get("field", "text")
    if reader == "conll":
        source: Any = ConllSource(reader="conll", splits={"all": spec["path"]}, joiner=spec.get("joiner", " "))
    else:
        source = TableSource(reader=reader, splits={"all": spec["path"]}, fields=[column])
    frame = PARSERS[reader](path, source).frame.collect()
    if spec.get("where"):  # the spec's column expression, never SQL
        from snsdata.spec.where import where_expression

        frame = frame.filter(where_expression(spec["where"], frame.columns))
    return [t for t in frame[column].cast(pl.String).to_list() if t]


def _sample_root() -> Path:
    return Path(str(resources.files("snsdata.sample_data")))


def sns_instructions_source(split: str, count: int, params: dict[str, Any]) -> pl.DataFrame:
    """`params`: `texts` ({train: [...], eval: [...]}, each a list of {path, reader, field, where, joiner} under
    the shipped samples), `seed`, `min_chars`/`max_chars` (which posts qualify), `min_instructions`/
    `max_instructions`.

    Eval splits (`test`, `dev`, ...) take posts from the `eval` files, the others from the `train` files: point
    them at the same split of the source data, so a post's rewrite lands in the split its post is in.
    """
    if count == 0:
        return pl.DataFrame(schema=SCHEMA)
    kind = "eval" if split in EVAL_SPLITS else "train"
    sources = (params.get("texts") or {}).get(kind)
    if not sources:
        raise ValueError(f"sns_instructions: params.texts.{kind} (files of SNS posts under the shipped samples) "
                         "is required")
    low, high = int(params.get("min_chars", 20)), int(params.get("max_chars", 300))
    texts = {" ".join(t.split()) for spec in sources for t in _read_texts(spec, _sample_root())}
    seed = split_seed(params, split)
    pool = stable_order(sorted(t for t in texts if low <= len(t) <= high), seed)
    if not pool:
        raise ValueError(f"sns_instructions: no post of {low}-{high} characters for split {split!r}")
    fewest, most = int(params.get("min_instructions", 2)), int(params.get("max_instructions", 4))
    rows = [_record(pool[i % len(pool)], random.Random(f"{seed}:{i}"), fewest, most) for i in range(count)]
    return pl.DataFrame(rows, schema=SCHEMA)
