"""The evaluation pipeline stack: the CfnPipeline, its definition and the files it reads at run time."""

from __future__ import annotations

import fnmatch
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk.assertions import Template

from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import CHECK_STEP, FAIL_STEP, PARAM_PROMPT_CATALOG_URI, build_plan
from pipeline_definitions.rendering.definition_builder import max_runtime_seconds
from stacks.components.evaluation_pipeline import EvaluationPipeline, compact, substitute
from stacks.components.uploads import CATALOG_PREFIX, PromptCatalogUpload, content_hash
from step_code.contract.config import Config
from tests.stacks.conftest import (
    DEV_ACCOUNT,
    MANY_MODELS,
    MIXED_DATASET_URI,
    SynthesizedApp,
    as_list,
    policy_statements,
)


def the_pipeline(template: Template) -> tuple[str, Mapping[str, Any]]:
    ((logical_id, pipeline),) = template.find_resources("AWS::SageMaker::Pipeline").items()
    return logical_id, pipeline


def step_names(definition: dict[str, Any]) -> set[str]:
    names: set[str] = set()
    for step in definition["Steps"]:
        names.add(step["Name"])
        arguments = step.get("Arguments", {})
        for branch in ("IfSteps", "ElseSteps"):
            names |= step_names({"Steps": arguments.get(branch, [])})
    return names


def expected_step_names(app: SynthesizedApp) -> set[str]:
    plan = build_plan(app.stage.loaded.config)
    return {step.name for step in plan.processing_steps} | {CHECK_STEP, FAIL_STEP}


def deployments(template: Template) -> Mapping[str, Mapping[str, Any]]:
    found: Mapping[str, Mapping[str, Any]] = template.find_resources("Custom::CDKBucketDeployment")
    return found


def joined(value: Any) -> list[Any]:
    """The parts of an `Fn::Join` with an empty separator."""
    separator, parts = value["Fn::Join"]
    assert separator == ""
    return list(parts)


def test_the_pipeline_is_named_after_the_environment_and_runs_as_the_execution_role(
    reference_app: SynthesizedApp,
) -> None:
    template = reference_app.template(reference_app.stage.evaluation)
    _, pipeline = the_pipeline(template)
    properties = pipeline["Properties"]
    assert properties["PipelineName"] == "evalops-dev-llm-evaluation-multi-models-hybrid"
    (role_id,) = template.find_resources(
        "AWS::IAM::Role", {"Properties": {"RoleName": "evalops-dev-sagemaker-execution"}}
    )
    assert properties["RoleArn"] == {"Fn::GetAtt": [role_id, "Arn"]}
    assert properties["ParallelismConfiguration"] == {"MaxParallelExecutionSteps": 4}


def test_the_inline_definition_has_every_step_and_a_value_for_every_variable(reference_app: SynthesizedApp) -> None:
    _, pipeline = the_pipeline(reference_app.template(reference_app.stage.evaluation))
    body, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    definition = json.loads(body)
    assert step_names(definition) == expected_step_names(reference_app)
    referenced = {name for name in variables if "${" + name + "}" in body}
    assert referenced == set(variables)
    assert variables["Region"] == "us-east-1"
    image_asset = reference_app.stage.evaluation.step_image.asset_hash
    assert variables["ImageUri"]["Fn::Sub"].endswith(
        f"/cdk-hnb659fds-container-assets-${{AWS::AccountId}}-us-east-1:{image_asset}"
    )


def test_the_config_and_the_prompt_catalog_are_uploaded_under_content_hashes(reference_app: SynthesizedApp) -> None:
    stage = reference_app.stage
    template = reference_app.template(stage.evaluation)
    _, pipeline = the_pipeline(template)
    _, variables = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]

    config_key = (
        f"evalops-dev-llm-evaluation-multi-models-hybrid/config/{content_hash(stage.loaded.normalized_json())}/"
    )
    catalog_prefix = stage.evaluation.catalog_upload.prefix if stage.evaluation.catalog_upload else None
    assert catalog_prefix is not None and catalog_prefix.startswith(CATALOG_PREFIX)
    assert joined(variables["ConfigUri"])[-1] == f"/{config_key}config.json"
    assert joined(variables["PromptCatalogUri"])[-1] == f"/{catalog_prefix}"

    by_prefix = {d["Properties"]["DestinationBucketKeyPrefix"]: (key, d) for key, d in deployments(template).items()}
    assert set(by_prefix) == {config_key, catalog_prefix}
    for key, deployment in by_prefix.values():
        properties = deployment["Properties"]
        assert properties["Prune"] is False
        assert properties["SystemMetadata"]["sse"] == "aws:kms"
        assert "Fn::GetStackOutput" in properties["SystemMetadata"]["sse-kms-key-id"]
        assert key in pipeline["DependsOn"]


