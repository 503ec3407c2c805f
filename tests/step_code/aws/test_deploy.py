"""The deploy step against moto: names, tags, reuse across pages, ownership, and refusals."""

from __future__ import annotations

import json
from typing import Any

import pytest

from step_code import deploy
from step_code.aws_resources import ControlPlaneError, resource_tags, sdk_session, tags_by_key
from step_code.contract.config import Config
from step_code.contract.files import DEPLOYMENT, DEPLOYMENT_FILE, FINETUNE, FINETUNE_FILE
from step_code.contract.results import Deployment, FinetuneResult
from step_code.contract.tags import TAG_KEEP
from step_code.deploy import ModelDefinition, deploy_endpoint, endpoint_request, find_endpoint, huggingface_definition
from tests.step_code.aws import jumpstart_specs
from tests.step_code.aws.conftest import INSTANCE, PREFIX, ROLE_ARN, RUN_ARTIFACTS, RunDirs, planned_step

EXECUTION = "a1b2c3d4e5f6"
TGI_IMAGE_REPOSITORY = "huggingface-pytorch-tgi-inference"
IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/llm:1"


def never_build() -> ModelDefinition:
    raise AssertionError("a reused endpoint must not resolve a model definition")


def create_endpoint(client: Any, name: str, tags: list[dict[str, str]] | None = None) -> None:
    client.create_model(
        ModelName=name,
        PrimaryContainer={"Image": IMAGE},
        ExecutionRoleArn=ROLE_ARN,
    )
    client.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "AllTraffic", "ModelName": name, "InstanceType": INSTANCE, "InitialInstanceCount": 1}
        ],
    )
    client.create_endpoint(EndpointName=name, EndpointConfigName=name, **({"Tags": tags} if tags else {}))


def test_deploys_a_hugging_face_model_with_run_scoped_tagged_resources(
    aws: Any, config: Config, run_dirs: RunDirs
) -> None:
    step = planned_step(config, "Deploy-falcon-hf")
    assert deploy.main(run_dirs.argv(step, EXECUTION)) == 0

    recorded = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    name = recorded.endpoint_name
    assert name == f"{PREFIX}evalops-aws-test-falcon-hf-{EXECUTION}" and len(name) <= 63
    assert recorded.created and recorded.model_name == name and recorded.endpoint_config_name == name
    assert (recorded.instance_type, recorded.instance_count) == (INSTANCE, 1)
    artifact = recorded.artifact
    assert artifact.provider == "huggingface" and artifact.model_id == "tiiuae/falcon-7b-instruct"
    assert artifact.image_uri is not None and TGI_IMAGE_REPOSITORY in artifact.image_uri
    assert artifact.environment["HF_MODEL_ID"] == "tiiuae/falcon-7b-instruct"
    # ml.m5.large has no GPU, so TGI is not told to shard.
    assert "SM_NUM_GPUS" not in artifact.environment
    assert not artifact.finetuned and artifact.endpoint_name == name

    model = aws.describe_model(ModelName=name)
    assert model["PrimaryContainer"]["Image"] == artifact.image_uri
    assert model["ExecutionRoleArn"] == ROLE_ARN
    variant = aws.describe_endpoint_config(EndpointConfigName=name)["ProductionVariants"][0]
    assert variant["ModelName"] == name and variant["InstanceType"] == INSTANCE
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == deploy.HUGGINGFACE_STARTUP_TIMEOUT_SECONDS
    expected_tags = tags_by_key(resource_tags(config, config.model("falcon-hf"), EXECUTION))
    for arn in (model["ModelArn"], aws.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"]):
        assert tags_by_key(aws.list_tags(ResourceArn=arn)["Tags"]) == expected_tags
    endpoint = aws.describe_endpoint(EndpointName=name)
    assert endpoint["EndpointStatus"] == "InService"
    assert tags_by_key(aws.list_tags(ResourceArn=endpoint["EndpointArn"])["Tags"]) == expected_tags


def test_an_endpoint_the_config_keeps_is_tagged_to_be_kept(aws: Any, config: Config) -> None:
    kept = config.model("llama-base").model_copy(update={"cleanup_endpoint": False})
    for model, keep in ((kept, "true"), (config.model("falcon-hf"), None)):
        request = endpoint_request(config, model, EXECUTION, None)
        name = deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE})).endpoint_name
        arns = (
            aws.describe_model(ModelName=name)["ModelArn"],
            aws.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"],
            aws.describe_endpoint(EndpointName=name)["EndpointArn"],
        )
        for arn in arns:
            tags = tags_by_key(aws.list_tags(ResourceArn=arn)["Tags"])
            assert tags.get(TAG_KEEP) == keep, arn
            assert tags["evalops:execution-id"] == EXECUTION


