"""Answers a policy could write without solving the task, and harmless rewritings of the gold, from a spec.

An RL policy optimises what its reward pays for, so each reward is tried with answers that must earn nothing
(empty, format skeletons, every label at once, the majority label, a copy of the input, junk in the gold's
shape), answers that must cost something (the gold padded with junk or extra items), and answers that must earn
exactly what the gold earns (the gold with different case where the spec ignores case, whitespace, quotes, a
trailing period, markdown bold, a think block, "The answer is ..."). Everything is derived from the spec (its
output format, labels, required tags, JSON schema, prompt template) and the record, so the same generator serves
the reward audit (`snsdata audit`), the trivial baselines of `snsdata eval` and any trainer that wants them.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import regex

from snsdata.rewards.metrics import METRICS, as_items, is_empty
from snsdata.rewards.normalize import CJK_CHARS, is_mostly_cjk
from snsdata.rewards.parse import parse_candidates
from snsdata.spec.models import TaskSpec
from snsdata.spec.reward import CompositeReward, MetricReward, PatternReward, RewardSpec, metric_params
from snsdata.spec.templating import environment, template_variables

Kind = Literal["degenerate", "padding", "benign", "probe"]
"""degenerate: must earn at most a ceiling; padding: must earn less than the gold; benign: must earn what the
gold earns; probe: reported only (it holds the right answer among other text, which a spec may or may not
accept)."""

LIST_FORMATS = ("labels", "spans")
STRICT_FORMATS = ("label", "labels", "spans", "number", "json")
"""Formats whose benign variants must score exactly as the gold; text and code get only whitespace and think."""

THINK = "<think>Let me read the input carefully and check each option before answering.</think>\n"
_JUNK_EN = ("lorem", "ipsum", "dolor", "sit", "amet", "consectetur", "adipiscing", "elit", "sed", "do", "eiusmod",
            "tempor")
_JUNK_ZH = "甲乙丙丁戊己庚辛壬癸"
_LATIN_WORD = regex.compile(r"[A-Za-z]+")
_CJK = regex.compile(rf"[{CJK_CHARS}]")
_TAG_IN_PATTERN = regex.compile(r"<(\w+)>")


@dataclass(frozen=True)
class Policy:
    """One named way of answering: an answer per record, None where the policy does not apply to it."""

    name: str
    kind: Kind
    answers: tuple[str | None, ...]


# --- what a spec tells about its answers -------------------------------------------------------------------


def leaves(reward: RewardSpec) -> Iterator[RewardSpec]:
    """Every non-composite reward of a reward tree (parts, then the gate)."""
    if isinstance(reward, CompositeReward):
        for part in reward.parts:
            yield from leaves(part.reward)
        if reward.gate is not None:
            yield from leaves(reward.gate)
    else:
        yield reward


def input_fields(spec: TaskSpec) -> list[str]:
    """The record fields the user turn shows the model (what "copy the input" copies), in template order."""
    source = spec.prompt.user or ""
    try:
        used = template_variables(source)
    except Exception:
        return []
    provided = spec.source.provided_fields()
    ordered = [name for name in regex.findall(r"[A-Za-z_]\w*", source) if name in used and name in provided]
    return list(dict.fromkeys(ordered))


def input_text(spec: TaskSpec, record: Mapping[str, Any]) -> str:
    """The input of a record as one text: its shown fields, strings as they are, other values as JSON."""
    return _fields_text(record, input_fields(spec))


def _fields_text(record: Mapping[str, Any], names: Sequence[str]) -> str:
    parts = []
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        parts.append(value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str))
    return "\n".join(p for p in parts if p.strip())


def candidates(spec: TaskSpec, record: Mapping[str, Any]) -> list[str] | None:
    """Every answer the record offers: `audit.candidates` (a template rendering a JSON list), the record's
    candidates field, else the spec's labels; None when the task has no closed set of answers."""
    template = spec.audit.candidates
    if template:
        try:
            value = json.loads(environment().from_string(template).render({**spec.vars, **record}))
        except Exception:
            return None
        return [str(v) for v in value] if isinstance(value, list) else None
    field = spec.output.candidates_field
    if field and record.get(field) is not None:
        return parse_candidates(record[field], spec.output.separator) or None
    return list(spec.output.labels) if spec.output.labels else None


