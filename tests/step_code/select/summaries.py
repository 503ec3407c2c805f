"""Summaries shaped like the evaluate step's summary.json, for the select step's tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from step_code.contract.results import (
    AlgorithmResult,
    CostEstimate,
    EvaluationSummary,
    LatencyStats,
    ModelArtifact,
    TokenStats,
)


def make_summary(
    model: str,
    metrics: dict[str, float | None],
    *,
    p95_ms: float | None = 800.0,
    cost: float | None = 0.5,
    records_total: int = 40,
    records_failed: int = 0,
    algorithm_error: str | None = None,
) -> EvaluationSummary:
    return EvaluationSummary(
        model=model,
        provider="http",
        model_identity=f"http||*||http://127.0.0.1/{model}|",
        dataset_sha256="0" * 64,
        records_total=records_total,
        records_succeeded=records_total - records_failed,
        records_failed=records_failed,
        model_calls=records_total,
        cache_hits=0,
        latency=LatencyStats(p50_ms=None if p95_ms is None else p95_ms / 2, p95_ms=p95_ms),
        tokens=TokenStats(),
        metrics=metrics,
        algorithms=[
            AlgorithmResult(
                algorithm="FactualKnowledge",
                eval_name="factual_knowledge",
                scores={name: value for name, value in metrics.items() if name.startswith("factual")},
                output_path="algorithms/factual_knowledge.json",
                report_path="algorithms/factual_knowledge.html",
                error=algorithm_error,
            )
        ],
        cost=CostEstimate(basis="instance-hours" if cost is not None else "none", cost_per_1k_prompts_usd=cost),
        artifact=ModelArtifact(provider="http"),
        execution_id="test-execution",
    )


def worst_record(prompt: str, reference: str, output: str, score: float) -> dict[str, Any]:
    """One entry of algorithms/<eval_name>_worst_records.json, as the evaluate step writes it."""
    return {
        "record_id": prompt,
        "index": 0,
        "prompt": prompt,
        "model_input": prompt,
        "reference": reference,
        "output": output,
        "category": None,
        "score": score,
        "scores": {"factual_knowledge": score},
    }


def write_evaluation_output(folder: Path, summary: EvaluationSummary, worst: list[dict[str, Any]]) -> Path:
    """A model's evaluation output folder: summary.json and the worst records of its one algorithm."""
    (folder / "algorithms").mkdir(parents=True, exist_ok=True)
    (folder / "summary.json").write_text(summary.model_dump_json(indent=2), encoding="utf-8")
    payload = {"score": "factual_knowledge", "records": worst}
    (folder / "algorithms" / "factual_knowledge_worst_records.json").write_text(json.dumps(payload), encoding="utf-8")
    return folder
