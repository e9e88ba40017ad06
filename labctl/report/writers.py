"""Writing a report: one self-contained HTML file, a PDF, or a folder.

- HTML: PNG figures embedded as base64 data URIs, styles inline; it opens
  offline and can be mailed as one file. Every text from the run file is
  escaped (the file is untrusted input).
- PDF: matplotlib's PdfPages, text pages (metadata, results, problems,
  conventions, steps) then one page per figure.
- Folder: one PNG per figure, an index.html linking them, results.json.

All three are written atomically (labctl.report.atomic).
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import io
import json
from collections.abc import Sequence
from pathlib import Path

from matplotlib.backends.backend_pdf import PdfPages
from matplotlib.figure import Figure

from labctl.report.atomic import REPORT_MARKER, atomic_dir, atomic_file
from labctl.report.plotting import ReportFigure, new_figure
from labctl.report.runview import RunView
from labctl.report.summary import Summary, report_json, summarize
from labctl.report.tabulate import format_value

PNG_DPI = 110

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:2em auto;max-width:70em;
color:#222;padding:0 1em}
h1{font-size:1.5em}h2{font-size:1.2em;border-bottom:1px solid #ccc;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}
th{background:#f2f2f2}td.num{font-family:monospace}
.note{background:#fff4d6;border:1px solid #e0b84c;padding:.5em 1em;margin:.5em 0}
.bad{background:#fde2e2;border:1px solid #d66;padding:.5em 1em}
.warn{background:#fff4d6;border:1px solid #e0b84c;padding:.5em 1em}
figure{margin:1em 0;page-break-inside:avoid}figure img{max-width:100%;border:1px solid #ddd}
figcaption{font-size:.9em;color:#444}
.small{font-size:.8em;color:#666}
"""


def png_bytes(fig: Figure) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=PNG_DPI)
    return buf.getvalue()


def write_html(view: RunView, figures: Sequence[ReportFigure], target: Path) -> None:
    images = [f"data:image/png;base64,{base64.b64encode(png_bytes(f.figure)).decode('ascii')}" for f in figures]
    text = render_html(view, summarize(view), figures, images)
    with atomic_file(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_dir(view: RunView, figures: Sequence[ReportFigure], target: Path) -> list[str]:
    """PNGs + index.html + results.json; returns the PNG names."""
    names = [f"{k + 1:02d}_{f.name}.png" for k, f in enumerate(figures)]
    with atomic_dir(target, REPORT_MARKER) as tmp:
        for name, f in zip(names, figures, strict=True):
            (tmp / name).write_bytes(png_bytes(f.figure))
        (tmp / "index.html").write_text(render_html(view, summarize(view), figures, names), encoding="utf-8")
        (tmp / "results.json").write_text(json.dumps(report_json(view), indent=2, allow_nan=False), encoding="utf-8")
    return names


def write_pdf(view: RunView, figures: Sequence[ReportFigure], target: Path) -> None:
    summary = summarize(view)
    meta = {"Title": summary.title, "Creator": "labctl report"}
    with atomic_file(target) as tmp, PdfPages(tmp, metadata=meta) as pdf:
        for page in text_pages(summary):
            pdf.savefig(page)
        for f in figures:
            pdf.savefig(f.figure)


# -- HTML ------------------------------------------------------------------------------


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]], num_cols: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td{' class=num' if i in num_cols else ''}>{_e(c)}</td>" for i, c in enumerate(r)) + "</tr>"
        for r in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(view: RunView, s: Summary, figures: Sequence[ReportFigure], images: Sequence[str]) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>",
        f"<title>{_e(s.title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{_e(s.title)}</h1><p class=small>labctl report of {_e(view.path)}, made {now}</p>",
    ]
    parts += [f"<div class=note>{_e(n)}</div>" for n in s.notes]
    parts.append("<h2>Run</h2>" + _table(("", ""), s.metadata))
    parts.append("<h2 id=results>Results</h2>")
    if s.results:
        parts.append(
            _table(
                ("result", "value", "uncertainty"), [(r.name, r.value, r.uncertainty or "—") for r in s.results], (1, 2)
            )
        )
    else:
        parts.append("<p>No results.</p>")
    parts.append("<h2 id=problems>Warnings and validity</h2>")
    if s.problems.invalid:
        parts.append(
            "<div class=bad><b>Invalid results</b><ul>"
            + "".join(f"<li>{_e(x)}</li>" for x in s.problems.invalid)
            + "</ul></div>"
        )
    if s.problems.warnings:
        parts.append(
            "<div class=warn><b>Warnings</b><ul>"
            + "".join(f"<li>{_e(x)}</li>" for x in s.problems.warnings)
            + "</ul></div>"
        )
    if not (s.problems.invalid or s.problems.warnings):
        parts.append("<p>No warnings recorded; no result marked invalid.</p>")
    for name, records in s.tables:
        cols = list(dict.fromkeys(k for rec in records for k in rec))
        parts.append(f"<h2>Table: {_e(name)}</h2>")
        parts.append(_table(cols, [[format_value(rec.get(c)) for c in cols] for rec in records], range(len(cols))))
    parts.append("<h2 id=figures>Figures</h2>")
    for k, (f, src) in enumerate(zip(figures, images, strict=True)):
        parts.append(
            f'<figure><img src="{_e(src)}" alt="{_e(f.name)}">'
            f"<figcaption>Figure {k + 1}. {_e(f.caption)}</figcaption></figure>"
        )
    parts.append("<h2>Conventions</h2>")
    parts.append(_table(("what", "convention"), s.conventions) if s.conventions else "<p>None recorded.</p>")
    parts.append("<h2>Parameters</h2>" + _table(("parameter", "value"), s.parameters))
    parts.append("<h2>Steps</h2>" + _table(s.steps[0], s.steps[1:]))
    if view.events:
        rows = [(format_value(e.get("t_cell")), e.get("state", ""), e.get("message", "")) for e in view.events]
        parts.append("<h2>Events</h2>" + _table(("t_cell / s", "state", "message"), rows))
    parts.append("</body></html>")
    return "\n".join(parts)


