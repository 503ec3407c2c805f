"""What an existing endpoint serves keys its cached answers: a model swapped behind the name is a new identity."""

from __future__ import annotations

from typing import Any

import pytest

from step_code.answering_identity import answering_identity
from step_code.aws_resources import ControlPlaneError, serving_models
from step_code.contract.config import Config
from tests.step_code.aws.conftest import INSTANCE, ROLE_ARN

ENDPOINT = "team-llm-prod"


def serve(client: Any, suffix: str, image: str, data: str) -> str:
    name = f"{ENDPOINT}-{suffix}"
    client.create_model(
        ModelName=name, PrimaryContainer={"Image": image, "ModelDataUrl": data}, ExecutionRoleArn=ROLE_ARN
    )
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": INSTANCE, "InitialInstanceCount": 1}
        ],
    )
    return name


def test_a_model_swapped_behind_the_endpoint_changes_the_identity(aws: Any, config: Config) -> None:
    existing = config.model("existing")
    aws.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=serve(aws, "v1", "img:1", "s3://m/v1.tar.gz"))
    first = serving_models(aws, ENDPOINT)
    assert first[0]["containers"][0] == {
        "image": "img:1",
        "model_data": "s3://m/v1.tar.gz",
        "model_package": None,
        "environment": {},
    }
    assert serving_models(aws, ENDPOINT) == first

    aws.delete_endpoint(EndpointName=ENDPOINT)
    aws.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=serve(aws, "v2", "img:1", "s3://m/v2.tar.gz"))
    second = serving_models(aws, ENDPOINT)
    assert answering_identity(existing, None, first) != answering_identity(existing, None, second)


def test_an_unreadable_endpoint_is_one_line_with_the_way_out(aws: Any) -> None:
    expected = "^cannot read what endpoint missing-endpoint serves, which keys its cached answers: DescribeEndpoint"
    with pytest.raises(ControlPlaneError, match=expected) as raised:
        serving_models(aws, "missing-endpoint")
    assert "\n" not in str(raised.value) and str(raised.value).endswith("or ResponseCache=bypass)")
