"""The response cache's model identity changes exactly when what answers changes (issue 11, defect 1)."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from step_code.answering_identity import answering_identity
from step_code.contract.config import ModelConfig
from step_code.contract.results import Deployment, ModelArtifact

FINETUNED: dict[str, Any] = {
    "name": "llama2-7b-finetuned",
    "model_id": "meta-textgeneration-llama-2-7b",
    "deployment_config": {"instance_type": "ml.g5.2xlarge"},
    "finetuning": {
        "train_data_path": "s3://data/train/",
        "validation_data_path": "s3://data/validation/",
        "parameters": {"instance_type": "ml.g5.12xlarge", "epoch": 1, "learning_rate": 0.0001},
    },
    "evaluation_config": {"output": "[0].generated_text"},
}


def model(changes: dict[str, Any] | None = None, **parameters: Any) -> ModelConfig:
    data = copy.deepcopy(FINETUNED)
    for key, value in (changes or {}).items():
        data["finetuning"][key] = value
    data["finetuning"]["parameters"].update(parameters)
    return ModelConfig.model_validate(data)


def deployment(**artifact: Any) -> Deployment:
    fields: dict[str, Any] = {
        "provider": "jumpstart",
        "model_id": "meta-textgeneration-llama-2-7b",
        "model_version": "4.1.0",
        "image_uri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:2.0",
        "model_data_url": "s3://artifacts/run-1/model/",
        "endpoint_name": "evalops-dev-llama-run1",
        "training_job_name": "evalops-dev-llama-run1",
        "finetuned": True,
        "training_data_sha256": "ab" * 32,
    }
    fields.update(artifact)
    return Deployment(
        model="llama2-7b-finetuned",
        endpoint_name=fields["endpoint_name"],
        created=True,
        artifact=ModelArtifact(**fields),
    )


def test_an_unchanged_config_has_the_same_identity() -> None:
    assert model().identity == model().identity
    assert answering_identity(model(), deployment()) == answering_identity(model(), deployment())


@pytest.mark.parametrize(
    "changed",
    [
        model({"train_data_path": "s3://data/train-v2/"}),
        model({"validation_data_path": None}),
        model(epoch=2),
        model(learning_rate=0.0002),
        model(lora_r=16),
        model(instance_type="ml.g5.24xlarge"),
    ],
    ids=["train-data", "validation-data", "epoch", "learning-rate", "new-hyperparameter", "training-instance"],
)
def test_fine_tuning_inputs_change_the_identity(changed: ModelConfig) -> None:
    assert changed.identity != model().identity


def test_settings_that_do_not_change_the_weights_keep_the_identity() -> None:
    assert model(keep_alive_period_in_seconds=600, max_run_seconds=7200).identity == model().identity


@pytest.mark.parametrize(
    "artifact",
    [
        {"model_version": "4.2.0"},
        {"image_uri": "763104351884.dkr.ecr.us-east-1.amazonaws.com/tgi:2.1"},
        {"model_data_url": "s3://artifacts/run-2/model/"},
        {"training_data_sha256": "cd" * 32},
        {"environment": {"MAX_INPUT_LENGTH": "4096"}},
    ],
    ids=["resolved-version", "image", "trained-artifact", "training-data-content", "environment"],
)
def test_what_the_run_resolved_changes_the_identity(artifact: dict[str, Any]) -> None:
    assert answering_identity(model(), deployment(**artifact)) != answering_identity(model(), deployment())


def test_a_star_version_is_keyed_by_what_it_resolved_to() -> None:
    base = ModelConfig.model_validate({**FINETUNED, "finetuning": None, "name": "llama"})
    assert base.model_version == "*"
    assert answering_identity(base, deployment(model_version="4.1.0", finetuned=False)) != answering_identity(
        base, deployment(model_version="4.2.0", finetuned=False)
    )


def test_the_endpoint_name_and_instances_do_not_change_the_identity() -> None:
    # Each run deploys under its own name; the same weights on the same image answer the same.
    first = deployment(endpoint_name="evalops-dev-llama-run1")
    second = deployment(endpoint_name="evalops-dev-llama-run2").model_copy(update={"instance_count": 3})
    assert answering_identity(model(), first) == answering_identity(model(), second)


def test_an_existing_endpoint_is_keyed_by_what_it_serves() -> None:
    existing = ModelConfig.model_validate(
        {
            "name": "prod",
            "model_provider": "endpoint",
            "endpoint_name": "team-llm",
            "evaluation_config": {"output": "x"},
        }
    )
    serving = [{"variant": "AllTraffic", "containers": [{"image": "img:1"}], "resolved_images": ["img@sha256:1"]}]
    swapped = [{"variant": "AllTraffic", "containers": [{"image": "img:1"}], "resolved_images": ["img@sha256:2"]}]
    assert answering_identity(existing, None, serving) == answering_identity(existing, None, copy.deepcopy(serving))
    assert answering_identity(existing, None, serving) != answering_identity(existing, None, swapped)
