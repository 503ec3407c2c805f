"""The synthesized delivery pipeline: source and trigger, synth step, one stage per environment, the start."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aws_cdk import App, Stack, Stage
from aws_cdk.assertions import Template
from constructs import Construct

from pipeline_definitions.loading.environments import DEFAULT_TRIGGER_PATHS, Environment
from pipeline_definitions.loading.loader import ConfigError
from stacks.components.delivery_evaluation_start import EXECUTION_ARN_VARIABLE, START_COMMANDS
from stacks.delivery_stack import (
    CONNECTION_ARN_CONTEXT_KEY,
    FAST_TESTS_COMMAND,
    SETUP_COMMAND,
    DeliveryStack,
    pinned_npm_version,
)
from tests.delivery.conftest import CONNECTION_ARN, DEV_ACCOUNT, PROD_ACCOUNT, TOOLING_ACCOUNT, environments_file

Build = Callable[..., tuple[App, DeliveryStack]]
PSEUDO_PARAMETERS = {"AWS::Partition": "aws"}


def resources(template: Template, kind: str) -> dict[str, Any]:
    return dict(template.find_resources(kind))


def pipeline_properties(template: Template) -> dict[str, Any]:
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline").values()
    return dict(pipeline["Properties"])


def stage(properties: dict[str, Any], name: str) -> list[dict[str, Any]]:
    return next(s["Actions"] for s in properties["Stages"] if s["Name"] == name)


def project_for(template: Template, action: dict[str, Any]) -> dict[str, Any]:
    return dict(resources(template, "AWS::CodeBuild::Project")[action["Configuration"]["ProjectName"]["Ref"]])


def joined(value: Any) -> str:
    """An ARN as text; CDK renders some as Fn::Join over AWS::Partition and writes others with "aws" in place."""
    if isinstance(value, str):
        return value
    parts = value["Fn::Join"][1]
    return "".join(part if isinstance(part, str) else PSEUDO_PARAMETERS[part["Ref"]] for part in parts)


def account_of(arn: Any) -> str:
    found = re.search(r":iam::(\d{12}):role/", joined(arn))
    assert found is not None, arn
    return found.group(1)


@pytest.fixture(scope="module")
def delivery(build_delivery: Build, tmp_path_factory: pytest.TempPathFactory) -> tuple[DeliveryStack, Template]:
    _, stack = build_delivery(environments_file(), outdir=tmp_path_factory.mktemp("delivery"))
    return stack, Template.from_stack(stack)


def test_pipeline_is_v2_self_mutating_with_rotated_cross_account_keys(delivery: tuple[DeliveryStack, Template]) -> None:
    _, template = delivery
    properties = pipeline_properties(template)
    assert properties["PipelineType"] == "V2"
    assert properties["Name"] == "evalops-delivery"
    assert [a["Name"] for a in stage(properties, "UpdatePipeline")] == ["SelfMutate"]
    (key,) = resources(template, "AWS::KMS::Key").values()
    assert key["Properties"]["EnableKeyRotation"] is True
    (bucket,) = resources(template, "AWS::S3::Bucket").values()
    encryption = bucket["Properties"]["BucketEncryption"]["ServerSideEncryptionConfiguration"][0]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "aws:kms"


def test_connection_source_is_started_only_by_the_filtered_push_trigger(
    delivery: tuple[DeliveryStack, Template],
) -> None:
    _, template = delivery
    properties = pipeline_properties(template)
    (source,) = stage(properties, "Source")
    assert source["ActionTypeId"]["Provider"] == "CodeStarSourceConnection"
    assert source["Configuration"] == {
        "ConnectionArn": CONNECTION_ARN,
        "FullRepositoryId": "acme/evalops",
        "BranchName": "main",
        "DetectChanges": False,
    }
    (trigger,) = properties["Triggers"]
    assert trigger["ProviderType"] == "CodeStarSourceConnection"
    assert trigger["GitConfiguration"]["SourceActionName"] == source["Name"]
    (push,) = trigger["GitConfiguration"]["Push"]
    assert push == {"Branches": {"Includes": ["main"]}, "FilePaths": {"Includes": list(DEFAULT_TRIGGER_PATHS)}}
    providers = {a["ActionTypeId"]["Provider"] for s in properties["Stages"] for a in s["Actions"]}
    assert "CodeCommit" not in providers


def test_synth_step_sets_up_runs_fast_tests_then_synthesizes(delivery: tuple[DeliveryStack, Template]) -> None:
    _, template = delivery
    (synth,) = stage(pipeline_properties(template), "Build")
    project = project_for(template, synth)
    assert project["Properties"]["Environment"]["Image"] == "aws/codebuild/amazonlinux-x86_64-standard:5.0"
    assert project["Properties"]["Environment"]["ComputeType"] == "BUILD_GENERAL1_MEDIUM"
    spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
    assert spec["phases"]["install"]["runtime-versions"] == {"python": "3.11", "nodejs": "22"}
    assert spec["phases"]["install"]["commands"] == [SETUP_COMMAND]
    tests, synthesize = spec["phases"]["build"]["commands"]
    assert tests == FAST_TESTS_COMMAND
    assert synthesize.endswith(f"npx cdk synth -c {CONNECTION_ARN_CONTEXT_KEY}={CONNECTION_ARN}")
    assert spec["artifacts"]["base-directory"] == "cdk.out"


def test_one_stage_per_environment_in_order_with_approval_where_asked(
    delivery: tuple[DeliveryStack, Template],
) -> None:
    _, template = delivery
    properties = pipeline_properties(template)
    assert [s["Name"] for s in properties["Stages"]] == ["Source", "Build", "UpdatePipeline", "Assets", "dev", "prod"]
    for name, account, region, approval in (
        ("dev", DEV_ACCOUNT, "us-east-1", False),
        ("prod", PROD_ACCOUNT, "eu-west-1", True),
    ):
        actions = sorted(stage(properties, name), key=lambda a: a["RunOrder"])
        deploys = [a for a in actions if a["ActionTypeId"]["Provider"] == "CloudFormation"]
        assert {a["Configuration"]["StackName"] for a in deploys} == {f"{name}-Evaluation"}
        # CodePipeline omits the region of actions in its own region.
        assert {a.get("Region", "us-east-1") for a in deploys} == {region}
        prepare = next(a for a in deploys if "RoleArn" in a["Configuration"])
        assert joined(prepare["Configuration"]["RoleArn"]).startswith(f"arn:aws:iam::{account}:role/")
        manual = [a for a in actions if a["ActionTypeId"]["Category"] == "Approval"]
        if approval:
            assert actions[0] is manual[0]
            assert manual[0]["RunOrder"] < min(a["RunOrder"] for a in deploys)
        else:
            assert manual == []
        start = actions[-1]
        assert start["Name"] == "StartEvaluation"
        assert start["RunOrder"] > max(a["RunOrder"] for a in deploys)


def test_start_step_assumes_the_environment_role_and_starts_its_pipeline(
    delivery: tuple[DeliveryStack, Template],
) -> None:
    stack, template = delivery
    properties = pipeline_properties(template)
    for name, account, region, prefix in (
        ("dev", DEV_ACCOUNT, "us-east-1", "evalops-dev-"),
        ("prod", PROD_ACCOUNT, "eu-west-1", "acme-prod-"),
    ):
        actions = stage(properties, name)
        start = next(a for a in actions if a["Name"] == "StartEvaluation")
        deploy = next(a for a in actions if a["Configuration"].get("ActionMode") == "CHANGE_SET_EXECUTE")
        assert start["Namespace"] == f"{name}-StartEvaluation"
        variables = {v["name"]: v["value"] for v in json.loads(start["Configuration"]["EnvironmentVariables"])}
        assert variables["CODEPIPELINE_EXECUTION_ID"] == "#{codepipeline.PipelineExecutionId}"
        namespace, output = variables["EVALUATION_PIPELINE_NAME"].strip("#{}").split(".")
        assert namespace == deploy["Namespace"]

        project = project_for(template, start)
        spec = json.loads(project["Properties"]["Source"]["BuildSpec"])
        assert spec["phases"]["build"]["commands"] == list(START_COMMANDS)
        assert spec["env"]["exported-variables"] == [EXECUTION_ARN_VARIABLE]
        project_env = {v["Name"]: v["Value"] for v in project["Properties"]["Environment"]["EnvironmentVariables"]}
        start_role_arn = f"arn:aws:iam::{account}:role/{prefix}delivery-start"
        assert joined(project_env["START_ROLE_ARN"]) == start_role_arn
        assert project_env["TARGET_REGION"] == region
        assert project_env["ENVIRONMENT_NAME"] == name

        caller_logical_id = project["Properties"]["ServiceRole"]["Fn::GetAtt"][0]
        caller = resources(template, "AWS::IAM::Role")[caller_logical_id]["Properties"]
        assert caller["RoleName"] == f"evalops-delivery-{name}-start-eval"
        (assume,) = caller["Policies"][0]["PolicyDocument"]["Statement"]
        assert assume["Action"] == "sts:AssumeRole"
        assert joined(assume["Resource"]) == start_role_arn

        target = Template.from_stack(stack_named(stack, name))
        assert output in target.to_json()["Outputs"]
        assert target.to_json()["Outputs"][output]["Value"] == f"{prefix}Evaluation"
        (role,) = resources(target, "AWS::IAM::Role").values()
        assert role["Properties"]["RoleName"] == f"{prefix}delivery-start"
        (trust,) = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        assert joined(trust["Principal"]["AWS"]) == f"arn:aws:iam::{TOOLING_ACCOUNT}:root"
        assert joined(trust["Condition"]["ArnEquals"]["aws:PrincipalArn"]) == (
            f"arn:aws:iam::{TOOLING_ACCOUNT}:role/evalops-delivery-{name}-start-eval"
        )
        (allow,) = role["Properties"]["Policies"][0]["PolicyDocument"]["Statement"]
        assert allow["Action"] == "sagemaker:StartPipelineExecution"
        # SageMaker ARNs carry the pipeline name in lower case.
        assert joined(allow["Resource"]) == (f"arn:aws:sagemaker:{region}:{account}:pipeline/{prefix}evaluation")


def stack_named(delivery_stack: DeliveryStack, stage_name: str) -> Stack:
    stage_construct = delivery_stack.node.find_child(stage_name)
    return next(child for child in stage_construct.node.children if isinstance(child, Stack))


def test_two_accounts_give_two_stages_with_their_own_names(build_delivery: Build, tmp_path: Path) -> None:
    envs = environments_file(stages=["prod", "dev"], name="team-delivery")
    _, stack = build_delivery(envs, outdir=tmp_path)
    properties = pipeline_properties(Template.from_stack(stack))
    assert [s["Name"] for s in properties["Stages"]][-2:] == ["prod", "dev"]
    assert properties["Name"] == "team-delivery"
    accounts = {
        name: {account_of(a["RoleArn"]) for a in stage(properties, name) if a["ActionTypeId"]["Category"] == "Deploy"}
        for name in ("prod", "dev")
    }
    assert accounts == {"prod": {PROD_ACCOUNT}, "dev": {DEV_ACCOUNT}}


def test_prompt_catalog_in_s3_is_a_second_source_overlaid_before_synth(build_delivery: Build, tmp_path: Path) -> None:
    envs = environments_file(prompt_catalog_source={"bucket": "acme-prompts", "key": "evalops/catalog.zip"})
    _, stack = build_delivery(envs, outdir=tmp_path)
    template = Template.from_stack(stack)
    properties = pipeline_properties(template)
    s3_source = next(a for a in stage(properties, "Source") if a["ActionTypeId"]["Provider"] == "S3")
    assert s3_source["Configuration"] == {
        "S3Bucket": "acme-prompts",
        "S3ObjectKey": "evalops/catalog.zip",
        "PollForSourceChanges": False,
    }
    (rule,) = resources(template, "AWS::Events::Rule").values()
    assert rule["Properties"]["EventPattern"]["detail"]["requestParameters"] == {
        "bucketName": ["acme-prompts"],
        "key": ["evalops/catalog.zip"],
    }
    (synth,) = stage(properties, "Build")
    inputs = [artifact["Name"] for artifact in synth["InputArtifacts"]]
    assert s3_source["OutputArtifacts"][0]["Name"] in inputs
    spec = json.loads(project_for(template, synth)["Properties"]["Source"]["BuildSpec"])
    link, setup = spec["phases"]["install"]["commands"]
    assert link.endswith('".prompt_catalog_s3"') and setup == SETUP_COMMAND
    assert spec["phases"]["build"]["commands"][:2] == ["cp -R .prompt_catalog_s3/. prompt_catalog/", FAST_TESTS_COMMAND]


def test_without_s3_catalog_there_is_no_second_source(delivery: tuple[DeliveryStack, Template]) -> None:
    _, template = delivery
    assert len(stage(pipeline_properties(template), "Source")) == 1
    assert resources(template, "AWS::Events::Rule") == {}


def test_stage_without_a_sagemaker_pipeline_is_refused(build_delivery: Build, tmp_path: Path) -> None:
    def empty_stage(scope: Construct, environment: Environment) -> Stage:
        built = Stage(scope, environment.name, env={"account": environment.account, "region": environment.region})
        Stack(built, "Nothing")
        return built

    with pytest.raises(ValueError, match=r"stage 'dev' must define exactly one SageMaker pipeline.*found 0"):
        build_delivery(environments_file(), outdir=tmp_path, stage_factory=empty_stage)


def policy_statements_of(template: Template, role_prefix: str) -> list[dict[str, Any]]:
    """The statements of the policies attached to the roles whose logical ids start with `role_prefix`."""
    statements: list[dict[str, Any]] = []
    for policy in resources(template, "AWS::IAM::Policy").values():
        roles = [role["Ref"] for role in policy["Properties"]["Roles"]]
        if any(role.startswith(role_prefix) for role in roles):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_asset_roles_hold_no_build_grants_and_log_only_for_their_own_projects(
    delivery: tuple[DeliveryStack, Template],
) -> None:
    _, template = delivery
    projects = {
        logical_id
        for logical_id, project in resources(template, "AWS::CodeBuild::Project").items()
        if logical_id.startswith("PipelineAssets")
    }
    assert len(projects) == 2
    statements = policy_statements_of(template, "PipelineAssets")
    actions = {action for statement in statements for action in as_list(statement["Action"])}
    # The pipeline starts the asset builds through its CodeBuild action role; nothing uses these here.
    assert not actions & {"codebuild:StartBuild", "codebuild:StopBuild", "codebuild:BatchGetBuilds"}
    for statement in statements:
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            text = json.dumps(resource)
            if "/aws/codebuild/" in text or "report-group/" in text:
                assert any(project in text for project in projects), statement
    starters = policy_statements_of(template, "PipelineCodeBuildActionRole")
    (start,) = [s for s in starters if "codebuild:StartBuild" in as_list(s["Action"])]
    started = {resource["Fn::GetAtt"][0] for resource in start["Resource"]}
    assert projects <= started


def test_pipeline_role_uses_the_support_region_key_by_alias_not_every_key(
    delivery: tuple[DeliveryStack, Template],
) -> None:
    stack, template = delivery
    statements = policy_statements_of(template, "PipelineRole")
    assert all("*" not in as_list(statement["Resource"]) for statement in statements)
    (support,) = [s for s in statements if "Condition" in s]
    replication = stack.pipeline.pipeline.cross_region_support["eu-west-1"]
    alias = stack.resolve(replication.replication_bucket.encryption_key.key_arn).rsplit(":", 1)[-1]
    assert support["Resource"] == [f"arn:aws:kms:eu-west-1:{TOOLING_ACCOUNT}:key/*"]
    assert support["Condition"] == {"ForAnyValue:StringEquals": {"kms:ResourceAliases": [alias]}}
    assert set(support["Action"]) == {
        "kms:Decrypt",
        "kms:DescribeKey",
        "kms:Encrypt",
        "kms:GenerateDataKey*",
        "kms:ReEncrypt*",
    }


def test_every_asset_project_installs_the_pinned_cdk_assets(
    delivery: tuple[DeliveryStack, Template], repo_root: Path
) -> None:
    _, template = delivery
    pinned = json.loads((repo_root / "package.json").read_text())["devDependencies"]["cdk-assets"]
    installs = []
    for project in resources(template, "AWS::CodeBuild::Project").values():
        spec = project["Properties"]["Source"]["BuildSpec"]
        installs += re.findall(r"npm install -g (cdk-assets@\S+?)\"", spec)
    assert len(installs) == 2
    assert installs == [f"cdk-assets@{pinned}"] * 2


def test_the_cli_pins_must_be_exact_versions(tmp_path: Path) -> None:
    (tmp_path / "package.json").write_text(json.dumps({"devDependencies": {"aws-cdk": "^2.1", "cdk-assets": "4.7.3"}}))
    assert pinned_npm_version(tmp_path, "cdk-assets") == "4.7.3"
    with pytest.raises(ConfigError) as error:
        pinned_npm_version(tmp_path, "aws-cdk")
    assert [str(problem) for problem in error.value.problems] == [
        f"{tmp_path / 'package.json'}: devDependencies.aws-cdk: expected an exact version (e.g. 1.2.3) of aws-cdk, "
        "got '^2.1'"
    ]


def test_codebuild_roles_trust_only_this_accounts_projects(delivery: tuple[DeliveryStack, Template]) -> None:
    _, template = delivery
    codebuild_roles = 0
    for logical_id, role in resources(template, "AWS::IAM::Role").items():
        for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]:
            if statement.get("Principal") != {"Service": "codebuild.amazonaws.com"}:
                continue
            codebuild_roles += 1
            assert statement["Condition"] == {
                "StringEquals": {"aws:SourceAccount": TOOLING_ACCOUNT},
                "ArnLike": {"aws:SourceArn": f"arn:aws:codebuild:us-east-1:{TOOLING_ACCOUNT}:project/*"},
            }, logical_id
    # Synth, self-mutation, the two asset roles and one start role per environment.
    assert codebuild_roles == 6
