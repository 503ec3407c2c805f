"""The comparison report: one self-contained HTML page (inline CSS and SVG, nothing fetched) per run.

It shows the leaderboard (each score with its confidence interval and record count), a bar chart per
metric with the intervals as error bars, latency and cost per model, the selection decision with every
candidate's reason and the paired comparisons, the comparison with the approved champion (with the
records that flipped), and each model's worst-scored records. Every string that comes from a
config, a dataset or a model is escaped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path, PurePosixPath
from typing import Any

from step_code.aws_resources import ControlPlaneError
from step_code.contract.files import SUMMARY_FILE, WORST_RECORDS_SUFFIX
from step_code.contract.results import (
    AlgorithmResult,
    CandidateVerdict,
    ChampionComparison,
    Decision,
    EvaluationSummary,
    FlippedRecord,
    MetricInterval,
    PairedComparison,
    WorstRecords,
    metric_names,
)
from step_code.step_io import read_model

# Chart geometry, in SVG user units.
LABEL_WIDTH = 190
PLOT_WIDTH = 420
VALUE_WIDTH = 110
BAR_HEIGHT = 16
BAR_GAP = 4
GROUP_GAP = 12
TOP = 12
SERIES_COLORS = ("#4c78a8", "#f58518", "#54a24b", "#b279a2")
WINNER_COLOR = "#2e7d32"
MUTED_COLOR = "#9e9e9e"
EXCLUDED_COLOR = "#b0bec5"
MAX_TEXT = 600


@dataclass(frozen=True)
class ListedRecord:
    """One worst record as the report lists it: which algorithm and score it was ranked by."""

    eval_name: str
    score_name: str
    score: float | None
    prompt: str
    reference: str | None
    output: str | None


@dataclass(frozen=True)
class ModelEvidence:
    """What the report shows about one candidate."""

    summary: EvaluationSummary
    worst_records: Sequence[ListedRecord]
    # Score name (as in summary.metrics) -> record_id -> score; empty when the evaluation wrote none.
    record_scores: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)


@dataclass(frozen=True)
class ReportContext:
    pipeline_name: str
    execution_id: str
    dataset_name: str
    higher_is_better: Mapping[str, bool]


def worst_records_path(result: AlgorithmResult) -> str | None:
    """The worst-records file of one algorithm, relative to the evaluation output; None when it failed."""
    if result.error or not result.output_path:
        return None
    path = PurePosixPath(result.output_path)
    return str(path.with_name(path.stem + WORST_RECORDS_SUFFIX))


def read_worst_records(path: Path, eval_name: str) -> list[ListedRecord]:
    listed = read_model(path, WorstRecords)
    return [
        ListedRecord(
            eval_name=eval_name,
            score_name=listed.score,
            score=record.score,
            prompt=record.prompt or record.model_input or "",
            reference=record.reference,
            output=record.output,
        )
        for record in listed.records
    ]


def read_record_scores(evaluation_dir: Path, summary: EvaluationSummary) -> dict[str, dict[str, float | None]]:
    """Every algorithm's per-record scores, under the names summary.metrics gives the scores."""
    names = metric_names(summary.algorithms)
    scores: dict[str, dict[str, float | None]] = {}
    for result in summary.algorithms:
        if result.error or not result.record_scores_path:
            continue
        path = evaluation_dir / result.record_scores_path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ControlPlaneError(f"{path}: cannot read the per-record scores ({exc.strerror})") from None
        for number, line in enumerate(lines, start=1):
            try:
                row = json.loads(line)
                record_id, values = str(row["record_id"]), dict(row["scores"])
            except (ValueError, KeyError, TypeError):
                raise ControlPlaneError(
                    f'{path}: line {number}: expected {{"record_id": ..., "scores": {{...}}}}'
                ) from None
            for score, value in values.items():
                name = names.get((result.eval_name, score))
                if name is not None:
                    scores.setdefault(name, {})[record_id] = None if value is None else float(value)
    return scores


