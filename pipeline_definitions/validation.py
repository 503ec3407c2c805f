"""Checks that need more than one field, or the algorithm table; run by the loader after the model validates.

Each finding names the key path it is about; the loader turns it into `file:line: key.path: message`.

Endpoint names: a deployed endpoint is named `run_scoped_name(<resource prefix>, resource_base(...),
<execution id>)`. When the base does not fit in 63 characters with the prefix and the execution suffix,
`run_scoped_name` cuts it and appends a hash of the whole base, which is fine, so length alone is never
rejected. What is rejected is two models ending up with the same run-scoped name (the second CreateEndpoint
would fail mid-run), checked with the longest resource prefix we allow.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from pipeline_definitions import algorithms
from pipeline_definitions.config import (
    INSTANCE_TYPE_RE,
    AlgorithmConfig,
    Config,
    ModelConfig,
    PipelineSettings,
    PricingConfig,
    SelectionPolicy,
)
from pipeline_definitions.naming import run_scoped_name
from pipeline_definitions.plan import EvaluationPlan, build_plan

Loc = tuple[str | int, ...]

# `{prefix}-{environment}-` as deploy/finetune receive it in EVALOPS_RESOURCE_PREFIX, at its longest.
WORST_CASE_RESOURCE_PREFIX = "p" * 23 + "-"
WORST_CASE_EXECUTION_ID = "e" * 12
STEP_NAME_RE = re.compile(r"^[A-Za-z0-9\-_]*$")
MAX_STEP_NAME_LENGTH = 64


def resource_base(config: Config, model: ModelConfig) -> str:
    """What the deploy and finetune steps name a model's resources after (step_code/aws_resources.py)."""
    return _resource_base(config.pipeline.name, model)


def _resource_base(pipeline_name: str, model: ModelConfig) -> str:
    return model.endpoint_name or f"{pipeline_name}-{model.name}"


@dataclass(frozen=True)
class Finding:
    loc: Loc
    message: str
    # Set when the line is not that of the key at `loc` (a repeated key: where it repeats).
    line: int | None = None


@dataclass(frozen=True)
class Sections:
    """The top-level sections that validated on their own (None: invalid or absent)."""

    pipeline: PipelineSettings | None = None
    models: list[ModelConfig] | None = None
    algorithms: list[AlgorithmConfig] | None = None
    selection: SelectionPolicy | None = None
    pricing: PricingConfig | None = None


def validate(config: Config) -> list[Finding]:
    sections = Sections(config.pipeline, config.models, config.algorithms, config.selection, config.pricing)
    return validate_sections(sections) + step_name_findings(config, build_plan(config))


def validate_sections(sections: Sections) -> list[Finding]:
    """The checks each needing only some sections, so a config with errors elsewhere still gets them."""
    findings: list[Finding] = []
    if sections.algorithms is not None:
        findings += _algorithm_findings(sections.algorithms, sections.models)
        # With an unknown algorithm the score list is incomplete, and every selection metric would look wrong.
        known = all(item.algorithm in algorithms.algorithm_names() for item in sections.algorithms)
        if known and sections.selection is not None:
            findings += _selection_findings(sections.algorithms, sections.selection)
    if sections.pipeline is not None and sections.models is not None:
        findings += _endpoint_findings(sections.pipeline.name, sections.models)
    if sections.pricing is not None:
        findings += _pricing_findings(sections.pricing)
    return findings


def _algorithm_findings(configured: list[AlgorithmConfig], models: list[ModelConfig] | None) -> list[Finding]:
    findings: list[Finding] = []
    recorded = [(i, m.name) for i, m in enumerate(models or []) if m.model_provider == "recorded"]
    reported_by: dict[str, int] = {}
    for index, item in enumerate(configured):
        loc: Loc = ("algorithms", index)
        try:
            spec = algorithms.lookup(item.algorithm)
        except algorithms.UnknownAlgorithmError as exc:
            findings.append(Finding((*loc, "algorithm"), str(exc)))
            continue
        if item.module is not None and item.module != spec.module:
            findings.append(
                Finding(
                    (*loc, "module"),
                    f"{item.module!r} is not the module of {spec.algorithm} (expected {spec.module!r})",
                )
            )
        if item.config is not None and item.config != spec.config_class:
            findings.append(
                Finding(
                    (*loc, "config"),
                    f"{item.config!r} is not the config class of {spec.algorithm} (expected {spec.config_class!r})",
                )
            )
        for name, value in item.config_fields().items():
            if name in spec.python_only_fields:
                findings.append(
                    Finding((*loc, name), f"{name} of {spec.config_class} is a Python function; a config cannot set it")
                )
            elif name not in spec.field_names():
                expected = ", ".join(spec.field_names())
                findings.append(
                    Finding((*loc, name), f"unknown key {name!r} for {spec.config_class} (expected one of: {expected})")
                )
            elif (problem := spec.field(name).problem(value)) is not None:
                findings.append(Finding((*loc, name), problem))
        if spec.invokes_model and recorded:
            names = ", ".join(f"models[{i}] {name}" for i, name in recorded)
            findings.append(
                Finding(
                    (*loc, "algorithm"),
                    f"{spec.algorithm} sends perturbed prompts to the model, which recorded responses cannot answer "
                    f"({names})",
                )
            )
        clashes: dict[int, list[str]] = {}
        for score in spec.scores_for(item.config_fields()):
            if score.name in reported_by:
                clashes.setdefault(reported_by[score.name], []).append(score.name)
            else:
                reported_by[score.name] = index
        for other, clashing in clashes.items():
            findings.append(
                Finding(
                    (*loc, "algorithm"),
                    f"algorithms[{other}] ({configured[other].algorithm}) reports {', '.join(clashing)} too; "
                    "scores are keyed by name, so keep only one of them",
                )
            )
    return findings


