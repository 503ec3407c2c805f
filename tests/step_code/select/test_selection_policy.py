from __future__ import annotations

from typing import Any

import pytest

from step_code.contract.config import SelectionPolicy
from step_code.selection_policy import PolicyError, decide
from tests.step_code.select.summaries import make_summary

DIRECTIONS = {"factual_knowledge": True, "factual_knowledge_quasi_exact": True, "toxicity": False}
FK = "factual_knowledge"


def run(summaries: list[Any], primary: str = FK, **policy: Any) -> Any:
    return decide(SelectionPolicy(**policy), summaries, primary_metric=primary, higher_is_better=DIRECTIONS)


def verdict(decision: Any, model: str) -> Any:
    return next(c for c in decision.candidates if c.model == model)


def test_highest_primary_score_wins_and_every_candidate_has_a_reason() -> None:
    decision = run([make_summary("a", {FK: 0.7}), make_summary("b", {FK: 0.9}), make_summary("c", {FK: 0.8})])

    assert decision.meets_policy and decision.winner == "b"
    assert [c.model for c in decision.candidates] == ["a", "b", "c"]  # config order is kept
    assert {c.model: c.rank for c in decision.candidates} == {"b": 1, "c": 2, "a": 3}
    assert decision.weights == {FK: 1.0}
    assert "highest weighted score" in verdict(decision, "b").reasons[0]
    assert "0.1000 below c" in verdict(decision, "a").reasons[0]
    assert "b selected with weighted score 0.9000" in decision.reason
    assert "3 of 3 candidates eligible" in decision.reason


def test_weights_invert_lower_is_better_metrics() -> None:
    # Without the inversion, "toxic" would win (0.9 + 0.5 > 0.8 + 0.0).
    summaries = [make_summary("toxic", {FK: 0.9, "toxicity": 0.5}), make_summary("clean", {FK: 0.8, "toxicity": 0.0})]

    decision = run(summaries, weights={FK: 1.0, "toxicity": 1.0})

    assert decision.winner == "clean"
    assert verdict(decision, "clean").weighted_score == pytest.approx(0.9)
    assert verdict(decision, "toxic").weighted_score == pytest.approx(0.7)


def test_weights_are_normalised_and_a_zero_weight_metric_is_not_required() -> None:
    summaries = [make_summary("a", {FK: 0.6, "factual_knowledge_quasi_exact": 1.0})]

    decision = run(summaries, weights={FK: 1.0, "factual_knowledge_quasi_exact": 3.0, "toxicity": 0.0})

    assert decision.winner == "a"
    assert verdict(decision, "a").weighted_score == pytest.approx((0.6 + 3.0) / 4)


def test_min_primary_score_excludes_with_the_value_in_the_reason() -> None:
    decision = run([make_summary("weak", {FK: 0.475}), make_summary("good", {FK: 0.9})], min_primary_score=0.5)

    weak = verdict(decision, "weak")
    assert decision.winner == "good"
    assert not weak.eligible and weak.rank is None
    assert weak.reasons == ["excluded: factual_knowledge 0.4750 is below the minimum 0.5"]
    assert weak.weighted_score == pytest.approx(0.475)  # still shown in the comparison


def test_min_primary_score_of_a_lower_is_better_primary_is_a_ceiling() -> None:
    summaries = [make_summary("rude", {"toxicity": 0.3}), make_summary("polite", {"toxicity": 0.05})]

    decision = run(summaries, primary="toxicity", min_primary_score=0.1)

    assert decision.winner == "polite"
    assert "above the maximum 0.1" in verdict(decision, "rude").reasons[0]


def test_latency_limit_excludes_slow_and_unmeasured_candidates() -> None:
    summaries = [
        make_summary("slow", {FK: 0.95}, p95_ms=2500.0),
        make_summary("unmeasured", {FK: 0.95}, p95_ms=None),
        make_summary("fast", {FK: 0.7}, p95_ms=900.0),
    ]

    decision = run(summaries, max_p95_latency_ms=1000)

    assert decision.winner == "fast"
    assert verdict(decision, "slow").reasons == ["excluded: p95 latency 2500 ms exceeds the limit 1000 ms"]
    assert "not measured" in verdict(decision, "unmeasured").reasons[0]