def required_tags(spec: TaskSpec) -> list[str]:
    """Tags the reward looks for: pattern `required_tags`, an option metric's `tag`, tags of an extraction regex."""
    tags: list[str] = []
    for leaf in leaves(spec.reward):
        if isinstance(leaf, PatternReward):
            for check in leaf.checks:
                tags += [t.strip("<>") for t in check.required_tags or []]
        if isinstance(leaf, MetricReward) and leaf.metric == "option_f1":
            tag = metric_params(leaf).tag
            if tag:
                tags.append(tag.strip("<>"))
        extract = getattr(leaf, "extract", None)
        if extract is not None:
            tags += _TAG_IN_PATTERN.findall(extract.pattern)
    return list(dict.fromkeys(tags))


def _schema_skeleton(schema: Mapping[str, Any]) -> Any:
    """A value of the schema's shape with nothing in it: required keys present, every leaf empty."""
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        properties = schema.get("properties", {})
        return {key: _schema_skeleton(properties.get(key, {})) for key in schema.get("required", [])}
    return {"array": [], "number": 0, "integer": 0, "boolean": False, "null": None}.get(str(kind), "")


def skeletons(spec: TaskSpec) -> dict[str, str]:
    """Format skeletons: the output format's empty shapes and the reward's tags with nothing inside."""
    fmt = spec.output.format
    out: dict[str, str] = {}
    if fmt in LIST_FORMATS:
        out["skeleton:[]"] = "[]"
    if fmt == "json":
        out["skeleton:{}"] = "{}"
        if spec.output.json_schema:
            shaped = json.dumps(_schema_skeleton(spec.output.json_schema), ensure_ascii=False)
            if shaped != "{}":
                out["skeleton:schema"] = shaped
    if fmt == "number":
        out["skeleton:0"] = "0"
    if fmt == "code":
        out["skeleton:pass"] = "```python\npass\n```"
    tags = required_tags(spec)
    if tags:
        out["skeleton:tags"] = "".join(f"<{t}></{t}>" for t in tags)
        out["skeleton:tags[]"] = "".join(f"<{t}>[]</{t}>" for t in tags)
    return out


def _extracts(spec: TaskSpec) -> bool:
    """Whether the reward reads the answer out of a tag or pattern (text around it is then reasoning)."""
    return any(getattr(leaf, "extract", None) is not None
               or (isinstance(leaf, MetricReward) and leaf.metric == "option_f1" and metric_params(leaf).tag)
               for leaf in leaves(spec.reward))


def is_pattern_only(spec: TaskSpec) -> bool:
    """A reward that checks constraints but never compares with the gold (IFEval-style)."""
    return all(isinstance(leaf, PatternReward) for leaf in leaves(spec.reward))


def _zh(spec: TaskSpec, gold: str) -> bool:
    return spec.languages == ["zh"] or is_mostly_cjk([gold])