def test_a_changed_catalog_goes_to_a_new_prefix(tmp_path: Path) -> None:
    stack = cdk.Stack(cdk.App(outdir=str(tmp_path / "out")), "Catalogs")
    key = kms.Key(stack, "Key")
    bucket = s3.Bucket(stack, "Bucket", encryption_key=key)
    catalogs = []
    for name, text in (("first", "one"), ("same", "one"), ("changed", "two")):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "dataset.jsonl").write_text(text)
        (folder / ".gitkeep").write_text("hidden files are not catalog content")
        catalogs.append(PromptCatalogUpload(stack, name, catalog_dir=folder, bucket=bucket, key=key).prefix)
    first, same, changed = catalogs
    assert first == same
    assert changed != first


def test_an_s3_dataset_is_read_in_place(mixed_app: SynthesizedApp) -> None:
    stage = mixed_app.stage
    assert stage.evaluation.catalog_upload is None
    prefixes = [
        d["Properties"]["DestinationBucketKeyPrefix"]
        for d in deployments(mixed_app.template(stage.evaluation)).values()
    ]
    assert not any(prefix.startswith(CATALOG_PREFIX) for prefix in prefixes)
    parameters = json.loads(definition_file(mixed_app))["Parameters"]
    (catalog,) = [parameter for parameter in parameters if parameter["Name"] == PARAM_PROMPT_CATALOG_URI]
    # The object itself: the role may read exactly the dataset, not the folder it sits in.
    assert catalog["DefaultValue"] == MIXED_DATASET_URI


def role_allows(statements: list[dict[str, Any]], action: str, resource: str, prefix: str | None = None) -> bool:
    """Whether an Allow statement grants `action` on `resource` (with `s3:prefix` = `prefix` for a listing)."""
    for statement in statements:
        patterns = [r for r in as_list(statement["Resource"]) if isinstance(r, str)]
        if statement["Effect"] != "Allow" or action not in as_list(statement["Action"]):
            continue
        if not any(fnmatch.fnmatchcase(resource, pattern) for pattern in patterns):
            continue
        condition = statement.get("Condition")
        if not condition:
            return True
        allowed_prefixes = as_list(condition.get("StringLike", {}).get("s3:prefix", []))
        if prefix is not None and any(fnmatch.fnmatchcase(prefix, p) for p in allowed_prefixes):
            return True
    return False


def test_the_role_may_download_the_s3_dataset_the_pipeline_defaults_to(mixed_app: SynthesizedApp) -> None:
    parameters = json.loads(definition_file(mixed_app))["Parameters"]
    (default,) = [p["DefaultValue"] for p in parameters if p["Name"] == PARAM_PROMPT_CATALOG_URI]
    bucket, _, key = default.removeprefix("s3://").partition("/")
    template = mixed_app.template(mixed_app.stage.evaluation)
    role = [s for logical_id, s in policy_statements(template) if logical_id.startswith("ExecutionRole")]
    # A processing input lists the objects under its S3 prefix, then gets each of them.
    assert role_allows(role, "s3:ListBucket", f"arn:aws:s3:::{bucket}", prefix=key)
    assert role_allows(role, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key}")
    # The grant is that narrow: the folder beside the dataset stays closed.
    assert not role_allows(role, "s3:GetObject", f"arn:aws:s3:::{bucket}/{key.rsplit('/', 1)[0]}/other.jsonl")


def definition_file(app: SynthesizedApp) -> str:
    """The definition text the deployment will write to S3 (CDK tokens stand as markers)."""
    upload = app.stage.evaluation.evaluation_pipeline.definition_upload
    assert upload is not None
    template = app.template(app.stage.evaluation)
    (deployment,) = [
        d
        for d in deployments(template).values()
        if d["Properties"]["DestinationBucketKeyPrefix"].endswith(upload.object_key.rsplit("/", 1)[0] + "/")
    ]
    (object_key,) = deployment["Properties"]["SourceObjectKeys"]
    asset_dir = app.outdir / f"asset.{object_key.removesuffix('.zip')}"
    return (asset_dir / "definition.json").read_text()


def test_a_large_definition_is_deployed_to_s3(mixed_app: SynthesizedApp) -> None:
    stage = mixed_app.stage
    template = mixed_app.template(stage.evaluation)
    _, pipeline = the_pipeline(template)
    location = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionS3Location"]
    upload = stage.evaluation.evaluation_pipeline.definition_upload
    assert upload is not None
    assert location["Key"] == upload.object_key
    assert location["Key"].startswith("evalops-dev-Mixed-Providers/definition/")
    definition = json.loads(definition_file(mixed_app))
    assert len(stage.loaded.config.models) == MANY_MODELS
    assert step_names(definition) == expected_step_names(mixed_app)
    assert "${" not in json.dumps(definition).replace("${!", "")


