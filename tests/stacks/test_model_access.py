"""What the execution role names instead of `*`: Bedrock ARNs, JumpStart buckets, AWS container registries."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_definitions.loading.loader import load_config
from stacks import model_access
from step_code.contract.config import Config


@pytest.fixture
def reference_config(repo_root: Path) -> Config:
    return load_config(repo_root / "configs/reference.yaml").config


def test_bedrock_model_ids_become_foundation_model_arns() -> None:
    assert model_access.bedrock_model_arns(
        "amazon.titan-text-express-v1", partition="aws", region="eu-west-1", account="111111111111"
    ) == ("arn:aws:bedrock:eu-west-1::foundation-model/amazon.titan-text-express-v1",)


def test_an_inference_profile_reaches_its_base_model_in_any_region() -> None:
    assert model_access.bedrock_model_arns(
        "eu.meta.llama3-2-3b-instruct-v1:0", partition="aws", region="eu-west-1", account="111111111111"
    ) == (
        "arn:aws:bedrock:eu-west-1:111111111111:inference-profile/eu.meta.llama3-2-3b-instruct-v1:0",
        "arn:aws:bedrock:*::foundation-model/meta.llama3-2-3b-instruct-v1:0",
    )


def test_a_model_arn_is_taken_as_it_is() -> None:
    arn = "arn:aws:bedrock:us-east-1:111111111111:provisioned-model/abc123"
    assert model_access.bedrock_model_arns(arn, partition="aws", region="us-east-1", account="1") == (arn,)


@pytest.mark.parametrize(("region", "account"), [("us-east-1", "763104351884"), ("me-south-1", "217643126080")])
def test_deep_learning_container_registries_come_from_the_sdk_tables(region: str, account: str) -> None:
    accounts = model_access.dlc_registry_accounts(region)
    assert account in accounts
    assert all(len(a) == 12 and a.isdigit() for a in accounts)


def test_an_unknown_region_is_an_error() -> None:
    with pytest.raises(model_access.UnknownRegionError, match="xx-nowhere-1"):
        model_access.dlc_registry_accounts("xx-nowhere-1")


def test_jumpstart_buckets_are_regional() -> None:
    assert model_access.jumpstart_buckets("ap-south-1") == (
        "jumpstart-cache-prod-ap-south-1",
        "jumpstart-private-cache-prod-ap-south-1",
    )


def test_external_inputs_are_the_s3_locations_of_the_config(reference_config: Config) -> None:
    assert model_access.external_s3_uris(reference_config) == ()
    changed = reference_config.model_copy(
        update={"dataset": reference_config.dataset.model_copy(update={"input_data_location": "s3://b/k/data.jsonl"})}
    )
    assert model_access.external_s3_uris(changed) == ("s3://b/k/data.jsonl",)
    assert model_access.deploys_containers(reference_config) and model_access.deploys_jumpstart(reference_config)
    assert model_access.bedrock_model_ids(reference_config) == ()
    assert model_access.existing_endpoint_names(reference_config) == ()
