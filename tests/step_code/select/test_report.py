from __future__ import annotations

import re
from pathlib import Path

import pytest

from step_code.aws_resources import ControlPlaneError
from step_code.contract.config import SelectionPolicy
from step_code.report import ListedRecord, ModelEvidence, ReportContext, load_model_evidence, render_report
from step_code.selection_policy import decide
from tests.step_code.select.summaries import make_summary, worst_record, write_evaluation_output

DIRECTIONS = {"factual_knowledge": True}
CONTEXT = ReportContext("demo", "abc123", "trivia", DIRECTIONS)


def _record(prompt: str, output: str, score: float) -> ListedRecord:
    return ListedRecord("factual_knowledge", "factual_knowledge", score, prompt, "ref", output)


def _report(evidence: list[ModelEvidence], **policy: float) -> str:
    decision = decide(
        SelectionPolicy(**policy),
        [e.summary for e in evidence],
        primary_metric="factual_knowledge",
        higher_is_better=DIRECTIONS,
    )
    return render_report(decision, evidence, CONTEXT)


def test_report_is_self_contained() -> None:
    html = _report([ModelEvidence(make_summary("a", {"factual_knowledge": 0.8}), [_record("p", "o", 0.0)])])

    assert html.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|\bsrc=|\bhref=|@import|url\(", html)
    # The only URL is the SVG namespace, which browsers never fetch.
    assert set(re.findall(r"https?://[^\"' ]+", html)) == {"http://www.w3.org/2000/svg"}


def test_report_shows_latency_cost_limits_and_every_model() -> None:
    evidence = [
        ModelEvidence(make_summary("fast", {"factual_knowledge": 0.7}, p95_ms=400.0, cost=0.25), []),
        ModelEvidence(make_summary("slow", {"factual_knowledge": 0.9}, p95_ms=1800.0, cost=1.5), []),
    ]

    html = _report(evidence, max_p95_latency_ms=1000, max_cost_per_1k_prompts_usd=1.0)

    assert "Winner: fast" in html
    assert "1,800 ms" in html and "200 ms" in html  # p95 and p50 bars of "slow" and "fast"
    assert "p95 limit 1000 ms" in html and "limit $1" in html
    assert "excluded: p95 latency 1800 ms exceeds the limit 1000 ms" in html
    assert html.count('class="chart"') == 4  # weighted score, factual_knowledge, latency, cost


def test_unmeasured_latency_and_cost_are_said_not_drawn() -> None:
    html = _report([ModelEvidence(make_summary("rec", {"factual_knowledge": 0.8}, p95_ms=None, cost=None), [])])

    assert "No model call was timed" in html and "No cost could be estimated" in html
    assert html.count('class="chart"') == 2


def test_worst_records_leave_out_perfect_scores() -> None:
    records = [_record("missed <one>", "wrong", 0.0), _record("fine", "right", 1.0), _record("also fine", "ok", 1.0)]

    html = _report([ModelEvidence(make_summary("m", {"factual_knowledge": 0.5}), records)])

    assert "missed &lt;one&gt;" in html
    assert "also fine" not in html
    assert "2 more of the listed records have a perfect score." in html


def test_a_model_without_a_verdict_is_refused() -> None:
    decision = decide(
        SelectionPolicy(),
        [make_summary("a", {"factual_knowledge": 0.5})],
        primary_metric="factual_knowledge",
        higher_is_better=DIRECTIONS,
    )
    stray = ModelEvidence(make_summary("b", {"factual_knowledge": 0.5}), [])

    with pytest.raises(ValueError, match="no verdict for b"):
        render_report(decision, [stray], CONTEXT)


def test_evidence_is_read_from_the_evaluation_output(tmp_path: Path) -> None:
    folder = write_evaluation_output(
        tmp_path / "m",
        make_summary("m", {"factual_knowledge": 0.5}),
        [worst_record("What is the capital of Australia?", "Canberra", "Sydney", 0.0)],
    )

    evidence = load_model_evidence(folder, "m")

    assert evidence.summary.model == "m"
    assert evidence.worst_records == [
        ListedRecord(
            "factual_knowledge", "factual_knowledge", 0.0, "What is the capital of Australia?", "Canberra", "Sydney"
        )
    ]


def test_evidence_of_another_model_is_refused(tmp_path: Path) -> None:
    folder = write_evaluation_output(tmp_path / "m", make_summary("other", {"factual_knowledge": 0.5}), [])

    with pytest.raises(ControlPlaneError, match="model: expected 'm', found 'other'"):
        load_model_evidence(folder, "m")
