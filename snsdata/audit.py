"""The reward audit: every task's reward tried, on real records, with the answers an RL policy would find.

For each task the gold answer and every policy of `snsdata.rewards.policies` are scored on the rows an RL
mixture would draw for the task: its records balanced by the `balance` rules of the RL mixture `stage1`, then a
seeded, class-stratified sample. A task is flagged when
- a degenerate policy (empty, skeletons, every candidate, the majority gold, a copy of the input, junk in the
  gold's shape; for translation the input followed by the gold) earns more than its ceiling: chance + 0.05 by
  default (chance is 1/K for a K-label task, 0.5 for a task whose golds may be empty after 1:1 balancing, the
  best constant for a regression reward, else 0), at most 0.3 for copying the input, 0.75 for echoing the source
  of a translation;
- a padding policy (the gold plus junk or extra items) earns as much as the gold;
- a benign variant of the gold (case where the spec ignores case, whitespace, quotes, a trailing period, bold,
  a think block, "The answer is ...") earns less than the gold.
A spec may raise one policy's ceiling in its `audit.accept` block, with a reason. Fewer than 30 rows, or fewer
than 2 classes on a task whose chance depends on classes, gives "insufficient data" instead of flags.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from snsdata.build.sampling import balance, draw_order
from snsdata.readers import DataNotFound, SourceError, data_found, read_task
from snsdata.rewards.policies import Policy, candidates, class_kind, gold_classes, leaves, majority_gold, policies
from snsdata.rewards.scorer import Scorer
from snsdata.spec import TaskSpec, load_mixture
from snsdata.spec.mixture import Balance
from snsdata.spec.models import GeneratedSource
from snsdata.spec.reward import MetricReward, SandboxReward

MARGIN = 0.05
COPY_CEILING = 0.3
ECHO_CEILING = 0.75
MIN_ROWS = 30
MIN_CLASSES = 2
TOLERANCE = 1e-6
MAX_ROWS = 200
MAX_SANDBOX_ROWS = 20
"""Rows audited per task (sandbox tasks run every answer as a program, so they get fewer)."""
BALANCE_MIXTURE = "stage1"


@dataclass
class PolicyResult:
    name: str
    kind: str
    mean: float | None
    rows: int
    ceiling: float | None = None
    flagged: bool = False
    accepted: str | None = None
    """The spec's reason for a raised ceiling, when it has one."""


@dataclass
class TaskAudit:
    task_id: str
    data: str
    rows_read: int
    rows: int
    classes: int
    chance: float
    gold_mean: float | None
    status: str = "ok"
    """"ok", "flagged", "insufficient data" or "no data"."""
    flags: list[str] = field(default_factory=list)
    policies: list[PolicyResult] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def balance_rules(mixture: str = BALANCE_MIXTURE) -> list[Balance]:
    """The `balance` rules of the RL mixture whose draw the audit reproduces."""
    return list(load_mixture(mixture).balance)


def task_records(spec: TaskSpec, data_root: Path | None) -> tuple[list[dict[str, Any]], str] | None:
    """A task's records under a data root, read by the project's readers (`where` applied); None when the root
    does not hold them."""
    if not data_found(spec, data_root):
        return None
    try:
        frame = read_task(spec, data_root).frame.collect()
    except (DataNotFound, SourceError):
        return None
    if not frame.height:
        return None
    label = "generated" if isinstance(spec.source, GeneratedSource) else str(data_root or "shipped samples")
    return frame.to_dicts(), label


def example_records(spec: TaskSpec) -> list[dict[str, Any]]:
    """The spec's hand-written `source.example` as a one-record task (audited, never flagged: too few rows)."""
    if not spec.source.example:
        return []
    return [{"task_id": spec.id, "record_id": "example", "split": "example", **spec.source.example}]


def drawn_rows(spec: TaskSpec, records: list[dict[str, Any]], rules: Sequence[Balance], seed: int,
               max_rows: int) -> tuple[list[dict[str, Any]], list[str | None]]:
    """The rows an RL mixture draws for the task: balanced by the first matching rule, then a seeded sample
    that keeps the balanced classes' proportions (records and their gold classes)."""
    frame = pl.DataFrame(records, infer_schema_length=None).with_columns(_pinned=pl.lit(False))
    rule = next((r for r in rules if r.select.matches(spec)), None)
    if rule is not None:
        if rule.by == "empty_target":
            frame = frame.with_columns(_target=pl.Series([_render(spec, r) or "" for r in records], dtype=pl.String))
        frame, _ = balance(frame, rule.by, rule.ratio, seed, spec, rule.max_lead)
    fields = [c for c in frame.columns if not c.startswith("_")]
    rows = frame.select(fields).to_dicts()
    classes = gold_classes(spec, rows)
    # Proportional stratified sample: each class's rows in seeded order, interleaved by their rank within the
    # class relative to its size, so any prefix keeps the balanced proportions.
    ranked = frame.select(fields).with_columns(
        _order=draw_order(frame, seed), _class=pl.Series(classes, dtype=pl.String).fill_null("<unparsed>"))
    picked = (ranked.with_row_index("_row").sort("_order", "_row")
              .with_columns(_share=(pl.int_range(pl.len()).over("_class") + 0.5) / pl.len().over("_class"))
              .sort("_share", "_order", "_row").head(max_rows))
    index = picked["_row"].to_list()
    return [rows[i] for i in index], [classes[i] for i in index]


