"""Confidence intervals on scores and paired comparisons of two candidates on the same records.

Every dataset-level score this project reports that fmeval computes as a mean of per-record scores gets
an interval over those records:

- a binary score (every record 0 or 1, e.g. factual_knowledge, exact_match) gets the Clopper-Pearson
  interval (`scipy.stats.binomtest(...).proportion_ci(method="exact")`). It is the exact interval: its
  coverage is at least the stated confidence for every n and p, where Wilson's is only near it on average
  and dips below it for some small n. A gate a reviewer must defend should err on the side of "not shown";
- any other score gets a seeded percentile bootstrap of the mean (`scipy.stats.bootstrap`), so the same
  records give the same interval on every run and in both engines. Percentile rather than BCa: BCa's
  jackknife is quadratic in the records, and at the sizes where the two differ the interval is flagged.

An interval resting on fewer than `SMALL_SAMPLE` records is flagged: below that the bootstrap's
percentile interval undercovers and the exact interval is wide enough to make most gaps meaningless.

Two candidates answered the same records, so they are compared on the per-record differences: the mean
difference with a paired bootstrap interval, and a paired test — McNemar's exact test (a binomial test
on the discordant pairs) when both scores are binary, a paired sign-flip permutation test of the mean
difference otherwise. scipy's permutation test costs records x resamples (about 17 s for 10,000 records
and 9,999 resamples on this project's 2-core machine), so above `PERMUTATION_MAX_RECORDS` shared records
the paired t-test (`scipy.stats.ttest_rel`) takes its place: the permutation distribution of a mean
difference converges to the same normal law, and at that size the two p-values agree.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Literal

from step_code.contract.results import MetricInterval, PairedComparison

DEFAULT_CONFIDENCE = 0.95
SMALL_SAMPLE = 30
SEED = 20240607
BOOTSTRAP_RESAMPLES = 2000
PERMUTATION_RESAMPLES = 2000
PERMUTATION_MAX_RECORDS = 5000
# Resamples held in memory at once: bounds the bootstrap's memory to BATCH x records floats.
BATCH = 50


def is_binary(values: Sequence[float]) -> bool:
    return bool(values) and all(value in (0.0, 1.0) for value in values)


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]


def mean_interval(values: Sequence[float | None], confidence: float = DEFAULT_CONFIDENCE) -> MetricInterval:
    """The interval of the mean of `values` (None and NaN are not records of this score)."""
    import numpy as np
    from scipy import stats

    scores = _finite(values)
    n = len(scores)
    if n == 0:
        return MetricInterval(value=None, low=None, high=None, n=0, method="none", confidence=confidence)
    mean = float(np.mean(scores))
    small = n < SMALL_SAMPLE
    if is_binary(scores):
        successes = int(sum(scores))
        ci = stats.binomtest(successes, n).proportion_ci(confidence_level=confidence, method="exact")
        return MetricInterval(
            value=mean,
            low=float(ci.low),
            high=float(ci.high),
            n=n,
            method="clopper-pearson",
            confidence=confidence,
            small_sample=small,
        )
    low, high = _bootstrap_mean_interval(scores, confidence)
    return MetricInterval(
        value=mean, low=low, high=high, n=n, method="bootstrap", confidence=confidence, small_sample=small
    )


def _bootstrap_mean_interval(values: Sequence[float], confidence: float) -> tuple[float, float]:
    """Seeded percentile bootstrap of the mean, so the same records always give the same interval."""
    import numpy as np
    from scipy import stats

    if len(set(values)) <= 1:
        # Every resample has the same mean: the interval is that value (scipy warns and gives NaN).
        value = values[0] if values else 0.0
        return value, value
    result = stats.bootstrap(
        (np.asarray(values),),
        np.mean,
        n_resamples=BOOTSTRAP_RESAMPLES,
        batch=BATCH,
        vectorized=True,
        confidence_level=confidence,
        method="percentile",
        rng=np.random.default_rng(SEED),
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def mcnemar_exact(first_only: int, second_only: int) -> float:
    """Two-sided exact McNemar p-value: the discordant pairs are Binomial(b + c, 1/2) under no difference."""
    from scipy import stats

    discordant = first_only + second_only
    if discordant == 0:
        return 1.0
    return float(stats.binomtest(first_only, discordant, 0.5).pvalue)


def _paired_t_p_value(differences: Sequence[float]) -> float:
    import numpy as np
    from scipy import stats

    if len(set(differences)) <= 1:
        return 1.0 if not any(differences) else 0.0
    values = np.asarray(differences)
    return float(stats.ttest_rel(values, np.zeros(len(values))).pvalue)


def _permutation_p_value(differences: Sequence[float]) -> float:
    """Two-sided paired permutation test of mean difference 0: each pair's sign flips under the null."""
    import numpy as np
    from scipy import stats

    if not any(differences):
        return 1.0
    zeros = np.zeros(len(differences))
    result = stats.permutation_test(
        (np.asarray(differences), zeros),
        lambda x, y, axis: np.mean(x - y, axis=axis),
        permutation_type="samples",
        vectorized=True,
        n_resamples=PERMUTATION_RESAMPLES,
        batch=BATCH * 10,
        alternative="two-sided",
        rng=np.random.default_rng(SEED),
    )
    return float(result.pvalue)