def s3_definition_key(outdir: Path, config: Config, image_uri: str) -> str:
    stack = cdk.Stack(
        cdk.App(outdir=str(outdir)), "Pipeline", env=cdk.Environment(account=DEV_ACCOUNT, region="us-east-1")
    )
    key = kms.Key(stack, "Key")
    bucket = s3.Bucket(stack, "Bucket", encryption_key=key)
    role = iam.Role(stack, "Role", assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"))
    values = {
        "ImageUri": image_uri,
        "RoleArn": role.role_arn,
        "ArtifactsBucket": bucket.bucket_name,
        "CodeBucket": "code-bucket",
        "ConfigUri": f"s3://{bucket.bucket_name}/config/config.json",
        "PromptCatalogUri": f"s3://{bucket.bucket_name}/prompt-catalog/",
        "KmsKeyArn": key.key_arn,
        "Region": stack.region,
    }
    pipeline = EvaluationPipeline(
        stack,
        "Evaluation",
        config=config,
        pipeline_name="evalops-test-sample",
        resource_prefix="evalops-test-",
        role=role,
        code_object_key="code.zip",
        values=values,
        artifacts_bucket=bucket,
        key=key,
        max_inline_bytes=0,
    )
    assert pipeline.definition_upload is not None
    return pipeline.definition_upload.object_key


def test_the_definition_object_key_changes_with_any_value(repo_root: Path, tmp_path: Path) -> None:
    config = load_config(repo_root / "configs/sample.yaml").config
    first = s3_definition_key(tmp_path / "a", config, "111111111111.dkr.ecr.us-east-1.amazonaws.com/steps:one")
    again = s3_definition_key(tmp_path / "b", config, "111111111111.dkr.ecr.us-east-1.amazonaws.com/steps:one")
    new_image = s3_definition_key(tmp_path / "c", config, "111111111111.dkr.ecr.us-east-1.amazonaws.com/steps:two")
    assert first == again
    assert new_image != first


def test_the_pipeline_arn_is_lower_case(mixed_app: SynthesizedApp) -> None:
    prod = mixed_app.stages[1]
    assert prod.evaluation.pipeline_arn == "arn:aws:sagemaker:eu-west-1:222222222222:pipeline/acme-prod-mixed-providers"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("plain ${Name} text", "plain value text"),
        ("a literal ${!Name} stays", "a literal ${Name} stays"),
        ('{"k": "${Name}/${!x}"}', '{"k": "value/${x}"}'),
    ],
)
def test_substitute_does_what_fn_sub_does(template: str, expected: str) -> None:
    assert substitute(template, {"Name": "value"}) == expected


def test_substitute_refuses_a_reference_without_a_value() -> None:
    with pytest.raises(KeyError, match="Other"):
        substitute("${Other}", {"Name": "value"})


def test_compact_keeps_the_json_and_its_references() -> None:
    body = '{\n "Steps": [\n  {"Name": "Ünïcode ${Var} ${!x}"}\n ]\n}\n'
    assert compact(body) == '{"Steps":[{"Name":"Ünïcode ${Var} ${!x}"}]}'


def processing_steps(steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for step in steps:
        if step["Type"] == "Processing":
            found.append(step)
        arguments = step.get("Arguments", {})
        found += processing_steps([*arguments.get("IfSteps", []), *arguments.get("ElseSteps", [])])
    return found


def test_every_deployed_step_stops_at_its_runtime_limit(reference_app: SynthesizedApp) -> None:
    """A hanging step fails its execution (and so reaches the safety net) instead of running forever."""
    config = reference_app.stage.loaded.config
    planned = {step.name: step for step in build_plan(config).processing_steps}
    _, pipeline = the_pipeline(reference_app.template(reference_app.stage.evaluation))
    body, _ = pipeline["Properties"]["PipelineDefinition"]["PipelineDefinitionBody"]["Fn::Sub"]
    steps = processing_steps(json.loads(body)["Steps"])
    assert {step["Name"] for step in steps} == set(planned)
    assert any(planned[step["Name"]].kind == "finetune" for step in steps)
    for step in steps:
        limit = step["Arguments"]["StoppingCondition"]["MaxRuntimeInSeconds"]
        assert limit == max_runtime_seconds(planned[step["Name"]], config), step["Name"]
        assert 0 < limit <= 48 * 3600, step["Name"]


def test_the_upload_function_logs_into_a_group_encrypted_with_the_environment_key(
    reference_app: SynthesizedApp,
) -> None:
    template = reference_app.template(reference_app.stage.evaluation)
    ((_, log_group),) = template.find_resources("AWS::Logs::LogGroup").items()
    assert log_group["Properties"]["LogGroupName"] == "/evalops/evalops-dev-evaluation-uploads"
    assert "KmsKeyId" in log_group["Properties"]
    assert "evalops-dev-storage" in json.dumps(log_group["Properties"]["KmsKeyId"])
    assert "DataKey" in json.dumps(log_group["Properties"]["KmsKeyId"])
