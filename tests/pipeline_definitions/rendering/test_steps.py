"""What each plan step renders to: the processing job, its inputs and outputs, and the policy check."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.planning import plan as p
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from pipeline_definitions.rendering.sagemaker_definition import Guardrails, render_definition
from step_code.aws_resources import run_artifacts_uri
from step_code.contract import files
from step_code.contract.config import Config
from step_code.contract.job_env import Vpc
from tests.pipeline_definitions.rendering.conftest import REPO_ROOT, all_steps, shipped_config, targets_for

EXECUTION_ID = {"Get": "Execution.PipelineExecutionId"}
EXECUTION_ARN = {"Get": "Execution.PipelineExecutionArn"}


def joined(value: dict[str, Any], execution_id: str) -> str:
    """Evaluate a Std:Join the way SageMaker does, with the execution id given."""
    join = value["Std:Join"]
    parts = [execution_id if part == EXECUTION_ID else part for part in join["Values"]]
    assert all(isinstance(part, str) for part in parts)
    return str(join["On"]).join(parts)


def render(config: Config, **overrides: Any) -> dict[str, Any]:
    return dict(json.loads(render_definition(p.build_plan(config), config, targets_for(config, **overrides))))


def processing_steps(definition: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Name"]: s for s in all_steps(definition) if s["Type"] == "Processing"}


def test_every_planned_step_is_a_processing_job(rendered: tuple[Config, p.EvaluationPlan, str]) -> None:
    config, plan, text = rendered
    targets = targets_for(config)
    steps = processing_steps(json.loads(text))
    assert list(steps) == [s.name for s in plan.processing_steps]
    for planned in plan.processing_steps:
        args = steps[planned.name]["Arguments"]
        assert args["AppSpecification"]["ImageUri"] == targets.image_uri
        assert args["AppSpecification"]["ContainerEntrypoint"] == [
            "python3",
            "-m",
            STEP_KINDS[planned.kind].entry_module,
        ]
        assert args["RoleArn"] == targets.role_arn
        assert args["ProcessingResources"]["ClusterConfig"] == {
            "InstanceType": planned.instance_type,
            "InstanceCount": planned.instance_count,
            "VolumeSizeInGB": 30,
            "VolumeKmsKeyId": targets.kms_key_arn,
        }
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == targets.kms_key_arn
        assert "NetworkConfig" not in args


# What each step kind's code reads from its environment beyond PYTHONPATH, the region and the key.
RUN_ENVIRONMENT: dict[str, set[str]] = {
    "preprocess": set(),
    "finetune": {
        "EVALOPS_RESOURCE_PREFIX",
        "EVALOPS_ROLE_ARN",
        "EVALOPS_EXECUTION_ARN",
        "EVALOPS_ARTIFACTS_URI",
        "EVALOPS_DATA_URI",
    },
    "deploy": {"EVALOPS_RESOURCE_PREFIX", "EVALOPS_ROLE_ARN", "EVALOPS_EXECUTION_ARN", "EVALOPS_ARTIFACTS_URI"},
    "evaluate": set(),
    "cleanup": set(),
    "champion": {"EVALOPS_RESOURCE_PREFIX", "EVALOPS_ROLE_ARN", "EVALOPS_EXECUTION_ARN"},
    "select": set(),
    "register": {"EVALOPS_EXECUTION_ARN", "EVALOPS_ARTIFACTS_URI"},
}


def test_each_step_kind_gets_the_environment_its_code_reads() -> None:
    config = _mixed_config()
    targets = targets_for(config)
    steps = processing_steps(render(config))
    values = {
        "EVALOPS_RESOURCE_PREFIX": "evalops-dev-",
        "EVALOPS_ROLE_ARN": targets.role_arn,
        "EVALOPS_EXECUTION_ARN": EXECUTION_ARN,
        # One tree per deployed pipeline: run artifacts, step outputs and the response cache.
        "EVALOPS_ARTIFACTS_URI": f"s3://{targets.artifacts_bucket}/{targets.pipeline_name}",
        "EVALOPS_DATA_URI": {"Get": "Parameters.PromptCatalogUri"},
    }
    planned_kinds = {planned.kind for planned in p.build_plan(config).processing_steps}
    assert planned_kinds == set(RUN_ENVIRONMENT)
    for planned in p.build_plan(config).processing_steps:
        assert steps[planned.name]["Arguments"]["Environment"] == {
            "PYTHONPATH": "/opt/ml/processing/input/code/5d41402abc4b2a76b9719d911017c592.zip",
            "AWS_DEFAULT_REGION": "eu-west-1",
            "EVALOPS_KMS_KEY_ARN": targets.kms_key_arn,
            **{name: value for name, value in values.items() if name in RUN_ENVIRONMENT[planned.kind]},
        }, planned.name


def execution_values(node: Any) -> list[str]:
    """Every execution variable (id, ARN, start time...) the node refers to."""
    if isinstance(node, dict):
        if set(node) == {"Get"}:
            return [node["Get"]] if str(node["Get"]).startswith("Execution.") else []
        return [found for value in node.values() for found in execution_values(value)]
    if isinstance(node, list):
        return [found for value in node for found in execution_values(value)]
    return []


def test_preprocess_has_nothing_execution_specific_in_its_cache_key(
    rendered: tuple[Config, p.EvaluationPlan, str],
) -> None:
    # SageMaker's cache key of a processing step: AppSpecification, Environment and ProcessingInputs.
    arguments = processing_steps(json.loads(rendered[2]))[p.PREPROCESS_STEP]["Arguments"]
    for part in ("AppSpecification", "Environment", "ProcessingInputs"):
        assert execution_values(arguments[part]) == [], part
    # The output location is the run's own and is not part of the key.
    outputs = arguments["ProcessingOutputConfig"]["Outputs"]
    assert execution_values(arguments["ProcessingOutputConfig"]) == ["Execution.PipelineExecutionId"] * len(outputs)


def test_preprocess_of_an_s3_dataset_is_never_cached() -> None:
    config = shipped_config("sample")
    cached = processing_steps(render(config))[p.PREPROCESS_STEP]
    assert cached["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
    s3_dataset = config.model_copy(
        update={"dataset": config.dataset.model_copy(update={"input_data_location": "s3://team/trivia.jsonl"})}
    )
    assert "CacheConfig" not in processing_steps(render(s3_dataset))[p.PREPROCESS_STEP]


@pytest.mark.parametrize(
    ("instance_type", "volume_key"),
    [
        ("ml.m5.xlarge", True),
        ("ml.c5.2xlarge", True),
        ("ml.p3.2xlarge", True),
        ("ml.g5.2xlarge", False),
        ("ml.g4dn.xlarge", False),
        ("ml.g6.xlarge", False),
        ("ml.p4d.24xlarge", False),
        ("ml.p5.48xlarge", False),
        ("ml.m5d.large", False),
        ("ml.r5d.xlarge", False),
    ],
)
def test_no_volume_key_on_instances_with_local_nvme_storage(instance_type: str, volume_key: bool) -> None:
    config = shipped_config("reference")
    config = config.model_copy(
        update={"pipeline": config.pipeline.model_copy(update={"evaluation_instance_type": instance_type})}
    )
    targets = targets_for(config)
    for name, step in processing_steps(render(config)).items():
        cluster = step["Arguments"]["ProcessingResources"]["ClusterConfig"]
        evaluates_on_it = name.startswith("Evaluate-") or name == p.CHAMPION_STEP
        assert cluster["InstanceType"] == (instance_type if evaluates_on_it else "ml.m5.large")
        expected_key = volume_key or not evaluates_on_it
        assert cluster.get("VolumeKmsKeyId") == (targets.kms_key_arn if expected_key else None), name
        # Job outputs are encrypted with the key whatever the instance.
        assert step["Arguments"]["ProcessingOutputConfig"]["KmsKeyId"] == targets.kms_key_arn


def test_arguments_are_the_plans_step_arguments(rendered: tuple[Config, p.EvaluationPlan, str]) -> None:
    config, plan, text = rendered
    steps = processing_steps(json.loads(text))
    for planned in plan.processing_steps:
        expected = p.step_arguments(
            planned,
            "/opt/ml/processing/input",
            "/opt/ml/processing/output",
            execution_id=EXECUTION_ID,
            approval_status={"Get": f"Parameters.{p.PARAM_MODEL_APPROVAL_STATUS}"},
            cache_uri=f"s3://evalops-dev-artifacts-123456789012/evalops-dev-{config.pipeline.name}/response-cache",
            response_cache={"Get": f"Parameters.{p.PARAM_RESPONSE_CACHE}"},
        )
        assert steps[planned.name]["Arguments"]["AppSpecification"]["ContainerArguments"] == expected


def test_inputs_land_where_the_arguments_point(rendered: tuple[Config, p.EvaluationPlan, str]) -> None:
    config, plan, text = rendered
    targets = targets_for(config)
    steps = processing_steps(json.loads(text))
    for planned in plan.processing_steps:
        inputs = steps[planned.name]["Arguments"]["ProcessingInputs"]
        by_path = {i["S3Input"]["LocalPath"]: i for i in inputs}
        assert by_path["/opt/ml/processing/input/code"]["S3Input"]["S3Uri"] == targets.code_uri
        assert by_path["/opt/ml/processing/input/config"]["S3Input"]["S3Uri"] == targets.config_uri
        summaries = [i for i in planned.inputs if i.name.startswith(f"{files.SUMMARIES}/")]
        assert len(inputs) == len(planned.inputs) - len(summaries) + (2 if summaries else 1)
        if summaries:
            # One input for every model's evaluation: SageMaker allows 10 inputs per job.
            rendered_input = by_path[f"/opt/ml/processing/input/{files.SUMMARIES}"]
            assert rendered_input["InputName"] == files.SUMMARIES
            assert joined(rendered_input["S3Input"]["S3Uri"], "a1b2c3d4e5f6") == (
                f"s3://evalops-dev-artifacts-123456789012/evalops-dev-{config.pipeline.name}"
                "/runs/a1b2c3d4e5f6/evaluations/"
            )
        for item in planned.inputs:
            if item in summaries:
                continue
            rendered_input = by_path[f"/opt/ml/processing/input/{item.name}"]
            assert rendered_input["InputName"] == item.name.replace("/", "_")
            source = rendered_input["S3Input"]["S3Uri"]
            if item.step is not None:
                assert source == {
                    "Get": f"Steps.{item.step}.ProcessingOutputConfig.Outputs['{item.output}'].S3Output.S3Uri"
                }
            elif item.parameter is not None:
                assert source == {"Get": f"Parameters.{item.parameter}"}
            else:
                assert item.name == files.CONFIG_INPUT
        for rendered_input in inputs:
            assert rendered_input["S3Input"]["S3DataType"] == "S3Prefix"


def test_outputs_are_run_scoped_s3_uris(rendered: tuple[Config, p.EvaluationPlan, str]) -> None:
    config, plan, text = rendered
    steps = processing_steps(json.loads(text))
    for planned in plan.processing_steps:
        outputs = steps[planned.name]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
        assert [o["OutputName"] for o in outputs] == list(planned.outputs)
        for output in outputs:
            name = output["OutputName"]
            assert output["S3Output"]["LocalPath"] == f"/opt/ml/processing/output/{name}"
            # Evaluations share one folder, which select and register read as a whole.
            folder = (
                f"evaluations/{planned.model}" if planned.kind in ("evaluate", "merge") else f"{planned.name}/{name}"
            )
            assert joined(output["S3Output"]["S3Uri"], "a1b2c3d4e5f6") == (
                f"s3://evalops-dev-artifacts-123456789012/evalops-dev-{config.pipeline.name}/runs/a1b2c3d4e5f6/{folder}"
            )


def test_retries_caching_and_dependencies(rendered: tuple[Config, p.EvaluationPlan, str]) -> None:
    _, plan, text = rendered
    steps = processing_steps(json.loads(text))
    for planned in plan.processing_steps:
        step = steps[planned.name]
        assert [r["ExceptionType"] for r in step["RetryPolicies"]] == [
            ["Step.THROTTLING", "Step.SERVICE_FAULT"],
            ["SageMaker.RESOURCE_LIMIT", "SageMaker.CAPACITY_ERROR"],
        ]
        assert all(r["MaxAttempts"] > 1 and r["BackoffRate"] > 1 for r in step["RetryPolicies"])
        if planned.name == p.PREPROCESS_STEP:
            assert step["CacheConfig"] == {"Enabled": True, "ExpireAfter": "P30D"}
        else:
            assert "CacheConfig" not in step
        evaluations = [i.step for i in planned.inputs if i.name.startswith(f"{files.SUMMARIES}/")]
        if planned.kind == "register":
            evaluations = []  # inside the condition on Select's decision, which already waited for them
        assert step.get("DependsOn", []) == [*planned.after, *evaluations]
        assert ("PropertyFiles" in step) == (planned.name == p.SELECT_STEP)


def test_register_runs_only_when_the_policy_is_met(definition: dict[str, Any]) -> None:
    *_, check = definition["Steps"]
    assert check["Name"] == p.CHECK_STEP
    assert check["Arguments"]["Conditions"] == [
        {
            "Type": "Equals",
            "LeftValue": {
                "Std:JsonGet": {
                    "PropertyFile": {"Get": f"Steps.{p.SELECT_STEP}.PropertyFiles.Decision"},
                    "Path": files.DECISION_MEETS_POLICY,
                }
            },
            "RightValue": True,
        }
    ]
    assert [s["Name"] for s in check["Arguments"]["IfSteps"]] == [p.REGISTER_STEP]
    (fail,) = check["Arguments"]["ElseSteps"]
    assert fail["Name"] == p.FAIL_STEP
    assert fail["Type"] == "Fail"
    message = fail["Arguments"]["ErrorMessage"]["Std:Join"]
    assert message["On"] == " "
    assert message["Values"][0] == "Selection policy not met:"
    assert message["Values"][1]["Std:JsonGet"]["Path"] == files.DECISION_REASON
    assert p.REGISTER_STEP not in [s["Name"] for s in definition["Steps"]]


def test_runtime_limits_follow_the_step_kind() -> None:
    config = shipped_config("reference")
    steps = processing_steps(render(config))
    runtime = {name: s["Arguments"]["StoppingCondition"]["MaxRuntimeInSeconds"] for name, s in steps.items()}
    training = config.model("llama2-7b-finetuned").finetuning
    assert training is not None
    assert runtime["Finetune-llama2-7b-finetuned"] == training.parameters.max_run_seconds + 2 * 3600
    assert runtime["Evaluate-falcon-7b"] == 24 * 3600
    assert runtime["Deploy-falcon-7b"] == 2 * 3600
    assert runtime["Preprocess"] == runtime["Select"] == runtime[p.REGISTER_STEP] == 3600


def _mixed_config() -> Config:
    """The reference models plus the base variant of the fine-tuned one, an existing endpoint and Bedrock."""
    raw = yaml.safe_load(Path(REPO_ROOT / "configs" / "reference.yaml").read_text())
    finetuned = next(m for m in raw["models"] if m["name"] == "llama2-7b-finetuned")
    base = copy.deepcopy(finetuned)
    del base["finetuning"]
    base.update(name="llama2-7b-base", endpoint_name="llm-eval-meta-textgeneration-llama-2-7b-base")
    raw["models"] += [
        base,
        {
            "name": "team-endpoint",
            "model_provider": "endpoint",
            "endpoint_name": "team-llm-prod",
            "evaluation_config": {"output": "[0].generated_text", "content_template": "PROMPT_PLACEHOLDER"},
        },
        {"name": "claude-haiku", "model_provider": "bedrock", "model_id": "anthropic.claude-3-haiku-20240307-v1:0"},
    ]
    return Config.model_validate(raw)


def test_each_model_gets_its_own_branch_in_order() -> None:
    config = _mixed_config()
    definition = render(config)
    names = [s["Name"] for s in definition["Steps"]]
    expected_branches = {
        "llama2-7b-f": ["Deploy", "Evaluate", "Cleanup"],
        "falcon-7b": ["Deploy", "Evaluate", "Cleanup"],
        "llama2-7b-finetuned": ["Finetune", "Deploy", "Evaluate", "Cleanup"],
        "llama2-7b-base": ["Deploy", "Evaluate", "Cleanup"],
        "team-endpoint": ["Evaluate"],
        "claude-haiku": ["Evaluate"],
    }
    for model, kinds in expected_branches.items():
        assert [n for n in names if n.partition("-")[2] == model] == [f"{kind}-{model}" for kind in kinds]
    steps = processing_steps(definition)
    # Base and fine-tuned variants of one model_id deploy separately and read their own deployment.
    for model in ("llama2-7b-finetuned", "llama2-7b-base"):
        evaluate_inputs = steps[f"Evaluate-{model}"]["Arguments"]["ProcessingInputs"]
        deployment = next(i for i in evaluate_inputs if i["InputName"] == files.DEPLOYMENT)
        assert deployment["S3Input"]["S3Uri"]["Get"].startswith(f"Steps.Deploy-{model}.")
    finetuned_deploy = steps["Deploy-llama2-7b-finetuned"]["Arguments"]["ProcessingInputs"]
    assert [i["InputName"] for i in finetuned_deploy] == ["code", "config", files.FINETUNE]
    assert [i["InputName"] for i in steps["Deploy-llama2-7b-base"]["Arguments"]["ProcessingInputs"]] == [
        "code",
        "config",
    ]
    select_inputs = [i["InputName"] for i in steps[p.SELECT_STEP]["Arguments"]["ProcessingInputs"]]
    # The approved champion's answer comes from the Champion step (selection.baseline approved, the default).
    assert select_inputs == ["code", "config", files.CHAMPION, files.SUMMARIES]
    evaluations = [f"Evaluate-{m}" for m in expected_branches]
    assert steps[p.SELECT_STEP]["DependsOn"] == evaluations
    # Register sits inside the condition on Select's decision, so it needs no wait of its own.
    assert "DependsOn" not in steps[p.REGISTER_STEP]


def test_vpc_settings_become_the_network_config() -> None:
    config = shipped_config("sample")
    vpc = Vpc(subnets=("subnet-1", "subnet-2"), security_group_ids=("sg-0a1b2c3d",))
    steps = processing_steps(render(config, guardrails=Guardrails(processing_vpc=vpc)))
    for step in steps.values():
        assert step["Arguments"]["NetworkConfig"] == {
            "EnableNetworkIsolation": False,
            "VpcConfig": {"SecurityGroupIds": ["sg-0a1b2c3d"], "Subnets": ["subnet-1", "subnet-2"]},
        }


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"code_uri": "/tmp/code.zip"}, "code_uri '/tmp/code.zip' is not an s3://bucket/key URI"),
        ({"code_uri": "s3://bucket/code/"}, "must name the code bundle object"),
        ({"config_uri": "s3://bucket/settings.json"}, "must be an object named config.json or a prefix holding it"),
        ({"prompt_catalog_uri": "s3://bucket"}, "prompt_catalog_uri 's3://bucket' is not an s3://bucket/key URI"),
        (
            {"guardrails": Guardrails(processing_vpc=Vpc(subnets=("subnet-1",), security_group_ids=()))},
            "a processing VPC needs both subnets and security group ids",
        ),
    ],
)
def test_bad_targets_are_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="render targets: ") as error:
        targets_for(shipped_config("sample"), **overrides)
    assert message in str(error.value)


def test_run_artifacts_share_the_pipeline_tree_but_not_the_expiring_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    config = shipped_config("reference")
    targets = targets_for(config)
    steps = processing_steps(render(config))
    tree = f"s3://{targets.artifacts_bucket}/{targets.pipeline_name}/"
    for name in ("Finetune-llama2-7b-finetuned", "Deploy-falcon-7b", p.REGISTER_STEP):
        monkeypatch.setenv("EVALOPS_ARTIFACTS_URI", steps[name]["Arguments"]["Environment"]["EVALOPS_ARTIFACTS_URI"])
        # What step code keeps (fine-tuned models, deploy code, registered metrics) is not under runs/.
        assert run_artifacts_uri("a1b2c3d4e5f6", "finetune", "m") == f"{tree}artifacts/a1b2c3d4e5f6/finetune/m"
    (output,) = steps["Evaluate-falcon-7b"]["Arguments"]["ProcessingOutputConfig"]["Outputs"]
    assert joined(output["S3Output"]["S3Uri"], "a1b2c3d4e5f6").startswith(f"{tree}runs/a1b2c3d4e5f6/")
    arguments = steps["Evaluate-falcon-7b"]["Arguments"]["AppSpecification"]["ContainerArguments"]
    assert arguments[arguments.index("--cache-uri") + 1] == f"{tree}response-cache"
