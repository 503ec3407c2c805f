"""Service roles trust their service only on behalf of this account's own resources (confused-deputy prevention).

SageMaker and CodeBuild document `aws:SourceAccount` and `aws:SourceArn` for the roles they assume, so
their roles require both. Lambda (function roles) and CodePipeline (its service role) document neither,
and a condition on a key the service does not send would deny every assumption: those stay unconditioned.
"""

from __future__ import annotations

from typing import Any

import jsii
from aws_cdk import IStableAnyProducer, Lazy, Stack
from aws_cdk import aws_iam as iam
from constructs import IConstruct

CODEBUILD_SERVICE = "codebuild.amazonaws.com"


def source_conditions(account: str, source_arn: str) -> dict[str, dict[str, str]]:
    return {"StringEquals": {"aws:SourceAccount": account}, "ArnLike": {"aws:SourceArn": source_arn}}


def trusted_service(service: str, *, account: str, source_arn: str) -> iam.IPrincipal:
    """`service` as a role's principal, only for requests made for resources matching `source_arn` in `account`."""
    return iam.ServicePrincipal(service).with_conditions(source_conditions(account, source_arn))


@jsii.implements(IStableAnyProducer)
class _ConditionedTrust:
    def __init__(self, stack: Stack, original: Any, service: str, conditions: dict[str, dict[str, str]]) -> None:
        self._stack = stack
        self._original = original
        self._service = service
        self._conditions = conditions

    def produce(self) -> Any:
        document = dict(self._stack.resolve(self._original))
        document["Statement"] = [
            {**statement, "Condition": self._conditions}
            if statement.get("Principal") == {"Service": self._service} and "Condition" not in statement
            else statement
            for statement in document["Statement"]
        ]
        return document


def condition_codebuild_trust(scope: IConstruct) -> None:
    """Every role under `scope` that trusts CodeBuild does so only for this account's projects in its region.

    CDK Pipelines creates most of these roles itself, so their trust policies are rewritten when rendered.
    """
    own_stack = Stack.of(scope).node.path
    for construct in scope.node.find_all():
        # Stages nested under a pipeline stack hold their own stacks; they set their own trust.
        if not isinstance(construct, iam.CfnRole) or Stack.of(construct).node.path != own_stack:
            continue
        stack = Stack.of(construct)
        conditions = source_conditions(
            stack.account, f"arn:{stack.partition}:codebuild:{stack.region}:{stack.account}:project/*"
        )
        construct.assume_role_policy_document = Lazy.any(
            _ConditionedTrust(stack, construct.assume_role_policy_document, CODEBUILD_SERVICE, conditions)
        )
