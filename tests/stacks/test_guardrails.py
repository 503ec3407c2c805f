"""Account guardrails per environment: how environments.yaml and an SDK defaults file combine, and what the
synthesized templates carry with and without them (cdk-nag and cfn-lint run over `guarded_app` in their own files).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cdk.assertions import Annotations, Match, Template

from pipeline_definitions.loading.account_guardrails import AccountGuardrails, check_isolation, resolve_guardrails
from pipeline_definitions.loading.environments import Environment, load_environments
from pipeline_definitions.loading.loader import ConfigError, load_config
from step_code.contract.config import Config
from step_code.contract.job_env import WARM_POOL_KEEP_ALIVE_ENV, JobGuardrails, Vpc
from tests.stacks.conftest import (
    GUARDED_ACCOUNT,
    GUARDED_BOUNDARY,
    GUARDED_KEEP_ALIVE,
    GUARDED_OUTPUT_KEY,
    GUARDED_SECURITY_GROUPS,
    GUARDED_SUBNETS,
    GUARDED_TAGS,
    GUARDED_VOLUME_KEY,
    SynthesizedApp,
    policy_statements,
)
from tests.stacks.test_cdk_app import cdk_synth

SEED_DEFAULTS = Path("/work/shared/seed-sample/configs/sm_pipelines__config.yaml")
KEY_A = "arn:aws:kms:us-east-1:123456789012:key/aaaaaaaa-0000-0000-0000-000000000000"
KEY_B = "arn:aws:kms:us-east-1:123456789012:key/bbbbbbbb-0000-0000-0000-000000000000"
FILE_VPC = {"Subnets": ["subnet-0ccc0000dddd1111e"], "SecurityGroupIds": ["sg-0ccc0000dddd1111e"]}


def environment(**fields: Any) -> Environment:
    return Environment.model_validate({"name": "prod", "config": "configs/reference.yaml", **fields})


def write_defaults(tmp_path: Path, sagemaker: dict[str, Any], **top: Any) -> str:
    path = tmp_path / "defaults.yaml"
    path.write_text(yaml.safe_dump({"SchemaVersion": "1.0", "SageMaker": sagemaker, **top}, sort_keys=False))
    return str(path)


def resolve(tmp_path: Path, **fields: Any) -> AccountGuardrails:
    return resolve_guardrails(environment(**fields), tmp_path)


# --- precedence and the defaults file (no synthesis) ---


def test_nothing_set_means_no_vpc_no_isolation_and_the_environment_key(tmp_path: Path) -> None:
    guardrails = resolve(tmp_path)
    assert guardrails == AccountGuardrails()
    assert guardrails.definition.resources == JobGuardrails()


def test_the_defaults_file_applies_per_kind_and_the_environment_wins_per_field(tmp_path: Path) -> None:
    defaults = write_defaults(
        tmp_path,
        {
            "ProcessingJob": {
                "NetworkConfig": {"VpcConfig": FILE_VPC},
                "ProcessingResources": {"ClusterConfig": {"VolumeKmsKeyId": KEY_A}},
                "Tags": [{"Key": "team", "Value": "file"}, {"Key": "owner", "Value": "platform"}],
            },
            "TrainingJob": {
                "VpcConfig": FILE_VPC,
                "EnableNetworkIsolation": True,
                "EnableInterContainerTrafficEncryption": True,
                "OutputDataConfig": {"KmsKeyId": KEY_A},
            },
            "Model": {"EnableNetworkIsolation": True},
            "EndpointConfig": {"KmsKeyId": KEY_A, "Tags": [{"Key": "team", "Value": "endpoint"}]},
        },
    )
    file_vpc = Vpc(tuple(FILE_VPC["Subnets"]), tuple(FILE_VPC["SecurityGroupIds"]))
    only_file = resolve(tmp_path, sagemaker_defaults=defaults)
    assert only_file.definition.processing_vpc == file_vpc
    assert only_file.definition.processing_volume_kms_key_arn == KEY_A
    resources = only_file.definition.resources
    assert (resources.training_vpc, resources.model_vpc) == (file_vpc, None)
    assert resources.training_network_isolation and resources.model_network_isolation
    assert resources.training_inter_container_encryption
    assert (resources.training_output_kms_key, resources.endpoint_kms_key) == (KEY_A, KEY_A)
    assert resources.training_volume_kms_key is None
    assert dict(resources.tags) == {"team": "file", "owner": "platform"}
    assert only_file.vpcs == (file_vpc,) and only_file.extra_key_arns == (KEY_A,)
    # Two sections disagree on a tag: the first wins, and the build says so.
    assert any("tag 'team' is also given another value" in warning for warning in only_file.warnings)

    explicit = resolve(
        tmp_path,
        sagemaker_defaults=defaults,
        vpc={"subnets": GUARDED_SUBNETS, "security_group_ids": GUARDED_SECURITY_GROUPS},
        network_isolation=False,
        volume_kms_key_arn=KEY_B,
        tags={"team": "environment"},
    )
    environment_vpc = Vpc(tuple(GUARDED_SUBNETS), tuple(GUARDED_SECURITY_GROUPS))
    resources = explicit.definition.resources
    assert explicit.definition.processing_vpc == resources.training_vpc == resources.model_vpc == environment_vpc
    assert not resources.training_network_isolation and not resources.model_network_isolation
    assert explicit.definition.processing_volume_kms_key_arn == resources.endpoint_kms_key == KEY_B
    # The file still fills what the environment leaves unset, and its tags are added where the key is free.
    assert resources.training_output_kms_key == KEY_A
    assert dict(resources.tags) == {"team": "environment", "owner": "platform"}
    assert explicit.extra_key_arns == (KEY_A, KEY_B)


def test_the_reference_samples_defaults_file_is_read_with_a_reason_for_what_does_not_apply(tmp_path: Path) -> None:
    guardrails = resolve(tmp_path, sagemaker_defaults=str(SEED_DEFAULTS))
    assert guardrails.definition == AccountGuardrails().definition
    (warning,) = guardrails.warnings
    assert warning.startswith(f"{SEED_DEFAULTS}:3: SageMaker.PythonSDK: not applied: settings of the SDK's own")
    assert "the SDK's own schema refuses it too" in warning and "\n" not in warning


@pytest.mark.parametrize(
    ("sagemaker", "message"),
    [
        (
            {"TrainingJob": {"VpcConfig": {"Subnets": ["subnet-1"], "SecurityGroupIds": "sg-1"}}},
            "SecurityGroupIds: 'sg-1' is not of type 'array' (the SDK's defaults schema)",
        ),
        (
            {"EndpointConfig": {"KmsKeyId": "alias/ml"}},
            "KmsKeyId: 'alias/ml' is not a KMS key ARN",
        ),
        (
            {"Model": {"VpcConfig": {"Subnets": ["subnet-1"]}}},
            "SecurityGroupIds: missing: Model.VpcConfig.Subnets is given",
        ),
        (
            {"Endpoint": {"Tags": [{"Key": "evalops:keep", "Value": "true"}]}},
            "Tags: 'evalops:keep' is not a tag key evalops can add",
        ),
    ],
)
def test_a_bad_defaults_file_is_one_line_naming_file_line_and_key(
    tmp_path: Path, sagemaker: dict[str, Any], message: str
) -> None:
    defaults = write_defaults(tmp_path, sagemaker)
    with pytest.raises(ConfigError) as raised:
        resolve(tmp_path, sagemaker_defaults=defaults)
    (problem,) = raised.value.problems
    assert message in str(problem) and str(problem).startswith(defaults) and "\n" not in str(problem)
    # The line is that of the key the problem names, or of the value that makes it a problem.
    assert problem.line is not None
    line = Path(defaults).read_text().splitlines()[problem.line - 1]
    assert any(f"{key}:" in line for key in [*problem.key_path.split(".")[-2:], "Subnets"])


def test_a_file_that_is_not_an_sdk_defaults_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "defaults.yaml"
    path.write_text("SchemaVersion: '2.0'\nSageMaker: {}\n")
    with pytest.raises(ConfigError) as raised:
        resolve(tmp_path, sagemaker_defaults=str(path))
    assert next(str(p) for p in raised.value.problems).startswith(f"{path}:1: SchemaVersion: ")


def test_the_warm_pool_default_reaches_the_job_guardrails_and_is_bounded_as_sagemaker_bounds_it(
    tmp_path: Path,
) -> None:
    resources = resolve(tmp_path, warm_pool_keep_alive_seconds=0).definition.resources
    assert resources.warm_pool_keep_alive_seconds == 0
    assert resources.to_environment() == {WARM_POOL_KEEP_ALIVE_ENV: "0"}
    assert JobGuardrails.from_environment(resources.to_environment()) == resources
    for value in (-1, 3601):
        with pytest.raises(ValueError, match="warm_pool_keep_alive_seconds"):
            environment(warm_pool_keep_alive_seconds=value)


def test_environment_settings_are_checked_with_their_line(tmp_path: Path) -> None:
    path = tmp_path / "environments.yaml"
    path.write_text(
        "environments:\n"
        "  - name: prod\n"
        "    config: configs/reference.yaml\n"
        "    vpc:\n"
        "      subnets: [vpc-123]\n"
        "      security_group_ids: [sg-0aaa1111bbbb2222c]\n"
        "    tags: {'aws:owner': x}\n"
        "    permissions_boundary_arn: boundary\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_environments(path)
    lines = [str(problem) for problem in raised.value.problems]
    assert f"{path}:5: environments[0].vpc.subnets[0]: 'vpc-123' is not a subnet id (expected subnet-<hex>)" in lines
    assert any(line.startswith(f"{path}:7: environments[0].tags") and "not starting aws:" in line for line in lines)
    assert any(line.startswith(f"{path}:8: environments[0].permissions_boundary_arn") for line in lines)


def test_isolated_models_refuse_a_container_that_downloads_its_weights(tmp_path: Path, repo_root: Path) -> None:
    reference = load_config(repo_root / "configs/reference.yaml")
    data = reference.config.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["models"][1] = {**data["models"][1], "model_provider": "huggingface", "model_id": "tiiuae/falcon-7b-instruct"}
    loaded = dataclasses.replace(reference, config=Config.model_validate(data))
    config = reference.path
    isolated = environment(network_isolation=True)
    with pytest.raises(ConfigError) as raised:
        check_isolation(resolve_guardrails(isolated, tmp_path), isolated, loaded)
    (problem,) = raised.value.problems
    assert str(problem).startswith(f"{config}: models[1].model_provider: model 'falcon-7b' downloads its weights")
    check_isolation(resolve_guardrails(environment(), tmp_path), environment(), loaded)


# --- the synthesized templates ---


def inline_definition(app: SynthesizedApp) -> dict[str, Any]:
    template = app.template(app.stage.evaluation)
    ((_, pipeline),) = template.find_resources("AWS::SageMaker::Pipeline").items()
    body, _values = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    return dict(json.loads(body))


def processing_steps(definition: dict[str, Any]) -> list[dict[str, Any]]:
    steps, pending = [], list(definition["Steps"])
    while pending:
        step = pending.pop(0)
        if step["Type"] == "Condition":
            pending += step["Arguments"]["IfSteps"] + step["Arguments"]["ElseSteps"]
        elif step["Type"] == "Processing":
            steps.append(step)
    return steps


def role_statements(app: SynthesizedApp) -> dict[str, dict[str, Any]]:
    template = app.template(app.stage.evaluation)
    return {
        statement["Sid"]: statement
        for logical_id, statement in policy_statements(template)
        if logical_id.startswith("ExecutionRole") and "Sid" in statement
    }


def test_every_processing_job_of_the_guarded_pipeline_is_in_the_vpc(guarded_app: SynthesizedApp) -> None:
    steps = processing_steps(inline_definition(guarded_app))
    assert steps
    for step in steps:
        args = step["Arguments"]
        assert args["NetworkConfig"] == {
            "EnableNetworkIsolation": False,
            "VpcConfig": {"SecurityGroupIds": GUARDED_SECURITY_GROUPS, "Subnets": GUARDED_SUBNETS},
        }
        assert args["ProcessingResources"]["ClusterConfig"]["VolumeKmsKeyId"] == GUARDED_VOLUME_KEY
        # The environment names no output key; the SDK defaults file's is for training jobs only.
        assert args["ProcessingOutputConfig"]["KmsKeyId"] == "${KmsKeyArn}"
        assert {tag["Key"]: tag["Value"] for tag in args["Tags"]} == {**GUARDED_TAGS, "data-classification": "internal"}
        environment = args["Environment"]
        if step["Name"].startswith(("Deploy-", "Finetune-")):
            received = JobGuardrails.from_environment(environment)
            assert (
                received.model_vpc
                == received.training_vpc
                == Vpc(tuple(GUARDED_SUBNETS), tuple(GUARDED_SECURITY_GROUPS))
            )
            assert received.model_network_isolation and received.training_network_isolation
            assert received.training_output_kms_key == GUARDED_OUTPUT_KEY
            assert received.training_volume_kms_key == received.endpoint_kms_key == GUARDED_VOLUME_KEY
            assert received.warm_pool_keep_alive_seconds == GUARDED_KEEP_ALIVE


def test_without_guardrails_the_pipeline_has_no_vpc_and_the_role_no_network_rights(
    reference_app: SynthesizedApp,
) -> None:
    for step in processing_steps(inline_definition(reference_app)):
        assert "NetworkConfig" not in step["Arguments"] and "Tags" not in step["Arguments"]
        assert not any(key.startswith("EVALOPS_MODEL_") for key in step["Arguments"]["Environment"])
        assert WARM_POOL_KEEP_ALIVE_ENV not in step["Arguments"]["Environment"]
    for stack in reference_app.stacks():
        template = Template.from_stack(stack)
        for _, statement in policy_statements(template):
            actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
            assert not any(action.startswith("ec2:") for action in actions)
        for role in template.find_resources("AWS::IAM::Role").values():
            assert "PermissionsBoundary" not in role["Properties"]


def test_the_role_may_create_interfaces_only_in_the_configured_subnets(guarded_app: SynthesizedApp) -> None:
    statements = role_statements(guarded_app)
    prefix = f"arn:aws:ec2:eu-west-1:{GUARDED_ACCOUNT}:"
    subnet_arns = [f"{prefix}subnet/{subnet}" for subnet in GUARDED_SUBNETS]
    in_subnets = {"ArnEquals": {"ec2:Subnet": subnet_arns}}
    assert sorted(statements["CreateInterfacesInConfiguredSubnets"]["Resource"]) == sorted(
        [*subnet_arns, *(f"{prefix}security-group/{group}" for group in GUARDED_SECURITY_GROUPS)]
    )
    for sid, actions in (
        ("CreateInterfaces", "ec2:CreateNetworkInterface"),
        (
            "ManageInterfacesInConfiguredSubnets",
            [
                "ec2:CreateNetworkInterfacePermission",
                "ec2:DeleteNetworkInterface",
                "ec2:DeleteNetworkInterfacePermission",
            ],
        ),
    ):
        assert statements[sid]["Action"] == actions
        assert statements[sid]["Resource"] == f"{prefix}network-interface/*"
        assert statements[sid]["Condition"] == in_subnets
    assert all(action.startswith("ec2:Describe") for action in statements["DescribeNetwork"]["Action"])


def test_the_role_may_use_the_configured_keys_through_sagemaker_grants(guarded_app: SynthesizedApp) -> None:
    statements = role_statements(guarded_app)
    for sid in ("UseEnvironmentKey", "GrantKeyToSageMakerVolumes"):
        resources = statements[sid]["Resource"]
        assert GUARDED_OUTPUT_KEY in resources and GUARDED_VOLUME_KEY in resources and len(resources) == 3
    assert statements["GrantKeyToSageMakerVolumes"]["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}


def test_every_role_has_the_boundary_and_every_taggable_resource_the_tags(guarded_app: SynthesizedApp) -> None:
    roles = 0
    for stack in guarded_app.stacks():
        template = Template.from_stack(stack)
        for role in template.find_resources("AWS::IAM::Role").values():
            roles += 1
            assert role["Properties"]["PermissionsBoundary"] == GUARDED_BOUNDARY
    # The execution role, the safety net's, and the one CDK makes for its bucket deployments.
    assert roles >= 3
    template = guarded_app.template(guarded_app.stage.storage)
    for resource_type in ("AWS::KMS::Key", "AWS::S3::Bucket"):
        for resource in template.find_resources(resource_type).values():
            tags = {tag["Key"]: tag["Value"] for tag in resource["Properties"]["Tags"]}
            assert tags["cost-center"] == "ml-4711" and tags["data-classification"] == "internal"
    ((_, pipeline),) = (
        guarded_app.template(guarded_app.stage.evaluation).find_resources("AWS::SageMaker::Pipeline").items()
    )
    assert {"Key": "cost-center", "Value": "ml-4711"} in pipeline["Properties"]["Tags"]


@pytest.mark.slow
def test_cdk_synth_reads_the_reference_samples_defaults_file_offline_and_says_what_does_not_apply(
    repo_root: Path, tmp_path: Path
) -> None:
    environments = tmp_path / "environments.yaml"
    environments.write_text(
        yaml.safe_dump(
            {
                "environments": [
                    {
                        "name": "prod",
                        "config": "configs/reference.yaml",
                        "vpc": {"subnets": GUARDED_SUBNETS, "security_group_ids": GUARDED_SECURITY_GROUPS},
                        "sagemaker_defaults": str(SEED_DEFAULTS),
                    }
                ]
            }
        )
    )
    synth = cdk_synth(repo_root, tmp_path / "out", f"environments={environments}")
    assert synth.returncode == 0, synth.stderr
    warnings = [line for line in synth.stderr.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and warnings[0].startswith(
        f"warning: {SEED_DEFAULTS}:3: SageMaker.PythonSDK: not applied"
    )


def test_what_the_defaults_file_holds_but_evalops_does_not_apply_is_a_build_warning(
    guarded_app: SynthesizedApp,
) -> None:
    warnings = Annotations.from_stack(guarded_app.stage.evaluation).find_warning(
        "*", Match.string_like_regexp("SageMaker.ProcessingJob.RoleArn: not applied: evalops creates the role")
    )
    assert len(warnings) == 1
