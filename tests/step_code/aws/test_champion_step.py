"""The champion step against moto (registry, S3, endpoints) with the local model server answering the
SageMaker endpoints: a champion whose stored outputs do not fit the run is asked again, through its
endpoint when one is in service, else on a redeployment of its package that is deleted afterwards."""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from step_code import champion_answering, champion_step
from step_code.aws_resources import ControlPlaneError, describe_or_none, tags_by_key
from step_code.contract.config import AlgorithmConfig, Config
from step_code.contract.files import CHAMPION, CHAMPION_FILE, DATASET, MANIFEST_FILE, PROCESSED_FILE
from step_code.contract.results import (
    PERTURBATION_SEEDING,
    ChampionAnswers,
    EvaluatedAs,
    EvaluationSummary,
    ModelArtifact,
)
from step_code.contract.tags import MANAGED_BY, TAG_EXECUTION_ID, TAG_LAST_USED, TAG_MANAGED_BY
from step_code.deploy import KeptEndpoint, ModelDefinition, deploy_endpoint, endpoint_request
from tests.step_code.aws.conftest import (
    ARTIFACTS_BUCKET,
    CONFIG,
    GROUP,
    INSTANCE,
    PREFIX,
    RunDirs,
    make_summary,
    planned_step,
)
from tests.step_code.aws.test_deploy import create_endpoint
from tests.support.model_server import ModelServer

EXECUTION = "c0ffee123456"
IMAGE = "111.dkr.ecr.us-east-1.amazonaws.com/tgi:2"
MODEL_DATA = "s3://evalops-test-artifacts/champion/model.tar.gz"
STORED = f"{PREFIX}evalops-aws-test/artifacts/e0/registration/falcon-hf"
QUESTIONS = {"What is the capital of France?": "Paris", "What is 2 + 2?": "4", "Largest planet?": "Jupiter"}


def _dataset(run_dirs: RunDirs) -> str:
    rows = [
        {"record_id": f"r{i}", "model_input": question, "target_output": answer}
        for i, (question, answer) in enumerate(QUESTIONS.items())
    ]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    run_dirs.put_input(DATASET, PROCESSED_FILE, text)
    digest = hashlib.sha256(text.encode()).hexdigest()
    run_dirs.put_input(DATASET, MANIFEST_FILE, json.dumps({"processed_sha256": digest}))
    return digest


def _approved_package(aws: Any, endpoint_name: str | None) -> str:
    """falcon-hf registered and approved on another catalog: its stored outputs do not fit this run."""
    s3 = boto3.client("s3")
    artifact = ModelArtifact(
        provider="huggingface", model_id="tiiuae/falcon-7b-instruct", image_uri=IMAGE, endpoint_name=endpoint_name
    )
    summary = make_summary("falcon-hf", artifact, {"factual_knowledge": 0.5}, "e0")
    evaluated_as = EvaluatedAs(
        model=Config.model_validate(CONFIG).model("falcon-hf").model_dump(mode="json"),
        algorithms=[item.model_dump(mode="json") for item in Config.model_validate(CONFIG).algorithms],
        dataset_sha256="ab" * 32,
    )
    for name, body in (
        ("summary.json", summary.model_dump_json()),
        ("evaluated_as.json", evaluated_as.model_dump_json()),
    ):
        s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=f"{STORED}/{name}", Body=body.encode())
    aws.create_model_package_group(ModelPackageGroupName=GROUP)
    metrics = {"ContentType": "application/json", "S3Uri": f"s3://{ARTIFACTS_BUCKET}/{STORED}/summary.json"}
    arn: str = aws.create_model_package(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": MODEL_DATA, "Environment": {"HF_MODEL_ID": "falcon"}}],
            "SupportedContentTypes": ["application/json"],
            "SupportedResponseMIMETypes": ["application/json"],
            "SupportedRealtimeInferenceInstanceTypes": [INSTANCE],
        },
        ModelMetrics={"ModelQuality": {"Statistics": metrics, "Constraints": metrics}},
    )["ModelPackageArn"]
    return arn


def _update_stored_evaluated_as(**update: Any) -> None:
    """Rewrite the registered winner's evaluated_as.json with `update`."""
    s3 = boto3.client("s3")
    key = f"{STORED}/evaluated_as.json"
    evaluated_as = EvaluatedAs.model_validate_json(s3.get_object(Bucket=ARTIFACTS_BUCKET, Key=key)["Body"].read())
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=evaluated_as.model_copy(update=update).model_dump_json())


def _run(config: Config, run_dirs: RunDirs) -> ChampionAnswers:
    step = planned_step(config, "Champion")
    assert champion_step.main(run_dirs.argv(step, EXECUTION)) == 0
    return ChampionAnswers.model_validate(run_dirs.output(CHAMPION, CHAMPION_FILE))


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """SageMaker endpoints answered by the local model server: every question right."""
    with ModelServer(answers=QUESTIONS) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        yield server


