"""One self-contained HTML page per algorithm: fmeval's own report cells plus the worst-scored records.

fmeval's `EvalOutputCell` renders the score descriptions, averages and per-category bar charts; its
example tables sort the whole dataset in Ray for every score, which costs seconds per score, so the
worst records come from the per-record scores already read in Python instead.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape
from typing import Any

PAGE_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2rem auto; max-width: 70rem;
       color: #1d2329; line-height: 1.45; padding: 0 1rem; }
table { border-collapse: collapse; margin: 1rem 0; width: 100%; font-size: 0.9rem; }
th, td { border: 1px solid #d5dbe1; padding: 0.35rem 0.5rem; text-align: left; vertical-align: top; }
th { background: #f2f4f7; }
.note { background: #fff8e1; border-left: 4px solid #f0b400; padding: 0.5rem 0.8rem; }
.meta { color: #566270; }
"""
MAX_CELL_CHARS = 400


def _truncate(value: Any) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= MAX_CELL_CHARS else text[: MAX_CELL_CHARS - 1] + "…"


def worst_records_table(worst: Sequence[dict[str, Any]], score_name: str) -> str:
    if not worst:
        return "<p>No record has a value for this score.</p>"
    header = "<tr><th>#</th><th>record</th><th>prompt</th><th>reference</th><th>model output</th>"
    header += f"<th>{escape(score_name)}</th></tr>"
    rows = []
    for rank, record in enumerate(worst, start=1):
        cells = [
            str(rank),
            escape(_truncate(record.get("record_id"))),
            escape(_truncate(record.get("prompt"))),
            escape(_truncate(record.get("reference"))),
            escape(_truncate(record.get("output"))),
            escape(_truncate(record.get("score"))),
        ]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    return f"<table>{header}{''.join(rows)}</table>"


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        f'<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{PAGE_STYLE}</style></head><body><h1>{escape(title)}</h1>{body}</body></html>\n"
    )


def render_failure_page(*, model: str, algorithm: str, error: str) -> str:
    return _page(f"{algorithm} — {model}", f'<p class="note">This algorithm failed: {escape(error)}</p>')


def render_algorithm_page(
    *,
    eval_output: Any,
    model: str,
    algorithm: str,
    records_scored: int,
    records_failed: int,
    worst: Sequence[dict[str, Any]],
    worst_score_name: str,
    notes: Sequence[str],
) -> str:
    """`eval_output` is fmeval's EvalOutput; `notes` are shown above the scores (e.g. omitted judge scores)."""
    import markdown
    from fmeval.reporting.constants import MARKDOWN_EXTENSIONS
    from fmeval.reporting.eval_output_cells import EvalOutputCell

    body = markdown.markdown(str(EvalOutputCell(eval_output, dataset=None)), extensions=MARKDOWN_EXTENSIONS)
    failed = f"; {records_failed} record(s) without a model output were excluded from scoring" if records_failed else ""
    note_html = "".join(f'<p class="note">{escape(note)}</p>' for note in notes)
    return _page(
        f"{algorithm} — {model}",
        f'<p class="meta">{records_scored} record(s) scored{escape(failed)}.</p>{note_html}{body}'
        f"<h2>Worst records by {escape(worst_score_name)}</h2>{worst_records_table(worst, worst_score_name)}",
    )