def paired_comparison(
    metric: str,
    first: str,
    first_scores: Mapping[str, float | None],
    second: str,
    second_scores: Mapping[str, float | None],
    *,
    higher_is_better: bool,
    confidence: float = DEFAULT_CONFIDENCE,
) -> PairedComparison:
    """`first` against `second` on the records both have a score for; difference = first - second, raw
    (not oriented), so `better` says which way it points."""
    import numpy as np

    shared = [
        key
        for key, value in first_scores.items()
        if _finite([value]) and key in second_scores and _finite([second_scores[key]])
    ]
    a = [float(first_scores[key]) for key in shared]  # type: ignore[arg-type]
    b = [float(second_scores[key]) for key in shared]  # type: ignore[arg-type]
    n = len(shared)
    if n == 0:
        return PairedComparison(
            metric=metric,
            first=first,
            second=second,
            n=0,
            difference=None,
            low=None,
            high=None,
            test="none",
            p_value=None,
            significant=False,
            confidence=confidence,
            higher_is_better=higher_is_better,
            small_sample=True,
        )
    differences = [x - y for x, y in zip(a, b, strict=True)]
    low, high = _bootstrap_mean_interval(differences, confidence)
    test: Literal["mcnemar-exact", "paired-permutation", "paired-t"]
    if is_binary(a) and is_binary(b):
        first_only = sum(1 for x, y in zip(a, b, strict=True) if x == 1.0 and y == 0.0)
        second_only = sum(1 for x, y in zip(a, b, strict=True) if x == 0.0 and y == 1.0)
        p_value, test = mcnemar_exact(first_only, second_only), "mcnemar-exact"
    elif n <= PERMUTATION_MAX_RECORDS:
        p_value, test = _permutation_p_value(differences), "paired-permutation"
    else:
        p_value, test = _paired_t_p_value(differences), "paired-t"
    return PairedComparison(
        metric=metric,
        first=first,
        second=second,
        n=n,
        difference=float(np.mean(differences)),
        low=low,
        high=high,
        test=test,
        p_value=p_value,
        significant=p_value < 1.0 - confidence,
        confidence=confidence,
        higher_is_better=higher_is_better,
        small_sample=n < SMALL_SAMPLE,
    )


def describe_interval(interval: MetricInterval) -> str:
    """`0.9250 [0.7961, 0.9843] (n=40, exact)`, the form the decision and the report use."""
    if interval.value is None or interval.low is None or interval.high is None:
        return "no interval (no per-record scores)"
    method = "exact" if interval.method == "clopper-pearson" else interval.method
    flag = ", small sample" if interval.small_sample else ""
    return f"{interval.value:.4f} [{interval.low:.4f}, {interval.high:.4f}] (n={interval.n}, {method}{flag})"


def describe_comparison(comparison: PairedComparison) -> str:
    if comparison.difference is None or comparison.low is None or comparison.high is None:
        return f"{comparison.first} vs {comparison.second}: no shared scored records to compare"
    p_value = "n/a" if comparison.p_value is None else f"{comparison.p_value:.3g}"
    verdict = "significant" if comparison.significant else "not significant"
    level = f"{comparison.confidence:.0%}"
    return (
        f"{comparison.first} - {comparison.second} on {comparison.metric}: {comparison.difference:+.4f} "
        f"[{comparison.low:+.4f}, {comparison.high:+.4f}] over {comparison.n} shared records, "
        f"{comparison.test} p={p_value} ({verdict} at {level})"
    )