def load_model_evidence(evaluation_dir: Path, model: str) -> ModelEvidence:
    """A model's summary.json, worst records and per-record scores from its evaluation output folder."""
    summary_path = evaluation_dir / SUMMARY_FILE
    summary = read_model(summary_path, EvaluationSummary)
    if summary.model != model:
        raise ControlPlaneError(f"{summary_path}: model: expected {model!r}, found {summary.model!r}")
    worst: list[ListedRecord] = []
    for result in summary.algorithms:
        relative = worst_records_path(result)
        if relative is not None:
            worst += read_worst_records(evaluation_dir / relative, result.eval_name)
    scores = read_record_scores(evaluation_dir, summary)
    return ModelEvidence(summary=summary, worst_records=worst, record_scores=scores)


@dataclass(frozen=True)
class _Series:
    name: str
    color: str


@dataclass(frozen=True)
class _Group:
    label: str
    values: Sequence[float | None]
    highlight: bool
    excluded: bool = False
    # (low, high) per value: drawn as an error bar.
    errors: Sequence[tuple[float, float] | None] = ()


def _e(value: object) -> str:
    return escape(str(value), quote=True)


def _clip(text: str | None) -> str:
    if text is None:
        return "(none)"
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " …"


def _score(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.4f}"


def _ms(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:,.0f} ms"


def _usd(value: float | None) -> str:
    return "n/a" if value is None or math.isnan(value) else f"${value:,.4f}"


def bar_chart(
    title: str,
    groups: Sequence[_Group],
    series: Sequence[_Series],
    *,
    fmt: Callable[[float | None], str],
    scale_max: float | None = None,
    limit: tuple[float, str] | None = None,
) -> str:
    """A horizontal bar chart as inline SVG: one group of bars per model, one bar per series."""
    known = [v for g in groups for v in g.values if v is not None and not math.isnan(v)]
    top = max([*known, limit[0] if limit else 0.0, scale_max or 0.0]) or 1.0
    group_height = len(series) * (BAR_HEIGHT + BAR_GAP) - BAR_GAP
    legend_height = 18 if len(series) > 1 else 0
    height = TOP + legend_height + len(groups) * (group_height + GROUP_GAP) + 14
    width = LABEL_WIDTH + PLOT_WIDTH + VALUE_WIDTH
    parts = [
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{_e(title)}</title>'
    ]
    if legend_height:
        legend_x = LABEL_WIDTH
        for item in series:
            parts.append(f'<rect x="{legend_x}" y="{TOP - 9}" width="10" height="10" fill="{item.color}"/>')
            parts.append(f'<text x="{legend_x + 14}" y="{TOP}" class="legend">{_e(item.name)}</text>')
            legend_x += 30 + 7 * len(item.name)
    y = TOP + legend_height
    for group in groups:
        label_y = y + group_height / 2 + 4
        weight = ' font-weight="bold"' if group.highlight else ""
        parts.append(
            f'<text x="{LABEL_WIDTH - 8}" y="{label_y:.1f}" text-anchor="end"{weight}>{_e(group.label)}</text>'
        )
        errors = list(group.errors) or [None] * len(series)
        for value, item, error in zip(group.values, series, errors, strict=True):
            missing = value is None or math.isnan(value)
            length = 0.0 if missing or value is None else max(0.0, value) / top * PLOT_WIDTH
            color = item.color
            if missing:
                color = MUTED_COLOR
            elif group.highlight and len(series) == 1:
                color = WINNER_COLOR
            elif group.excluded:
                color = EXCLUDED_COLOR
            parts.append(
                f'<rect x="{LABEL_WIDTH}" y="{y}" width="{length:.1f}" height="{BAR_HEIGHT}" fill="{color}">'
                f"<title>{_e(group.label)} {_e(item.name)}: {_e(fmt(value))}</title></rect>"
            )
            text_x = LABEL_WIDTH + length + 4
            if error is not None and not missing:
                low, high = (LABEL_WIDTH + max(0.0, bound) / top * PLOT_WIDTH for bound in error)
                middle = y + BAR_HEIGHT / 2
                parts.append(
                    f'<path class="error-bar" d="M{low:.1f} {middle}H{high:.1f}M{low:.1f} {y + 3}V{y + BAR_HEIGHT - 3}'
                    f'M{high:.1f} {y + 3}V{y + BAR_HEIGHT - 3}"><title>{_e(fmt(error[0]))} to {_e(fmt(error[1]))}'
                    "</title></path>"
                )
                text_x = max(text_x, high + 4)
            parts.append(f'<text x="{text_x:.1f}" y="{y + BAR_HEIGHT - 4}" class="value">{_e(fmt(value))}</text>')
            y += BAR_HEIGHT + BAR_GAP
        y += GROUP_GAP - BAR_GAP
    if limit is not None:
        x = LABEL_WIDTH + limit[0] / top * PLOT_WIDTH
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{TOP + legend_height - 4}" y2="{y}" class="limit"/>'
            f'<text x="{x:.1f}" y="{y + 10}" text-anchor="middle" class="limit-label">{_e(limit[1])}</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def metric_names_of(decision: Decision, models: Sequence[ModelEvidence]) -> list[str]:
    """The decision's metrics first, then every other score any model has, in first-seen order."""
    names = [decision.primary_metric, *decision.weights]
    for model in models:
        names += list(model.summary.metrics)
    return list(dict.fromkeys(names))