def _render(spec: TaskSpec, record: Mapping[str, Any]) -> str | None:
    try:
        return spec.render_target(dict(record))
    except Exception:
        return None


def _mean(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None


def _class_based(spec: TaskSpec, classes: set[str]) -> bool:
    """Whether the task's chance depends on its classes (then fewer than 2 of them is too little data)."""
    return class_kind(spec) != "emptiness" or "empty" in classes


def chance_baseline(spec: TaskSpec, rows: Sequence[Mapping[str, Any]], classes: Sequence[str | None],
                    constant_scores: Mapping[str, float | None]) -> float:
    """What answering without reading the input earns by the defaults: 1/K for K labels (per record, K from its
    candidates) or K distinct exact answers, 0.5 where golds may be empty, the best constant for a regression
    reward, else 0."""
    seen = {c for c in classes if c is not None}
    kind = class_kind(spec)
    chance = 0.0
    if spec.output.format == "label":
        sizes = [len(candidates(spec, r) or []) for r in rows]
        chance = _mean(1 / k for k in sizes if k) or 0.0
    elif kind != "emptiness" and seen:
        chance = 1 / len(seen)
    if kind == "emptiness" and "empty" in seen and len(seen) > 1:
        chance = max(chance, 0.5)
    if any(isinstance(leaf, MetricReward) and leaf.metric == "abs_err" for leaf in leaves(spec.reward)):
        chance = max([chance, *(v for v in constant_scores.values() if v is not None)])
    return chance


def _ceiling(policy: Policy, spec: TaskSpec, chance: float) -> float | None:
    if policy.kind != "degenerate":
        return None
    if policy.name == "copy_input":
        return max(COPY_CEILING, chance + MARGIN)
    if policy.name == "input_then_gold":
        return ECHO_CEILING
    return chance + MARGIN


def audit_task(spec: TaskSpec, records: list[dict[str, Any]], data: str = "", *,
               rules: Sequence[Balance] | None = None, seed: int = 0, max_rows: int = MAX_ROWS) -> TaskAudit:
    """Audit one task's reward on its records (see the module docstring for the rules)."""
    rules = balance_rules() if rules is None else rules
    if any(isinstance(leaf, SandboxReward) for leaf in leaves(spec.reward)):
        max_rows = min(max_rows, MAX_SANDBOX_ROWS)
    majority = majority_gold([_render(spec, r) for r in records])
    rows, classes = drawn_rows(spec, records, rules, seed, max_rows)
    golds = [_render(spec, r) for r in rows]
    scorer = Scorer(spec)
    plan = policies(spec, rows, golds, majority)
    constants: dict[str, float | None] = {}
    if any(isinstance(leaf, MetricReward) and leaf.metric == "abs_err" for leaf in leaves(spec.reward)):
        distinct = sorted({g for g in golds if g is not None})[:20]
        plan += [Policy(f"constant:{g}", "probe", (g,) * len(rows)) for g in distinct]
    texts: list[str] = []
    owners: list[tuple[int, int]] = []  # (policy index or -1 for gold, row)
    for row, gold in enumerate(golds):
        if gold is not None:
            texts.append(gold)
            owners.append((-1, row))
    for index, policy in enumerate(plan):
        for row, answer in enumerate(policy.answers):
            if answer is not None:
                texts.append(answer)
                owners.append((index, row))
    details = scorer.details(texts, [rows[row] for _, row in owners]) if texts else []
    scores: dict[int, dict[int, float | None]] = {}
    for (index, row), detail in zip(owners, details, strict=True):
        scores.setdefault(index, {})[row] = detail.score
    gold_scores = scores.get(-1, {})
    for index, policy in enumerate(plan):
        if policy.name.startswith("constant:"):
            constants[policy.name] = _mean(scores.get(index, {}).values())
    seen = {c for c in classes if c is not None}
    chance = chance_baseline(spec, rows, classes, constants)
    result = TaskAudit(spec.id, data, len(records), len(rows), len(seen), chance, _mean(gold_scores.values()))
    insufficient = len(rows) < MIN_ROWS or (_class_based(spec, seen) and len(seen) < MIN_CLASSES)
    for index, policy in enumerate(plan):
        if policy.name.startswith("constant:"):
            continue
        got = scores.get(index, {})
        outcome = PolicyResult(policy.name, policy.kind, _mean(got.values()), sum(v is not None for v in got.values()),
                               _ceiling(policy, spec, chance))
        accepted = spec.audit.accept.get(policy.name)
        if accepted is not None:
            outcome.ceiling, outcome.accepted = accepted.ceiling, accepted.reason
        problem = _problem(outcome, got, gold_scores)
        if problem and not insufficient:
            outcome.flagged = True
            result.flags.append(f"{policy.name}: {problem}")
        result.policies.append(outcome)
    if not insufficient and result.gold_mean is not None and result.gold_mean < 1 - TOLERANCE:
        result.flags.insert(0, f"gold: earns {result.gold_mean:.3f} < 1 (the reward discounts right answers)")
    result.status = "insufficient data" if insufficient else "flagged" if result.flags else "ok"
    return result


def _problem(outcome: PolicyResult, got: Mapping[int, float | None], gold: Mapping[int, float | None]) -> str | None:
    """Why a policy's result is a flag, or None."""
    mean = outcome.mean
    if mean is None:
        return None
    if outcome.ceiling is not None and mean > outcome.ceiling + TOLERANCE:
        return f"earns {mean:.3f} > ceiling {outcome.ceiling:.3f}"
    pairs = [(got[r], gold[r]) for r in got if got[r] is not None and gold.get(r) is not None]
    if not pairs:
        return None
    answer_mean = sum(a for a, _ in pairs) / len(pairs)
    gold_mean = sum(g for _, g in pairs) / len(pairs)
    if outcome.kind == "benign" and answer_mean < gold_mean - TOLERANCE:
        return f"earns {answer_mean:.3f} < gold {gold_mean:.3f}"
    if outcome.kind == "padding" and outcome.ceiling is None and gold_mean > 0 and answer_mean >= gold_mean - TOLERANCE:
        return f"earns {answer_mean:.3f}, as much as the gold {gold_mean:.3f}"
    return None


def audit(specs: Mapping[str, TaskSpec], data_roots: Sequence[Path | None], task_ids: Sequence[str] | None = None,
          *, seed: int = 0, max_rows: int = MAX_ROWS, with_examples: bool = True) -> list[TaskAudit]:
    """Audit tasks on every data root that holds their data (generated tasks once); a task with data under no
    root is audited on its `source.example` (when `with_examples`), else reported as "no data"."""
    rules = balance_rules()
    out = []
    for task_id in sorted(task_ids or specs):
        spec = specs[task_id]
        audited = False
        for root in data_roots:
            if isinstance(spec.source, GeneratedSource) and audited:
                break
            found = task_records(spec, root)
            if found is not None:
                out.append(audit_task(spec, found[0], found[1], rules=rules, seed=seed, max_rows=max_rows))
                audited = True
        example = example_records(spec) if with_examples and not audited else []
        if example:
            out.append(audit_task(spec, example, "example", rules=rules, seed=seed, max_rows=max_rows))
        elif not audited:
            out.append(TaskAudit(task_id, "", 0, 0, 0, 0.0, None, status="no data"))
    return out


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def markdown_table(results: Sequence[TaskAudit]) -> str:
    """The audit as a Markdown table: per task and data, the gold, the chance baseline, the best degenerate
    policy against its ceiling, the worst benign variant, the status and the flags."""
    lines = ["| task | data | rows | classes | chance | gold | best degenerate (ceiling) | worst benign | status |",
             "|---|---|---:|---:|---:|---:|---|---:|---|"]
    for r in results:
        degenerate = [p for p in r.policies if p.kind == "degenerate" and p.mean is not None]
        top = max(degenerate, key=lambda p: (p.mean, p.name), default=None)
        benign = [p for p in r.policies if p.kind == "benign" and p.mean is not None]
        low = min(benign, key=lambda p: (p.mean, p.name), default=None)
        top_text = f"{top.name} {top.mean:.3f} ({_fmt(top.ceiling)})" if top else "–"
        low_text = f"{low.name} {low.mean:.3f}" if low else "–"
        status = r.status + (": " + "; ".join(r.flags) if r.flags else "")
        lines.append(f"| {r.task_id} | {r.data or '–'} | {r.rows} | {r.classes} | "
                     f"{r.chance:.3f} | {_fmt(r.gold_mean)} | {top_text} | {low_text} | {status} |")
    return "\n".join(lines) + "\n"


def document(results: Sequence[TaskAudit], command: str) -> str:
    """The committed audit page: how it was made, the counts, the table."""
    counts = summary(results)
    status = ", ".join(f"{counts[k]} {k}" for k in ("ok", "flagged", "insufficient data", "no data") if counts.get(k))
    return (
        "# Reward audit\n\n"
        "Generated by `snsdata audit` (docs/rewards.md, \"The reward audit\", says what each policy is and how "
        "ceilings are set); do not edit by hand. Regenerate with:\n\n"
        f"```\n{command}\n```\n\n"
        f"{len(results)} task audits: {status}; {counts['flags']} flags. \"best degenerate\" is the degenerate "
        "policy that earns most, with its ceiling; \"worst benign\" the benign variant of the gold that earns "
        "least (it must equal the gold). Rows are those the RL mixture `stage1` keeps after balancing, sampled "
        f"(at most {MAX_ROWS} per task, {MAX_SANDBOX_ROWS} for sandbox tasks).\n\n"
        + markdown_table(results)
    )


def summary(results: Sequence[TaskAudit]) -> dict[str, int]:
    """Counts of task audits per status, and of flags."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
    counts["flags"] = sum(len(r.flags) for r in results)
    return counts
