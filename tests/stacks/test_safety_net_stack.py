"""The safety net: failed or stopped executions of this pipeline reach the clean-up function, reliably."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from aws_cdk.assertions import Template

from pipeline_definitions.planning.step_kinds import STEP_KINDS
from stacks.components.endpoint_safety_net import endpoint_max_age_hours
from tests.stacks.conftest import PROD_ACCOUNT, SynthesizedApp, as_list, policy_statements


def only(template: Template, resource_type: str) -> tuple[str, Mapping[str, Any]]:
    ((logical_id, resource),) = template.find_resources(resource_type).items()
    return logical_id, resource


def rule(template: Template, purpose: str) -> tuple[str, Mapping[str, Any]]:
    ((logical_id, found),) = [
        (logical_id, resource)
        for logical_id, resource in template.find_resources("AWS::Events::Rule").items()
        if resource["Properties"]["Name"].endswith(f"safety-net-{purpose}")
    ]
    return logical_id, found


def test_the_rule_matches_every_end_of_a_run_of_this_pipeline(mixed_app: SynthesizedApp) -> None:
    """Failed and stopped runs leave resources to delete; every end, a successful one too, releases kept ones."""
    prod = mixed_app.stages[1]
    _, ended = rule(mixed_app.template(prod.safety_net), "run-ended")
    assert ended["Properties"]["Name"] == "acme-prod-safety-net-run-ended"
    assert ended["Properties"]["EventPattern"] == {
        "source": ["aws.sagemaker"],
        "detail-type": ["SageMaker Model Building Pipeline Execution Status Change"],
        "detail": {
            "currentPipelineExecutionStatus": ["Succeeded", "Failed", "Stopped"],
            "pipelineArn": [f"arn:aws:sagemaker:eu-west-1:{PROD_ACCOUNT}:pipeline/acme-prod-mixed-providers"],
        },
    }


def test_delivery_is_retried_and_failures_are_kept(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.safety_net)
    function_id, function = only(template, "AWS::Lambda::Function")
    queue_id, queue = only(template, "AWS::SQS::Queue")
    for purpose in ("run-ended", "age-sweep"):
        _, found = rule(template, purpose)
        (target,) = found["Properties"]["Targets"]
        assert target["Arn"] == {"Fn::GetAtt": [function_id, "Arn"]}
        assert target["RetryPolicy"] == {"MaximumRetryAttempts": 8, "MaximumEventAgeInSeconds": 6 * 3600}
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    assert function["Properties"]["DeadLetterConfig"] == {"TargetArn": {"Fn::GetAtt": [queue_id, "Arn"]}}
    # Encrypted with the environment's key (imported from the storage stack), not an SQS-managed one.
    assert "SqsManagedSseEnabled" not in queue["Properties"]
    assert "evalops-dev-storage" in json.dumps(queue["Properties"]["KmsMasterKeyId"])
    assert "DataKey" in json.dumps(queue["Properties"]["KmsMasterKeyId"])
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
    assert properties["Environment"] == {
        "Variables": {"RESOURCE_PREFIX": "evalops-dev-", "ENDPOINT_MAX_AGE_HOURS": str(endpoint_max_age_hours())}
    }
    assert properties["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}
    assert log_group["Properties"]["RetentionInDays"] == 90
    assert log_group["Properties"]["LogGroupName"] == "/evalops/evalops-dev-safety-net"
    assert "evalops-dev-storage" in json.dumps(log_group["Properties"]["KmsKeyId"])
    assert "DataKey" in json.dumps(log_group["Properties"]["KmsKeyId"])


def test_an_hourly_sweep_bounds_endpoints_of_executions_that_never_end(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.safety_net)
    _, sweep = rule(template, "age-sweep")
    assert sweep["Properties"]["ScheduleExpression"] == "rate(1 hour)"
    assert "EventPattern" not in sweep["Properties"]
    # deploy (2 h) + evaluate (24 h) + cleanup (1 h) at their runtime limits, plus 12 h waiting for a slot.
    limits = [STEP_KINDS[kind].max_runtime_seconds or 0 for kind in ("deploy", "evaluate", "cleanup")]
    assert endpoint_max_age_hours() == sum(limits) // 3600 + 12 == 39


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
    # Failed invocations reach the KMS-encrypted dead-letter queue as this role.
    assert sorted(statements["EncryptDeadLetters"]["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "DataKey" in json.dumps(statements["EncryptDeadLetters"]["Resource"])
    assert all(action.startswith("sagemaker:List") for action in as_list(statements["FindRunResources"]["Action"]))


def test_the_function_may_only_write_the_use_tags_of_kept_resources(reference_app: SynthesizedApp) -> None:
    """Releasing a run's hold stamps the last use and removes the hold: no other tag, nothing outside the prefix."""
    template = reference_app.template(reference_app.stage.safety_net)
    statements = {s.get("Sid"): s for _, s in policy_statements(template)}
    release = statements["ReleaseKeptResources"]
    assert sorted(as_list(release["Action"])) == ["sagemaker:AddTags", "sagemaker:DeleteTags"]
    assert sorted(r["Fn::Join"][1][-1] for r in release["Resource"]) == [
        ":endpoint-config/evalops-dev-*",
        ":endpoint/evalops-dev-*",
        ":model/evalops-dev-*",
    ]
    assert release["Condition"] == {
        "ForAllValues:StringLike": {"aws:TagKeys": ["evalops:last-used", "evalops:in-use-by:*"]}
    }
    tagging = [
        s for s in statements.values() if {"sagemaker:AddTags", "sagemaker:DeleteTags"} & set(as_list(s["Action"]))
    ]
    assert tagging == [release]
