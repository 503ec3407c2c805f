"""Cleans up after a failed or stopped run: deletes its tagged endpoints, configs and models, stops its training.

A run deletes its endpoints itself after each evaluation; when the run fails or is stopped first, this
rule hands the execution to a Lambda function (`stacks/safety_net_lambda/index.py`) that deletes the
resources tagged with that execution. Every end of a run, a successful one too, also releases the kept
endpoints (`cleanup_endpoint: false`) the run held, so keep_for_hours counts from the end of their last
use. An execution hanging in Executing sends no such event, so an hourly schedule also has the function
delete tagged resources older than the longest a run uses an endpoint (kept ones excepted) and the kept
ones past their keep_for_hours that no run holds. Delivery failures and function errors land in a
dead-letter queue; it and the function's log group are encrypted with the environment's key.
"""

from __future__ import annotations

import math
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy, Stack
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from cdk_nag import NagPackSuppression, NagSuppressions, RegexAppliesTo
from constructs import Construct

from pipeline_definitions.planning.step_kinds import STEP_KINDS, StepKind
from stacks.components.service_keys import log_group_name
from step_code.contract.tags import TAG_IN_USE_BY_PREFIX, TAG_LAST_USED

PIPELINE_STATUS_EVENT = "SageMaker Model Building Pipeline Execution Status Change"
# Failed and Stopped runs may leave resources behind; every end, Succeeded too, releases the kept ones it held.
RUN_END_STATES = ["Succeeded", "Failed", "Stopped"]
HANDLER = "index.handler"
LAMBDA_PREFIX_ENV = "RESOURCE_PREFIX"
LAMBDA_MAX_AGE_ENV = "ENDPOINT_MAX_AGE_HOURS"
# A run-scoped endpoint is created by its model's deploy step and deleted by its cleanup step after the
# evaluate step: it lives at most as long as those three steps' runtime limits, plus the time they wait
# for a free slot when a run has more models than its parallelism (the margin).
ENDPOINT_LIFETIME_STEPS: tuple[StepKind, ...] = ("deploy", "evaluate", "cleanup")
QUEUE_MARGIN_HOURS = 12
SWEEP_INTERVAL = Duration.hours(1)


def endpoint_max_age_hours() -> int:
    limits = [STEP_KINDS[kind].max_runtime_seconds for kind in ENDPOINT_LIFETIME_STEPS]
    return math.ceil(sum(limit or 0 for limit in limits) / 3600) + QUEUE_MARGIN_HOURS


# Latest Python runtime of the installed aws-cdk-lib (cdk-nag AwsSolutions-L1 checks the same list).
RUNTIME = lambda_.Runtime.PYTHON_3_14
# Deleting endpoints is quick; listing and reading the tags of every endpoint in a busy account is not.
TIMEOUT = Duration.minutes(5)
EVENT_RETRY_ATTEMPTS = 8
EVENT_MAX_AGE = Duration.hours(6)
DLQ_RETENTION = Duration.days(14)
CODE_EXCLUDE = ["**/__pycache__", "**/*.pyc"]


