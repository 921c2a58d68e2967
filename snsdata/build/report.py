"""`snsdata report BUILD_DIR`: one self-contained HTML page (inline SVG, no external assets) about a build.

It shows where rows went (the filter funnel), what the stage's data is made of (by task, capability and origin),
how long its rows are, and why rows were dropped: what to look at before spending GPU hours on a build.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import polars as pl

FUNNEL_HEAD = ("read", "parsed", "limit", "split")
FUNNEL_TAIL = ("balance", "sample", "render_drawn", "out")
"""Counted steps in the order they run; pipeline steps (`step:NAME`) come after the split, or for CPT after the
documents are made. Tasks needed early (DPO, empty-gold balancing, soft labels) are rendered at `render`, the
others only where drawn, at `render_drawn`."""
_BAR = "#4c72b0"
_ALT = "#dd8452"


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def bar_chart(items: list[tuple[str, float]], title: str, width: int = 760, unit: str = "rows") -> str:
    """Horizontal bars, one per item, labelled with their value."""
    if not items:
        return f"<p><em>{_esc(title)}: nothing to show</em></p>"
    label_w, bar_h, gap = 260, 18, 6
    top = max(v for _, v in items) or 1
    height = len(items) * (bar_h + gap) + 30
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}"><text x="0" y="14" font-weight="bold">{_esc(title)}</text>']
    for i, (label, value) in enumerate(items):
        y = 24 + i * (bar_h + gap)
        w = (width - label_w - 90) * value / top
        parts.append(f'<text x="{label_w - 6}" y="{y + 13}" text-anchor="end" font-size="12">{_esc(label)}</text>'
                     f'<rect x="{label_w}" y="{y}" width="{w:.1f}" height="{bar_h}" fill="{_BAR}"/>'
                     f'<text x="{label_w + w + 4:.1f}" y="{y + 13}" font-size="12">{value:,.0f} {unit}</text>')
    parts.append("</svg>")
    return "".join(parts)


def histogram(values: list[int], title: str, bins: int = 30, width: int = 760, height: int = 220) -> str:
    """Counts of values in equal-width bins on a log10 axis (lengths span orders of magnitude)."""
    import math

    values = [v for v in values if v > 0]
    if not values:
        return f"<p><em>{_esc(title)}: nothing to show</em></p>"
    lo, hi = math.log10(min(values)), math.log10(max(values))
    span = (hi - lo) or 1.0
    counts = [0] * bins
    for v in values:
        counts[min(bins - 1, int((math.log10(v) - lo) / span * bins))] += 1
    top = max(counts)
    plot_h, left, bottom = height - 60, 50, height - 30
    bar_w = (width - left - 10) / bins
    ordered = sorted(values)
    median, p95 = ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, int(len(ordered) * 0.95))]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="{_esc(title)}"><text x="0" y="14" font-weight="bold">{_esc(title)} '
             f'(n={len(values):,}, median {median:,}, p95 {p95:,}, max {max(values):,})</text>']
    for i, count in enumerate(counts):
        h = plot_h * count / top
        parts.append(f'<rect x="{left + i * bar_w:.1f}" y="{bottom - h:.1f}" width="{bar_w - 1:.1f}" '
                     f'height="{h:.1f}" fill="{_ALT}"><title>{count}</title></rect>')
    for frac in (0.0, 0.5, 1.0):
        x = left + frac * (width - left - 10)
        parts.append(f'<text x="{x:.1f}" y="{height - 12}" font-size="11" text-anchor="middle">'
                     f'{10 ** (lo + frac * span):,.0f}</text>')
    parts.append(f'<text x="{left - 4}" y="{bottom - plot_h + 10:.1f}" font-size="11" text-anchor="end">{top}</text>'
                 "</svg>")
    return "".join(parts)


def _funnel(manifest: dict[str, Any]) -> list[tuple[str, float]]:
    """Rows left after each step, over all tasks; a task without a step counts its rows from the step before."""
    tasks = [info["counts"] for info in manifest["tasks"].values()]
    pipeline = [f"step:{name}" for name in dict.fromkeys(manifest["steps"]["applied"])]
    if manifest["mixture"]["format"] == "cpt":
        order = [*FUNNEL_HEAD, "render", "document", *pipeline, *FUNNEL_TAIL]
    else:
        order = [*FUNNEL_HEAD, *pipeline, "render", "target", "pairs", *FUNNEL_TAIL]
    present = [step for step in order if any(step in counts for counts in tasks)]
    last = [counts.get("read", 0) for counts in tasks]
    out = []
    for step in present:
        last = [counts.get(step, before) for counts, before in zip(tasks, last, strict=True)]
        out.append((step, sum(last)))
    return out


def _table(rows: list[list[Any]], header: list[str]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _lengths(frame: pl.DataFrame) -> dict[str, list[int]]:
    """Characters of each row's prompt and answer (or text, for CPT)."""
    if "text" in frame.columns:
        return {"text": frame["text"].str.len_chars().to_list()}
    content = pl.element().struct.field("content").str.len_chars()
    if "messages" in frame.columns:
        turns = pl.col("messages")
        lengths = frame.select(prompt=turns.list.head(turns.list.len() - 1).list.eval(content).list.sum(),
                               answer=turns.list.last().struct.field("content").str.len_chars())
        return {name: lengths[name].to_list() for name in lengths.columns}
    out = {"prompt": frame.select(pl.col("prompt").list.eval(content).list.sum()).to_series().to_list()}
    if "chosen" in frame.columns:
        out["chosen"] = frame.select(pl.col("chosen").list.eval(content).list.sum()).to_series().to_list()
    return out


