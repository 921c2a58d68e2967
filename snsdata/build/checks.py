"""Data-level checks of a task: its files read, every record renders, and its gold earns full reward.

The task is streamed batch by batch (`snsdata.readers.iter_task`), so a file of any size is checked in bounded
memory. Records the spec declares as known-bad are reported as known, not as errors, and are not gold-checked.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from snsdata.readers import DataNotFound, Progress, SourceError, data_found, iter_task
from snsdata.render import RenderError, render_messages
from snsdata.spec.models import TaskSpec


@dataclass(frozen=True)
class CheckLine:
    level: str  # "error", "warning", "known" (a declared known-bad record) or "info"
    message: str

    @property
    def is_error(self) -> bool:
        return self.level == "error"


def check_task_data(spec: TaskSpec, data_root: Path, max_listed: int = 5,
                    progress: Progress = None) -> list[CheckLine]:
    """Read, render and gold-self-check every record of one task under `data_root`.

    Few-shot examples are not drawn while checking: each record's own prompt and target are rendered, which are
    the templates an example uses too, and no pool of a whole split has to stay in memory.
    """
    if not data_found(spec, data_root):
        return [CheckLine("info", f"data not under {data_root} ({spec.source.availability}); skipped")]
    from snsdata.rewards.selfcheck import gold_check

    lines: list[CheckLine] = []
    reject_steps: Counter[str] = Counter()
    reject_examples: list[str] = []
    known: list[CheckLine] = []
    matched: Counter[int] = Counter()
    render_errors: list[str] = []
    render_failures = records = gold_failures = 0
    gold_listed: list[str] = []
    try:
        for batch in iter_task(spec, data_root, purpose="train", progress=progress):
            matched.update(batch.known_bad)
            for row in batch.rejects.iter_rows(named=True):
                if row["step"] == "known_bad":
                    known.append(CheckLine("known", f"record {row['record_id']} ({row['source']}) is declared "
                                                    f"known-bad; kept for evaluation, left out of training: "
                                                    f"{row['reason']}"))
                    continue
                reject_steps[row["step"]] += 1
                if len(reject_examples) < max_listed:
                    reject_examples.append(f"{row['source']}: {row['reason']}")
            batch_records = batch.frame.to_dicts()
            records += len(batch_records)
            renderable = []
            for record in batch_records:
                try:  # the gold target was rendered while reading (a row whose target fails is a reject)
                    render_messages(spec, record)
                except RenderError as exc:
                    render_failures += 1
                    if len(render_errors) < max_listed:
                        render_errors.append(str(exc))
                    continue
                renderable.append(record)
            failures = gold_check(spec, renderable)
            gold_failures += len(failures)
            gold_listed.extend(str(f) for f in failures[:max_listed - len(gold_listed)])
    except (DataNotFound, SourceError) as exc:
        return [CheckLine("error", str(exc))]
    rejected = sum(reject_steps.values())
    if rejected:
        steps = ", ".join(f"{step}: {count}" for step, count in reject_steps.most_common())
        more = f"; and {rejected - len(reject_examples)} more" if rejected > len(reject_examples) else ""
        lines.append(CheckLine("warning", f"{rejected} row(s) rejected ({steps}): "
                                          + "; ".join(reject_examples) + more))
    lines.extend(known)
    for index, declared in enumerate(spec.source.known_bad):
        if not matched[index]:
            lines.append(CheckLine("info", f"source.known_bad[{index}] matched no record under {data_root} "
                                           f"({declared.reason})"))
    lines.extend(CheckLine("error", message) for message in render_errors)
    if render_failures > len(render_errors):
        lines.append(CheckLine("error", f"{render_failures - len(render_errors)} more record(s) do not render"))
    lines.extend(CheckLine("error", f"gold self-check: {message}") for message in gold_listed)
    if gold_failures > len(gold_listed):
        lines.append(CheckLine("error", f"gold self-check: {gold_failures - len(gold_listed)} more record(s) "
                                        "below full marks"))
    if not render_failures and not gold_failures:
        known_note = f" ({len(known)} declared known-bad set aside)" if known else ""
        lines.append(CheckLine("info", f"{records} records read, rendered and gold-checked{known_note}"))
    return lines