class EndpointSafetyNet(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        handler_dir: Path,
        resource_prefix: str,
        pipeline_arn: str,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=DLQ_RETENTION,
        )
        # Named so the key's policy can let CloudWatch Logs encrypt it; not retained, or a re-created stack
        # would find the name taken.
        log_group = logs.LogGroup(
            self,
            "Logs",
            log_group_name=log_group_name(resource_prefix, "safety-net"),
            encryption_key=key,
            retention=logs.RetentionDays.THREE_MONTHS,
            removal_policy=RemovalPolicy.DESTROY,
        )
        role = iam.Role(
            self,
            "Role",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description=f"Deletes leftover {resource_prefix}* endpoints of failed or stopped pipeline runs",
        )

        def sagemaker_arn(resource_type: str) -> str:
            # SageMaker ARNs carry names in lower case; run-scoped names all start with the prefix.
            return f"arn:{stack.partition}:sagemaker:{stack.region}:{stack.account}:{resource_type}/{resource_prefix}*"

        policy = iam.Policy(
            self,
            "Policy",
            roles=[role],
            statements=[
                iam.PolicyStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[log_group.log_group_arn],
                ),
                iam.PolicyStatement(
                    # Lambda sends failed invocations to the dead-letter queue as this role; the queue uses the key.
                    sid="EncryptDeadLetters",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                ),
                iam.PolicyStatement(
                    sid="DeleteRunResources",
                    actions=[
                        "sagemaker:ListTags",
                        "sagemaker:DeleteEndpoint",
                        "sagemaker:DeleteEndpointConfig",
                        "sagemaker:DeleteModel",
                    ],
                    resources=[sagemaker_arn(kind) for kind in ("endpoint", "endpoint-config", "model")],
                ),
                iam.PolicyStatement(
                    # When a run ends, its hold on a kept endpoint (and its config and model) is removed and the
                    # end stamped as their last use; no other tag may be written or removed.
                    sid="ReleaseKeptResources",
                    actions=["sagemaker:AddTags", "sagemaker:DeleteTags"],
                    resources=[sagemaker_arn(kind) for kind in ("endpoint", "endpoint-config", "model")],
                    conditions={
                        "ForAllValues:StringLike": {"aws:TagKeys": [TAG_LAST_USED, f"{TAG_IN_USE_BY_PREFIX}*"]}
                    },
                ),
                iam.PolicyStatement(
                    # Stopping the finetune step does not stop the training job it started.
                    sid="StopRunTrainingJobs",
                    actions=["sagemaker:ListTags", "sagemaker:StopTrainingJob"],
                    resources=[sagemaker_arn("training-job")],
                ),
                iam.PolicyStatement(
                    sid="FindRunResources",
                    actions=[
                        "sagemaker:ListEndpoints",
                        "sagemaker:ListEndpointConfigs",
                        "sagemaker:ListModels",
                        "sagemaker:ListTrainingJobs",
                    ],
                    resources=["*"],
                ),
            ],
        )
        NagSuppressions.add_resource_suppressions(
            policy,
            [
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="Lambda names one log stream per execution environment inside the function's own log group.",
                    applies_to=[RegexAppliesTo(regex=r"/^Resource::<.*Logs.*\.Arn>$/")],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="What runs create is named per run or per deployment; only the environment prefix of those "
                    "names is fixed.",
                    applies_to=[
                        RegexAppliesTo(regex=rf"/:(endpoint|endpoint-config|model|training-job)\/{resource_prefix}\*$/")
                    ],
                ),
                NagPackSuppression(
                    id="AwsSolutions-IAM5",
                    reason="The sagemaker:List* calls that find candidates by name have no resource-level permissions.",
                    applies_to=["Resource::*"],
                ),
            ],
        )
        self.function = lambda_.Function(
            self,
            "Function",
            runtime=RUNTIME,
            handler=HANDLER,
            code=lambda_.Code.from_asset(str(handler_dir), exclude=CODE_EXCLUDE),
            environment={LAMBDA_PREFIX_ENV: resource_prefix, LAMBDA_MAX_AGE_ENV: str(endpoint_max_age_hours())},
            role=role,
            timeout=TIMEOUT,
            memory_size=256,
            log_group=log_group,
            dead_letter_queue=self.dead_letters,
            description=f"Deletes what failed, stopped or hanging runs of {resource_prefix}* left running",
        )
        self.function.node.add_dependency(policy)
        # Rule names start with the prefix: the key's policy lets those rules send to the dead-letter queue.
        self.rule = events.Rule(
            self,
            "RunEnded",
            rule_name=f"{resource_prefix}safety-net-run-ended",
            description="Ended evaluation pipeline executions: failed or stopped ones may leave endpoints running, "
            "and every one releases the kept endpoints it held",
            event_pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=[PIPELINE_STATUS_EVENT],
                detail={"currentPipelineExecutionStatus": RUN_END_STATES, "pipelineArn": [pipeline_arn]},
            ),
        )
        self.sweep = events.Rule(
            self,
            "AgeSweep",
            rule_name=f"{resource_prefix}safety-net-age-sweep",
            description="Hourly: deletes tagged endpoints older than any run uses one, for executions that never end",
            schedule=events.Schedule.rate(SWEEP_INTERVAL),
        )
        for rule in (self.rule, self.sweep):
            rule.add_target(
                targets.LambdaFunction(
                    self.function,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=EVENT_RETRY_ATTEMPTS,
                    max_event_age=EVENT_MAX_AGE,
                )
            )
