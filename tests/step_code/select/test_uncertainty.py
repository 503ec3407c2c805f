"""The intervals and paired tests against cases whose answer is known independently of scipy."""

from __future__ import annotations

import math
import random

import pytest

from step_code.uncertainty import PERMUTATION_MAX_RECORDS, SMALL_SAMPLE, mcnemar_exact, mean_interval, paired_comparison


def test_binary_scores_get_the_clopper_pearson_interval_of_a_known_proportion() -> None:
    # 37 of 40: the exact 95% interval is [0.7961, 0.9843] (Clopper & Pearson; the beta quantiles of
    # Beta(37, 4) at 0.025 and Beta(38, 3) at 0.975).
    interval = mean_interval([1.0] * 37 + [0.0] * 3)

    assert interval.method == "clopper-pearson"
    assert interval.value == pytest.approx(0.925)
    assert interval.low == pytest.approx(0.7961, abs=1e-4)
    assert interval.high == pytest.approx(0.9843, abs=1e-4)
    assert interval.n == 40 and not interval.small_sample


def test_all_successes_give_the_rule_of_three_like_exact_bound() -> None:
    # 0 failures in n: the exact lower bound is (alpha/2)^(1/n).
    interval = mean_interval([1.0] * 50)

    assert interval.high == pytest.approx(1.0)
    assert interval.low == pytest.approx(0.025 ** (1 / 50), abs=1e-9)


def test_continuous_scores_get_a_seeded_bootstrap_that_covers_the_mean() -> None:
    rng = random.Random(7)
    values = [rng.random() for _ in range(400)]

    first, second = mean_interval(values), mean_interval(values)

    assert first.method == "bootstrap" and first == second  # seeded: the same records, the same interval
    assert first.low is not None and first.high is not None
    assert first.low < first.value < first.high  # type: ignore[operator]
    # The normal approximation of a uniform mean's interval: +-1.96 * sqrt(1/12 / n).
    half_width = 1.96 * math.sqrt(1 / 12 / len(values))
    assert first.high - first.low == pytest.approx(2 * half_width, rel=0.15)


def test_small_samples_are_flagged_and_missing_scores_are_not_records() -> None:
    interval = mean_interval([1.0, 0.0, None, float("nan")] * 5)

    assert interval.n == 10 and interval.small_sample and SMALL_SAMPLE > 10
    assert mean_interval([]).method == "none"


def test_mcnemar_exact_on_discordant_pairs() -> None:
    # 9 pairs only the first got right, 1 only the second: P(X <= 1 or X >= 9 | Bin(10, 1/2)) = 22/1024.
    assert mcnemar_exact(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact(0, 0) == 1.0


def test_paired_binary_comparison_uses_mcnemar_on_the_shared_records() -> None:
    # 20 records both right, 9 only A right, 1 only B right, 10 both wrong; C has an extra record B lacks.
    a = {f"r{i}": 1.0 for i in range(29)} | {f"r{i}": 0.0 for i in range(29, 40)}
    b = {f"r{i}": 1.0 for i in range(20)} | {f"r{i}": 0.0 for i in range(20, 29)} | {"r29": 1.0}
    b |= {f"r{i}": 0.0 for i in range(30, 40)} | {"only-b": 1.0}

    comparison = paired_comparison("fk", "a", a, "b", b, higher_is_better=True)

    assert comparison.test == "mcnemar-exact" and comparison.n == 40
    assert comparison.difference == pytest.approx(8 / 40)
    assert comparison.p_value == pytest.approx(22 / 1024)
    assert comparison.significant
    assert comparison.low is not None and comparison.high is not None and 0 < comparison.low < 0.2 < comparison.high


def test_paired_continuous_comparison_detects_a_constant_shift_and_not_noise() -> None:
    rng = random.Random(3)
    base = {f"r{i}": rng.random() for i in range(200)}
    shifted = {key: value + 0.05 for key, value in base.items()}
    noisy = {key: value + rng.choice((-0.05, 0.05)) for key, value in base.items()}

    shift = paired_comparison("rouge", "shifted", shifted, "base", base, higher_is_better=True)
    noise = paired_comparison("rouge", "noisy", noisy, "base", base, higher_is_better=True)

    assert shift.test == "paired-permutation"
    assert shift.difference == pytest.approx(0.05) and shift.low == pytest.approx(0.05)
    assert shift.p_value is not None and shift.p_value < 0.001 and shift.significant
    # Random +-0.05 per record: the sign-flip null is true, so the test must not call it significant.
    assert noise.p_value is not None and noise.p_value > 0.05 and not noise.significant


def test_no_shared_records_is_no_comparison() -> None:
    comparison = paired_comparison("fk", "a", {"x": 1.0}, "b", {"y": 1.0}, higher_is_better=True)

    assert comparison.n == 0 and comparison.difference is None and not comparison.significant


def test_above_the_permutation_limit_the_paired_t_test_agrees_with_the_permutation_test() -> None:
    rng = random.Random(5)
    size = PERMUTATION_MAX_RECORDS + 1
    base = {f"r{i}": rng.random() for i in range(size)}
    other = {key: value + rng.gauss(0.004, 0.1) for key, value in base.items()}
    below = dict(list(other.items())[:PERMUTATION_MAX_RECORDS])

    large = paired_comparison("rouge", "other", other, "base", base, higher_is_better=True)
    small = paired_comparison("rouge", "other", below, "base", base, higher_is_better=True)

    assert (large.test, small.test) == ("paired-t", "paired-permutation")
    assert large.p_value == pytest.approx(small.p_value, abs=0.03)
