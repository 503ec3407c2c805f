"""`delivery.permissions_boundary_arn`: every role of the delivery stack gets it; the Stages keep their own."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from aws_cdk import App, Stack, Stage
from aws_cdk.assertions import Template

from stacks.delivery_stack import DeliveryStack
from tests.delivery.conftest import TOOLING_ACCOUNT, environments_file

BOUNDARY = f"arn:aws:iam::{TOOLING_ACCOUNT}:policy/platform/tooling-boundary"


def test_every_delivery_role_has_the_boundary_and_no_stage_role_gets_it(
    build_delivery: Callable[..., tuple[App, DeliveryStack]], tmp_path: Path
) -> None:
    _, stack = build_delivery(environments_file(permissions_boundary_arn=BOUNDARY), outdir=tmp_path)
    roles = Template.from_stack(stack).find_resources("AWS::IAM::Role")
    assert len(roles) >= 3
    assert {role["Properties"].get("PermissionsBoundary") for role in roles.values()} == {BOUNDARY}
    stages = [child for child in stack.node.children if isinstance(child, Stage)]
    assert stages
    for stage in stages:
        for child in stage.node.children:
            if isinstance(child, Stack):
                for role in Template.from_stack(child).find_resources("AWS::IAM::Role").values():
                    assert "PermissionsBoundary" not in role["Properties"]


def test_without_a_boundary_the_delivery_roles_have_none(
    build_delivery: Callable[..., tuple[App, DeliveryStack]], tmp_path: Path
) -> None:
    _, stack = build_delivery(environments_file(), outdir=tmp_path)
    roles = Template.from_stack(stack).find_resources("AWS::IAM::Role")
    assert roles and all("PermissionsBoundary" not in role["Properties"] for role in roles.values())
