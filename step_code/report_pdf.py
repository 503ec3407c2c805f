"""The comparison report as a PDF: the HTML report's sections, each from a new page, with its charts.

Rendered with fpdf2 (pure Python, from the package registry; no browser, no network at run time) and
charts drawn by matplotlib (already in the step image for fmeval) as PNG images. A renderer that prints
the HTML (WeasyPrint needs Pango system libraries, headless Chrome a browser download) would not run in
the step image offline. The text font is matplotlib's bundled DejaVu Sans, so prompts and model outputs in
any script fpdf2's core fonts (Latin-1 only) cannot show are printed as they are.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from step_code.contract.results import Decision, MetricInterval
from step_code.report import (
    COMPARISON_HEADERS,
    FLIP_HEADERS,
    ModelEvidence,
    ReportContext,
    champion_headline,
    comparison_text,
    flip_cells,
    interval_text,
    metric_names_of,
)

FONT = "DejaVu"
TEXT_LIMIT = 400
WINNER_COLOR = "#2e7d32"
BAR_COLOR = "#4c78a8"
MUTED_COLOR = "#b0bec5"
# Section titles, in order; each starts a page.
SECTIONS = ("Decision", "Champion", "Leaderboard", "Scores", "Latency and cost", "Worst-scored records per model")


def _font_dir() -> Path:
    import matplotlib

    return Path(matplotlib.get_data_path()) / "fonts" / "ttf"


def _clip(text: str | None) -> str:
    if text is None:
        return "(none)"
    return text if len(text) <= TEXT_LIMIT else text[:TEXT_LIMIT] + " ..."


def _score(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _chart(
    title: str,
    labels: Sequence[str],
    values: Sequence[float | None],
    errors: Sequence[Any],
    winner: str | None,
    scale_max: float | None,
) -> bytes:
    """A horizontal bar chart with the intervals as error bars, as PNG."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.0, 0.5 + 0.45 * len(labels)), dpi=150)
    axes = figure.add_subplot()
    shown = [0.0 if v is None or math.isnan(v) else v for v in values]
    colors = [
        WINNER_COLOR if label == winner else BAR_COLOR if v is not None else MUTED_COLOR
        for label, v in zip(labels, values, strict=True)
    ]
    positions = list(range(len(labels)))[::-1]
    axes.barh(positions, shown, color=colors)
    for position, value, error in zip(positions, shown, errors, strict=True):
        if error is not None:
            low, high = error
            axes.errorbar(
                value,
                position,
                xerr=[[value - low], [high - value]],
                fmt="none",
                ecolor="#212121",
                capsize=4,
                linewidth=1.2,
            )
    for position, value, raw in zip(positions, shown, values, strict=True):
        axes.text(value, position, f" {_score(raw)}", va="center", fontsize=8)
    axes.set_yticks(positions, labels=list(labels), fontsize=8)
    axes.set_title(title, fontsize=10)
    if scale_max is not None:
        axes.set_xlim(0, scale_max * 1.15)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def _error(interval: MetricInterval | None) -> tuple[float, float] | None:
    if interval is None or interval.low is None or interval.high is None:
        return None
    return (interval.low, interval.high)


class _Document:
    def __init__(self, title: str) -> None:
        from fpdf import FPDF

        self.pdf = FPDF(orientation="landscape", format="A4")
        self.pdf.set_auto_page_break(auto=True, margin=12)
        fonts = _font_dir()
        self.pdf.add_font(FONT, "", str(fonts / "DejaVuSans.ttf"))
        self.pdf.add_font(FONT, "B", str(fonts / "DejaVuSans-Bold.ttf"))
        self.pdf.set_title(title)
        self.pdf.set_creator("evalops")

    def section(self, title: str) -> None:
        self.pdf.add_page()
        self.pdf.set_font(FONT, "B", 15)
        self.pdf.cell(text=title, new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(2)

    def heading(self, text: str) -> None:
        self.pdf.set_font(FONT, "B", 11)
        self.pdf.multi_cell(0, 6, text, new_x="LMARGIN", new_y="NEXT")

    def text(self, text: str, size: float = 9) -> None:
        self.pdf.set_font(FONT, "", size)
        self.pdf.multi_cell(0, 5, text, new_x="LMARGIN", new_y="NEXT")
        self.pdf.ln(1)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], size: float = 7.5) -> None:
        self.pdf.set_font(FONT, "", size)
        with self.pdf.table(text_align="LEFT", line_height=4) as table:
            header = table.row()
            for cell in headers:
                header.cell(cell)
            for values in rows:
                row = table.row()
                for cell in values:
                    row.cell(cell)
        self.pdf.ln(2)

    def image(self, png: bytes) -> None:
        self.pdf.image(io.BytesIO(png), w=self.pdf.epw * 0.75)
        self.pdf.ln(2)

    def output(self) -> bytes:
        return bytes(self.pdf.output())