def _selection_findings(configured: list[AlgorithmConfig], policy: SelectionPolicy) -> list[Finding]:
    known = algorithms.score_names(configured)
    expected = ", ".join(known)
    findings: list[Finding] = []
    if policy.primary_metric is not None and policy.primary_metric not in known:
        findings.append(
            Finding(
                ("selection", "primary_metric"),
                f"{policy.primary_metric!r} is not a score of the configured algorithms (expected one of: {expected})",
            )
        )
    for name, weight in policy.weights.items():
        if name not in known:
            findings.append(
                Finding(
                    ("selection", "weights", name),
                    f"{name!r} is not a score of the configured algorithms (expected one of: {expected})",
                )
            )
        elif weight < 0:
            findings.append(
                Finding(
                    ("selection", "weights", name),
                    f"weight {weight:g} is negative (lower-is-better scores are inverted already)",
                )
            )
    if policy.weights and all(weight == 0 for weight in policy.weights.values()):
        findings.append(Finding(("selection", "weights"), "at least one weight must be greater than 0"))
    return findings


def _endpoint_findings(pipeline_name: str, models: list[ModelConfig]) -> list[Finding]:
    findings: list[Finding] = []
    created: dict[str, int] = {}
    for index, model in enumerate(models):
        if not model.deploys_endpoint:
            continue
        base = _resource_base(pipeline_name, model)
        name = run_scoped_name(WORST_CASE_RESOURCE_PREFIX, base, WORST_CASE_EXECUTION_ID)
        if name in created:
            other = created[name]
            key = "endpoint_name" if model.endpoint_name else "name"
            findings.append(
                Finding(
                    ("models", index, key),
                    f"endpoint name {base!r} is also the endpoint of models[{other}] "
                    f"({models[other].name}); every deployed model needs its own endpoint name",
                )
            )
        else:
            created[name] = index
    return findings


def _pricing_findings(pricing: PricingConfig) -> list[Finding]:
    findings: list[Finding] = []
    for instance_type, price in pricing.instance_usd_per_hour.items():
        loc: Loc = ("pricing", "instance_usd_per_hour", instance_type)
        if not INSTANCE_TYPE_RE.match(instance_type):
            findings.append(Finding(loc, f"{instance_type!r} is not a SageMaker instance type (expected ml.*)"))
        elif price < 0:
            findings.append(Finding(loc, f"price {price:g} USD per hour is negative"))
    for model_id, prices in pricing.bedrock_usd_per_1k_tokens.items():
        missing = [kind for kind in ("input", "output") if kind not in prices]
        if missing:
            findings.append(
                Finding(
                    ("pricing", "bedrock_usd_per_1k_tokens", model_id),
                    f"give both input and output prices per 1k tokens (missing: {', '.join(missing)})",
                )
            )
        for kind, price in prices.items():
            if price < 0:
                findings.append(
                    Finding(("pricing", "bedrock_usd_per_1k_tokens", model_id, kind), f"price {price:g} is negative")
                )
    return findings


def step_name_findings(config: Config, plan: EvaluationPlan) -> list[Finding]:
    """SageMaker step names: at most 64 characters of letters, digits, hyphens and underscores."""
    model_index = {model.name: index for index, model in enumerate(config.models)}
    findings: list[Finding] = []
    for step in plan.processing_steps:
        if len(step.name) <= MAX_STEP_NAME_LENGTH and STEP_NAME_RE.match(step.name):
            continue
        loc: Loc = ("models", model_index[step.model], "name") if step.model in model_index else ("pipeline", "name")
        findings.append(
            Finding(
                loc,
                f"step name {step.name!r} is not a valid SageMaker step name "
                f"(expected at most {MAX_STEP_NAME_LENGTH} letters, digits, '-' or '_')",
            )
        )
    return findings
