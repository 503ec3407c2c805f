"""The safety net: failed or stopped executions of this pipeline reach the clean-up function, reliably."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_cdk.assertions import Template

from tests.stacks.conftest import PROD_ACCOUNT, SynthesizedApp, as_list, policy_statements


def only(template: Template, resource_type: str) -> tuple[str, Mapping[str, Any]]:
    ((logical_id, resource),) = template.find_resources(resource_type).items()
    return logical_id, resource


def test_the_rule_matches_failed_and_stopped_runs_of_this_pipeline(mixed_app: SynthesizedApp) -> None:
    prod = mixed_app.stages[1]
    _, rule = only(mixed_app.template(prod.safety_net), "AWS::Events::Rule")
    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Building Pipeline Execution Status Change"],
        "detail": {
            "currentPipelineExecutionStatus": ["Failed", "Stopped"],
            "pipelineArn": [f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}:pipeline/acme-prod-mixed-providers"],
        },
    }


def test_delivery_is_retried_and_failures_are_kept(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.safety_net)
    function_id, function = only(template, "AWS::Lambda::Function")
    queue_id, queue = only(template, "AWS::SQS::Queue")
    _, rule = only(template, "AWS::Events::Rule")
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
    assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 6 * 3600}
    assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert queue["Properties"]["SqsManagedSseEnabled"] is True
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "events.amazonaws.com"},
    )


def test_the_function_runs_the_handler_with_the_prefix_and_keeps_its_logs(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.safety_net)
    _, function = only(template, "AWS::Lambda::Function")
    log_group_id, log_group = only(template, "AWS::Logs::LogGroup")
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.14"
    assert properties["Handler"] == "index.handler"
    assert properties["Environment"] == {"Variables": {"RESOURCE_PREFIX": "evalops-dev-"}}
    assert properties["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert log_group["Properties"]["RetentionInDays"] == 90


def test_the_function_may_only_delete_what_carries_the_prefix(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.safety_net)
    statements = {s.get("Sid"): s for _, s in policy_statements(template)}
    deleting = statements["DeleteRunResources"]
    assert sorted(r["Fn::Join"][1][-1] for r in deleting["Resource"]) == [
        ":endpoint-config/evalops-dev-*",
        ":endpoint/evalops-dev-*",
        ":model/evalops-dev-*",
    ]
    assert statements["StopRunTrainingJobs"]["Resource"]["Fn::Join"][1][-1] == ":training-job/evalops-dev-*"
    assert statements["FindRunResources"]["Resource"] == "*"
    assert all(action.startswith("sagemaker:List") for action in as_list(statements["FindRunResources"]["Action"]))