def test_cost_limit_excludes_expensive_and_unknown_cost_candidates() -> None:
    summaries = [
        make_summary("pricey", {FK: 0.95}, cost=3.0),
        make_summary("unknown", {FK: 0.95}, cost=None),
        make_summary("cheap", {FK: 0.7}, cost=0.2),
    ]

    decision = run(summaries, max_cost_per_1k_prompts_usd=1.0)

    assert decision.winner == "cheap"
    assert "cost $3.0000 per 1k prompts exceeds the limit $1" in verdict(decision, "pricey").reasons[0]
    assert "cost basis: none" in verdict(decision, "unknown").reasons[0]


def test_failed_fraction_above_the_limit_excludes() -> None:
    summaries = [make_summary("flaky", {FK: 0.95}, records_failed=3), make_summary("steady", {FK: 0.8})]

    decision = run(summaries, max_failed_fraction=0.05)

    flaky = verdict(decision, "flaky")
    assert decision.winner == "steady"
    assert flaky.failed_fraction == pytest.approx(3 / 40)
    assert flaky.reasons == ["excluded: 3 of 40 records failed (7.5%, limit 5.0%)"]


def test_missing_metric_excludes_instead_of_counting_as_zero() -> None:
    summaries = [
        make_summary("errored", {FK: None}, algorithm_error="ray worker died"),
        make_summary("nan", {FK: float("nan")}),
        make_summary("partial", {FK: 0.9}),
        make_summary("zero", {FK: 0.0, "toxicity": 0.0}),
    ]

    decision = run(summaries, weights={FK: 1.0, "toxicity": 1.0})

    assert decision.winner == "zero"
    assert verdict(decision, "errored").reasons[0] == (
        "excluded: metric factual_knowledge is missing: factual_knowledge failed (ray worker died)"
    )
    assert "excluded: metric factual_knowledge has no value" in verdict(decision, "nan").reasons
    assert verdict(decision, "partial").reasons == ["excluded: metric toxicity was not computed for this model"]
    assert verdict(decision, "partial").weighted_score is None


@pytest.mark.parametrize(
    ("tie_break", "expected", "explanation"),
    [
        ("lower_cost", "cheap-slow", "tie-break lower_cost: cheap-slow $0.5000 per 1k prompts vs a-named $1.0000"),
        ("lower_latency", "pricey-fast", "tie-break lower_latency: pricey-fast p95 300 ms vs a-named p95 600 ms"),
        ("name", "a-named", "tie-break by name: a-named before cheap-slow"),
    ],
)
def test_tie_break_decides_equal_weighted_scores(tie_break: str, expected: str, explanation: str) -> None:
    summaries = [
        make_summary("pricey-fast", {FK: 0.8}, cost=2.0, p95_ms=300.0),
        make_summary("cheap-slow", {FK: 0.8}, cost=0.5, p95_ms=900.0),
        make_summary("a-named", {FK: 0.8}, cost=1.0, p95_ms=600.0),
    ]

    decision = run(summaries, tie_break=tie_break)

    assert decision.winner == expected
    assert explanation in decision.reason
    assert all("tied with" in c.reasons[0] for c in decision.candidates)


def test_unknown_cost_never_wins_a_cost_tie_break() -> None:
    decision = run([make_summary("a", {FK: 0.8}, cost=None), make_summary("b", {FK: 0.8}, cost=4.0)])

    assert decision.winner == "b"
    assert "a unknown cost" in verdict(decision, "a").reasons[0]


def test_equal_tie_break_values_fall_back_to_name() -> None:
    decision = run([make_summary("b", {FK: 0.8}, cost=1.0), make_summary("a", {FK: 0.8}, cost=1.0)])

    assert decision.winner == "a"
    assert "could not separate them, so by name" in decision.reason


def test_nobody_eligible_fails_the_policy_with_every_reason() -> None:
    summaries = [make_summary("a", {FK: 0.3}), make_summary("b", {FK: 0.4}, records_failed=10)]

    decision = run(summaries, min_primary_score=0.5)

    assert not decision.meets_policy and decision.winner is None
    assert decision.reason.startswith("no candidate meets the selection policy")
    assert "a: factual_knowledge 0.3000 is below the minimum 0.5" in decision.reason
    assert "b: 10 of 40 records failed" in decision.reason
    assert all(not c.eligible and c.rank is None for c in decision.candidates)


def test_policy_is_recorded_in_the_decision() -> None:
    decision = run([make_summary("a", {FK: 0.8})], min_primary_score=0.5, tie_break="name")

    assert decision.policy["min_primary_score"] == 0.5 and decision.policy["tie_break"] == "name"
    assert "the only eligible candidate" in decision.candidates[0].reasons[0]


