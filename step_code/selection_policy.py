"""The selection policy: which candidate wins, and why every other one did not. Pure functions, no I/O.

The weighted score is `sum(weight * oriented value) / sum(weights)`, where a higher-is-better metric is
taken as it is and a lower-is-better one as `1 - value` (fmeval scores lie in [0, 1]), so the weighted
score stays in [0, 1] and higher always wins. A metric a candidate lacks is never read as 0: the
candidate is excluded and the reason names the metric.

With per-record scores, each candidate's weighted score is also computed per record (the same formula on
the record's scores), which gives its interval and a paired comparison of every eligible candidate with
the next one. `require_significance`: every eligible candidate whose paired difference from the leader is
not significant ties with it statistically, and `tie_break` chooses among them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from step_code.contract.config import SelectionPolicy
from step_code.contract.results import CandidateVerdict, Decision, EvaluationSummary, MetricInterval, PairedComparison
from step_code.uncertainty import describe_comparison, mean_interval, paired_comparison

# Model -> score name (as in summary.metrics) -> record_id -> the record's score.
RecordScores = Mapping[str, Mapping[str, Mapping[str, float | None]]]
WEIGHTED_SCORE = "weighted score"

# Weighted scores closer than this count as a tie (float sums of equal scores can differ in the last bits).
TIE_DIGITS = 9


class PolicyError(ValueError):
    """The policy cannot be applied as written (unknown metric, unusable weights)."""


def resolve_weights(policy: SelectionPolicy, primary_metric: str) -> dict[str, float]:
    """The weights the score uses: the configured ones, or the primary metric alone."""
    weights = dict(policy.weights) if policy.weights else {primary_metric: 1.0}
    negative = sorted(name for name, weight in weights.items() if weight < 0 or math.isnan(weight))
    if negative:
        raise PolicyError(
            f"selection.weights: {', '.join(negative)} must be >= 0 (lower-is-better metrics are inverted already)"
        )
    if sum(weights.values()) <= 0:
        raise PolicyError("selection.weights: at least one weight must be greater than 0")
    return weights


@dataclass
class _Assessment:
    summary: EvaluationSummary
    weighted_score: float | None
    failed_fraction: float
    exclusions: list[str] = field(default_factory=list)
    # record_id -> weighted score of that record; None without per-record scores of every weighted metric.
    weighted_records: dict[str, float] | None = None

    @property
    def name(self) -> str:
        return self.summary.model

    @property
    def p95_ms(self) -> float | None:
        return self.summary.latency.p95_ms

    @property
    def cost(self) -> float | None:
        return self.summary.cost.cost_per_1k_prompts_usd


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _missing_metric_reason(summary: EvaluationSummary, metric: str) -> str:
    for result in summary.algorithms:
        if metric in result.scores and result.error:
            return f"metric {metric} is missing: {result.eval_name} failed ({result.error})"
    if metric in summary.metrics:
        return f"metric {metric} has no value"
    return f"metric {metric} was not computed for this model"


def _fmt_fraction(value: float) -> str:
    return f"{value:.1%}"


def _assess(
    summary: EvaluationSummary,
    policy: SelectionPolicy,
    primary_metric: str,
    weights: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> _Assessment:
    exclusions: list[str] = []
    if summary.records_total <= 0:
        failed_fraction = 1.0
        exclusions.append("no records were evaluated")
    else:
        failed_fraction = summary.records_failed / summary.records_total
        if failed_fraction > policy.max_failed_fraction:
            exclusions.append(
                f"{summary.records_failed} of {summary.records_total} records failed "
                f"({_fmt_fraction(failed_fraction)}, limit {_fmt_fraction(policy.max_failed_fraction)})"
            )

    required = [primary_metric, *(name for name, weight in weights.items() if weight > 0 and name != primary_metric)]
    values = {name: _number(summary.metrics.get(name)) for name in required}
    exclusions += [_missing_metric_reason(summary, name) for name in required if values[name] is None]

    primary = values[primary_metric]
    if primary is not None and policy.min_primary_score is not None:
        threshold = policy.min_primary_score
        if higher_is_better[primary_metric] and primary < threshold:
            exclusions.append(f"{primary_metric} {primary:.4f} is below the minimum {threshold:g}")
        elif not higher_is_better[primary_metric] and primary > threshold:
            exclusions.append(f"{primary_metric} {primary:.4f} is above the maximum {threshold:g} (lower is better)")

    if policy.max_p95_latency_ms is not None:
        p95 = _number(summary.latency.p95_ms)
        if p95 is None:
            exclusions.append("p95 latency was not measured, so the latency limit cannot be checked")
        elif p95 > policy.max_p95_latency_ms:
            exclusions.append(f"p95 latency {p95:.0f} ms exceeds the limit {policy.max_p95_latency_ms:g} ms")

    if policy.max_cost_per_1k_prompts_usd is not None:
        cost = _number(summary.cost.cost_per_1k_prompts_usd)
        if cost is None:
            exclusions.append(
                f"cost per 1k prompts is unknown (cost basis: {summary.cost.basis}), cannot check the cost limit"
            )
        elif cost > policy.max_cost_per_1k_prompts_usd:
            exclusions.append(
                f"cost ${cost:.4f} per 1k prompts exceeds the limit ${policy.max_cost_per_1k_prompts_usd:g}"
            )

    weighted_names = [name for name in required if weights.get(name, 0) > 0]
    present = {name: value for name in weighted_names if (value := values[name]) is not None}
    weighted: float | None = None
    if len(present) == len(weighted_names):
        oriented = {name: value if higher_is_better[name] else 1.0 - value for name, value in present.items()}
        weighted = sum(weights[name] * oriented[name] for name in present) / sum(weights[name] for name in present)
    return _Assessment(summary, weighted, failed_fraction, exclusions)


def weighted_record_scores(
    scores: Mapping[str, Mapping[str, float | None]] | None,
    weights: Mapping[str, float],
    higher_is_better: Mapping[str, bool],
) -> dict[str, float] | None:
    """record_id -> weighted score, over the records every weighted metric scored."""
    names = [name for name, weight in weights.items() if weight > 0]
    if scores is None or any(name not in scores for name in names):
        return None
    total = sum(weights[name] for name in names)
    shared = set.intersection(*({key for key, v in scores[name].items() if _number(v) is not None} for name in names))
    out: dict[str, float] = {}
    for key in sorted(shared):
        oriented = {name: float(scores[name][key]) for name in names}  # type: ignore[arg-type]
        out[key] = sum(weights[n] * (v if higher_is_better[n] else 1.0 - v) for n, v in oriented.items()) / total
    return out


def _compare(first: _Assessment, second: _Assessment, confidence: float) -> PairedComparison:
    return paired_comparison(
        WEIGHTED_SCORE,
        first.name,
        first.weighted_records or {},
        second.name,
        second.weighted_records or {},
        higher_is_better=True,
        confidence=confidence,
    )


def _significantly_better(comparison: PairedComparison) -> bool:
    return comparison.significant and comparison.difference is not None and comparison.difference > 0


def _tie_order(candidates: Sequence[_Assessment], tie_break: str) -> list[_Assessment]:
    def key(candidate: _Assessment) -> tuple[float, str]:
        value = _tie_break_value(candidate, tie_break) if tie_break != "name" else None
        return (math.inf if value is None else value, candidate.name)

    return sorted(candidates, key=key)


def _statistical_ties(
    eligible: list[_Assessment], policy: SelectionPolicy
) -> tuple[list[_Assessment], list[_Assessment], dict[str, PairedComparison]]:
    """(the candidates tied with the leader, in tie-break order; the rest; leader-vs-each comparisons)."""
    leader = eligible[0]
    against = {other.name: _compare(leader, other, policy.confidence) for other in eligible[1:]}
    tied = [leader, *(c for c in eligible[1:] if not _significantly_better(against[c.name]))]
    rest = [c for c in eligible if c not in tied]
    return _tie_order(tied, policy.tie_break), rest, against


def _statistical_tie_text(
    winner: _Assessment, tied: Sequence[_Assessment], against: Mapping[str, PairedComparison], tie_break: str
) -> str:
    comparisons = "; ".join(_comparison_words(against[c.name]) for c in tied if c.name in against)
    others = ", ".join(c.name for c in tied if c is not winner)
    choice = (
        f"tie-break {tie_break} chooses {winner.name}"
        + ("" if tie_break == "name" else f" ({_describe_tie_value(winner, tie_break)})")
        + f" over {others}"
    )
    return f"statistical tie, the difference is not significant ({comparisons}); {choice}"


def _comparison_words(comparison: PairedComparison) -> str:
    if comparison.n == 0:
        return f"{comparison.first} vs {comparison.second}: no per-record scores to test"
    return describe_comparison(comparison)


def _tie_break_value(candidate: _Assessment, tie_break: str) -> float | None:
    if tie_break == "lower_cost":
        return _number(candidate.cost)
    if tie_break == "lower_latency":
        return _number(candidate.p95_ms)
    return None


def _rank_key(candidate: _Assessment, tie_break: str) -> tuple[float, float, str]:
    assert candidate.weighted_score is not None  # eligible candidates always have one
    value = _tie_break_value(candidate, tie_break)
    # An unknown cost or latency never wins a tie over a known one.
    return (-round(candidate.weighted_score, TIE_DIGITS), math.inf if value is None else value, candidate.name)


def _describe_tie_value(candidate: _Assessment, tie_break: str) -> str:
    value = _tie_break_value(candidate, tie_break)
    if tie_break == "lower_cost":
        return "unknown cost" if value is None else f"${value:.4f} per 1k prompts"
    return "unmeasured p95" if value is None else f"p95 {value:.0f} ms"


def _tie_explanation(winner: _Assessment, other: _Assessment, tie_break: str) -> str:
    """Why `winner` ranks above `other` when their weighted scores are equal."""
    if tie_break != "name":
        mine, theirs = _tie_break_value(winner, tie_break), _tie_break_value(other, tie_break)
        if mine != theirs:
            return (
                f"tie-break {tie_break}: {winner.name} {_describe_tie_value(winner, tie_break)} "
                f"vs {other.name} {_describe_tie_value(other, tie_break)}"
            )
        return f"tie-break {tie_break} could not separate them, so by name: {winner.name} before {other.name}"
    return f"tie-break by name: {winner.name} before {other.name}"


def _metric_text(summary: EvaluationSummary, weights: Mapping[str, float]) -> str:
    parts = []
    for name, weight in weights.items():
        value = _number(summary.metrics.get(name))
        shown = "missing" if value is None else f"{value:.4f}"
        parts.append(f"{name} {shown}" + ("" if len(weights) == 1 else f" x{weight:g}"))
    return ", ".join(parts)


def decide(
    policy: SelectionPolicy,
    summaries: Sequence[EvaluationSummary],
    *,
    primary_metric: str,
    higher_is_better: Mapping[str, bool],
    record_scores: RecordScores | None = None,
) -> Decision:
    """Apply the policy to every candidate's summary; the result names a reason for each candidate."""
    weights = resolve_weights(policy, primary_metric)
    unknown = sorted(name for name in {primary_metric, *weights} if name not in higher_is_better)
    if unknown:
        known = ", ".join(sorted(higher_is_better)) or "none"
        raise PolicyError(
            f"selection: unknown metric {', '.join(unknown)} (scores of the configured algorithms: {known})"
        )
    if not summaries:
        raise PolicyError("selection: there are no candidates to choose from")

    assessed = [_assess(s, policy, primary_metric, weights, higher_is_better) for s in summaries]
    for candidate in assessed:
        scores = (record_scores or {}).get(candidate.name)
        candidate.weighted_records = weighted_record_scores(scores, weights, higher_is_better)
    eligible = sorted((a for a in assessed if not a.exclusions), key=lambda a: _rank_key(a, policy.tie_break))
    tie_note: str | None = None
    if policy.require_significance and len(eligible) > 1:
        tied, rest, against = _statistical_ties(eligible, policy)
        if len(tied) > 1:
            tie_note = _statistical_tie_text(tied[0], tied, against, policy.tie_break)
            eligible = [*tied, *rest]
        else:
            runner_up = _comparison_words(against[eligible[1].name])
            tie_note = f"significantly better than every other eligible candidate ({runner_up})"
    ranks = {candidate.name: index + 1 for index, candidate in enumerate(eligible)}
    winner = eligible[0] if eligible else None
    comparisons = [_compare(first, second, policy.confidence) for first, second in itertools.pairwise(eligible)]

    verdicts: list[CandidateVerdict] = []
    for candidate in assessed:
        rank = ranks.get(candidate.name)
        if rank is None:
            reasons = [f"excluded: {reason}" for reason in candidate.exclusions]
        else:
            reasons = [_ranking_reason(candidate, rank, eligible, weights, policy.tie_break)]
        verdicts.append(
            CandidateVerdict(
                model=candidate.name,
                weighted_score=candidate.weighted_score,
                metrics=dict(candidate.summary.metrics),
                p95_latency_ms=candidate.p95_ms,
                cost_per_1k_prompts_usd=candidate.cost,
                failed_fraction=candidate.failed_fraction,
                eligible=rank is not None,
                reasons=reasons,
                rank=rank,
                intervals=dict(candidate.summary.intervals),
                weighted_interval=_weighted_interval(candidate),
            )
        )

    if winner is None:
        summary = "; ".join(f"{a.name}: {', '.join(a.exclusions)}" for a in assessed)
        reason = f"no candidate meets the selection policy ({summary})"
    else:
        assert winner.weighted_score is not None
        reason = (
            f"{winner.name} selected with weighted score {winner.weighted_score:.4f} "
            f"({_metric_text(winner.summary, weights)}); {len(eligible)} of {len(assessed)} candidates eligible"
        )
        interval = _weighted_interval(winner)
        if interval is not None and interval.value is not None:
            reason += f"; weighted score interval {_interval_words(interval)}"
        if tie_note is not None:
            reason += f"; {tie_note}"
        elif len(eligible) > 1 and _tied(winner, eligible[1]):
            reason += f"; {_tie_explanation(winner, eligible[1], policy.tie_break)}"
        if comparisons and tie_note is None:
            reason += f"; {_comparison_words(comparisons[0])}"
    return Decision(
        meets_policy=winner is not None,
        winner=winner.name if winner else None,
        reason=reason,
        primary_metric=primary_metric,
        weights=weights,
        candidates=verdicts,
        policy=policy.model_dump(mode="json"),
        comparisons=comparisons,
    )