def junk(length: int, zh: bool) -> str:
    """Filler unrelated to any input, about `length` characters long."""
    if zh:
        return (_JUNK_ZH * (length // len(_JUNK_ZH) + 1))[: max(length, 1)]
    words: list[str] = []  # filler words in a fixed order
    while sum(len(w) + 1 for w in words) < max(length, 1):
        words.append(_JUNK_EN[len(words) % len(_JUNK_EN)])
    return " ".join(words)


def _junk_in_shape(gold: str, source: str) -> str:
    """The gold with every word and CJK character it took from the source replaced by junk: its format,
    length and added keywords stay, its content goes (what satisfies a constraint checker without rewriting)."""
    words = {w.casefold() for w in _LATIN_WORD.findall(source)}
    chars = set(_CJK.findall(source))

    def word(match: regex.Match[str]) -> str:
        text = match.group()
        if text.casefold() not in words:
            return text
        filler = _JUNK_EN[len(text) % len(_JUNK_EN)][: max(len(text), 1)]
        return filler.upper() if text.isupper() else filler.capitalize() if text[:1].isupper() else filler

    swapped = _LATIN_WORD.sub(word, gold)
    return _CJK.sub(lambda m: _JUNK_ZH[ord(m.group()) % len(_JUNK_ZH)] if m.group() in chars else m.group(), swapped)


def benign_variants(spec: TaskSpec, gold: str) -> dict[str, str]:
    """Rewritings of a gold answer that must score as the gold does (see STRICT_FORMATS)."""
    fmt = spec.output.format
    variants = {"whitespace": f"\n{gold}\n\n" if fmt in ("code", "text") else f"  {gold} \n",
                "think": THINK + gold}
    if fmt not in STRICT_FORMATS:
        return variants
    zh = _zh(spec, gold)
    variants |= {
        "period": gold + ("。" if zh else "."),
        "bold": f"**{gold}**",
        "answer_prefix": f"答案是{gold}。" if zh else f"The answer is {gold}.",
    }
    structured = gold.lstrip()[:1] in ("[", "{")
    if fmt in ("label", "number") and not structured:
        variants |= {"quotes": f'"{gold}"', "curly_quotes": f"“{gold}”"}
    if not spec.output.case_sensitive and fmt in ("label", *LIST_FORMATS) and not structured:
        variants |= {"lowercase": gold.lower(), "uppercase": gold.upper()}
    return variants


def majority_gold(golds: Sequence[str | None]) -> str | None:
    """The most frequent rendered gold answer (ties: the first in sort order); None when no gold repeats."""
    counts = Counter(g for g in golds if g is not None)
    if not counts:
        return None
    best = max(counts.values())
    if best < 2:
        return None
    return min(g for g, n in counts.items() if n == best)


def _join(spec: TaskSpec, items: Sequence[str]) -> str:
    if spec.output.format in LIST_FORMATS:
        return json.dumps(list(items), ensure_ascii=False)
    return ", ".join(items)


def _fragments(text: str, count: int = 5) -> list[str]:
    """A few pieces of the input to pad a list with (words, or two-character chunks of Chinese)."""
    if is_mostly_cjk([text]):
        chars = [c for c in text if _CJK.match(c)]
        return ["".join(chars[i: i + 2]) for i in range(0, min(len(chars), 2 * count), 2)]
    return list(dict.fromkeys(_LATIN_WORD.findall(text)))[:count]


def _padded_list(spec: TaskSpec, gold: str, record: Mapping[str, Any], source: str) -> str | None:
    """The gold list plus every other candidate (over-return), else plus pieces of the input."""
    try:
        items = json.loads(gold)
    except ValueError:
        items = None
    if not isinstance(items, list):
        return None
    offered = candidates(spec, record) or []
    extra = [c for c in offered if c not in items] or [f for f in _fragments(source) if f not in items]
    return json.dumps(items + extra, ensure_ascii=False) if extra else None


def policies(spec: TaskSpec, records: Sequence[Mapping[str, Any]], golds: Sequence[str | None],
             majority: str | None = None) -> list[Policy]:
    """Every policy of the spec, one answer per record (`golds`: each record's rendered gold, None where it
    does not render). `majority` is the task's most frequent gold (from all its rows, before balancing)."""
    fmt = spec.output.format
    n = len(records)
    sources = [input_text(spec, r) for r in records]
    out: list[Policy] = [Policy("empty", "degenerate", ("",) * n)]
    out += [Policy(name, "degenerate", (text,) * n) for name, text in skeletons(spec).items()]
    offered = [candidates(spec, r) for r in records]
    if fmt in ("label", *LIST_FORMATS) and any(offered):
        out.append(Policy("all_candidates", "degenerate",
                          tuple(_join(spec, c) if c and len(c) > 1 else None for c in offered)))
    if majority is not None:
        out.append(Policy("majority", "degenerate", (majority,) * n))
    if any(sources):
        out.append(Policy("copy_input", "degenerate", tuple(s or None for s in sources)))
        out.append(Policy("input_then_gold", "degenerate" if spec.capability == "translation" else "probe",
                          tuple(f"{s}\n{g}" if s and g is not None else None
                                for s, g in zip(sources, golds, strict=True))))
    if is_pattern_only(spec):
        contents = ([_fields_text(r, spec.audit.content_fields) for r in records] if spec.audit.content_fields
                    else sources)
        out.append(Policy("junk_in_gold_shape", "degenerate",
                          tuple(_junk_in_shape(g, c) if g is not None else None
                                for g, c in zip(golds, contents, strict=True))))
    out.append(Policy("gold_in_chatter", "probe", tuple(
        None if g is None else (f"好的，我的回答如下：\n{g}\n希望对你有帮助！" if _zh(spec, g)
                                else f"Sure! Here is my answer.\n{g}\nLet me know if you need anything else.")
        for g in golds)))
    if fmt in LIST_FORMATS:
        out.append(Policy("gold_plus_extra_items", "padding", tuple(
            _padded_list(spec, g, r, s) if g is not None else None
            for g, r, s in zip(golds, records, sources, strict=True))))
    elif fmt == "text" and not _extracts(spec):
        out.append(Policy("gold_plus_junk", "padding", tuple(
            f"{g}\n{junk(len(g), _zh(spec, g))}" if g else None for g in golds)))
    variants = [benign_variants(spec, g) if g is not None else {} for g in golds]
    for name in dict.fromkeys(k for v in variants for k in v):
        out.append(Policy(name, "benign", tuple(v.get(name) for v in variants)))
    return out


BASELINES = ("empty", "majority", "all_candidates")
"""The trivial baselines `snsdata eval` reports next to a model's score."""


def baselines(spec: TaskSpec, records: Sequence[Mapping[str, Any]], golds: Sequence[str | None]) -> list[Policy]:
    """Empty, majority constant and every candidate at once, over the same records as an evaluation."""
    return [p for p in policies(spec, records, golds, majority_gold(golds)) if p.name in BASELINES]


# --- classes of gold answers --------------------------------------------------------------------------------


def _enum_fields(spec: TaskSpec) -> list[str]:
    """Fields of a JSON answer that are labels: an enum or a boolean in the output schema."""
    schema = spec.output.json_schema or {}
    return [k for k, v in schema.get("properties", {}).items()
            if isinstance(v, Mapping) and ("enum" in v or v.get("type") == "boolean")]


ClassKind = Literal["label", "value", "emptiness"]


def class_kind(spec: TaskSpec) -> ClassKind:
    """How a task's golds fall into classes: by label (label tasks, JSON enum fields), by value (numbers and
    every answer compared exactly: a constant answer is right exactly on its own value), else by whether the
    gold is empty (lists, extractions, texts compared by a metric)."""
    from snsdata.spec.reward import ExactMatchReward

    fmt = spec.output.format
    if fmt == "label" or (fmt == "json" and _enum_fields(spec)):
        return "label"
    if fmt == "number" or any(isinstance(leaf, ExactMatchReward) for leaf in leaves(spec.reward)):
        return "value"
    return "emptiness"


def gold_class(spec: TaskSpec, value: Any, view: Any) -> str:
    """The class of one parsed gold (see `class_kind`): its label, its value (JSON), or "empty" /
    "non_empty" by the reward's view of it."""
    kind = class_kind(spec)
    if kind == "label":
        if isinstance(value, Mapping):
            return json.dumps([value.get(f) for f in _enum_fields(spec)], ensure_ascii=False, default=str)
        return str(value)
    if kind == "value":
        return json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    return "empty" if is_empty(view) or (view is None and is_empty(value)) else "non_empty"


def metric_view(spec: TaskSpec, value: Any) -> Any:
    """The first metric's view of a parsed value (option lists for MRC-complex), else the value's items."""
    for leaf in leaves(spec.reward):
        if isinstance(leaf, MetricReward):
            return METRICS[leaf.metric].view(value, metric_params(leaf))
    return as_items(value) if isinstance(value, list) else value


def gold_classes(spec: TaskSpec, records: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """Each record's gold class (`gold_class`), read by the task's own reward; None where the gold does not parse.

    This is what mixtures balance by (`balance.by: gold_class`) and what the audit's chance baseline counts."""
    from snsdata.rewards.scorer import Scorer

    _, golds = Scorer(spec).parse_pairs([""] * len(records), records)
    return [gold_class(spec, g.value, metric_view(spec, g.value)) if g is not None and g.ok else None
            for g in golds]