def _verdict_cell(verdict: CandidateVerdict) -> str:
    status = f"rank {verdict.rank}" if verdict.eligible else ("champion" if verdict.champion else "excluded")
    css = "ok" if verdict.eligible or verdict.champion else "bad"
    reasons = "".join(f"<li>{_e(reason)}</li>" for reason in verdict.reasons)
    return f'<span class="tag {css}">{_e(status)}</span><ul class="reasons">{reasons}</ul>'


def interval_text(interval: MetricInterval | None) -> str:
    """`[0.7961, 0.9843] n=40`; `small sample` is added below uncertainty.SMALL_SAMPLE records."""
    if interval is None or interval.low is None or interval.high is None:
        return "no interval"
    flag = ", small sample" if interval.small_sample else ""
    return f"[{interval.low:.4f}, {interval.high:.4f}] n={interval.n}{flag}"


def _interval_cell(interval: MetricInterval | None) -> str:
    css = "ci small" if interval is not None and interval.small_sample else "ci"
    return f'<br><span class="{css}">{_e(interval_text(interval))}</span>'


def _error(interval: MetricInterval | None) -> tuple[float, float] | None:
    if interval is None or interval.low is None or interval.high is None:
        return None
    return (interval.low, interval.high)


def _leaderboard(decision: Decision, models: Sequence[ModelEvidence], metrics: Sequence[str]) -> str:
    by_name = {m.summary.model: m.summary for m in models}
    ordered = sorted(decision.candidates, key=lambda c: (c.rank is None, c.rank or 0, c.model))
    head = "".join(f"<th>{_e(name).replace('_', '_<wbr>')}</th>" for name in metrics)
    rows = []
    for verdict in ordered:
        # The champion's evaluation output is not a step output of this run: a rebuilt report has only its verdict.
        summary = by_name.get(verdict.model)
        cells = "".join(
            f'<td class="num">{_score(verdict.metrics.get(name))}{_interval_cell(verdict.intervals.get(name))}</td>'
            for name in metrics
        )
        winner = ' class="winner"' if verdict.model == decision.winner else ""
        provider = summary.provider if summary else "registry"
        p50 = summary.latency.p50_ms if summary else None
        rows.append(
            f'<tr{winner}><th scope="row">{_e(verdict.model)}</th>'
            f'<td>{_e(provider)}</td><td class="num">{_score(verdict.weighted_score)}'
            f"{_interval_cell(verdict.weighted_interval)}</td>{cells}"
            f'<td class="num">{_ms(p50)}</td><td class="num">{_ms(verdict.p95_latency_ms)}</td>'
            f'<td class="num">{_usd(verdict.cost_per_1k_prompts_usd)}</td>'
            f'<td class="num">{verdict.failed_fraction:.1%}</td><td>{_verdict_cell(verdict)}</td></tr>'
        )
    return (
        '<div class="scroll"><table class="leaderboard"><thead><tr>'
        "<th>Model</th><th>Provider</th><th>Weighted score</th>"
        f"{head}<th>p50 latency</th><th>p95 latency</th><th>Cost / 1k prompts</th><th>Failed</th>"
        f"<th>Verdict</th></tr></thead><tbody>{''.join(rows)}</tbody></table></div>"
    )


