"""The registry stack: one retained model package group per group a winner can go to."""

from __future__ import annotations

from tests.stacks.conftest import SynthesizedApp


def test_the_reference_group_is_created_and_kept(reference_app: SynthesizedApp) -> None:
    template = reference_app.template(reference_app.stage.registry)
    groups = template.find_resources("AWS::SageMaker::ModelPackageGroup")
    assert [g["Properties"] for g in groups.values()] == [
        {
            "ModelPackageGroupName": "LLMEvaluationPipeline",
            "ModelPackageGroupDescription": "LLM Evaluation Pipeline",
            "Tags": [
                {"Key": "evalops:environment", "Value": "dev"},
                {"Key": "evalops:pipeline", "Value": "evalops-dev-llm-evaluation-multi-models-hybrid"},
            ],
        }
    ]
    for group in groups.values():
        assert group["DeletionPolicy"] == "Retain"
        assert group["UpdateReplacePolicy"] == "Retain"


def test_the_registry_is_deployed_before_the_pipeline(reference_app: SynthesizedApp) -> None:
    stage = reference_app.stage
    assert stage.registry in stage.evaluation.dependencies