def test_a_champion_without_an_endpoint_is_redeployed_evaluated_and_deleted(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer
) -> None:
    digest = _dataset(run_dirs)
    arn = _approved_package(aws, endpoint_name=None)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "redeployed", answer.detail
    assert answer.model_package_arn == arn and answer.model_package_version == 1
    assert f"scored on catalog sha256 {'ab' * 6}, this run's is {digest[:12]}" in answer.detail
    name = f"{PREFIX}evalops-aws-test-champion-v1-{EXECUTION}"
    assert f"redeployment of its package (endpoint {name}, deleted)" in answer.detail
    # Every record went to the redeployed endpoint, once.
    assert model_server.requests_by_model == {name: len(QUESTIONS)}
    summary = EvaluationSummary.model_validate(run_dirs.output(CHAMPION, f"{GROUP}/summary.json"))
    assert summary.model == "falcon-hf" and summary.dataset_sha256 == digest
    assert summary.records_total == len(QUESTIONS) and summary.metrics["factual_knowledge"] == pytest.approx(1.0)
    assert summary.artifact.image_uri == IMAGE and summary.artifact.model_data_url == MODEL_DATA
    # Deleted after the evaluation: endpoint, endpoint config and model.
    assert describe_or_none(aws.describe_endpoint, EndpointName=name) is None
    assert describe_or_none(aws.describe_endpoint_config, EndpointConfigName=name) is None
    assert describe_or_none(aws.describe_model, ModelName=name) is None


