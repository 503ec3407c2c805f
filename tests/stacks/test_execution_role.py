"""Least privilege: every IAM statement of every stack, and what the execution role may touch."""

from __future__ import annotations

import fnmatch
import json
from typing import Any

import pytest
from aws_cdk.assertions import Template

from step_code.contract.naming import run_scoped_name
from tests.stacks.conftest import DEV_ACCOUNT, PROD_ACCOUNT, SynthesizedApp, as_list, policy_statements

# The only actions allowed on Resource "*": IAM offers no resource-level permissions for them.
UNSCOPABLE_ACTIONS = {
    "cloudwatch:PutMetricData",
    "ecr:GetAuthorizationToken",
    "sagemaker:ListEndpoints",
    "sagemaker:ListModelPackages",
    "sagemaker:ListEndpointConfigs",
    "sagemaker:ListModels",
    "sagemaker:ListTrainingJobs",
    # With a VPC: SageMaker describes the network before it creates interfaces in it.
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeVpcs",
    "ec2:DescribeDhcpOptions",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
}


def execution_role_statements(app: SynthesizedApp, stage_index: int = 0) -> dict[str, dict[str, Any]]:
    """Statements of the execution role's policies by Sid."""
    template = app.template(app.stages[stage_index].evaluation)
    statements = {}
    for logical_id, statement in policy_statements(template):
        if logical_id.startswith("ExecutionRole") and "Sid" in statement:
            statements[statement["Sid"]] = statement
    return statements


@pytest.mark.parametrize("app_name", ["reference_app", "mixed_app", "guarded_app"])
def test_no_statement_grants_everything(app_name: str, request: pytest.FixtureRequest) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    for stack in app.stacks():
        for logical_id, statement in policy_statements(Template.from_stack(stack)):
            actions = as_list(statement["Action"])
            assert not any(action == "*" or action.endswith(":*") for action in actions), (logical_id, statement)
            if "*" in as_list(statement["Resource"]):
                assert set(actions) <= UNSCOPABLE_ACTIONS, (stack.stack_name, logical_id, statement)


def test_the_role_is_assumed_by_sagemaker_and_passes_only_itself(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.evaluation)
    ((role_id, role),) = template.find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "evalops-dev-sagemaker-execution"}}
    ).items()
    # Only on behalf of this account's SageMaker resources in this region (confused-deputy prevention).
    assert role["Properties"]["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "sagemaker.amazonaws.com"},
            "Condition": {
                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}},
                "ArnLike": {
                    "aws:SourceArn": {
                        "Fn::Join": ["", ["arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":*"]]
                    }
                },
            },
        }
    ]
    pass_role = execution_role_statements(reference_app)["PassSelfToSageMaker"]
    assert pass_role["Resource"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert pass_role["Condition"] == {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}


def test_run_resources_are_matched_by_the_environment_prefix(mixed_app: SynthesizedApp) -> None:
    prod = execution_role_statements(mixed_app, stage_index=1)
    base = f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}"
    assert sorted(prod["ManageRunEndpoints"]["Resource"]) == [
        f"{base}:endpoint-config/acme-prod-*",
        f"{base}:endpoint/acme-prod-*",
        f"{base}:model/acme-prod-*",
    ]
    assert prod["ManageRunTrainingJobs"]["Resource"] == f"{base}:training-job/acme-prod-*"
    assert prod["RunPipelineJobs"]["Resource"] == f"{base}:processing-job/pipelines-*"


PIPELINE_EXECUTION_TAG = "aws:ResourceTag/sagemaker:pipeline-execution-arn"