def _metric_charts(
    decision: Decision, models: Sequence[ModelEvidence], metrics: Sequence[str], ctx: ReportContext
) -> str:
    charts = []
    min_primary = decision.policy.get("min_primary_score")
    verdicts = {c.model: c for c in decision.candidates}
    # Excluded candidates are drawn in a lighter colour, so the bars that competed stand out.
    excluded = {c.model for c in decision.candidates if not c.eligible}
    for name in metrics:
        groups = [
            _Group(
                m.summary.model,
                [m.summary.metrics.get(name)],
                m.summary.model == decision.winner,
                m.summary.model in excluded,
                [_error(m.summary.intervals.get(name))],
            )
            for m in models
        ]
        direction = ctx.higher_is_better.get(name)
        note = "" if direction is None else (" (higher is better)" if direction else " (lower is better)")
        limit = None
        if name == decision.primary_metric and isinstance(min_primary, int | float):
            limit = (float(min_primary), f"policy {'min' if direction is not False else 'max'} {min_primary:g}")
        chart = bar_chart(name, groups, [_Series(name, SERIES_COLORS[0])], fmt=_score, scale_max=1.0, limit=limit)
        charts.append(f"<figure><figcaption>{_e(name)}{_e(note)}</figcaption>{chart}</figure>")
    weighted = [
        _Group(
            m.summary.model,
            [verdicts[m.summary.model].weighted_score],
            m.summary.model == decision.winner,
            m.summary.model in excluded,
            [_error(verdicts[m.summary.model].weighted_interval)],
        )
        for m in models
    ]
    chart = bar_chart(
        "weighted score", weighted, [_Series("weighted score", SERIES_COLORS[0])], fmt=_score, scale_max=1.0
    )
    charts.insert(0, f"<figure><figcaption>weighted score (policy)</figcaption>{chart}</figure>")
    return "".join(charts)


def _measured(chart: str, values: Sequence[float | None], missing: str) -> str:
    return chart if any(v is not None for v in values) else f'<p class="note">{_e(missing)}</p>'


