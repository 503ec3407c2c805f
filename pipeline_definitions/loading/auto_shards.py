"""`shards: auto` (pipeline or per model) becomes a shard count from the local catalog's prompt count.

It is resolved before anything else reads the config, so validation, the plan, the definition and every step
(config.json) see a number. A catalog on S3 is not read offline: there auto is refused and a number asked for.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from pipeline_definitions.loading.catalog_shape import catalog_record_count, catalog_shape_problem
from pipeline_definitions.loading.validation import Finding, Loc
from step_code.contract.config import Config
from step_code.contract.locations import is_s3
from step_code.contract.sharding import AUTO_SHARDS, AUTO_SHARDS_RULE, MAX_SHARDS, auto_shard_count

# Stands in for an auto that could not be resolved, so the other checks still run (the config is refused anyway).
_UNRESOLVED = 1


@dataclass
class AutoShards:
    config: Config
    findings: list[Finding] = field(default_factory=list)
    # How auto was resolved, for `evalops plan`; None without auto.
    note: str | None = None


def resolve_auto_shards(config: Config, dataset_location: str, dataset_file: Path | None) -> AutoShards:
    """`dataset_file` is the local catalog file the dataset location names, None when there is none."""
    autos: list[Loc] = [("pipeline", "shards")] if config.pipeline.shards == AUTO_SHARDS else []
    autos += [
        ("models", index, "evaluation_config", "shards")
        for index, model in enumerate(config.models)
        if model.evaluation_config.shards == AUTO_SHARDS
    ]
    if not autos:
        return AutoShards(config)
    result = AutoShards(config)
    records = _records(config, dataset_file)
    if records is None:
        if is_s3(dataset_location):
            result.findings = [
                Finding(
                    loc,
                    f"auto needs the prompt count, and the catalog {dataset_location} is on S3 (not read offline): "
                    f"give a number from 1 to {MAX_SHARDS}",
                )
                for loc in autos
            ]
        # A local catalog that is missing or malformed is reported by the location and shape checks.
        count = _UNRESOLVED
    else:
        count = auto_shard_count(records)
        result.note = f"shards: auto -> {count} ({records:,} prompts; {AUTO_SHARDS_RULE})"
    result.config = _with_count(config, count)
    return result


def _records(config: Config, dataset_file: Path | None) -> int | None:
    mime_type = config.dataset.dataset_mime_type
    if dataset_file is None or catalog_shape_problem(dataset_file, mime_type) is not None:
        return None
    return catalog_record_count(dataset_file, mime_type)


def _with_count(config: Config, count: int) -> Config:
    models = [
        model
        if model.evaluation_config.shards != AUTO_SHARDS
        else model.model_copy(
            update={"evaluation_config": model.evaluation_config.model_copy(update={"shards": count})}
        )
        for model in config.models
    ]
    pipeline = config.pipeline
    if pipeline.shards == AUTO_SHARDS:
        pipeline = pipeline.model_copy(update={"shards": count})
    return config.model_copy(update={"pipeline": pipeline, "models": models})
