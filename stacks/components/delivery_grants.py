"""Narrowing grants CDK Pipelines writes itself, which are broader than the pipeline uses.

- The asset publishing roles get `codebuild:StartBuild/StopBuild/BatchGetBuilds` on `*` from CDK's
  `AssetSingletonRole`, a leftover from when the pipeline started the asset builds through them. The
  pipeline starts every build through its CodeBuild action role (scoped to the projects), and a build
  never starts another, so the statement is dropped. Their log and report grants on every CodeBuild
  project (`/aws/codebuild/*`, `report-group/*`) become grants on the asset projects that use the role.
- The pipeline role may use the artifact keys of the cross-region support stacks. CDK grants that on `*`
  because those keys live in other stacks; each is named here by its account, region and alias.

The policies are rewritten when the template is rendered (CDK fills parts of them in lazily), so what
cdk-nag checks and what is deployed are the narrowed documents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jsii
from aws_cdk import Arn, ArnFormat, IStableAnyProducer, Lazy, Stack, pipelines
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from constructs import IConstruct

Statement = dict[str, Any]
ASSET_BUILD_ACTIONS = frozenset({"codebuild:BatchGetBuilds", "codebuild:StartBuild", "codebuild:StopBuild"})
KMS_KEY_ACTION_PREFIX = "kms:"
# How AssetSingletonRole's log and report grants, which cover every CodeBuild project, end.
ALL_PROJECT_LOGS = "log-group:/aws/codebuild/*"
ALL_REPORT_GROUPS = "report-group/*"


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@jsii.implements(IStableAnyProducer)
class _RewrittenDocument:
    def __init__(self, stack: Stack, original: Any, rewrite: Callable[[list[Statement]], list[Statement]]) -> None:
        self._stack = stack
        self._original = original
        self._rewrite = rewrite

    def produce(self) -> Any:
        document = dict(self._stack.resolve(self._original))
        document["Statement"] = self._rewrite(list(document["Statement"]))
        return document


def rewrite_policy(policy: IConstruct, rewrite: Callable[[list[Statement]], list[Statement]]) -> None:
    """Replace the statements of an `iam.Policy` by `rewrite(statements)` when the template is rendered."""
    resource = policy.node.default_child
    if not isinstance(resource, iam.CfnPolicy):
        raise TypeError(f"{policy.node.path} is not an IAM policy")
    stack = Stack.of(policy)
    resource.policy_document = Lazy.any(_RewrittenDocument(stack, resource.policy_document, rewrite))


def _asset_role_rewrite(stack: Stack, project_names: list[str]) -> Callable[[list[Statement]], list[Statement]]:
    def arn(service: str, resource: str) -> str:
        return f"arn:{stack.partition}:{service}:{stack.region}:{stack.account}:{resource}"

    # What CodeBuild grants a project role of its own: its log group and streams, its report groups.
    own = {
        ALL_PROJECT_LOGS: [
            arn("logs", f"log-group:/aws/codebuild/{name}{suffix}") for name in project_names for suffix in ("", ":*")
        ],
        ALL_REPORT_GROUPS: [arn("codebuild", f"report-group/{name}-*") for name in project_names],
    }

    def rewrite(statements: list[Statement]) -> list[Statement]:
        result: list[Statement] = []
        for statement in statements:
            resources = _as_list(statement["Resource"])
            if set(_as_list(statement["Action"])) == ASSET_BUILD_ACTIONS and resources == ["*"]:
                continue
            narrowed = [scoped for resource in resources for scoped in own.get(_all_projects(resource), [resource])]
            result.append({**statement, "Resource": narrowed if len(narrowed) > 1 else narrowed[0]})
        return result

    return rewrite


def _all_projects(resource: Any) -> str:
    """Which grant on every CodeBuild project `resource` is (an ARN ending in one of them), else ""."""
    if isinstance(resource, str):
        for grant in (ALL_PROJECT_LOGS, ALL_REPORT_GROUPS):
            if resource.endswith(f":{grant}"):
                return grant
    return ""


def narrow_asset_role_grants(pipeline: pipelines.CodePipeline) -> None:
    """The asset publishing roles keep only what their own builds use (see the module docstring)."""
    assets = pipeline.node.try_find_child("Assets")
    children = list(assets.node.children) if assets is not None else []
    for role in (child for child in children if isinstance(child, iam.Role)):
        policy = role.node.try_find_child("DefaultPolicy")
        names = [
            project.project_name
            for project in children
            if isinstance(project, codebuild.PipelineProject)
            and project.role is not None
            and project.role.node.path == role.node.path
        ]
        if policy is not None and names:
            rewrite_policy(policy, _asset_role_rewrite(Stack.of(role), names))


def replication_key_statement(pipeline: pipelines.CodePipeline) -> Statement | None:
    """The pipeline role's grant on the support stacks' artifact keys: their region and account, and their alias."""
    built = pipeline.pipeline
    stack = Stack.of(built)
    resources: list[str] = []
    aliases: list[str] = []
    for support in built.cross_region_support.values():
        key = support.replication_bucket.encryption_key
        # The home region's entry is the pipeline's own key, granted by its ARN; the others are aliases.
        if not isinstance(key, kms.Alias):
            continue
        alias_arn = Arn.split(stack.resolve(key.key_arn), ArnFormat.SLASH_RESOURCE_NAME)
        resources.append(
            f"arn:{alias_arn.partition}:kms:{alias_arn.region}:{alias_arn.account}:key/*",
        )
        aliases.append(key.alias_name)
    if not resources:
        return None
    return {
        "Effect": "Allow",
        "Resource": sorted(resources),
        "Condition": {"ForAnyValue:StringEquals": {"kms:ResourceAliases": sorted(aliases)}},
    }


def scope_replication_key_grants(pipeline: pipelines.CodePipeline) -> None:
    """The pipeline role's KMS grant on `*` becomes one on the support stacks' keys, matched by alias."""
    built = pipeline.pipeline
    policy = built.role.node.try_find_child("DefaultPolicy")
    if policy is None:
        return

    def rewrite(statements: list[Statement]) -> list[Statement]:
        result: list[Statement] = []
        for statement in statements:
            resources = _as_list(statement["Resource"])
            actions = _as_list(statement["Action"])
            if "*" not in resources or not all(a.startswith(KMS_KEY_ACTION_PREFIX) for a in actions):
                result.append(statement)
                continue
            rest = [resource for resource in resources if resource != "*"]
            if rest:
                result.append({**statement, "Resource": rest if len(rest) > 1 else rest[0]})
            support_keys = replication_key_statement(pipeline)
            if support_keys is not None:
                result.append({**support_keys, "Action": statement["Action"]})
        return result

    rewrite_policy(policy, rewrite)
