"""The environment's KMS key, usable by the AWS services that encrypt its log groups and its dead-letter queue.

Log groups the stacks create are named `/evalops/{resource prefix}...`, and EventBridge rules
`{resource prefix}...`, so the key policy names them without referencing the stacks that create them
(which depend on the key's stack).
"""

from __future__ import annotations

from aws_cdk import Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms

LOG_GROUP_ROOT = "/evalops/"
# What CloudWatch Logs needs of a key that encrypts a log group (its documented key policy).
LOGS_KEY_ACTIONS = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
# What EventBridge needs to send a failed event to a dead-letter queue encrypted with the key.
EVENTS_KEY_ACTIONS = ["kms:Decrypt", "kms:GenerateDataKey"]


def log_group_name(resource_prefix: str, component: str) -> str:
    return f"{LOG_GROUP_ROOT}{resource_prefix}{component}"


def allow_log_and_event_services(key: kms.Key, resource_prefix: str) -> None:
    stack = Stack.of(key)

    def arn(service: str, resource: str) -> str:
        return f"arn:{stack.partition}:{service}:{stack.region}:{stack.account}:{resource}"

    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="EncryptEnvironmentLogGroups",
            principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
            actions=LOGS_KEY_ACTIONS,
            resources=["*"],
            conditions={
                "ArnLike": {
                    "kms:EncryptionContext:aws:logs:arn": arn(
                        "logs", f"log-group:{log_group_name(resource_prefix, '*')}"
                    )
                }
            },
        )
    )
    key.add_to_resource_policy(
        iam.PolicyStatement(
            sid="SendEnvironmentRuleFailuresToDeadLetters",
            principals=[iam.ServicePrincipal("events.amazonaws.com")],
            actions=EVENTS_KEY_ACTIONS,
            resources=["*"],
            conditions={
                "StringEquals": {"aws:SourceAccount": stack.account},
                "ArnLike": {"aws:SourceArn": arn("events", f"rule/{resource_prefix}*")},
            },
        )
    )