def test_the_redeployment_is_tagged_for_the_safety_net_and_built_from_the_package(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dataset(run_dirs)
    _approved_package(aws, endpoint_name=None)
    seen: dict[str, Any] = {}
    # Look at the resources while the evaluation runs, before they are deleted.
    original = champion_answering._evaluate

    def inspect(config: Config, model: Any, deployment: Any, **place: Any) -> None:
        name = deployment.endpoint_name
        seen["model"] = aws.describe_model(ModelName=name)
        seen["tags"] = tags_by_key(
            aws.list_tags(ResourceArn=aws.describe_endpoint(EndpointName=name)["EndpointArn"])["Tags"]
        )
        original(config, model, deployment, **place)

    monkeypatch.setattr(champion_answering, "_evaluate", inspect)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "redeployed"
    container = seen["model"]["PrimaryContainer"]
    assert container["Image"] == IMAGE and container["ModelDataUrl"] == MODEL_DATA
    assert seen["tags"][TAG_MANAGED_BY] == MANAGED_BY and seen["tags"][TAG_EXECUTION_ID] == EXECUTION


def test_a_champion_whose_endpoint_is_in_service_is_asked_there_and_the_endpoint_is_kept(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer
) -> None:
    _dataset(run_dirs)
    create_endpoint(aws, "falcon-serving")
    _approved_package(aws, endpoint_name="falcon-serving")

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "endpoint", answer.detail
    assert "asked again through its endpoint falcon-serving, in service" in answer.detail
    assert model_server.requests_by_model == {"falcon-serving": len(QUESTIONS)}
    assert aws.describe_endpoint(EndpointName="falcon-serving")["EndpointStatus"] == "InService"
    assert aws.list_endpoints()["Endpoints"] == [aws.list_endpoints()["Endpoints"][0]]


def test_a_champion_whose_stored_outputs_fit_is_not_asked(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer
) -> None:
    digest = _dataset(run_dirs)
    _approved_package(aws, endpoint_name=None)
    _update_stored_evaluated_as(dataset_sha256=digest)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "stored" and answer.evaluation_path == GROUP
    assert model_server.requests_total == 0 and aws.list_endpoints()["Endpoints"] == []
    assert EvaluationSummary.model_validate(run_dirs.output(CHAMPION, f"{GROUP}/summary.json")).model == "falcon-hf"


def test_changed_algorithm_configs_make_the_stored_outputs_stale(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer
) -> None:
    digest = _dataset(run_dirs)
    _approved_package(aws, endpoint_name=None)
    other = [{"algorithm": "FactualKnowledge", "target_output_delimiter": "|"}]
    _update_stored_evaluated_as(dataset_sha256=digest, algorithms=other)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "redeployed"
    assert answer.detail.startswith("the algorithms or their configs changed since it was scored; ")


def test_a_redeployed_champion_that_cannot_be_evaluated_is_reported_and_its_endpoint_deleted(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _dataset(run_dirs)
    _approved_package(aws, endpoint_name=None)

    def fail(*args: Any, **kwargs: Any) -> None:
        raise ControlPlaneError("the endpoint answered nothing usable")

    monkeypatch.setattr(champion_answering, "_evaluate", fail)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "unanswerable" and answer.evaluation_path is None
    assert "cannot be answered: its stored outputs were scored on catalog sha256" in answer.detail
    assert answer.detail.endswith("asking it again failed: the endpoint answered nothing usable")
    name = f"{PREFIX}evalops-aws-test-champion-v1-{EXECUTION}"
    assert describe_or_none(aws.describe_endpoint, EndpointName=name) is None
    assert describe_or_none(aws.describe_model, ModelName=name) is None
    assert not (run_dirs.output_root / CHAMPION / GROUP).exists()


def test_only_the_groups_a_winner_goes_to_are_answered(config: Config) -> None:
    models = [m.model_copy(update={"model_package_group_name": f"group-{i % 2}"}) for i, m in enumerate(config.models)]
    assert champion_step.winner_groups(config) == [GROUP]
    assert champion_step.winner_groups(config.model_copy(update={"models": models})) == ["group-0", "group-1"]


def test_a_changed_prompt_template_of_the_champions_model_makes_its_outputs_stale(config: Config) -> None:
    falcon = config.model("falcon-hf")
    algorithms = [item.model_dump(mode="json") for item in config.algorithms]
    evaluated_as = EvaluatedAs(model=falcon.model_dump(mode="json"), algorithms=algorithms, dataset_sha256="cd" * 32)
    assert champion_step.stale_reason(evaluated_as, config, "cd" * 32) is None

    settings = falcon.evaluation_config.model_copy(update={"prompt_template": "Answer: $model_input"})
    renamed = [
        m.model_copy(update={"evaluation_config": settings}) if m.name == "falcon-hf" else m for m in config.models
    ]
    changed = config.model_copy(update={"models": renamed})

    assert champion_step.stale_reason(evaluated_as, changed, "cd" * 32) == (
        "the prompt template of its model changed since it was scored"
    )
    # Asked again, the champion gets this run's template for its name.
    asked = champion_answering.champion_model(evaluated_as, changed)
    assert asked.evaluation_config.prompt_template == "Answer: $model_input" and asked.model_id == falcon.model_id
    # A config without a model of its name leaves the champion its own template.
    others = config.model_copy(update={"models": [m for m in config.models if m.name != "falcon-hf"]})
    assert champion_step.stale_reason(evaluated_as, others, "cd" * 32) is None


def test_a_champion_answered_through_a_kept_endpoint_holds_it_until_this_execution_ends(
    aws: Any, config: Config, run_dirs: RunDirs, model_server: ModelServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The winner's kept endpoint may be superseded and past its keep_for_hours: asking it again is a use."""
    _dataset(run_dirs)
    data = copy.deepcopy(CONFIG)
    next(m for m in data["models"] if m["name"] == "falcon-hf").update(cleanup_endpoint=False, keep_for_hours=1)
    keeping = Config.model_validate(data)
    request = endpoint_request(keeping, keeping.model("falcon-hf"), "e0e0e0e0e0e0", None)
    long_ago = datetime(2026, 1, 1, tzinfo=UTC)
    kept = deploy_endpoint(aws, request, lambda: ModelDefinition(container={"Image": IMAGE}), now=long_ago)
    _approved_package(aws, endpoint_name=kept.endpoint_name)
    execution_arn = f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/evalops-test-trivia/execution/{EXECUTION}"
    monkeypatch.setenv("EVALOPS_EXECUTION_ARN", execution_arn)

    [answer] = [a for a in _run(config, run_dirs).answers if a.group == GROUP]

    assert answer.status == "endpoint", answer.detail
    assert model_server.requests_by_model == {kept.endpoint_name: len(QUESTIONS)}
    for arn in (
        aws.describe_endpoint(EndpointName=kept.endpoint_name)["EndpointArn"],
        aws.describe_model(ModelName=kept.endpoint_name)["ModelArn"],
    ):
        tags = tags_by_key(aws.list_tags(ResourceArn=arn)["Tags"])
        assert tags[f"evalops:in-use-by:{EXECUTION}"] == execution_arn
        assert tags[TAG_LAST_USED] > "2026-01-01T00:00:00Z"
    assert KeptEndpoint(kept.endpoint_name, tags).expired(datetime.now(UTC) + timedelta(days=30)) is False


def test_stored_outputs_with_perturbations_drawn_in_dataset_order_are_stale_for_robustness(config: Config) -> None:
    falcon = config.model("falcon-hf")
    robustness = AlgorithmConfig.model_validate(
        {"algorithm": "QAAccuracySemanticRobustness", "perturbation_type": "butter_finger", "num_perturbations": 2}
    )
    robust = config.model_copy(update={"algorithms": [robustness]})
    algorithms = [robustness.model_dump(mode="json")]
    # Written before this change: no `perturbations` field, so dataset order.
    old = EvaluatedAs.model_validate(
        {"model": falcon.model_dump(mode="json"), "algorithms": algorithms, "dataset_sha256": "cd" * 32}
    )
    assert old.perturbations == "dataset-order"
    assert champion_step.stale_reason(old, robust, "cd" * 32) == (
        "its robustness perturbations were drawn dataset-order, this run's per-record, so they are other prompts"
    )
    current = old.model_copy(update={"perturbations": PERTURBATION_SEEDING})
    assert champion_step.stale_reason(current, robust, "cd" * 32) is None
    # Without a robustness algorithm the way perturbations were drawn does not matter.
    plain = EvaluatedAs(
        model=falcon.model_dump(mode="json"),
        algorithms=[item.model_dump(mode="json") for item in config.algorithms],
        dataset_sha256="cd" * 32,
    )
    assert champion_step.stale_reason(plain, config, "cd" * 32) is None
