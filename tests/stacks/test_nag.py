"""cdk-nag AwsSolutions, one test per stack: no finding left that is not acknowledged with a reason."""

from __future__ import annotations

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Annotations, Match

from tests.stacks.conftest import SynthesizedApp, stage_stacks

NAG_FINDING = Match.string_like_regexp("AwsSolutions-.*")


@pytest.mark.parametrize("app_name", ["reference_app", "mixed_app", "guarded_app"])
def test_no_unacknowledged_findings(app_name: str, request: pytest.FixtureRequest) -> None:
    app: SynthesizedApp = request.getfixturevalue(app_name)
    for stack in app.stacks():
        stage = cdk.Stage.of(stack)
        assert stage is not None
        annotations = Annotations.from_stack(stack)
        findings = annotations.find_error("*", NAG_FINDING) + annotations.find_warning("*", NAG_FINDING)
        assert [f"{stack.stack_name}: {finding.id}: {finding.entry.data}" for finding in findings] == []
        # The checks ran on this stack: cdk-nag writes one report per stack it visits.
        assert (app.outdir / f"AwsSolutions-{stage.stage_name}-{stack.stack_name}-NagReport.csv").is_file()


def test_every_stage_stack_is_checked(reference_app: SynthesizedApp) -> None:
    assert [stack.stack_name for stack in stage_stacks(reference_app.stage)] == [
        "evalops-dev-storage",
        "evalops-dev-registry",
        "evalops-dev-evaluation",
        "evalops-dev-safety-net",
    ]
