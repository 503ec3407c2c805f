"""cdk-nag AwsSolutions and cfn-lint over everything the delivery app synthesizes, stages included."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import cast

import pytest
from aws_cdk import App, Stack, Stage, cx_api
from aws_cdk import aws_iam as iam
from constructs import Construct

from pipeline_definitions.loading.environments import Environment
from stacks.delivery_stack import DeliveryStack
from tests.delivery.conftest import SmallEvaluationStage, environments_file

Build = Callable[..., tuple[App, DeliveryStack]]
S3_CATALOG = {"bucket": "acme-prompts", "key": "evalops/catalog.zip"}


def nag_findings(assembly: cx_api.CloudAssembly) -> list[str]:
    findings = []
    for stack in assembly.stacks_recursively:
        for message in stack.messages:
            text = str(message.entry.data)
            if message.level != cx_api.SynthesisMessageLevel.INFO and text.startswith("AwsSolutions-"):
                findings.append(f"{message.id}: {text.splitlines()[0]}")
    return findings


def test_no_unacknowledged_nag_findings(build_delivery: Build, tmp_path: Path) -> None:
    app, _ = build_delivery(environments_file(prompt_catalog_source=S3_CATALOG), outdir=tmp_path, nag=True)
    assembly = app.synth()
    assert {stack.stack_name for stack in assembly.stacks_recursively} >= {
        "Delivery",
        "dev-Evaluation",
        "prod-Evaluation",
    }
    assert nag_findings(assembly) == []


def test_a_new_wildcard_is_still_reported(build_delivery: Build, asset_dir: Path, tmp_path: Path) -> None:
    def stage_with_wildcard(scope: Construct, environment: Environment) -> Stage:
        stage = SmallEvaluationStage(scope, environment, asset_dir, nag=True)
        stack = cast(Stack, stage.node.find_child("Evaluation"))
        role = iam.Role(stack, "Loose", assumed_by=iam.AccountRootPrincipal())
        role.add_to_principal_policy(iam.PolicyStatement(actions=["sqs:*"], resources=["*"]))
        return stage

    app, stack = build_delivery(
        environments_file(stages=["dev"]), outdir=tmp_path, nag=True, stage_factory=stage_with_wildcard
    )
    stack.pipeline.pipeline.role.add_to_principal_policy(iam.PolicyStatement(actions=["s3:*"], resources=["*"]))
    # With cdk.json's annotationsInValidationReport, nag errors fail the synthesis and land in this report.
    with pytest.raises(RuntimeError, match="ValidationFailed"):
        app.synth()
    report = json.loads((tmp_path / "validation-report.json").read_text())
    findings = sorted(
        f"{construct['constructPath']}: {violation['description'].split(']')[0]}]"
        for plugin in report["pluginReports"]
        for violation in plugin["violations"]
        for construct in violation["violatingConstructs"]
    )
    # The pipeline role's Resource::* is reported too: no acknowledgement covers "*" there any more.
    assert findings == [
        "Delivery/Pipeline/Pipeline/Role/DefaultPolicy/Resource: AwsSolutions-IAM5[Action::s3:*]",
        "Delivery/Pipeline/Pipeline/Role/DefaultPolicy/Resource: AwsSolutions-IAM5[Resource::*]",
        "Delivery/dev/Evaluation/Loose/DefaultPolicy/Resource: AwsSolutions-IAM5[Action::sqs:*]",
        "Delivery/dev/Evaluation/Loose/DefaultPolicy/Resource: AwsSolutions-IAM5[Resource::*]",
    ]


def test_templates_are_cfn_lint_clean(build_delivery: Build, tmp_path: Path) -> None:
    app, _ = build_delivery(environments_file(prompt_catalog_source=S3_CATALOG), outdir=tmp_path / "cdk.out")
    app.synth()
    templates = sorted(str(path) for path in (tmp_path / "cdk.out").rglob("*.template.json"))
    # Delivery, the eu-west-1 support stack for prod's region, and one stack per stage.
    assert len(templates) == 4
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    result = subprocess.run([str(cfn_lint), *templates], capture_output=True, text=True, check=False)
    assert (result.returncode, result.stdout) == (0, "")