# -- PDF text pages ----------------------------------------------------------------------

_LINES_PER_PAGE = 96
_WIDTH = 118


def text_lines(s: Summary) -> list[str]:
    lines = [s.title, ""]
    lines += [f"NOTE: {n}" for n in s.notes]
    lines += ["", "RUN"] + [f"  {k}: {v}" for k, v in s.metadata]
    lines += ["", "RESULTS (value ± uncertainty)"]
    lines += [f"  {r.name} = {r.value} {r.uncertainty}".rstrip() for r in s.results] or ["  none"]
    lines += ["", "INVALID"] + ([f"  {x}" for x in s.problems.invalid] or ["  none"])
    lines += ["", "WARNINGS"] + ([f"  {x}" for x in s.problems.warnings] or ["  none"])
    for name, records in s.tables:
        lines += ["", f"TABLE {name}"] + [f"  {json.dumps(rec, default=str)}" for rec in records]
    lines += ["", "CONVENTIONS"] + ([f"  {k}: {v}" for k, v in s.conventions] or ["  none"])
    lines += ["", "PARAMETERS"] + [f"  {k} = {v}" for k, v in s.parameters]
    lines += ["", "STEPS  " + " | ".join(s.steps[0][:8])] + [f"  {' | '.join(r[:8])}" for r in s.steps[1:]]
    wrapped: list[str] = []
    for line in lines:
        while len(line) > _WIDTH:
            wrapped.append(line[:_WIDTH])
            line = "      " + line[_WIDTH:]
        wrapped.append(line)
    return wrapped


def text_pages(s: Summary) -> list[Figure]:
    lines = text_lines(s)
    pages = []
    for start in range(0, len(lines), _LINES_PER_PAGE):
        fig, axes = new_figure(size=(8.27, 11.69))
        ax = axes[0, 0]
        ax.axis("off")
        ax.text(
            0.0,
            1.0,
            "\n".join(lines[start : start + _LINES_PER_PAGE]),
            family="monospace",
            fontsize=6.5,
            va="top",
            ha="left",
            transform=ax.transAxes,
        )
        pages.append(fig)
    return pages