def _operations_charts(decision: Decision, models: Sequence[ModelEvidence]) -> str:
    latency_limit = decision.policy.get("max_p95_latency_ms")
    cost_limit = decision.policy.get("max_cost_per_1k_prompts_usd")
    latencies = [(m.summary.latency.p50_ms, m.summary.latency.p95_ms) for m in models]
    latency = bar_chart(
        "latency",
        [_Group(m.summary.model, list(pair), False) for m, pair in zip(models, latencies, strict=True)],
        [_Series("p50", SERIES_COLORS[0]), _Series("p95", SERIES_COLORS[1])],
        fmt=_ms,
        limit=(float(latency_limit), f"p95 limit {latency_limit:g} ms") if latency_limit else None,
    )
    costs = [m.summary.cost.cost_per_1k_prompts_usd for m in models]
    cost = bar_chart(
        "cost per 1k prompts",
        [_Group(m.summary.model, [value], False) for m, value in zip(models, costs, strict=True)],
        [_Series("USD per 1k prompts", SERIES_COLORS[2])],
        fmt=_usd,
        limit=(float(cost_limit), f"limit ${cost_limit:g}") if cost_limit else None,
    )
    bases = "".join(
        f"<li>{_e(m.summary.model)}: {_e(m.summary.cost.basis)}"
        + (f" ({_e(m.summary.cost.instance_type)})" if m.summary.cost.instance_type else "")
        + (
            f", {m.summary.throughput_per_second:.2f} prompts/s measured"
            if m.summary.throughput_per_second is not None
            else ""
        )
        + "</li>"
        for m in models
    )
    no_latency = "No model call was timed (recorded responses carry no latency)."
    no_cost = "No cost could be estimated (recorded responses and local endpoints have no price)."
    return (
        "<figure><figcaption>Latency per request (p50, p95)</figcaption>"
        f"{_measured(latency, [v for pair in latencies for v in pair], no_latency)}</figure>"
        f"<figure><figcaption>Cost per 1,000 prompts</figcaption>{_measured(cost, costs, no_cost)}</figure>"
        f'<p class="note">Cost basis per model:</p><ul class="note">{bases}</ul>'
    )


# Policy entries shown as resolved (defaults filled in) at the top of the policy table instead.
_RESOLVED_POLICY_KEYS = ("primary_metric", "weights")
_POLICY_LABELS = {
    "min_primary_score": "minimum primary score",
    "max_p95_latency_ms": "maximum p95 latency (ms)",
    "max_cost_per_1k_prompts_usd": "maximum cost per 1k prompts (USD)",
    "max_failed_fraction": "maximum failed fraction",
    "tie_break": "tie-break",
    "confidence": "confidence of tests and gate",
    "require_significance": "winner must beat the runner-up significantly",
    "baseline": "baseline",
    "max_regression": "maximum regression against the champion",
}


def _decision_section(decision: Decision) -> str:
    css = "ok" if decision.meets_policy else "bad"
    title = f"Winner: {decision.winner}" if decision.winner else "No candidate meets the selection policy"
    policy_rows = "".join(
        f'<tr><th scope="row">{_e(_POLICY_LABELS.get(key, key))}</th><td>{_e(_policy_value(value))}</td></tr>'
        for key, value in decision.policy.items()
        if key not in _RESOLVED_POLICY_KEYS
    )
    weights = ", ".join(f"{name} x {weight:g}" for name, weight in decision.weights.items())
    return (
        f'<div class="banner {css}"><strong>{_e(title)}</strong><p>{_e(decision.reason)}</p></div>'
        '<table class="policy"><tbody>'
        f'<tr><th scope="row">primary metric</th><td>{_e(decision.primary_metric)}</td></tr>'
        f'<tr><th scope="row">weights</th><td>{_e(weights)}</td></tr>{policy_rows}</tbody></table>'
    )


def _policy_value(value: Any) -> str:
    return "not set" if value is None else str(value)


def _is_perfect(record: ListedRecord, higher_is_better: Mapping[str, bool]) -> bool:
    """fmeval scores lie in [0, 1]; a record at the best end of that range is no example of a weakness."""
    direction = higher_is_better.get(record.score_name)
    if record.score is None or direction is None:
        return False
    return record.score >= 1.0 if direction else record.score <= 0.0


