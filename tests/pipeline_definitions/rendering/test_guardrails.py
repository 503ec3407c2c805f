"""An environment's guardrails in the definition: processing jobs' VPC, keys and tags, and the job environment
that carries the rest to the steps that create SageMaker resources."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest

from pipeline_definitions.planning import plan as p
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from pipeline_definitions.rendering.sagemaker_definition import (
    Guardrails,
    render_definition,
    render_for_cloudformation,
)
from step_code.contract.job_env import KMS_KEY_ENV, JobGuardrails, Vpc
from tests.pipeline_definitions.rendering.conftest import all_steps, shipped_config, targets_for
from tests.pipeline_definitions.rendering.test_schema import SCHEMA_PATH, patched_schema

PROCESSING_VPC = Vpc(subnets=("subnet-0aaa1111bbbb2222c",), security_group_ids=("sg-0aaa1111bbbb2222c",))
RESOURCE_VPC = Vpc(
    subnets=("subnet-0ddd3333eeee4444f", "subnet-0fff5555aaaa6666b"), security_group_ids=("sg-0ddd3333eeee4444f",)
)
VOLUME_KEY = "arn:aws:kms:eu-west-1:123456789012:key/11111111-2222-3333-4444-555555555555"
OUTPUT_KEY = "arn:aws:kms:eu-west-1:123456789012:key/66666666-7777-8888-9999-000000000000"
RESOURCES = JobGuardrails(
    training_vpc=RESOURCE_VPC,
    training_network_isolation=True,
    training_volume_kms_key=VOLUME_KEY,
    training_output_kms_key=OUTPUT_KEY,
    model_vpc=RESOURCE_VPC,
    model_network_isolation=True,
    endpoint_kms_key=VOLUME_KEY,
    tags=(("cost-center", "ml-4711"), ("data-classification", "internal")),
)
GUARDRAILS = Guardrails(
    processing_vpc=PROCESSING_VPC,
    processing_volume_kms_key_arn=VOLUME_KEY,
    processing_output_kms_key_arn=OUTPUT_KEY,
    resources=RESOURCES,
)


def processing_steps(guardrails: Guardrails) -> dict[str, dict[str, Any]]:
    config = shipped_config("reference")
    text = render_definition(p.build_plan(config), config, targets_for(config, guardrails=guardrails))
    return {s["Name"]: s for s in all_steps(json.loads(text)) if s["Type"] == "Processing"}


@pytest.fixture(scope="module")
def guarded() -> dict[str, dict[str, Any]]:
    return processing_steps(GUARDRAILS)


def test_every_processing_job_runs_in_the_vpc_with_the_keys_and_tags(guarded: dict[str, dict[str, Any]]) -> None:
    for step in guarded.values():
        args = step["Arguments"]
        assert args["NetworkConfig"] == {
            "EnableNetworkIsolation": False,
            "VpcConfig": {"SecurityGroupIds": ["sg-0aaa1111bbbb2222c"], "Subnets": ["subnet-0aaa1111bbbb2222c"]},
        }
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == VOLUME_KEY
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == OUTPUT_KEY
        assert args["Tags"] == [
            {"Key": "cost-center", "Value": "ml-4711"},
            {"Key": "data-classification", "Value": "internal"},
        ]


def test_only_steps_that_create_resources_receive_their_guardrails(guarded: dict[str, dict[str, Any]]) -> None:
    config = shipped_config("reference")
    planned = p.build_plan(config).processing_steps
    creators = {s.name for s in planned if STEP_KINDS[s.kind].creates_resources}
    assert {s.kind for s in planned if s.name in creators} == {"finetune", "deploy", "champion", "register"}
    for name, step in guarded.items():
        environment = step["Arguments"]["Environment"]
        received = JobGuardrails.from_environment(environment)
        if name in creators:
            # What the step code decodes is what the stack asked for.
            assert received == RESOURCES
        else:
            # Preprocess is cached on its Environment; the others do not create anything.
            assert not any(
                key.startswith(("EVALOPS_TRAINING_", "EVALOPS_MODEL_", "EVALOPS_EXTRA_")) for key in environment
            )


def test_without_guardrails_nothing_changes_but_the_steps_fall_back_to_the_environment_key() -> None:
    for step in processing_steps(Guardrails()).values():
        args = step["Arguments"]
        assert "NetworkConfig" not in args and "Tags" not in args
        received = JobGuardrails.from_environment(args["Environment"])
        key = args["Environment"][KMS_KEY_ENV]
        assert received == JobGuardrails(training_volume_kms_key=key, training_output_kms_key=key, endpoint_kms_key=key)


def test_the_stack_template_carries_concrete_guardrails_and_the_environment_key_by_default() -> None:
    config = shipped_config("reference")
    plan = p.build_plan(config)
    names = {"code_object_key": "code.zip", "pipeline_name": "evalops-prod-x", "resource_prefix": "evalops-prod-"}
    only_vpc = Guardrails(processing_vpc=PROCESSING_VPC, resources=JobGuardrails(model_vpc=RESOURCE_VPC))
    definition = json.loads(render_for_cloudformation(plan, config, guardrails=only_vpc, **names).body)
    for step in all_steps(definition):
        if step["Type"] != "Processing":
            continue
        args = step["Arguments"]
        assert args["NetworkConfig"]["VpcConfig"]["Subnets"] == ["subnet-0aaa1111bbbb2222c"]
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${KmsKeyArn}"
        if step["Name"].startswith("Deploy-"):
            assert args["Environment"]["EVALOPS_MODEL_SUBNETS"] == "subnet-0ddd3333eeee4444f,subnet-0fff5555aaaa6666b"


def test_a_guardrail_value_that_would_be_substituted_is_refused() -> None:
    config = shipped_config("reference")
    sneaky = Guardrails(resources=JobGuardrails(tags=(("team", "evalops-placeholder-x"),)))
    with pytest.raises(ValueError, match=r"guardrails\.resources\.tags"):
        render_for_cloudformation(
            p.build_plan(config),
            config,
            code_object_key="c.zip",
            pipeline_name="n",
            resource_prefix="x-",
            guardrails=sneaky,
        )


def test_a_value_too_long_for_a_job_environment_is_refused() -> None:
    many = Vpc(subnets=tuple(f"subnet-{index:017x}" for index in range(11)), security_group_ids=("sg-0a",))
    with pytest.raises(ValueError, match=r"EVALOPS_MODEL_SUBNETS would be 274 characters; .* at most 256"):
        JobGuardrails(model_vpc=many).to_environment()


def test_the_guarded_definition_validates_against_the_reference_schema() -> None:
    if not SCHEMA_PATH.exists():
        pytest.skip(f"reference schema not present at {SCHEMA_PATH}")
    validator = jsonschema.Draft7Validator(patched_schema(json.loads(SCHEMA_PATH.read_text())))
    config = shipped_config("reference")
    text = render_definition(p.build_plan(config), config, targets_for(config, guardrails=GUARDRAILS))
    errors = [f"{list(e.absolute_path)}: {e.message[:200]}" for e in validator.iter_errors(json.loads(text))]
    assert errors == []
