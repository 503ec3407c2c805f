"""The environment's guardrails on what the steps create, against moto: the training job, the model, the endpoint
config, the endpoint and the model package carry the VPC, network isolation, keys and extra tags.

The job environment is the one the renderer gives these steps (`JobGuardrails.to_environment`). moto keeps most
fields; where it drops one (a model's EnableNetworkIsolation), the request the step sent is read instead.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from step_code import deploy, finetune, register
from step_code.aws_resources import tags_by_key
from step_code.contract.config import Config
from step_code.contract.files import (
    DEPLOYMENT,
    DEPLOYMENT_FILE,
    FINETUNE,
    FINETUNE_FILE,
    REGISTRATION,
    REGISTRATION_FILE,
)
from step_code.contract.job_env import (
    KMS_KEY_ENV,
    MODEL_NETWORK_ISOLATION_ENV,
    MODEL_SECURITY_GROUPS_ENV,
    MODEL_SUBNETS_ENV,
    JobGuardrails,
    Vpc,
)
from step_code.contract.results import Deployment, FinetuneResult, Registration
from step_code.deploy import ModelDefinition, deployment_identity, endpoint_request
from step_code.resource_guardrails import (
    deployment_guardrails,
    endpoint_config_settings,
    model_settings,
    training_estimator_settings,
)
from tests.step_code.aws.conftest import GROUP, RunDirs, planned_step
from tests.step_code.aws.test_register import decision, stage

EXECUTION = "9a8b7c6d5e4f"
ENVIRONMENT_KEY = "arn:aws:kms:us-east-1:123456789012:key/0e7c1c52-9d0f-4d1b-8a7e-1d2c3b4a5f60"
VOLUME_KEY = "arn:aws:kms:us-east-1:123456789012:key/11111111-2222-3333-4444-555555555555"
OUTPUT_KEY = "arn:aws:kms:us-east-1:123456789012:key/66666666-7777-8888-9999-000000000000"
TRAINING_VPC = Vpc(subnets=("subnet-0aaa1111bbbb2222c",), security_group_ids=("sg-0aaa1111bbbb2222c",))
MODEL_VPC = Vpc(
    subnets=("subnet-0ddd3333eeee4444f", "subnet-0fff5555aaaa6666b"), security_group_ids=("sg-0ddd3333eeee4444f",)
)
EXTRA_TAGS = {"cost-center": "ml-4711", "data-classification": "internal"}
GUARDRAILS = JobGuardrails(
    training_vpc=TRAINING_VPC,
    training_network_isolation=True,
    training_volume_kms_key=VOLUME_KEY,
    training_output_kms_key=OUTPUT_KEY,
    training_inter_container_encryption=True,
    model_vpc=MODEL_VPC,
    model_network_isolation=True,
    endpoint_kms_key=VOLUME_KEY,
    tags=tuple(EXTRA_TAGS.items()),
)


@pytest.fixture
def guarded(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The steps' job environment as the pipeline sets it for an environment with guardrails."""
    monkeypatch.setenv(KMS_KEY_ENV, ENVIRONMENT_KEY)
    for name, value in GUARDRAILS.to_environment().items():
        monkeypatch.setenv(name, value)
    return aws


@pytest.fixture
def sent() -> Iterator[dict[str, dict[str, Any]]]:
    """The parameters of every SageMaker call the steps' clients make, by operation (the last call of each)."""
    calls: dict[str, dict[str, Any]] = {}

    def record(params: dict[str, Any], model: Any, **_: Any) -> None:
        calls[model.name] = dict(params)

    events = boto3.DEFAULT_SESSION._session.get_component("event_emitter") if boto3.DEFAULT_SESSION else None
    if events is None:
        boto3.setup_default_session()
        events = boto3.DEFAULT_SESSION._session.get_component("event_emitter")  # type: ignore[union-attr]
    events.register("provide-client-params.sagemaker", record, unique_id="evalops-guardrails-test")
    yield calls
    events.unregister("provide-client-params.sagemaker", unique_id="evalops-guardrails-test")