def _worst_records_section(model: ModelEvidence, higher_is_better: Mapping[str, bool]) -> str:
    summary = model.summary
    header = (
        f"<h3>{_e(summary.model)}</h3>"
        f'<p class="note">{summary.records_succeeded} of {summary.records_total} records answered, '
        f"{summary.records_failed} failed; {summary.model_calls} model calls, {summary.cache_hits} cache hits.</p>"
    )
    errors = "".join(
        f'<p class="banner bad">{_e(a.eval_name)} failed: {_e(a.error)}</p>' for a in summary.algorithms if a.error
    )
    tables = []
    for eval_name in dict.fromkeys(record.eval_name for record in model.worst_records):
        listed = [r for r in model.worst_records if r.eval_name == eval_name]
        shown = [r for r in listed if not _is_perfect(r, higher_is_better)]
        rows = "".join(
            f'<tr><td class="num">{_score(r.score)}</td><td>{_e(_clip(r.prompt))}</td>'
            f"<td>{_e(_clip(r.reference))}</td><td>{_e(_clip(r.output))}</td></tr>"
            for r in shown
        )
        omitted = len(listed) - len(shown)
        note = f'<p class="note">{omitted} more of the listed records have a perfect score.</p>' if omitted else ""
        if not shown:
            tables.append(f'<h4>{_e(eval_name)}</h4><p class="note">Every listed record has a perfect score.</p>')
            continue
        tables.append(
            f"<h4>{_e(eval_name)}: lowest {_e(listed[0].score_name)}</h4>"
            f'<table class="records"><thead><tr><th>{_e(listed[0].score_name)}</th><th>Prompt</th>'
            f"<th>Reference</th><th>Model output</th></tr></thead><tbody>{rows}</tbody></table>{note}"
        )
    if not tables and not errors:
        tables.append('<p class="note">No scored records to show.</p>')
    return header + errors + "".join(tables)