def _weighted_interval(candidate: _Assessment) -> MetricInterval | None:
    if candidate.weighted_records is None:
        return None
    return mean_interval(list(candidate.weighted_records.values()))


def _interval_words(interval: MetricInterval) -> str:
    assert interval.low is not None and interval.high is not None
    flag = ", small sample" if interval.small_sample else ""
    return f"[{interval.low:.4f}, {interval.high:.4f}] at {interval.confidence:.0%} over {interval.n} records{flag}"


def _tied(first: _Assessment, second: _Assessment) -> bool:
    assert first.weighted_score is not None and second.weighted_score is not None
    return round(first.weighted_score, TIE_DIGITS) == round(second.weighted_score, TIE_DIGITS)


def _ranking_reason(
    candidate: _Assessment, rank: int, eligible: list[_Assessment], weights: Mapping[str, float], tie_break: str
) -> str:
    assert candidate.weighted_score is not None
    head = (
        f"rank {rank} of {len(eligible)} eligible: weighted score {candidate.weighted_score:.4f} "
        f"({_metric_text(candidate.summary, weights)})"
    )
    if rank == 1:
        runner_up = eligible[1] if len(eligible) > 1 else None
        if runner_up is None:
            return f"{head}; the only eligible candidate"
        if _tied(candidate, runner_up):
            return f"{head}; tied with {runner_up.name}, {_tie_explanation(candidate, runner_up, tie_break)}"
        return f"{head}; highest weighted score"
    above = eligible[rank - 2]
    if _tied(candidate, above):
        return f"{head}; tied with {above.name}, {_tie_explanation(above, candidate, tie_break)}"
    assert above.weighted_score is not None
    return f"{head}; {above.weighted_score - candidate.weighted_score:.4f} below {above.name}"
