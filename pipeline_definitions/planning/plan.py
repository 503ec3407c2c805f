"""The evaluation plan: which steps run, what each reads and writes, in which order. Pure data.

Both engines consume it: `sagemaker_definition.py` renders it to a SageMaker pipeline definition and
`local.py` runs it on one machine. Step code entry points (`STEP_KINDS[kind].entry_module`) take exactly the
arguments `step_arguments()` builds, so the two engines cannot drift apart.

Layout of a step's files, the same in a processing container and in a local run directory:
  inputs  -> <input root>/<input name>/...   (container: /opt/ml/processing/input/<name>)
  outputs -> <output root>/<output name>/... (container: /opt/ml/processing/output/<name>)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pipeline_definitions.planning.step_kinds import STEP_KINDS, StepKind
from pipeline_definitions.planning.warm_pools import previous_in_pool
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import (
    CATALOG_INPUT,
    CHAMPION,
    CLEANUP,
    CONFIG_FILE,
    CONFIG_INPUT,
    DATASET,
    DECISION,
    DEPLOYMENT,
    EVALUATION,
    FINETUNE,
    REGISTRATION,
    SUMMARIES,
)
from step_code.contract.locations import is_catalog_file
from step_code.contract.sharding import SHARD_RESULTS, SHARDS_INPUT, shard_count_of_output, shards_output

# Pipeline parameters (SageMaker) / run options (local).
PARAM_PROMPT_CATALOG_URI = "PromptCatalogUri"
PARAM_MODEL_APPROVAL_STATUS = "ModelApprovalStatus"
# `use` or `bypass` (step_code/contract/files.py RESPONSE_CACHE_MODES): bypass asks the models again.
PARAM_RESPONSE_CACHE = "ResponseCache"

SELECT_STEP = "Select"
CHAMPION_STEP = "Champion"
CHECK_STEP = "CheckSelectionPolicy"
REGISTER_STEP = "RegisterWinner"
FAIL_STEP = "SelectionPolicyNotMet"
PREPROCESS_STEP = "Preprocess"
# The input channels of a JumpStart training job (`step_code.finetune` starts it with these names).
TRAINING_CHANNEL = "training"
VALIDATION_CHANNEL = "validation"


@dataclass(frozen=True)
class StepInput:
    """Where an input comes from: another step's output, a pipeline parameter, or the config file."""

    name: str
    step: str | None = None
    output: str | None = None
    parameter: str | None = None
    # Each instance of the step receives a share of the files (ShardedByS3Key), not all of them.
    sharded: bool = False


@dataclass(frozen=True)
class PlannedStep:
    name: str
    kind: StepKind
    model: str | None
    inputs: tuple[StepInput, ...]
    outputs: tuple[str, ...]
    instance_type: str
    # Steps that must finish first without passing data (e.g. cleanup after evaluate).
    after: tuple[str, ...] = ()
    cacheable: bool = False
    instance_count: int = 1

    @property
    def depends_on(self) -> tuple[str, ...]:
        """Every step this one waits for, data dependencies first, without repeats."""
        names = [i.step for i in self.inputs if i.step] + list(self.after)
        return tuple(dict.fromkeys(n for n in names if n))


@dataclass(frozen=True)
class Branch:
    """The steps of one candidate model, in execution order."""

    model: str
    steps: tuple[PlannedStep, ...]


@dataclass(frozen=True)
class RegistryGroup:
    """A model package group the register step may write to, and the models whose win goes there."""

    name: str
    models: tuple[str, ...]
    # Named after the pipeline because the config has no model_registry section.
    named_after_pipeline: bool = False


@dataclass(frozen=True)
class TrainingChannel:
    """An input channel of a fine-tuning job: an s3:// URI, or a path inside the uploaded prompt catalog."""

    model: str
    channel: str
    # The finetuning key it comes from (train_data_path, validation_data_path).
    key: str
    location: str


@dataclass(frozen=True)
class EvaluationPlan:
    pipeline_name: str
    preprocess: PlannedStep
    branches: tuple[Branch, ...]
    select: PlannedStep
    register: PlannedStep
    max_parallel_steps: int
    processing_steps: tuple[PlannedStep, ...] = field(default=())
    registry_groups: tuple[RegistryGroup, ...] = field(default=())
    training_channels: tuple[TrainingChannel, ...] = field(default=())

    def step(self, name: str) -> PlannedStep:
        for step in self.processing_steps:
            if step.name == name:
                return step
        raise KeyError(name)


def step_name(kind: str, model: ModelConfig) -> str:
    # Model names are unique and validated, so base and fine-tuned variants of one model_id never collide.
    return f"{kind.capitalize()}-{model.name}"


