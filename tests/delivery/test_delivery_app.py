"""The real app (stacks/app_builder.py) with a `delivery:` section: the pipeline deploys the real Stages."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
import yaml
from cdk_nag import AwsSolutionsChecks

from pipeline_definitions.loading.loader import ConfigError
from stacks.app_builder import AppOptions, build_app
from tests.delivery.conftest import CONNECTION_ARN, DEV_ACCOUNT, PROD_ACCOUNT, TOOLING_ACCOUNT

pytestmark = pytest.mark.slow

TEAM_FILE = "configs/team-environments.yaml"
ENVIRONMENTS = {
    "environments": [
        {"name": "dev", "account": DEV_ACCOUNT, "config": "configs/sample.yaml"},
        {
            "name": "prod",
            "account": PROD_ACCOUNT,
            "region": "eu-west-1",
            "prefix": "acme",
            "config": "configs/sample.yaml",
            "manual_approval": True,
        },
    ],
    "delivery": {"account": TOOLING_ACCOUNT, "repository": "acme/evalops", "connection_arn": CONNECTION_ARN},
}


@pytest.fixture(scope="module")
def checkout(repo_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The repository plus a team's environments file; everything else links to the real checkout."""
    root = tmp_path_factory.mktemp("checkout")
    for entry in repo_root.iterdir():
        if entry.name not in {"configs", "cdk.out", ".git"}:
            (root / entry.name).symlink_to(entry)
    (root / "configs").mkdir()
    for config in (repo_root / "configs").iterdir():
        (root / "configs" / config.name).symlink_to(config)
    (root / TEAM_FILE).write_text(yaml.safe_dump(ENVIRONMENTS, sort_keys=False))
    return root


def project_app(checkout: Path, outdir: Path) -> cdk.App:
    return cdk.App(outdir=str(outdir), context=json.loads((checkout / "cdk.json").read_text())["context"])


def synthesize(checkout: Path, outdir: Path, options: AppOptions) -> cdk.cx_api.CloudAssembly:
    """As app.py does it, with cdk.json's context: a cdk-nag error makes the synthesis fail."""
    app = project_app(checkout, outdir)
    build_app(app, options, checkout)
    cdk.Aspects.of(app).add(AwsSolutionsChecks(verbose=True))
    return app.synth()


@pytest.fixture(scope="module")
def assembly(checkout: Path, tmp_path_factory: pytest.TempPathFactory) -> cdk.cx_api.CloudAssembly:
    options = AppOptions(environments_file=checkout / TEAM_FILE)
    return synthesize(checkout, tmp_path_factory.mktemp("delivery-app"), options)


def resources(template: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [resource["Properties"] for resource in template["Resources"].values() if resource["Type"] == kind]


def test_pipeline_deploys_each_stage_then_starts_its_evaluation(assembly: cdk.cx_api.CloudAssembly) -> None:
    template = assembly.get_stack_by_name("evalops-delivery").template
    (pipeline,) = resources(template, "AWS::CodePipeline::Pipeline")
    stages = {stage["Name"]: [action["Name"] for action in stage["Actions"]] for stage in pipeline["Stages"]}
    assert list(stages)[-2:] == ["evalops-dev", "acme-prod"]
    assert stages["acme-prod"][0] == "Approve"
    assert "Approve" not in stages["evalops-dev"]
    for actions in (stages["evalops-dev"], stages["acme-prod"]):
        # The start comes after every stack of the Stage is deployed (CDK Pipelines orders the deployments).
        assert actions[-1] == "StartEvaluation"
        deployed = {action for action in actions[:-1] if action.endswith(".Deploy")}
        assert deployed == {f"{stack}.Deploy" for stack in ("storage", "registry", "evaluation", "safety-net")}
    synth = next(
        p for p in resources(template, "AWS::CodeBuild::Project") if "npx cdk synth" in p["Source"]["BuildSpec"]
    )
    assert f"-c environments={TEAM_FILE}" in synth["Source"]["BuildSpec"]


def test_only_the_delivered_evaluation_stack_has_the_start_role(assembly: cdk.cx_api.CloudAssembly) -> None:
    evaluation = {
        stack.hierarchical_id: stack.template
        for stack in assembly.stacks_recursively
        if stack.stack_name == "acme-prod-evaluation"
    }
    delivered = evaluation["evalops-delivery/acme-prod/Evaluation"]
    (pipeline,) = resources(delivered, "AWS::SageMaker::Pipeline")
    (start_role,) = [
        r for r in resources(delivered, "AWS::IAM::Role") if r.get("RoleName") == "acme-prod-delivery-start"
    ]
    (allow,) = start_role["Policies"][0]["PolicyDocument"]["Statement"]
    assert allow["Action"] == "sagemaker:StartPipelineExecution"
    assert allow["Resource"] == (
        f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}:pipeline/{pipeline['PipelineName'].lower()}"
    )
    assert pipeline["PipelineName"] in [output["Value"] for output in delivered["Outputs"].values()]
    standalone = evaluation["acme-prod/Evaluation"]
    assert not [r for r in resources(standalone, "AWS::IAM::Role") if r.get("RoleName") == "acme-prod-delivery-start"]


def test_a_single_environment_is_synthesized_without_the_pipeline(checkout: Path, tmp_path: Path) -> None:
    options = AppOptions(environments_file=checkout / TEAM_FILE, only="dev")
    names = {stack.stack_name for stack in synthesize(checkout, tmp_path, options).stacks_recursively}
    assert names == {"evalops-dev-storage", "evalops-dev-registry", "evalops-dev-evaluation", "evalops-dev-safety-net"}


def test_environments_file_outside_the_repository_is_refused(checkout: Path, tmp_path: Path) -> None:
    outside = tmp_path / "environments.yaml"
    outside.write_text((checkout / TEAM_FILE).read_text())
    with pytest.raises(ConfigError) as refused:
        build_app(project_app(checkout, tmp_path / "out"), AppOptions(environments_file=outside), checkout)
    assert str(refused.value) == (
        f"cdk context: environments: {outside} is outside the repository, so the delivery pipeline cannot read it"
    )
