"""Checks that need more than one field, or the algorithm table; run by the loader after the model validates.

Each finding names the key path it is about; the loader turns it into `file:line: key.path: message`.

Endpoint names: a deployed endpoint is named `run_scoped_name(<resource prefix>, resource_base(...),
<execution id>)`. When the base does not fit in 63 characters with the prefix and the execution suffix,
`run_scoped_name` cuts it and appends a hash of the whole base, which is fine, so length alone is never
rejected. What is rejected is two models ending up with the same run-scoped name (the second CreateEndpoint
would fail mid-run), checked with the longest resource prefix we allow.

Model count: MAX_MODELS is our limit, set from the size of the pipeline definition. A fine-tuned model adds
four steps (finetune, deploy, evaluate, cleanup) and 13-14 KB of definition JSON once the stack fills in
production-length ARNs and URIs; 60 of them came to 780-860 KB (measured with the SDK renderer), within the
1 MiB SageMaker's CreatePipeline accepts, with room left for longer names.

Data on S3: when the dataset is an s3:// URI the steps' catalog input is that object and the local prompt
catalog is not uploaded, so every other file the run reads must be on S3 as well.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from pipeline_definitions.loading.hyperparameters import hyperparameter_problem
from pipeline_definitions.planning.plan import EvaluationPlan, build_plan
from pipeline_definitions.rendering.definition_placeholders import PLACEHOLDER_MARK
from step_code.contract import algorithms
from step_code.contract.compute import JUDGE_ASSET_KINDS, is_gpu_instance
from step_code.contract.config import (
    INSTANCE_TYPE_RE,
    AlgorithmConfig,
    Config,
    DatasetConfig,
    ModelConfig,
    PipelineSettings,
    PricingConfig,
    SelectionPolicy,
)
from step_code.contract.locations import is_s3
from step_code.contract.naming import resource_base, run_scoped_name
from step_code.invocation import render_prompt
from step_code.runners.payload import content_template_problem

Loc = tuple[str | int, ...]

# `{prefix}-{environment}-` as deploy/finetune receive it in EVALOPS_RESOURCE_PREFIX, at its longest.
WORST_CASE_RESOURCE_PREFIX = "p" * 23 + "-"
WORST_CASE_EXECUTION_ID = "e" * 12
STEP_NAME_RE = re.compile(r"^[A-Za-z0-9\-_]*$")
MAX_STEP_NAME_LENGTH = 64
MAX_MODELS = 60


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
    dataset: DatasetConfig | None = None
    models: list[ModelConfig] | None = None
    algorithms: list[AlgorithmConfig] | None = None
    selection: SelectionPolicy | None = None
    pricing: PricingConfig | None = None


def validate(config: Config) -> list[Finding]:
    sections = Sections(
        config.pipeline, config.dataset, config.models, config.algorithms, config.selection, config.pricing
    )
    return validate_sections(sections) + step_name_findings(config, build_plan(config))


def validate_sections(sections: Sections) -> list[Finding]:
    """The checks each needing only some sections, so a config with errors elsewhere still gets them."""
    findings: list[Finding] = []
    if sections.algorithms is not None:
        findings += _algorithm_findings(sections.algorithms)
        # With an unknown algorithm the score list is incomplete, and every selection metric would look wrong.
        known = all(item.algorithm in algorithms.algorithm_names() for item in sections.algorithms)
        if known and sections.selection is not None:
            findings += _selection_findings(sections.algorithms, sections.selection)
    if sections.models is not None and len(sections.models) > MAX_MODELS:
        findings.append(
            Finding(
                ("models",),
                f"{len(sections.models)} models; at most {MAX_MODELS} are supported (each adds up to 4 pipeline "
                "steps and the definition must fit SageMaker's 1 MiB), so split them over several configs",
            )
        )
    if sections.models is not None:
        findings += _request_findings(sections.models)
    if sections.pipeline is not None and sections.models is not None:
        findings += _endpoint_findings(sections.pipeline.name, sections.models)
    if sections.dataset is not None and sections.models is not None:
        findings += _s3_dataset_findings(sections.dataset, sections.models)
    if sections.algorithms is not None:
        findings += _sentence_pair_findings(sections.algorithms, sections.dataset, sections.models)
    if sections.pricing is not None:
        findings += _pricing_findings(sections.pricing)
    if sections.pipeline is not None and sections.algorithms is not None:
        findings += _judge_findings(sections.pipeline, sections.models or [], sections.algorithms)
    return findings


def _judge_findings(
    pipeline: PipelineSettings, models: list[ModelConfig], configured: list[AlgorithmConfig]
) -> list[Finding]:
    """A GPU evaluate instance only pays, and a judge batch size only acts, when a judge model runs
    (BERTScore, Detoxify, ToxiGen); every model is scored by every configured algorithm, so the check is the
    same for the pipeline's setting and a model's own."""
    known = [algorithms.lookup(a.algorithm) for a in configured if a.algorithm in algorithms.algorithm_names()]
    if any(JUDGE_ASSET_KINDS & set(spec.downloads) for spec in known):
        return []
    chosen: list[tuple[Loc, str]] = [(("pipeline", "evaluation_instance_type"), pipeline.evaluation_instance_type)]
    chosen += [
        (("models", index, "evaluation_config", "evaluation_instance_type"), instance_type)
        for index, model in enumerate(models)
        if (instance_type := model.evaluation_config.evaluation_instance_type) is not None
    ]
    findings = [
        Finding(
            loc,
            f"{instance_type} is a GPU instance, but no configured algorithm scores with a judge model "
            "(BERTScore, Detoxify or ToxiGen): the GPU would sit idle; use a CPU type such as ml.m5.xlarge",
        )
        for loc, instance_type in chosen
        if is_gpu_instance(instance_type)
    ]
    batch_sizes: list[Loc] = [("pipeline", "judge_batch_size")] if pipeline.judge_batch_size is not None else []
    batch_sizes += [
        ("models", index, "evaluation_config", "judge_batch_size")
        for index, model in enumerate(models)
        if model.evaluation_config.judge_batch_size is not None
    ]
    findings += [
        Finding(
            loc,
            "no configured algorithm scores with a judge model (BERTScore, Detoxify or ToxiGen), so a judge "
            "batch size has no effect; remove it",
        )
        for loc in batch_sizes
    ]
    return findings


def _request_findings(models: list[ModelConfig]) -> list[Finding]:
    """What each model is sent, checked by the code that builds it at run time: the prompt by `render_prompt`,
    the request body by the runners' `RequestBody`; and the fine-tuning hyperparameters of the table."""
    findings: list[Finding] = []
    for index, model in enumerate(models):
        evaluation = model.evaluation_config
        loc: Loc = ("models", index, "evaluation_config")
        try:
            render_prompt(evaluation.prompt_template, "model input")
        except ValueError as exc:
            findings.append(Finding((*loc, "prompt_template"), str(exc)))
        problem = content_template_problem(evaluation.content_template, evaluation.inference_parameters)
        if problem is not None:
            findings.append(Finding((*loc, "content_template"), problem))
        if model.finetuning is not None:
            for name, value in (model.finetuning.parameters.model_extra or {}).items():
                if (problem := hyperparameter_problem(name, value)) is not None:
                    findings.append(Finding(("models", index, "finetuning", "parameters", name), problem))
    return findings