def _recorded_responses_input(model: ModelConfig) -> tuple[StepInput, ...]:
    """A recorded model whose responses sit in the prompt catalog reads them from the catalog input."""
    location = model.responses_location
    if not model.provider.calls_model and is_catalog_file(location):
        return (StepInput(CATALOG_INPUT, parameter=PARAM_PROMPT_CATALOG_URI),)
    return ()


def build_plan(config: Config) -> EvaluationPlan:
    small = config.pipeline.processing_instance_type
    config_input = StepInput(CONFIG_INPUT)
    shard_counts = sorted({m.shard_count(config.pipeline) for m in config.models} - {1})
    preprocess = PlannedStep(
        name=PREPROCESS_STEP,
        kind="preprocess",
        model=None,
        inputs=(config_input, StepInput(CATALOG_INPUT, parameter=PARAM_PROMPT_CATALOG_URI)),
        outputs=(DATASET, *(shards_output(count) for count in shard_counts)),
        instance_type=small,
        cacheable=True,
    )
    branches: list[Branch] = []
    evaluate_steps: list[PlannedStep] = []
    # A fine-tuning that takes over a warm pool waits for the one before it (warm_pools.py).
    pool_predecessor = previous_in_pool(config)
    for model in config.models:
        steps: list[PlannedStep] = []
        deployment_inputs: list[StepInput] = []
        if model.finetuning is not None:
            earlier = pool_predecessor.get(model.name)
            finetune = PlannedStep(
                name=step_name("finetune", model),
                kind="finetune",
                model=model.name,
                inputs=(config_input,),
                outputs=(FINETUNE,),
                instance_type=small,
                after=(step_name("finetune", config.model(earlier)),) if earlier else (),
            )
            steps.append(finetune)
            deployment_inputs.append(StepInput(FINETUNE, step=finetune.name, output=FINETUNE))
        if model.deploys_endpoint:
            deploy = PlannedStep(
                name=step_name("deploy", model),
                kind="deploy",
                model=model.name,
                inputs=(config_input, *deployment_inputs),
                outputs=(DEPLOYMENT,),
                instance_type=small,
            )
            steps.append(deploy)
            deployment_inputs = [StepInput(DEPLOYMENT, step=deploy.name, output=DEPLOYMENT)]
        evaluate = PlannedStep(
            name=step_name("evaluate", model),
            kind="evaluate",
            model=model.name,
            inputs=(
                config_input,
                StepInput(DATASET, step=preprocess.name, output=DATASET),
                *deployment_inputs,
                *_recorded_responses_input(model),
            ),
            outputs=(EVALUATION,),
            instance_type=model.evaluation_instance_type(config.pipeline),
        )
        evaluation = evaluate
        if model.shard_count(config.pipeline) > 1:
            evaluate, evaluation = sharded_evaluation(evaluate, model.shard_count(config.pipeline), preprocess, small)
        steps.append(evaluate)
        if evaluation is not evaluate:
            steps.append(evaluation)
        evaluate_steps.append(evaluation)
        if model.deploys_endpoint and model.cleanup_endpoint:
            steps.append(
                PlannedStep(
                    name=step_name("cleanup", model),
                    kind="cleanup",
                    model=model.name,
                    inputs=(config_input, *deployment_inputs),
                    outputs=(CLEANUP,),
                    instance_type=small,
                    after=(evaluate.name,),
                )
            )
        branches.append(Branch(model=model.name, steps=tuple(steps)))

    summaries = tuple(StepInput(f"{SUMMARIES}/{s.model}", step=s.name, output=EVALUATION) for s in evaluate_steps)
    # selection.baseline approved: the approved champion is answered on this run's catalog beside the branches.
    champions = (
        (
            PlannedStep(
                name=CHAMPION_STEP,
                kind="champion",
                model=None,
                inputs=(config_input, StepInput(DATASET, step=preprocess.name, output=DATASET)),
                outputs=(CHAMPION,),
                instance_type=config.pipeline.evaluation_instance_type,
            ),
        )
        if config.selection.baseline == "approved"
        else ()
    )
    select = PlannedStep(
        name=SELECT_STEP,
        kind="select",
        model=None,
        inputs=(config_input, *summaries, *(StepInput(CHAMPION, step=c.name, output=CHAMPION) for c in champions)),
        outputs=(DECISION,),
        instance_type=small,
    )
    register = PlannedStep(
        name=REGISTER_STEP,
        kind="register",
        model=None,
        inputs=(config_input, StepInput(DECISION, step=select.name, output=DECISION), *summaries),
        outputs=(REGISTRATION,),
        instance_type=small,
    )
    ordered = (preprocess, *(s for b in branches for s in b.steps), *champions, select, register)
    return EvaluationPlan(
        pipeline_name=config.pipeline.name,
        preprocess=preprocess,
        branches=tuple(branches),
        select=select,
        register=register,
        max_parallel_steps=config.pipeline.parallelism,
        processing_steps=ordered,
        registry_groups=registry_groups(config),
        training_channels=training_channels(config),
    )


