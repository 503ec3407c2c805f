"""The SageMaker Model Card of a registered winner, linked to its model package.

The content follows SageMaker's model card JSON schema: the model overview, the model package it
describes (`model_package_details.model_package_arn`, which links the two), the intended use from the
config's pipeline description, and one evaluation per algorithm with every score, its interval and the
records it rests on, the datasets (name, location, sha256, rows), the algorithm's config fields and its
judge models; the additional information carries the comparison with the approved champion and the
decision in words. The card is created, or updated when it exists (a retried register step).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from step_code import offline_assets
from step_code.aws_resources import describe_or_none
from step_code.contract.config import Config
from step_code.contract.results import Decision, EvaluationSummary, MetricInterval, metric_names

# SageMaker's limits (CreateModelCard and the model card JSON schema).
MAX_NAME = 63
MAX_EVALUATION_NAME = 63
MAX_OBSERVATION = 2096
MAX_TEXT = 2048
MAX_DATASETS = 10
MODEL_CARD_STATUS = "Draft"
_NAME_DISALLOWED = re.compile(r"[^a-zA-Z0-9-]+")


def card_name(group: str, version: int) -> str:
    """`<group>-v<version>`, within the 63 characters of a model card name."""
    suffix = f"-v{version}"
    base = _NAME_DISALLOWED.sub("-", group).strip("-")[: MAX_NAME - len(suffix)].rstrip("-")
    return f"{base}{suffix}"


def _clip(text: str, limit: int = MAX_TEXT) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _interval_note(interval: MetricInterval | None) -> str:
    if interval is None or interval.low is None or interval.high is None:
        return "no interval: not a mean of per-record scores"
    flag = "; small sample" if interval.small_sample else ""
    return (
        f"{interval.confidence:.0%} interval [{interval.low:.4f}, {interval.high:.4f}] over {interval.n} records "
        f"({interval.method}{flag})"
    )


def _judges(config: Config) -> dict[str, list[str]]:
    return {
        item.algorithm: [
            asset.description
            for asset in offline_assets.required_assets(item.algorithm, item.config_fields())
            if asset.judge is not None
        ]
        for item in config.algorithms
    }


def card_content(
    config: Config, decision: Decision, summary: EvaluationSummary, *, model_package_arn: str, execution_id: str
) -> dict[str, Any]:
    """The model card's content, as SageMaker's model card JSON schema lays it out."""
    names = metric_names(summary.algorithms)
    dataset = (
        f"{config.dataset.dataset_name}: {config.dataset.input_data_location} sha256 {summary.dataset_sha256}, "
        f"{summary.records_total} rows"
    )
    judges = _judges(config)
    configured = {item.algorithm: item for item in config.algorithms}
    evaluations = []
    for result in summary.algorithms:
        item = configured.get(result.algorithm)
        metric_data = []
        for score, value in result.scores.items():
            if value is None:
                continue
            name = names[(result.eval_name, score)]
            metric_data.append(
                {"name": name, "type": "number", "value": value, "notes": _interval_note(summary.intervals.get(name))}
            )
        metadata = {
            "algorithm": result.algorithm,
            "execution_id": execution_id,
            "records": str(summary.records_total),
            "records_failed": str(summary.records_failed),
            "config": json.dumps(item.config_fields() if item else {}, sort_keys=True),
            "judge_models": ", ".join(judges.get(result.algorithm, [])) or "none",
        }
        evaluations.append(
            {
                "name": _clip(f"{result.eval_name}", MAX_EVALUATION_NAME),
                "evaluation_observation": _clip(result.error or decision.reason, MAX_OBSERVATION),
                "datasets": [_clip(dataset, 1024)][:MAX_DATASETS],
                "metadata": metadata,
                "metric_groups": [{"name": result.eval_name, "metric_data": metric_data}] if metric_data else [],
            }
        )
    champion = decision.champion
    artifact = summary.artifact
    return {
        "model_overview": {
            "model_description": _clip(
                f"{summary.model}: {artifact.model_id or summary.provider}"
                f"{' (fine-tuned)' if artifact.finetuned else ''}, selected by {config.pipeline.name}."
            ),
            "model_creator": "evalops",
            "algorithm_type": "foundation model",
            "model_artifact": [url for url in (artifact.model_data_url,) if url],
        },
        "model_package_details": {"model_package_arn": model_package_arn},
        "intended_uses": {
            "purpose_of_model": _clip(config.pipeline.description or config.pipeline.name),
            "intended_uses": _clip(config.model_registry.model_package_group_description or config.pipeline.name),
        },
        "evaluation_details": evaluations,
        "additional_information": {
            "caveats_and_recommendations": _clip(
                "Scores are means over the evaluation records; each comes with its interval and record count. "
                + ("" if champion is None else champion.detail)
            ),
            "custom_details": {
                "decision": _clip(decision.reason),
                "primary_metric": decision.primary_metric,
                "champion": "none" if champion is None else _clip(champion.status),
                "weights": json.dumps(decision.weights, sort_keys=True),
            },
        },
    }


def upsert_in_sagemaker(client: Any, name: str, content: dict[str, Any]) -> str:
    """Create the card, or update it when a retried step finds it; returns its ARN."""
    body = json.dumps(content, sort_keys=True)
    existing = describe_or_none(client.describe_model_card, ModelCardName=name)
    if existing is None:
        arn: str = client.create_model_card(ModelCardName=name, Content=body, ModelCardStatus=MODEL_CARD_STATUS)[
            "ModelCardArn"
        ]
        return arn
    client.update_model_card(ModelCardName=name, Content=body, ModelCardStatus=MODEL_CARD_STATUS)
    return str(existing["ModelCardArn"])


def write_in_directory(registry_dir: Path, group: str, version: int, content: dict[str, Any]) -> str:
    """The local registry's card: `<registry-dir>/<group>/model-cards/<version>.json`."""
    path = registry_dir / group / "model-cards" / f"{version}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return path.resolve().as_uri()
