"""Names, tags, the waiter and the execution role shared by the control-plane steps."""

from __future__ import annotations

from typing import Any

import boto3
import pytest

from step_code.aws_resources import (
    ENDPOINT_WAIT,
    ControlPlaneError,
    ResourceFailed,
    WaitSpec,
    execution_role_arn,
    resource_name,
    resource_tags,
    tags_by_key,
    wait_for,
)
from step_code.contract import tags as tag_keys
from step_code.contract.config import Config
from tests.step_code.aws.conftest import PREFIX
from tests.support.moto_server import MotoServer


def test_names_are_prefixed_unique_per_execution_and_fit_sagemaker(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALOPS_RESOURCE_PREFIX", PREFIX)
    tuned = config.model("llama-tuned")
    first = resource_name(config, tuned, "a1b2c3d4e5f6")
    second = resource_name(config, tuned, "zz9988776655")
    assert first == "evalops-test-llama-tuned-eval-a1b2c3d4e5f6"
    assert second.startswith(PREFIX) and first != second
    # Without endpoint_name the base is <pipeline>-<model>; a long one is cut to 63 characters.
    long_config = config.model_copy(update={"pipeline": config.pipeline.model_copy(update={"name": "p" * 80})})
    name = resource_name(long_config, long_config.model("falcon-hf"), "a1b2c3d4e5f6")
    assert len(name) == 63 and name.startswith(PREFIX) and name.endswith("-a1b2c3d4e5f6")


def test_default_prefix_is_the_local_one(config: Config, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALOPS_RESOURCE_PREFIX", raising=False)
    assert resource_name(config, config.model("falcon-hf"), "run1").startswith("evalops-local-evalops-aws-test-")


def test_tags_name_the_execution_and_include_its_arn_when_known(
    config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("EVALOPS_EXECUTION_ARN", raising=False)
    monkeypatch.setenv("EVALOPS_RESOURCE_PREFIX", PREFIX)
    tags = tags_by_key(resource_tags(config, config.model("falcon-hf"), "a1b2c3d4e5f6"))
    assert tags == {
        "evalops:execution-id": "a1b2c3d4e5f6",
        "evalops:model": "falcon-hf",
        # The deployed pipeline's name, as on the stacks' resources.
        "evalops:pipeline": f"{PREFIX}evalops-aws-test",
        "evalops:provider": "huggingface",
        "evalops:managed-by": "evalops",
    }
    arn = "arn:aws:sagemaker:us-east-1:123456789012:pipeline/p/execution/a1b2c3d4e5f6"
    monkeypatch.setenv("EVALOPS_EXECUTION_ARN", arn)
    assert tags_by_key(resource_tags(config, config.model("falcon-hf"), "a1b2c3d4e5f6"))["evalops:execution-arn"] == arn


def test_safety_net_matches_the_tags_the_steps_write(safety_net: Any) -> None:
    for key in ("TAG_EXECUTION_ID", "TAG_EXECUTION_ARN", "TAG_PROVIDER", "TAG_MANAGED_BY", "MANAGED_BY"):
        assert getattr(safety_net, key) == getattr(tag_keys, key), key
    assert (safety_net.TAG_KEEP, safety_net.KEEP) == (tag_keys.TAG_KEEP, tag_keys.KEEP)
    for key in ("TAG_LAST_USED", "TAG_KEEP_FOR_HOURS", "LAST_USED_FORMAT", "TAG_IN_USE_BY_PREFIX"):
        assert getattr(safety_net, key) == getattr(tag_keys, key), key


class DescribeSequence:
    """Stands in for DescribeEndpoint: moto's endpoints are InService at once, so states are scripted here."""

    def __init__(self, *answers: dict[str, Any]) -> None:
        self.answers = list(answers)
        self.calls = 0

    def __call__(self) -> dict[str, Any]:
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return answer


def test_waiter_returns_when_in_service() -> None:
    describe = DescribeSequence(
        {"EndpointStatus": "Creating"}, {"EndpointStatus": "Creating"}, {"EndpointStatus": "InService"}
    )
    sleeps: list[float] = []
    result = wait_for("ep", describe, ENDPOINT_WAIT, sleep=sleeps.append, clock=lambda: 0.0)
    assert result["EndpointStatus"] == "InService"
    assert sleeps == [ENDPOINT_WAIT.poll_seconds] * 2


def test_waiter_fails_with_sagemakers_reason() -> None:
    describe = DescribeSequence(
        {"EndpointStatus": "Creating"},
        {
            "EndpointStatus": "Failed",
            "FailureReason": "The primary container for production variant\n"
            "AllTraffic did not pass the ping health check.",
        },
    )
    with pytest.raises(ResourceFailed) as raised:
        wait_for("evalops-test-x-1", describe, ENDPOINT_WAIT, sleep=lambda _: None, clock=lambda: 0.0)
    message = str(raised.value)
    assert message == (
        "endpoint evalops-test-x-1 is Failed: The primary container for production variant "
        "AllTraffic did not pass the ping health check."
    )


def test_waiter_gives_up_after_its_timeout() -> None:
    now = [0.0]

    def sleep(seconds: float) -> None:
        now[0] += seconds

    spec = WaitSpec("endpoint", "EndpointStatus", frozenset({"InService"}), frozenset({"Failed"}), 10.0, 25.0)
    describe = DescribeSequence({"EndpointStatus": "Creating"})
    with pytest.raises(ResourceFailed, match="still Creating after 25 s"):
        wait_for("ep", describe, spec, sleep=sleep, clock=lambda: now[0])
    assert describe.calls == 4


def test_role_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALOPS_ROLE_ARN", "arn:aws:iam::111122223333:role/service-role/steps")
    assert execution_role_arn() == "arn:aws:iam::111122223333:role/service-role/steps"


def test_role_is_derived_from_an_assumed_role_session(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALOPS_ROLE_ARN", raising=False)
    role = boto3.client("iam").create_role(RoleName="evalops-dev-steps", AssumeRolePolicyDocument="{}")["Role"]
    credentials = boto3.client("sts").assume_role(RoleArn=role["Arn"], RoleSessionName="SageMaker")["Credentials"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["AccessKeyId"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["SecretAccessKey"])
    monkeypatch.setenv("AWS_SESSION_TOKEN", credentials["SessionToken"])
    # boto3's default session keeps the credentials it first resolved; start a new one, as a job process would.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    assert execution_role_arn() == role["Arn"]


def test_role_cannot_be_derived_from_a_user(moto: MotoServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("EVALOPS_ROLE_ARN", raising=False)
    with pytest.raises(ControlPlaneError, match="set EVALOPS_ROLE_ARN"):
        execution_role_arn()