STYLE = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"Helvetica Neue",Arial,sans-serif;margin:2rem auto;
max-width:1200px;padding:0 1rem;color:#212121;line-height:1.4}
h1{margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #ddd;padding-bottom:.3rem}
.meta{color:#616161;margin-top:0}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #e0e0e0;padding:.35rem .55rem;text-align:left;vertical-align:top}
thead th{background:#f5f5f5}
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.winner{background:#e8f5e9}
table.leaderboard th[scope=row]{white-space:nowrap}table.leaderboard td:last-child{min-width:14rem}
.scroll{overflow-x:auto}table.records{width:100%}
.tag{display:inline-block;border-radius:3px;padding:0 .4rem;font-size:.8rem;font-weight:600}
.tag.ok{background:#c8e6c9;color:#1b5e20}.tag.bad{background:#ffcdd2;color:#b71c1c}
ul.reasons{margin:.2rem 0 0 1rem;padding:0;font-size:.85rem}
.banner{border-radius:4px;padding:.6rem 1rem;margin:1rem 0}
.banner.ok{background:#e8f5e9;border-left:5px solid #2e7d32}
.banner.bad{background:#ffebee;border-left:5px solid #c62828}
.banner p{margin:.3rem 0 0}
figure{margin:1rem 0}figcaption{font-weight:600;margin-bottom:.3rem}
svg.chart{max-width:100%;height:auto;font-size:12px}
svg.chart text{fill:#212121}svg.chart text.value{fill:#424242}
svg.chart .error-bar{stroke:#212121;stroke-width:1.2;fill:none}
.ci{color:#616161;font-size:.8rem}.ci.small{color:#b71c1c}
svg.chart .limit{stroke:#c62828;stroke-width:1.5;stroke-dasharray:4 3}svg.chart text.limit-label{fill:#c62828}
.note{color:#616161;font-size:.9rem}
table.records td{max-width:22rem;white-space:pre-wrap;word-break:break-word}
"""


def comparison_text(comparison: PairedComparison) -> list[str]:
    """One comparison as table cells: pair, difference, interval, test, p-value, verdict."""
    if comparison.difference is None or comparison.low is None or comparison.high is None:
        return [f"{comparison.first} vs {comparison.second}", "n/a", "no shared scored records", "-", "-", "-"]
    verdict = "significant" if comparison.significant else "not significant"
    small = ", small sample" if comparison.small_sample else ""
    return [
        f"{comparison.first} - {comparison.second}",
        f"{comparison.difference:+.4f}",
        f"[{comparison.low:+.4f}, {comparison.high:+.4f}] n={comparison.n}{small}",
        comparison.test,
        "n/a" if comparison.p_value is None else f"{comparison.p_value:.3g}",
        f"{verdict} at {comparison.confidence:.0%}",
    ]


COMPARISON_HEADERS = ("Pair", "Difference", "Interval", "Paired test", "p-value", "Verdict")


def _comparisons_section(comparisons: Sequence[PairedComparison]) -> str:
    if not comparisons:
        return ""
    head = "".join(f"<th>{_e(h)}</th>" for h in COMPARISON_HEADERS)
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in comparison_text(c)) + "</tr>" for c in comparisons
    )
    return (
        f"<h3>Paired comparisons ({_e(comparisons[0].metric)}, same records)</h3>"
        f'<table class="comparisons"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
    )


def champion_headline(champion: ChampionComparison | None) -> str:
    if champion is None:
        return "No baseline: selection.baseline is none."
    return champion.detail


FLIP_HEADERS = ("Champion", "Challenger", "Prompt", "Reference", "Champion output", "Challenger output")


def flip_cells(record: FlippedRecord) -> list[str]:
    return [
        _score(record.champion_score),
        _score(record.challenger_score),
        _clip(record.prompt),
        _clip(record.reference),
        _clip(record.champion_output),
        _clip(record.challenger_output),
    ]


def champion_section(champion: ChampionComparison | None) -> str:
    css = "ok" if champion is None or champion.passed else "bad"
    parts = [f'<div class="banner {css}"><p>{_e(champion_headline(champion))}</p></div>']
    if champion is None or champion.status != "compared":
        return "".join(parts)
    if champion.comparison is not None:
        parts.append(_comparisons_section([champion.comparison]))
    parts.append(
        f'<p class="note">{champion.worse} record(s) worse than the champion, {champion.better} better '
        "(primary metric, same records).</p>"
    )
    head = "".join(f"<th>{_e(h)}</th>" for h in FLIP_HEADERS)
    for title, records in (("Worst of the worse", champion.worst_worse), ("Best of the better", champion.worst_better)):
        if not records:
            continue
        rows = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in flip_cells(r)) + "</tr>" for r in records)
        parts.append(
            f'<h3>{_e(title)}</h3><table class="records"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'
        )
    return "".join(parts)


def render_report(decision: Decision, models: Sequence[ModelEvidence], context: ReportContext) -> str:
    """The whole comparison page. `models` are in config order; the decision must name each of them."""
    candidates = {c.model for c in decision.candidates}
    missing = [m.summary.model for m in models if m.summary.model not in candidates]
    if missing:
        raise ValueError(f"the decision has no verdict for {', '.join(missing)}")
    metrics = metric_names_of(decision, models)
    sections = "".join(_worst_records_section(model, context.higher_is_better) for model in models)
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{_e(context.pipeline_name)}: model comparison</title><style>{STYLE}</style></head><body>"
        f"<h1>{_e(context.pipeline_name)}: model comparison</h1>"
        f'<p class="meta">Execution {_e(context.execution_id)} · dataset {_e(context.dataset_name)} · '
        f"{len(models)} candidate models</p>"
        f"<h2>Decision</h2>{_decision_section(decision)}{_comparisons_section(decision.comparisons)}"
        f"<h2>Champion</h2>{champion_section(decision.champion)}"
        f"<h2>Leaderboard</h2>{_leaderboard(decision, models, metrics)}"
        f"<h2>Scores</h2>{_metric_charts(decision, models, metrics, context)}"
        f"<h2>Latency and cost</h2>{_operations_charts(decision, models)}"
        f"<h2>Worst-scored records per model</h2>{sections}"
        "</body></html>\n"
    )