def render_pdf(decision: Decision, models: Sequence[ModelEvidence], context: ReportContext) -> bytes:
    """The comparison report as PDF bytes; the same sections as the HTML page."""
    doc = _Document(f"{context.pipeline_name}: model comparison")
    metrics = metric_names_of(decision, models)
    verdicts = {c.model: c for c in decision.candidates}

    doc.section(SECTIONS[0])
    doc.text(
        f"{context.pipeline_name} · execution {context.execution_id} · dataset {context.dataset_name} · "
        f"{len(models)} candidate models"
    )
    doc.heading(f"Winner: {decision.winner}" if decision.winner else "No candidate meets the selection policy")
    doc.text(decision.reason)
    policy = [[key, "not set" if value is None else str(value)] for key, value in decision.policy.items()]
    doc.table(["Policy", "Value"], [["primary metric", decision.primary_metric], *policy])
    if decision.comparisons:
        doc.heading(f"Paired comparisons ({decision.comparisons[0].metric}, same records)")
        doc.table(COMPARISON_HEADERS, [comparison_text(c) for c in decision.comparisons])

    doc.section(SECTIONS[1])
    champion = decision.champion
    doc.text(champion_headline(champion))
    if champion is not None and champion.status == "compared":
        if champion.comparison is not None:
            doc.table(COMPARISON_HEADERS, [comparison_text(champion.comparison)])
        doc.text(f"{champion.worse} record(s) worse than the champion, {champion.better} better.")
        for title, records in (
            ("Worst of the worse", champion.worst_worse),
            ("Best of the better", champion.worst_better),
        ):
            if records:
                doc.heading(title)
                doc.table(FLIP_HEADERS, [[_clip(c) for c in flip_cells(r)] for r in records])

    doc.section(SECTIONS[2])
    ordered = sorted(decision.candidates, key=lambda c: (c.rank is None, c.rank or 0, c.model))
    rows = []
    for verdict in ordered:
        status = f"rank {verdict.rank}" if verdict.eligible else ("champion" if verdict.champion else "excluded")
        rows.append(
            [
                verdict.model,
                f"{_score(verdict.weighted_score)}\n{interval_text(verdict.weighted_interval)}",
                *(f"{_score(verdict.metrics.get(n))}\n{interval_text(verdict.intervals.get(n))}" for n in metrics),
                status,
                "; ".join(verdict.reasons),
            ]
        )
    doc.table(["Model", "Weighted score", *metrics, "Verdict", "Reasons"], rows, size=6.5)

    doc.section(SECTIONS[3])
    names = [m.summary.model for m in models]
    weighted = [verdicts[n].weighted_score if n in verdicts else None for n in names]
    weighted_errors = [_error(verdicts[n].weighted_interval) if n in verdicts else None for n in names]
    doc.image(_chart("weighted score (policy)", names, weighted, weighted_errors, decision.winner, 1.0))
    for metric in metrics:
        values = [m.summary.metrics.get(metric) for m in models]
        errors = [_error(m.summary.intervals.get(metric)) for m in models]
        doc.image(_chart(metric, names, values, errors, decision.winner, 1.0))

    doc.section(SECTIONS[4])
    doc.table(
        ["Model", "p50 latency (ms)", "p95 latency (ms)", "Cost / 1k prompts (USD)", "Cost basis"],
        [
            [
                m.summary.model,
                _score(m.summary.latency.p50_ms),
                _score(m.summary.latency.p95_ms),
                _score(m.summary.cost.cost_per_1k_prompts_usd),
                m.summary.cost.basis,
            ]
            for m in models
        ],
    )
    latencies = [m.summary.latency.p95_ms for m in models]
    if any(v is not None for v in latencies):
        doc.image(_chart("p95 latency (ms)", names, latencies, [None] * len(names), None, None))

    doc.section(SECTIONS[5])
    for model in models:
        summary = model.summary
        doc.heading(summary.model)
        doc.text(
            f"{summary.records_succeeded} of {summary.records_total} records answered, {summary.records_failed} failed."
        )
        if model.worst_records:
            doc.table(
                ["Algorithm", "Score", "Prompt", "Reference", "Model output"],
                [
                    [r.eval_name, _score(r.score), _clip(r.prompt), _clip(r.reference), _clip(r.output)]
                    for r in model.worst_records
                ],
            )
    return doc.output()
