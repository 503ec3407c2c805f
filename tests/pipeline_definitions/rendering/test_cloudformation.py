"""The Fn::Sub form of the definition that the stack embeds, with CDK tokens as the variables."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from pipeline_definitions.planning.plan import EvaluationPlan, build_plan
from pipeline_definitions.rendering import definition_placeholders as ph
from pipeline_definitions.rendering.sagemaker_definition import (
    CloudFormationDefinition,
    render_definition,
    render_for_cloudformation,
)
from step_code.contract.config import Config
from tests.pipeline_definitions.rendering.conftest import shipped_config, targets_for

CODE_KEY = "5d41402abc4b2a76b9719d911017c592.zip"
SUBSTITUTION_RE = re.compile(r"\$\{([^}]*)\}")


def fn_sub(body: str, variables: dict[str, str]) -> str:
    """CloudFormation's Fn::Sub: `${Name}` from the map, `${!Text}` as the literal `${Text}`."""

    def substitute(match: re.Match[str]) -> str:
        name = match.group(1)
        if name.startswith("!"):
            return "${" + name[1:] + "}"
        assert name in variables, f"Fn::Sub would fail: no value for ${{{name}}}"
        return variables[name]

    return SUBSTITUTION_RE.sub(substitute, body)


def stack_values(config: Config, **overrides: Any) -> dict[str, str]:
    targets = targets_for(config, **overrides)
    code_bucket = targets.code_uri.removeprefix("s3://").split("/", 1)[0]
    return {
        "ImageUri": targets.image_uri,
        "RoleArn": targets.role_arn,
        "ArtifactsBucket": targets.artifacts_bucket,
        "CodeBucket": code_bucket,
        "ConfigUri": targets.config_uri,
        "PromptCatalogUri": targets.prompt_catalog_uri,
        "KmsKeyArn": targets.kms_key_arn,
        "Region": targets.region,
    }


def for_stack(config: Config, plan: EvaluationPlan, resource_prefix: str = "evalops-dev-") -> CloudFormationDefinition:
    return render_for_cloudformation(
        plan,
        config,
        code_object_key=CODE_KEY,
        pipeline_name=f"evalops-dev-{config.pipeline.name}",
        resource_prefix=resource_prefix,
    )


def test_substituting_the_stack_values_gives_the_definition(rendered: tuple[Config, EvaluationPlan, str]) -> None:
    config, plan, text = rendered
    result = for_stack(config, plan)
    assert result.variables == (
        "ImageUri",
        "RoleArn",
        "ArtifactsBucket",
        "CodeBucket",
        "ConfigUri",
        "PromptCatalogUri",
        "KmsKeyArn",
        "Region",
    )
    assert fn_sub(result.body, stack_values(config)) == text
    assert result.max_parallel_execution_steps == config.pipeline.parallelism


def test_the_body_substitutes_only_its_variables(rendered: tuple[Config, EvaluationPlan, str]) -> None:
    config, plan, _ = rendered
    result = for_stack(config, plan)
    assert set(SUBSTITUTION_RE.findall(result.body)) == set(result.variables)
    assert ph.PLACEHOLDER_MARK not in result.body
    definition = json.loads(result.body)
    assert definition["Parameters"][0]["DefaultValue"] == "${PromptCatalogUri}"
    preprocess = definition["Steps"][0]["Arguments"]
    assert preprocess["AppSpecification"]["ImageUri"] == "${ImageUri}"
    assert preprocess["ProcessingInputs"][0]["S3Input"]["S3Uri"] == f"s3://${{CodeBucket}}/{CODE_KEY}"
    assert preprocess["Environment"]["PYTHONPATH"] == f"/opt/ml/processing/input/code/{CODE_KEY}"


def test_a_literal_dollar_brace_survives_fn_sub() -> None:
    # The reference config deploys endpoints: its deploy steps get the resource prefix.
    config = shipped_config("reference")
    plan = build_plan(config)
    result = for_stack(config, plan, resource_prefix="team-${env}-")
    assert "team-${!env}-" in result.body
    assert "${env}" not in result.body
    expected = render_definition(plan, config, targets_for(config, resource_prefix="team-${env}-"))
    assert fn_sub(result.body, stack_values(config)) == expected


def test_placeholders_are_distinct_and_none_contains_another() -> None:
    values = [placeholder.value for placeholder in ph.PLACEHOLDERS]
    variables = [placeholder.variable for placeholder in ph.PLACEHOLDERS]
    assert len(set(variables)) == len(variables)
    for value in values:
        assert ph.PLACEHOLDER_MARK in value
        assert [other for other in values if value in other] == [value]


@pytest.mark.parametrize("field", ["code_object_key", "pipeline_name", "resource_prefix"])
def test_text_that_looks_like_a_placeholder_is_refused(field: str) -> None:
    config = shipped_config("sample")
    arguments = {"code_object_key": CODE_KEY, "pipeline_name": "evalops-dev-sample", "resource_prefix": "evalops-dev-"}
    arguments[field] = f"x-{ph.ARTIFACTS_BUCKET.value}"
    with pytest.raises(ValueError, match=f"{field} .* must not contain 'evalops-placeholder'"):
        render_for_cloudformation(build_plan(config), config, **arguments)


def test_a_config_that_contains_a_placeholder_is_refused() -> None:
    config = shipped_config("sample")
    models = [config.models[0].model_copy(update={"name": "evalops-placeholder-region"}), *config.models[1:]]
    config = config.model_copy(update={"models": models})
    with pytest.raises(ValueError, match=r"config.models\[0\].name 'evalops-placeholder-region' must not contain"):
        for_stack(config, build_plan(config))


def test_a_placeholder_changed_by_rendering_is_an_error() -> None:
    text = json.dumps({"Bucket": ph.ARTIFACTS_BUCKET.value, "Image": ph.IMAGE_URI.value.removesuffix(":latest")})
    with pytest.raises(ValueError, match="a placeholder was altered while rendering"):
        ph.to_fn_sub_template(text)