def test_only_this_pipelines_jobs_may_be_stopped_or_tagged(mixed_app: SynthesizedApp) -> None:
    """Every pipeline's jobs are named `pipelines-*`: the execution tag SageMaker puts on them tells them apart."""
    prod = execution_role_statements(mixed_app, stage_index=1)
    executions = f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}:pipeline/acme-prod-{{}}/execution/*"
    own = [executions.format("Mixed-Providers"), executions.format("mixed-providers")]
    jobs = [s for s in prod.values() if "processing-job/pipelines-" in json.dumps(s["Resource"])]
    for statement in jobs:
        actions = set(as_list(statement["Action"]))
        if actions - {"sagemaker:CreateProcessingJob", "sagemaker:DescribeProcessingJob"}:
            conditions = statement.get("Condition", {})
            assert conditions in (
                {"StringLike": {PIPELINE_EXECUTION_TAG: own}},
                # Tags given at creation, before the job carries any pipeline's execution tag.
                {"Null": {PIPELINE_EXECUTION_TAG: "true"}},
            ), statement
    assert sorted(prod["ControlOwnPipelineJobs"]["Action"]) == ["sagemaker:AddTags", "sagemaker:StopProcessingJob"]
    assert prod["ControlOwnPipelineJobs"]["Condition"] == {"StringLike": {PIPELINE_EXECUTION_TAG: own}}
    assert prod["TagNewPipelineJobs"]["Action"] == "sagemaker:AddTags"
    another_pipeline = f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}:pipeline/acme-prod-other/execution/a1b2c3d4e5f6"
    assert not any(fnmatch.fnmatchcase(another_pipeline, pattern) for pattern in own)


def test_registration_is_limited_to_the_configured_groups_in_lower_case(reference_app: SynthesizedApp) -> None:
    statement = execution_role_statements(reference_app)["RegisterWinners"]
    assert statement["Resource"] == [
        {
            "Fn::Join": [
                "",
                [
                    "arn:aws:sagemaker:us-east-1:",
                    {"Ref": "AWS::AccountId"},
                    ":model-package-group/llmevaluationpipeline",
                ],
            ]
        },
        {
            "Fn::Join": [
                "",
                ["arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":model-package/llmevaluationpipeline/*"],
            ]
        },
    ]


def test_model_cards_are_written_only_for_the_configured_groups(reference_app: SynthesizedApp) -> None:
    statement = execution_role_statements(reference_app)["WriteModelCards"]
    assert sorted(as_list(statement["Action"])) == [
        "sagemaker:CreateModelCard",
        "sagemaker:DescribeModelCard",
        "sagemaker:UpdateModelCard",
    ]
    assert statement["Resource"] == {
        "Fn::Join": [
            "",
            ["arn:aws:sagemaker:us-east-1:", {"Ref": "AWS::AccountId"}, ":model-card/llmevaluationpipeline-v*"],
        ]
    }


def test_models_are_reached_only_where_the_config_points(mixed_app: SynthesizedApp) -> None:
    dev = execution_role_statements(mixed_app)
    assert sorted(dev["InvokeBedrockModels"]["Resource"]) == [
        "arn:aws:bedrock:*::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        f"arn:aws:bedrock:us-east-1:{DEV_ACCOUNT}:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-haiku-20240307-v1:0",
    ]
    assert dev["InvokeBedrockModels"]["Action"] == "bedrock:InvokeModel"
    assert (
        dev["InvokeExistingEndpoints"]["Resource"]
        == f"arn:aws:sagemaker:us-east-1:{DEV_ACCOUNT}:endpoint/team-llama-endpoint"
    )
    # The cost limit of an existing endpoint reads its instances: DescribeEndpoint, then its config.
    endpoint_actions = sorted(dev["InvokeExistingEndpoints"]["Action"])
    assert endpoint_actions == ["sagemaker:DescribeEndpoint", "sagemaker:InvokeEndpoint"]
    assert dev["DescribeExistingEndpointConfigs"] == {
        "Sid": "DescribeExistingEndpointConfigs",
        "Effect": "Allow",
        "Action": "sagemaker:DescribeEndpointConfig",
        "Resource": f"arn:aws:sagemaker:us-east-1:{DEV_ACCOUNT}:endpoint-config/*",
    }
    # The response cache keys an existing endpoint's answers by the models behind it (read-only).
    assert dev["DescribeExistingEndpointModels"] == {
        "Sid": "DescribeExistingEndpointModels",
        "Effect": "Allow",
        "Action": "sagemaker:DescribeModel",
        "Resource": f"arn:aws:sagemaker:us-east-1:{DEV_ACCOUNT}:model/*",
    }
    # Warm pools come with CreateTrainingJob; the steps never change or end one.
    assert "sagemaker:UpdateTrainingJob" not in json.dumps(dev)
    assert sorted(dev["ReadJumpStartArtifacts"]["Resource"]) == [
        "arn:aws:s3:::jumpstart-cache-prod-us-east-1/*",
        "arn:aws:s3:::jumpstart-private-cache-prod-us-east-1/*",
    ]
    prod = execution_role_statements(mixed_app, stage_index=1)
    assert "arn:aws:s3:::jumpstart-cache-prod-eu-west-1/*" in prod["ReadJumpStartArtifacts"]["Resource"]


def test_the_reference_config_needs_no_bedrock_or_existing_endpoint(reference_app: SynthesizedApp) -> None:
    statements = execution_role_statements(reference_app)
    assert "InvokeBedrockModels" not in statements
    assert "InvokeExistingEndpoints" not in statements
    assert "DescribeExistingEndpointConfigs" not in statements


def test_logs_reach_the_job_groups_and_the_run_endpoints_own_groups(mixed_app: SynthesizedApp) -> None:
    prod = execution_role_statements(mixed_app, stage_index=1)
    groups = f"arn:aws:logs:eu-west-1:{PROD_ACCOUNT}:log-group:/aws/sagemaker"
    patterns = as_list(prod["WriteSageMakerLogs"]["Resource"])
    assert sorted(patterns) == [
        f"{groups}/Endpoints/acme-prod-*",
        f"{groups}/ProcessingJobs:*",
        f"{groups}/TrainingJobs:*",
    ]
    # SageMaker writes an endpoint's container logs to /aws/sagemaker/Endpoints/<endpoint name>.
    endpoint = run_scoped_name("acme-prod-", "falcon-7b", "a1b2c3d4e5f6")
    for resource in (f"{groups}/Endpoints/{endpoint}", f"{groups}/Endpoints/{endpoint}:log-stream:AllTraffic/i-0"):
        assert any(fnmatch.fnmatchcase(resource, pattern) for pattern in patterns), resource
    assert not any(fnmatch.fnmatchcase(f"{groups}/Endpoints/someone-elses", pattern) for pattern in patterns)


def test_metrics_are_put_only_into_sagemaker_namespaces(reference_app: SynthesizedApp) -> None:
    assert execution_role_statements(reference_app)["PutSageMakerMetrics"] == {
        "Sid": "PutSageMakerMetrics",
        "Effect": "Allow",
        "Action": "cloudwatch:PutMetricData",
        "Resource": "*",
        "Condition": {"StringLike": {"cloudwatch:namespace": "/aws/sagemaker/*"}},
    }


def test_images_come_from_the_step_repository_and_aws_owned_registries(reference_app: SynthesizedApp) -> None:
    resources = as_list(execution_role_statements(reference_app)["PullImages"]["Resource"])
    (step_repository,) = [r for r in resources if not isinstance(r, str)]
    assert "cdk-hnb659fds-container-assets-" in json.dumps(step_repository)
    aws_owned = [r for r in resources if isinstance(r, str)]
    assert "arn:aws:ecr:us-east-1:763104351884:repository/*" in aws_owned
    assert all(r.startswith("arn:aws:ecr:us-east-1:") and r.endswith(":repository/*") for r in aws_owned)


def test_data_reads_stay_in_the_catalog_prefix_and_configured_inputs(mixed_app: SynthesizedApp) -> None:
    dev = execution_role_statements(mixed_app)
    (catalog,) = as_list(dev["ReadPromptCatalog"]["Resource"])
    assert joined_tail(catalog) == "/prompt-catalog/*"
    assert dev["ListPromptCatalog"]["Condition"] == {"StringLike": {"s3:prefix": ["prompt-catalog/*"]}}
    assert sorted(dev["ReadConfiguredInputs"]["Resource"]) == [
        "arn:aws:s3:::team-datasets/trivia/evaluation.jsonl*",
        "arn:aws:s3:::team-datasets/trivia/train/*",
    ]


def joined_tail(value: dict[str, Any]) -> str:
    parts = value["Fn::Join"][1]
    return str(parts[-1])


def test_the_role_may_use_the_key_for_sagemaker_volumes_only_through_grants(reference_app: SynthesizedApp) -> None:
    statement = execution_role_statements(reference_app)["GrantKeyToSageMakerVolumes"]
    assert statement["Action"] == "kms:CreateGrant"
    assert statement["Condition"] == {"Bool": {"kms:GrantIsForAWSResource": "true"}}
