"""A self-contained HTML page of a diagnosis: a per-task bar chart (inline SVG) and the figures table.

No plotting library: the page must open anywhere (a CI artifact, an email) and the chart is simple bars.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any

BAR_HEIGHT = 14
ROW_GAP = 10
LABEL_WIDTH = 240
CHART_WIDTH = 420
COLOURS = {"mean_reward": "#3b7dd8", "failure_rate": "#d8573b"}


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value)


def _failure_rate(figures: dict[str, Any]) -> float | None:
    """Share of the task's records that are failure samples (mean reward below the pass threshold)."""
    return figures["failures"] / figures["records"] if figures.get("records") else None


def bar_chart(diagnosis: dict[str, Any]) -> str:
    """Two bars per task, mean reward and failure rate, both on a 0..1 axis; weak tasks labelled in bold red."""
    tasks = diagnosis["tasks"]
    row_height = 2 * BAR_HEIGHT + ROW_GAP
    height = row_height * len(tasks) + 40
    width = LABEL_WIDTH + CHART_WIDTH + 60
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
             f'aria-label="mean reward and failure rate per task" font-family="sans-serif" font-size="12">']
    for tick in (0.0, 0.25, 0.5, 0.75, 1.0):
        x = LABEL_WIDTH + tick * CHART_WIDTH
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 18}" stroke="#ddd"/>'
                     f'<text x="{x:.1f}" y="{height - 4}" text-anchor="middle" fill="#555">{tick:g}</text>')
    for i, (key, colour) in enumerate(COLOURS.items()):
        x = LABEL_WIDTH + i * 160
        parts.append(f'<rect x="{x}" y="2" width="12" height="12" fill="{colour}"/>'
                     f'<text x="{x + 16}" y="12">{key.replace("_", " ")}</text>')
    for index, (task_id, figures) in enumerate(tasks.items()):
        y = 24 + index * row_height
        style = ' font-weight="bold" fill="#b00"' if figures.get("weak") else ""
        parts.append(f'<text x="{LABEL_WIDTH - 6}" y="{y + BAR_HEIGHT + 4}" text-anchor="end"{style}>'
                     f'{escape(task_id)}</text>')
        for offset, (key, value) in enumerate((("mean_reward", figures.get("mean_reward")),
                                               ("failure_rate", _failure_rate(figures)))):
            bar = max(0.0, min(1.0, value or 0.0)) * CHART_WIDTH
            top = y + offset * BAR_HEIGHT
            parts.append(f'<rect x="{LABEL_WIDTH}" y="{top}" width="{bar:.1f}" height="{BAR_HEIGHT - 2}" '
                         f'fill="{COLOURS[key]}"><title>{escape(task_id)} {key}: {_fmt(value)}</title></rect>'
                         f'<text x="{LABEL_WIDTH + bar + 4:.1f}" y="{top + BAR_HEIGHT - 3}" fill="#333">'
                         f'{_fmt(value)}</text>')
    parts.append("</svg>")
    return "".join(parts)


TABLE_COLUMNS = ("capability", "count", "records", "mean_reward", "pass_rate", "parse_failure_rate", "failures",
                 "delta_mean_reward", "delta_pass_rate")


def html_page(diagnosis: dict[str, Any]) -> str:
    """The whole page: inputs, rules, chart, the figures table with the reasons each weak task was chosen."""
    columns = [c for c in TABLE_COLUMNS if any(c in figures for figures in diagnosis["tasks"].values())]
    head = "".join(f"<th>{escape(c.replace('_', ' '))}</th>" for c in ("task", *columns, "weak because"))
    rows = []
    for task_id, figures in diagnosis["tasks"].items():
        cells = "".join(f"<td>{escape(_fmt(figures.get(c)))}</td>" for c in columns)
        reasons = escape("; ".join(figures.get("reasons", [])))
        cls = ' class="weak"' if figures.get("weak") else ""
        rows.append(f"<tr{cls}><td>{escape(task_id)}</td>{cells}<td>{reasons}</td></tr>")
    inputs = escape(", ".join(f"{k}: {v['path']}" for k, v in diagnosis.get("inputs", {}).items()))
    rules = escape(", ".join(f"{k}={v}" for k, v in diagnosis.get("rules", {}).items()))
    weak = escape(", ".join(diagnosis["weak_tasks"]) or "none")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>snsdata diagnosis</title><style>"
        "body{font-family:sans-serif;margin:2em;color:#222}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "tr.weak td{background:#fde8e4}code{background:#f3f3f3;padding:1px 4px}</style></head><body>"
        f"<h1>Diagnosis</h1><p>Inputs: <code>{inputs}</code></p><p>Rules: <code>{rules}</code></p>"
        f"<p>Weak tasks: <strong>{weak}</strong> ({diagnosis['rows']} rows, "
        f"{diagnosis['unscored_rows']} unscored)</p>"
        f"{bar_chart(diagnosis)}<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
        "</body></html>\n"
    )


def write_html(diagnosis: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(html_page(diagnosis), encoding="utf-8")
    return path