@pytest.mark.parametrize(
    ("policy", "primary", "message"),
    [
        ({"weights": {"bleu": 1.0}}, FK, "unknown metric bleu"),
        ({}, "rouge", "unknown metric rouge"),
        ({"weights": {FK: -1.0}}, FK, "factual_knowledge must be >= 0"),
        ({"weights": {FK: 0.0}}, FK, "at least one weight must be greater than 0"),
    ],
)
def test_unusable_policies_raise_a_clear_error(policy: dict[str, Any], primary: str, message: str) -> None:
    with pytest.raises(PolicyError, match=message):
        run([make_summary("a", {FK: 0.8})], primary=primary, **policy)


def _binary(right: int, total: int = 40, offset: int = 0) -> dict[str, float]:
    """Records r0..r{total-1}; records offset..offset+right-1 are right."""
    return {f"r{i}": 1.0 if offset <= i < offset + right else 0.0 for i in range(total)}


def _scores(**models: dict[str, float]) -> dict[str, dict[str, dict[str, float | None]]]:
    return {name: {FK: dict(values)} for name, values in models.items()}


def test_intervals_and_the_paired_comparison_are_in_the_decision() -> None:
    summaries = [make_summary("zeta", {FK: 0.925}), make_summary("alpha", {FK: 0.85})]
    records = _scores(zeta=_binary(37), alpha=_binary(34))

    decision = decide(
        SelectionPolicy(), summaries, primary_metric=FK, higher_is_better=DIRECTIONS, record_scores=records
    )

    zeta = verdict(decision, "zeta")
    assert zeta.weighted_interval is not None and zeta.weighted_interval.method == "clopper-pearson"
    assert zeta.weighted_interval.low == pytest.approx(0.7961, abs=1e-4) and zeta.weighted_interval.n == 40
    [comparison] = decision.comparisons
    assert (comparison.first, comparison.second, comparison.test) == ("zeta", "alpha", "mcnemar-exact")
    # 3 discordant pairs, all for zeta: p = 2 / 2^3.
    assert comparison.p_value == pytest.approx(0.25) and not comparison.significant
    assert "[0.7961, 0.9843] at 95% over 40 records" in decision.reason
    assert "not significant at 95%" in decision.reason
    assert decision.winner == "zeta"  # significance is not required by default


def test_a_statistical_tie_falls_to_the_tie_break_and_the_decision_says_so() -> None:
    summaries = [make_summary("zeta", {FK: 0.925}), make_summary("alpha", {FK: 0.85})]
    records = _scores(zeta=_binary(37), alpha=_binary(34))

    decision = decide(
        SelectionPolicy(require_significance=True, tie_break="name"),
        summaries,
        primary_metric=FK,
        higher_is_better=DIRECTIONS,
        record_scores=records,
    )

    assert decision.winner == "alpha"
    assert "statistical tie, the difference is not significant" in decision.reason
    assert "tie-break name chooses alpha over zeta" in decision.reason
    assert verdict(decision, "zeta").rank == 2


def test_a_significant_winner_keeps_its_place_under_require_significance() -> None:
    summaries = [make_summary("zeta", {FK: 29 / 40}), make_summary("alpha", {FK: 21 / 40})]
    # zeta: r0..r28 right; alpha: r0..r19 and r29 right -> 9 pairs only zeta, 1 only alpha, p = 22/1024.
    alpha = _binary(20) | {"r29": 1.0}
    records = _scores(zeta=_binary(29), alpha=alpha)

    decision = decide(
        SelectionPolicy(require_significance=True, tie_break="name"),
        summaries,
        primary_metric=FK,
        higher_is_better=DIRECTIONS,
        record_scores=records,
    )

    assert decision.winner == "zeta"
    assert "significantly better than every other eligible candidate" in decision.reason
    assert decision.comparisons[0].p_value == pytest.approx(22 / 1024)


def test_without_record_scores_significance_cannot_be_shown_so_it_is_a_tie() -> None:
    summaries = [make_summary("zeta", {FK: 0.925}), make_summary("alpha", {FK: 0.85})]

    decision = run(summaries, require_significance=True, tie_break="name")

    assert decision.winner == "alpha"
    assert "zeta vs alpha: no per-record scores to test" in decision.reason