def sharded_evaluation(
    evaluate: PlannedStep, count: int, preprocess: PlannedStep, instance_type: str
) -> tuple[PlannedStep, PlannedStep]:
    """A model's evaluate step as a job of `count` instances, each given its share of the shard files,
    and the merge step that writes the model's evaluation from their results."""
    shards = StepInput(SHARDS_INPUT, step=preprocess.name, output=shards_output(count), sharded=True)
    inputs = tuple(shards if item.name == DATASET else item for item in evaluate.inputs)
    sharded = replace(evaluate, kind="evaluate_shards", inputs=inputs, outputs=(SHARD_RESULTS,), instance_count=count)
    merge = PlannedStep(
        name=f"Merge-{evaluate.model}",
        kind="merge",
        model=evaluate.model,
        inputs=(
            StepInput(CONFIG_INPUT),
            StepInput(DATASET, step=preprocess.name, output=DATASET),
            StepInput(SHARD_RESULTS, step=sharded.name, output=SHARD_RESULTS),
        ),
        outputs=(EVALUATION,),
        instance_type=instance_type,
    )
    return sharded, merge


def registry_groups(config: Config) -> tuple[RegistryGroup, ...]:
    """Where a winner is registered: its own model_package_group_name, else the config's (or default) group."""
    default = config.model_registry.model_package_group_name
    members: dict[str, list[str]] = {default: []}
    for model in config.models:
        members.setdefault(model.model_package_group_name or default, []).append(model.name)
    return tuple(
        RegistryGroup(name, tuple(models), named_after_pipeline=name == default and config.registry_is_default)
        for name, models in members.items()
    )


def training_channels(config: Config) -> tuple[TrainingChannel, ...]:
    """The channels each fine-tuning job is given, as the finetune step builds them from the config."""
    channels: list[TrainingChannel] = []
    for model in config.models:
        if model.finetuning is None:
            continue
        channels.append(
            TrainingChannel(model.name, TRAINING_CHANNEL, "train_data_path", model.finetuning.train_data_path)
        )
        if model.finetuning.validation_data_path:
            channels.append(
                TrainingChannel(
                    model.name, VALIDATION_CHANNEL, "validation_data_path", model.finetuning.validation_data_path
                )
            )
    return tuple(channels)


def step_arguments(
    step: PlannedStep,
    input_root: str,
    output_root: str,
    *,
    execution_id: Any,
    approval_status: Any,
    cache_uri: str,
    local_registry_dir: str | None = None,
    response_cache: Any = None,
) -> list[Any]:
    """Command-line arguments of a step's entry point (`python -m <STEP_KINDS[kind].entry_module> ...`).

    `execution_id`, `approval_status` and `response_cache` are strings in a local run and SageMaker pipeline
    variables when rendering, which is why the result is a list of Any. `response_cache` None leaves the
    step's default (`use`).
    Resource names made by deploy/finetune start with the environment variable EVALOPS_RESOURCE_PREFIX.
    """
    args: list[Any] = [
        "--config",
        f"{input_root}/{CONFIG_INPUT}/{CONFIG_FILE}",
        "--output-dir",
        f"{output_root}/{step.outputs[0]}",
    ]
    spec = STEP_KINDS[step.kind]
    if step.model is not None:
        args += ["--model", step.model]
    if spec.takes_execution_id:
        args += ["--execution-id", execution_id]
    for name in step.outputs[1:]:
        if shard_count_of_output(name) is not None:
            args += ["--shard-output", f"{output_root}/{name}"]
    for item in step.inputs:
        if item.name == CONFIG_INPUT or item.name.startswith(f"{SUMMARIES}/"):
            continue
        args += [f"--{item.name}-dir", f"{input_root}/{item.name}"]
    if any(i.name.startswith(f"{SUMMARIES}/") for i in step.inputs):
        args += ["--summaries-dir", f"{input_root}/{SUMMARIES}"]
    # A local run keeps its registry in files shaped like SageMaker model packages (`registry-dir`).
    values: dict[str, Any] = {
        "cache-uri": cache_uri,
        "response-cache": response_cache,
        "approval-status": approval_status,
        "registry-dir": local_registry_dir,
    }
    for option in spec.run_options:
        if values[option] is not None:
            args += [f"--{option}", values[option]]
    return args