def test_the_training_job_runs_in_the_vpc_isolated_with_the_keys_and_tags(
    guarded: Any, config: Config, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    assert finetune.main(run_dirs.argv(planned_step(config, "Finetune-llama-tuned"), EXECUTION)) == 0

    recorded = FinetuneResult.model_validate(run_dirs.output(FINETUNE, FINETUNE_FILE))
    job = guarded.describe_training_job(TrainingJobName=recorded.training_job_name)
    assert job["VpcConfig"] == TRAINING_VPC.api()
    assert job["EnableNetworkIsolation"] is True
    assert job["EnableInterContainerTrafficEncryption"] is True
    assert job["ResourceConfig"]["VolumeKmsKeyId"] == VOLUME_KEY
    assert job["OutputDataConfig"]["KmsKeyId"] == OUTPUT_KEY
    tags = tags_by_key(guarded.list_tags(ResourceArn=job["TrainingJobArn"])["Tags"])
    assert EXTRA_TAGS.items() <= tags.items()
    assert tags["evalops:execution-id"] == EXECUTION


def test_the_model_endpoint_config_and_endpoint_carry_the_guardrails(
    guarded: Any, config: Config, run_dirs: RunDirs, jumpstart_catalogue: None, sent: dict[str, dict[str, Any]]
) -> None:
    assert deploy.main(run_dirs.argv(planned_step(config, "Deploy-llama-base"), EXECUTION)) == 0

    deployment = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    model = guarded.describe_model(ModelName=deployment.model_name)
    assert model["VpcConfig"] == MODEL_VPC.api()
    # moto answers EnableNetworkIsolation False whatever it is given: the request shows what was asked.
    assert sent["CreateModel"]["EnableNetworkIsolation"] is True
    assert sent["CreateModel"]["VpcConfig"] == MODEL_VPC.api()
    endpoint_config = guarded.describe_endpoint_config(EndpointConfigName=deployment.endpoint_config_name)
    assert endpoint_config["KmsKeyId"] == VOLUME_KEY
    endpoint = guarded.describe_endpoint(EndpointName=deployment.endpoint_name)
    for arn in (model["ModelArn"], endpoint_config["EndpointConfigArn"], endpoint["EndpointArn"]):
        tags = tags_by_key(guarded.list_tags(ResourceArn=arn)["Tags"])
        assert EXTRA_TAGS.items() <= tags.items(), arn
        assert tags["evalops:model"] == "llama-base"


def test_the_model_package_carries_the_extra_tags(
    guarded: Any, config: Config, run_dirs: RunDirs, sent: dict[str, dict[str, Any]]
) -> None:
    guarded.create_model_package_group(ModelPackageGroupName=GROUP)
    stage(run_dirs, decision())
    assert register.main(run_dirs.argv(planned_step(config, "RegisterWinner"), EXECUTION)) == 0

    registration = Registration.model_validate(run_dirs.output(REGISTRATION, REGISTRATION_FILE))
    assert registration.model_package_arn is not None
    # moto's ListTags fails on model package ARNs: the request shows the tags.
    assert tags_by_key(sent["CreateModelPackage"]["Tags"]) == EXTRA_TAGS


def test_without_guardrails_only_the_environment_key_applies(aws: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KMS_KEY_ENV, ENVIRONMENT_KEY)
    plain = JobGuardrails.from_environment({KMS_KEY_ENV: ENVIRONMENT_KEY})
    assert training_estimator_settings(plain, "ml.m5.xlarge") == {
        "output_kms_key": ENVIRONMENT_KEY,
        "volume_kms_key": ENVIRONMENT_KEY,
    }
    assert model_settings(plain, model_requires_isolation=False) == {"EnableNetworkIsolation": False}
    # A model whose JumpStart specs require isolation keeps it when the environment does not ask for it.
    assert model_settings(plain, model_requires_isolation=True) == {"EnableNetworkIsolation": True}
    assert endpoint_config_settings(plain, "ml.m5.large") == {"KmsKeyId": ENVIRONMENT_KEY}
    assert JobGuardrails.from_environment({}) == JobGuardrails()


def test_instances_with_local_nvme_storage_get_no_volume_key() -> None:
    # SageMaker refuses VolumeKmsKeyId / KmsKeyId for instance types whose local storage the hardware encrypts.
    assert "volume_kms_key" not in training_estimator_settings(GUARDRAILS, "ml.g5.12xlarge")
    assert endpoint_config_settings(GUARDRAILS, "ml.g5.2xlarge") == {}
    assert endpoint_config_settings(GUARDRAILS, "ml.p4d.24xlarge") == {}
    assert training_estimator_settings(GUARDRAILS, "ml.m5.xlarge")["volume_kms_key"] == VOLUME_KEY


def test_a_kept_endpoint_in_another_vpc_or_with_another_key_is_another_endpoint(
    aws: Any, config: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = endpoint_request(config, config.model("llama-base"), EXECUTION, None)
    definition = ModelDefinition(container={"Image": "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"})
    plain = deployment_identity(request, definition)
    assert deployment_guardrails(JobGuardrails(), "ml.m5.large") == {}
    identities = {plain}
    for name, value in (
        (MODEL_SUBNETS_ENV, "subnet-0ddd3333eeee4444f"),
        (MODEL_SECURITY_GROUPS_ENV, "sg-0ddd3333eeee4444f"),
        (MODEL_NETWORK_ISOLATION_ENV, "true"),
        (KMS_KEY_ENV, ENVIRONMENT_KEY),
    ):
        monkeypatch.setenv(name, value)
        identities.add(deployment_identity(request, definition))
    # Subnets without groups are no VpcConfig yet; each setting after that is a new identity.
    assert len(identities) == 4
    for name in (MODEL_SUBNETS_ENV, MODEL_SECURITY_GROUPS_ENV, MODEL_NETWORK_ISOLATION_ENV, KMS_KEY_ENV):
        monkeypatch.delenv(name)
    assert deployment_identity(request, definition) == plain