def test_each_execution_gets_its_own_endpoint(aws: Any, config: Config, run_dirs: RunDirs) -> None:
    step = planned_step(config, "Deploy-falcon-hf")
    assert deploy.main(run_dirs.argv(step, "run000000001")) == 0
    assert deploy.main(run_dirs.argv(step, "run000000002")) == 0
    names = sorted(e["EndpointName"] for e in aws.list_endpoints()["Endpoints"])
    assert names == [f"{PREFIX}evalops-aws-test-falcon-hf-run00000000{i}" for i in (1, 2)]


def test_reuses_an_in_service_endpoint_found_on_a_later_page(aws: Any, config: Config) -> None:
    model = config.model("falcon-hf")
    request = endpoint_request(config, model, EXECUTION, None)
    # Endpoints whose names contain the run's name sort before it, so it is not on the first page.
    for suffix in ("x1", "x2", "x3"):
        create_endpoint(aws, f"{request.name}-{suffix}")
    create_endpoint(aws, request.name, tags=request.tags)
    first_page = aws.list_endpoints(NameContains=request.name, MaxResults=2)
    assert "NextToken" in first_page
    assert request.name not in [e["EndpointName"] for e in first_page["Endpoints"]]

    assert find_endpoint(aws, request.name, page_size=2) is not None
    reused = deploy_endpoint(aws, request, never_build, page_size=2)
    assert reused.endpoint_name == request.name and reused.model_name == request.name
    # Tagged by this run for this model: an earlier attempt of this step made it, so cleanup deletes it.
    assert reused.created
    assert reused.artifact.image_uri == IMAGE
    assert len(aws.list_endpoints()["Endpoints"]) == 4


def test_an_endpoint_this_run_did_not_tag_is_used_but_not_owned(aws: Any, config: Config) -> None:
    request = endpoint_request(config, config.model("falcon-hf"), EXECUTION, None)
    create_endpoint(aws, request.name)
    reused = deploy_endpoint(aws, request, never_build)
    assert not reused.created


def test_two_models_cannot_share_an_endpoint_name(aws: Any, config: Config) -> None:
    shared = config.model_copy(
        update={"models": [m.model_copy(update={"endpoint_name": "shared-eval"}) for m in config.models[:2]]}
    )
    first = endpoint_request(shared, shared.models[0], EXECUTION, None)
    create_endpoint(aws, first.name, tags=first.tags)
    second = endpoint_request(shared, shared.models[1], EXECUTION, None)
    assert second.name == first.name
    with pytest.raises(ControlPlaneError, match="belongs to model 'falcon-hf' of this run"):
        deploy_endpoint(aws, second, never_build)


def test_adopts_the_model_of_an_earlier_attempt_and_refuses_a_foreign_one(aws: Any, config: Config) -> None:
    request = endpoint_request(config, config.model("falcon-hf"), EXECUTION, None)
    definition = ModelDefinition(container={"Image": "111.dkr.ecr.us-east-1.amazonaws.com/llm:2"})
    aws.create_model(
        ModelName=request.name,
        PrimaryContainer={"Image": "111.dkr.ecr.us-east-1.amazonaws.com/llm:2"},
        ExecutionRoleArn=ROLE_ARN,
        Tags=request.tags,
    )
    deployment = deploy_endpoint(aws, request, lambda: definition)
    assert deployment.created and aws.describe_endpoint(EndpointName=request.name)["EndpointStatus"] == "InService"

    other = endpoint_request(config, config.model("llama-base"), EXECUTION, None)
    aws.create_model(ModelName=other.name, PrimaryContainer={"Image": "x"}, ExecutionRoleArn=ROLE_ARN)
    with pytest.raises(ControlPlaneError, match=f"model {other.name} already exists and was not created by this run"):
        deploy_endpoint(aws, other, lambda: definition)