def _algorithm_findings(configured: list[AlgorithmConfig]) -> list[Finding]:
    findings: list[Finding] = []
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


def _sentence_pair_findings(
    configured: list[AlgorithmConfig], dataset: DatasetConfig | None, models: list[ModelConfig] | None
) -> list[Finding]:
    """PromptStereotyping reads a sentence pair from each record and the model's log probability of each."""
    users = [
        (index, item.algorithm)
        for index, item in enumerate(configured)
        if item.algorithm in algorithms.algorithm_names() and algorithms.lookup(item.algorithm).needs_sentence_pairs
    ]
    if not users:
        return []
    index, name = users[0]
    findings: list[Finding] = []
    if dataset is not None:
        for key in ("sent_more_input_location", "sent_less_input_location"):
            if getattr(dataset, key) is None:
                findings.append(
                    Finding(("dataset", key), f"required by algorithms[{index}] ({name}): JMESPath of the sentence")
                )
    for position, model in enumerate(models or []):
        if model.evaluation_config.log_probability is None:
            findings.append(
                Finding(
                    ("models", position, "evaluation_config", "log_probability"),
                    f"required by algorithms[{index}] ({name}): JMESPath of the log probability in the response",
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
        base = resource_base(pipeline_name, model)
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


def _s3_dataset_findings(dataset: DatasetConfig, models: list[ModelConfig]) -> list[Finding]:
    if not is_s3(dataset.input_data_location):
        return []
    local: list[tuple[Loc, str]] = []
    for index, model in enumerate(models):
        if not model.provider.calls_model and model.responses_location is not None:
            local.append((("models", index, "responses_location"), model.responses_location))
        if model.finetuning is not None:
            local.append((("models", index, "finetuning", "train_data_path"), model.finetuning.train_data_path))
            if model.finetuning.validation_data_path is not None:
                path = model.finetuning.validation_data_path
                local.append((("models", index, "finetuning", "validation_data_path"), path))
    return [
        Finding(
            loc,
            f"{location!r} must be an s3:// URI when dataset.input_data_location is on S3 "
            "(the local prompt catalog is not uploaded)",
        )
        for loc, location in local
        if not is_s3(location)
    ]


def placeholder_findings(data: Any, loc: Loc = ()) -> list[Finding]:
    """Every key and string of the raw config holding the renderer's placeholder mark.

    The CloudFormation renderer swaps text carrying that mark for stack values, so it refuses a config that
    contains it; reporting it here names the key instead of failing the synth.
    """
    reserved = f"contains {PLACEHOLDER_MARK!r}, which the pipeline renderer reserves for its own placeholders"
    if isinstance(data, str):
        return [Finding(loc, f"{data!r} {reserved}")] if PLACEHOLDER_MARK in data else []
    findings: list[Finding] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if PLACEHOLDER_MARK in str(key):
                findings.append(Finding((*loc, str(key)), f"key {str(key)!r} {reserved}"))
            findings += placeholder_findings(value, (*loc, str(key)))
    elif isinstance(data, list):
        for position, value in enumerate(data):
            findings += placeholder_findings(value, (*loc, position))
    return findings


def nonfinite_findings(data: Any, loc: Loc = ()) -> list[Finding]:
    """Every NaN or infinite number of the raw config, at any key (YAML's .nan, .inf).

    A NaN floor or weight compares false with everything, and config.json, which every step reads, cannot hold
    one: so none is accepted anywhere, including keys passed through to models and training jobs.
    """
    if isinstance(data, float) and not math.isfinite(data):
        return [Finding(loc, f"expected a finite number, got {data}")]
    findings: list[Finding] = []
    if isinstance(data, dict):
        for key, value in data.items():
            findings += nonfinite_findings(value, (*loc, str(key)))
    elif isinstance(data, list):
        for position, value in enumerate(data):
            findings += nonfinite_findings(value, (*loc, position))
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