def render_report(build_dir: str | Path) -> str:
    """The HTML text of a build's report."""
    build_dir = Path(build_dir)
    manifest = json.loads((build_dir / "manifest.json").read_text(encoding="utf-8"))
    train = pl.read_parquet(build_dir / "data" / "train.parquet")
    rejects = pl.read_parquet(build_dir / "rejects.parquet")
    mixture, totals = manifest["mixture"], manifest["totals"]
    sections = [
        f"<h1>{_esc(mixture['name'])} <small>({_esc(mixture['format'])})</small></h1>",
        f"<p>{_esc(mixture['description'])}<br>{_esc(mixture.get('recipe') or '')}</p>",
        _table([[k, f"{v:,}" if isinstance(v, int) and not isinstance(v, bool) else v]
                for k, v in totals.items() if k != "rejected_by_step"], ["total", "value"]),
        f"<p>seed {manifest['seed']}, split seed {manifest['split_seed']}, data root "
        f"<code>{_esc(manifest['inputs']['data_root'])}</code></p>",
    ]
    for title, lines in (("Fallbacks", manifest["fallbacks"]), ("Notes", manifest["notes"])):
        if lines:
            sections.append(f"<h2>{title}</h2><ul>" + "".join(f"<li>{_esc(x)}</li>" for x in lines) + "</ul>")
    sections.append("<h2>Where rows went</h2>" + bar_chart(
        [("written", totals["rows_out"]), ("rejected", totals["rows_rejected"]),
         ("not drawn (usable, beyond the quotas)", totals.get("rows_not_drawn", 0)),
         ("excluded (where)", totals["rows_excluded"])], "rows read by fate"))
    sections.append("<h2>Filter funnel</h2>" + bar_chart(_funnel(manifest), "rows after each step (all tasks)"))
    sections.append(bar_chart(sorted(totals["rejected_by_step"].items(), key=lambda kv: -kv[1]),
                              "rejected rows by step"))
    by_task = train.group_by("task_id").len().sort(["len", "task_id"], descending=[True, False])
    by_cap = train.group_by("capability").len().sort(["len", "capability"], descending=[True, False])
    by_origin = train.group_by("origin").len().sort("origin")
    sections.append("<h2>Composition (train)</h2>"
                    + bar_chart([(r[0], r[1]) for r in by_origin.iter_rows()], "rows by origin")
                    + bar_chart([(r[0], r[1]) for r in by_cap.iter_rows()], "rows by capability")
                    + bar_chart([(r[0], r[1]) for r in by_task.iter_rows()], "rows by task"))
    sections.append("<h2>Lengths (train, characters)</h2>"
                    + "".join(histogram(v, name) for name, v in _lengths(train).items()))
    task_rows = [[t, info["component"], info["capability"], *[info["counts"].get(s, "") for s in
                  ("read", "excluded", "split_train", "split_eval", "out", "out_train_rows", "out_eval_rows")]]
                 for t, info in manifest["tasks"].items()]
    sections.append("<h2>Tasks</h2>" + _table(task_rows, ["task", "component", "capability", "read", "excluded",
                                                          "train", "eval", "written", "train rows", "eval rows"]))
    decontamination = manifest.get("decontamination")
    if decontamination:
        reference = decontamination["reference"]
        rows = [[bench, ", ".join(info["eval_tasks"]), info["items"], info["items_hit"], info["rows_removed"],
                 ", ".join(f"{t} {n}" for t, n in info["removed_from"].items())]
                for bench, info in decontamination["by_benchmark"].items()]
        sections.append(
            f"<h2>Decontamination</h2><p>Every train row and document checked against {reference['items']:,} eval "
            f"items ({reference['records']:,} records): {_esc('; '.join(decontamination['tests']))}. "
            f"{decontamination['rows_removed']:,} rows removed.</p>"
            + _table(rows, ["benchmark", "eval tasks", "items", "items hit", "rows removed", "removed from"]))
    reasons = (rejects.group_by("step", "reason").len().sort(["len", "step", "reason"], descending=[True, False, False])
               .head(40)) if rejects.height else rejects
    sections.append("<h2>Top reject reasons</h2>" + _table([list(r) for r in reasons.iter_rows()] if rejects.height
                                                           else [], ["step", "reason", "rows"]))
    if manifest.get("skipped"):
        sections.append("<h2>Skipped tasks</h2>" + _table(
            [[s["task_id"], s["component"], s["reason"]] for s in manifest["skipped"]], ["task", "component", "why"]))
    style = ("body{font-family:sans-serif;max-width:980px;margin:2em auto;color:#222}table{border-collapse:collapse;"
             "margin:1em 0;font-size:13px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}"
             "svg{display:block;margin:1em 0}")
    return (f"<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{_esc(mixture['name'])} build report"
            f"</title><style>{style}</style></head><body>{''.join(sections)}</body></html>\n")


def write_report(build_dir: str | Path, out: str | Path | None = None) -> Path:
    """Write the report (default: BUILD_DIR/report.html) and return its path."""
    path = Path(out) if out is not None else Path(build_dir) / "report.html"
    path.write_text(render_report(build_dir), encoding="utf-8")
    return path