def test_deploys_a_jumpstart_model_and_its_fine_tuned_artifact(
    aws: Any, config: Config, run_dirs: RunDirs, jumpstart_catalogue: None
) -> None:
    assert deploy.main(run_dirs.argv(planned_step(config, "Deploy-llama-base"), EXECUTION)) == 0
    base = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    base_weights = f"s3://{jumpstart_specs.GATED_BUCKET}/{jumpstart_specs.HOSTING_PREFIX}"
    container = aws.describe_model(ModelName=base.model_name)["PrimaryContainer"]
    assert container["Image"] == jumpstart_specs.SERVING_IMAGE
    assert container["ModelDataSource"]["S3DataSource"] == {
        "S3Uri": base_weights,
        "S3DataType": "S3Prefix",
        "CompressionType": "None",
        "ModelAccessConfig": {"AcceptEula": True},
    }
    variant = aws.describe_endpoint_config(EndpointConfigName=base.endpoint_config_name)["ProductionVariants"][0]
    assert variant["ContainerStartupHealthCheckTimeoutInSeconds"] == jumpstart_specs.STARTUP_TIMEOUT_SECONDS
    assert variant["ModelDataDownloadTimeoutInSeconds"] == jumpstart_specs.STARTUP_TIMEOUT_SECONDS
    assert (base.artifact.model_data_url, base.artifact.model_version) == (base_weights, jumpstart_specs.VERSION)
    assert base.artifact.environment["HF_MODEL_ID"] == "/opt/ml/model" and not base.artifact.finetuned

    finetuned = FinetuneResult(
        model="llama-tuned",
        training_job_name=f"{PREFIX}llama-tuned-eval-{EXECUTION}",
        model_data_url=f"{RUN_ARTIFACTS}/{EXECUTION}/finetune/llama-tuned/job/output/model/",
        base_model_id=jumpstart_specs.MODEL_ID,
        base_model_version=jumpstart_specs.VERSION,
        hyperparameters={"epoch": "1"},
    )
    run_dirs.put_input(FINETUNE, FINETUNE_FILE, finetuned.model_dump_json())
    assert deploy.main(run_dirs.argv(planned_step(config, "Deploy-llama-tuned"), EXECUTION)) == 0
    tuned = Deployment.model_validate(run_dirs.output(DEPLOYMENT, DEPLOYMENT_FILE))
    assert tuned.endpoint_name == f"{PREFIX}llama-tuned-eval-{EXECUTION}" and tuned.instance_count == 2
    container = aws.describe_model(ModelName=tuned.model_name)["PrimaryContainer"]
    # The same serving image, the fine-tuned weights.
    assert container["Image"] == jumpstart_specs.SERVING_IMAGE
    assert container["ModelDataSource"]["S3DataSource"]["S3Uri"] == finetuned.model_data_url
    artifact = tuned.artifact
    assert artifact.finetuned and artifact.training_job_name == finetuned.training_job_name
    assert (artifact.model_data_url, artifact.model_id) == (finetuned.model_data_url, jumpstart_specs.MODEL_ID)


def test_refuses_models_it_does_not_deploy(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(run_dirs.input_root / "config" / "config.json"), "--output-dir", str(run_dirs.output_root)]
    for name, provider in (("titan", "bedrock"), ("existing", "endpoint")):
        assert deploy.main([*argv, "--model", name, "--execution-id", EXECUTION]) == 1
        error = capsys.readouterr().err.strip()
        assert error.startswith(f"deploy: error: model {name!r} has model_provider {provider!r}")
        assert "\n" not in error
    assert aws.list_endpoints()["Endpoints"] == []


def test_a_fine_tuned_model_needs_its_finetune_output(
    aws: Any, config: Config, run_dirs: RunDirs, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--config", str(run_dirs.input_root / "config" / "config.json"), "--output-dir", str(run_dirs.output_root)]
    assert deploy.main([*argv, "--model", "llama-tuned", "--execution-id", EXECUTION]) == 1
    assert "pass its finetune output with --finetune-dir" in capsys.readouterr().err
    # A finetune.json that is not a FinetuneResult names the file and the key.
    step = planned_step(config, "Deploy-llama-tuned")
    run_dirs.put_input(FINETUNE, FINETUNE_FILE, json.dumps({"model": "llama-tuned"}))
    assert deploy.main(run_dirs.argv(step, EXECUTION)) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith("deploy: error: ") and f"{FINETUNE_FILE}: training_job_name: Field required" in error


def test_jumpstart_resolution_failure_is_one_clear_line(
    aws: Any, config: Config, run_dirs: RunDirs, no_jumpstart_catalogue: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert deploy.main(run_dirs.argv(planned_step(config, "Deploy-llama-base"), EXECUTION)) == 1
    error = capsys.readouterr().err.strip()
    assert error.startswith(
        "deploy: error: cannot resolve JumpStart model 'meta-textgeneration-llama-2-7b' version '*' in us-east-1:"
    )
    assert "\n" not in error
    assert aws.list_models()["Models"] == []


def test_tgi_shards_over_the_gpus_of_the_instance_and_pins_the_revision(config: Config) -> None:
    model = config.model("falcon-hf").model_copy(update={"model_version": "refs-pr-7"})
    definition = huggingface_definition(
        model, instance_type="ml.g5.12xlarge", role=ROLE_ARN, session=sdk_session(), code_location="s3://b/code"
    )
    environment = definition.container["Environment"]
    assert environment["SM_NUM_GPUS"] == "4"
    assert environment["HF_MODEL_REVISION"] == "refs-pr-7"
    assert "ModelDataUrl" not in definition.container and "ModelDataSource" not in definition.container
