"""Data-level checks of a task: its files read, every record renders, and its gold earns full reward."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from snsdata.readers import DataNotFound, SourceError, data_found, read_task
from snsdata.render import RenderError, render_messages, render_target
from snsdata.spec.models import TaskSpec


@dataclass(frozen=True)
class CheckLine:
    level: str  # "error", "warning" or "info"
    message: str

    @property
    def is_error(self) -> bool:
        return self.level == "error"


def check_task_data(spec: TaskSpec, data_root: Path, max_listed: int = 5) -> list[CheckLine]:
    """Read, render and gold-self-check every record of one task under `data_root`."""
    if not data_found(spec, data_root):
        return [CheckLine("info", f"data not under {data_root} ({spec.source.availability}); skipped")]
    try:
        result = read_task(spec, data_root)
    except (DataNotFound, SourceError) as exc:
        return [CheckLine("error", str(exc))]
    lines = []
    if result.rejects.height:
        reasons = result.rejects.group_by("reason").len().sort("len", descending=True).head(max_listed)
        listed = "; ".join(f"{row['reason']} ({row['len']})" for row in reasons.to_dicts())
        lines.append(CheckLine("warning", f"{result.rejects.height} malformed row(s) rejected: {listed}"))
    frame = result.frame.collect()
    pool_split = spec.prompt.few_shot.split
    pool = frame.filter(pl.col("split") == pool_split).to_dicts() if pool_split else None
    records = frame.to_dicts()
    for record in records:
        try:
            render_messages(spec, record, pool)
            render_target(spec, record)
        except RenderError as exc:
            lines.append(CheckLine("error", str(exc)))
            return lines
    from snsdata.rewards.selfcheck import gold_check

    failures = gold_check(spec, records)
    for failure in failures[:max_listed]:
        lines.append(CheckLine("error", f"gold self-check: {failure}"))
    if len(failures) > max_listed:
        more = len(failures) - max_listed
        lines.append(CheckLine("error", f"gold self-check: {more} more record(s) below full marks"))
    if not failures:
        lines.append(CheckLine("info", f"{len(records)} records read, rendered and gold-checked"))
    return lines
