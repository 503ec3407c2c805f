"""One self-contained HTML page per algorithm: its dataset and per-category scores and the worst records.

Not fmeval's `EvalOutputCell`: importing fmeval's reporting imports every algorithm module, and through
them transformers and torch (12 s of the 13 s an evaluate step of 40 records took), and its per-category
matplotlib charts cost about 0.2 s each, all after the last model answer. The scores are the ones fmeval's
aggregation computed; the page only lays them out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
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


def _value(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}" if isinstance(value, float) else escape(str(value))


def scores_table(eval_output: Any, higher_is_better: Mapping[str, bool]) -> str:
    """Dataset scores in the first row, one row per category below; a header marks each score's direction."""
    names = [score.name for score in eval_output.dataset_scores or []]
    if not names:
        return "<p>No score.</p>"

    def direction(name: str) -> str:
        better = higher_is_better.get(name)
        return "" if better is None else " (higher is better)" if better else " (lower is better)"

    header = "<tr><th></th>" + "".join(f"<th>{escape(name)}{direction(name)}</th>" for name in names) + "</tr>"
    rows = ["<tr><th>dataset</th>" + "".join(f"<td>{_value(s.value)}</td>" for s in eval_output.dataset_scores)]
    for category in eval_output.category_scores or []:
        values = {score.name: score.value for score in category.scores}
        cells = "".join(f"<td>{_value(values.get(name))}</td>" for name in names)
        rows.append(f"<tr><th>{escape(str(category.name))}</th>{cells}</tr>")
    return f"<table>{header}{''.join(rows)}</table>"


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
    higher_is_better: Mapping[str, bool],
) -> str:
    """`eval_output` is fmeval's EvalOutput; `notes` are shown above the scores (e.g. omitted judge scores)."""
    failed = f"; {records_failed} record(s) could not be scored" if records_failed else ""
    note_html = "".join(f'<p class="note">{escape(note)}</p>' for note in notes)
    meta = f"fmeval {escape(eval_output.eval_name)} on dataset {escape(eval_output.dataset_name)}"
    return _page(
        f"{algorithm} — {model}",
        f'<p class="meta">{meta}: {records_scored} record(s) scored{escape(failed)}.</p>{note_html}'
        f"<h2>Scores</h2>{scores_table(eval_output, higher_is_better)}"
        f"<h2>Worst records by {escape(worst_score_name)}</h2>{worst_records_table(worst, worst_score_name)}",
    )
