"""Register the selected model as a new version in its SageMaker model package group.

What is registered is the winner's own artifact, as its summary.json records it (the fine-tuned one when
the fine-tuned model won): image, model data and container environment, so the version can be deployed
as it was evaluated. The version carries
- ModelMetrics.ModelQuality: Statistics = a copy of the winner's summary.json, Constraints = a copy of
  decision.json (the selection policy and every candidate's verdict), both stored under the run's prefix
  of `EVALOPS_ARTIFACTS_URI` (the summaries this step reads are local copies SageMaker downloaded, whose
  S3 location the step is not told), each with its sha256 as ContentDigest;
- CustomerMetadataProperties: scores with their intervals, dataset sha256, config sha256, execution id,
  winner, reason and the champion comparison.
Beside the summary copy go the winner's records, per-record scores and evaluated_as.json, which a later run compares its
winner with while this version is the approved champion (champion.py). A SageMaker Model Card linked to
the version is created or updated (model_card.py); the local registry keeps it as `model-cards/<version>.json`.

A winner SageMaker did not deploy (bedrock, an existing endpoint, local providers) has no image or model
data. CreateModelPackage accepts a versioned package without InferenceSpecification, so such a winner is
registered as a reference: no InferenceSpecification, `SourceUri` naming the model (Bedrock foundation
model ARN, endpoint ARN, endpoint URL or responses file), and the same metrics and metadata.

With `--registry-dir`, nothing is sent to SageMaker: `<registry-dir>/<group>/<version>.json` holds the
CreateModelPackage request and a DescribeModelPackage-shaped response; metric copies go beside it unless
`EVALOPS_ARTIFACTS_URI` is set. Both registries are idempotent per execution (SageMaker's ClientToken,
and the same token looked up in the directory), so a retried step does not add a second version.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3

from step_code import model_card, storage
from step_code.aws_resources import (
    ControlPlaneError,
    accepts_eula,
    describe_or_none,
    run_artifacts_uri,
    sagemaker_client,
)
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import (
    APPROVAL_STATUSES,
    DECISION_FILE,
    EVALUATED_AS_FILE,
    RECORDS_FILE,
    REGISTRATION_FILE,
    SUMMARY_FILE,
)
from step_code.contract.job_env import ARTIFACTS_URI_ENV, EXECUTION_ARN_ENV
from step_code.contract.results import (
    PERTURBATION_SEEDING,
    CandidateVerdict,
    Decision,
    EvaluatedAs,
    EvaluationSummary,
    MetricInterval,
    PairedComparison,
    Registration,
)
from step_code.resource_guardrails import job_guardrails, with_extra_tags
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, read_model, run_step, write_model

logger = logging.getLogger("evalops.register")

JSON_CONTENT_TYPE = "application/json"
JSONL_CONTENT_TYPE = "application/jsonlines"
MAX_METADATA_ENTRIES = 50
MAX_METADATA_KEY = 128
MAX_METADATA_VALUE = 256
MAX_DESCRIPTION = 1024
MAX_CONTAINER_ENVIRONMENT = 16
# Characters CreateModelPackage accepts in CustomerMetadataProperties keys and values.
_METADATA_DISALLOWED = re.compile(r"[^\w .:/=+\-@]")
CLIENT_TOKEN_LENGTH = 36


def metadata_text(value: str, limit: int) -> str:
    """`value` within SageMaker's metadata character set and length; punctuation outside it becomes a space."""
    cleaned = " ".join(_METADATA_DISALLOWED.sub(" ", value).split())
    return cleaned[:limit].rstrip() or "-"


def _number(value: float | None) -> str | None:
    return None if value is None else f"{value:.6g}"


def _interval(interval: MetricInterval | None) -> str | None:
    """`0.7961 to 0.9843 n=40 clopper-pearson conf=0.95` (SageMaker's metadata takes no brackets)."""
    if interval is None or interval.low is None or interval.high is None:
        return None
    flag = " small-sample" if interval.small_sample else ""
    return (
        f"{interval.low:.4f} to {interval.high:.4f} n={interval.n} {interval.method} conf={interval.confidence:g}{flag}"
    )


def _difference(comparison: PairedComparison) -> str | None:
    if comparison.difference is None or comparison.low is None or comparison.high is None:
        return None
    p_value = "n/a" if comparison.p_value is None else f"{comparison.p_value:.3g}"
    return (
        f"{comparison.difference:+.4f} from {comparison.low:+.4f} to {comparison.high:+.4f} n={comparison.n} "
        f"{comparison.test} p={p_value}"
    )


def customer_metadata(
    summary: EvaluationSummary,
    decision: Decision,
    verdict: CandidateVerdict | None,
    *,
    execution_id: str,
    config_sha256: str,
) -> dict[str, str]:
    """Fixed facts first, then metric values in name order, within the 50-entry limit."""
    artifact = summary.artifact
    facts: dict[str, str | None] = {
        "evalops:winner": summary.model,
        "evalops:provider": artifact.provider,
        "evalops:model-id": artifact.model_id,
        "evalops:model-version": artifact.model_version,
        "evalops:finetuned": "true" if artifact.finetuned else "false",
        "evalops:training-job": artifact.training_job_name,
        "evalops:execution-id": execution_id,
        "evalops:dataset-sha256": summary.dataset_sha256,
        "evalops:config-sha256": config_sha256,
        "evalops:decision-reason": decision.reason,
        "evalops:primary-metric": decision.primary_metric,
        "evalops:weighted-score": _number(verdict.weighted_score) if verdict else None,
        "evalops:p95-latency-ms": _number(summary.latency.p95_ms),
        "evalops:cost-per-1k-prompts-usd": _number(summary.cost.cost_per_1k_prompts_usd),
        "evalops:records-succeeded": f"{summary.records_succeeded}/{summary.records_total}",
    }
    if verdict is not None:
        facts["evalops:weighted-score-interval"] = _interval(verdict.weighted_interval)
    champion = decision.champion
    if champion is not None:
        facts["evalops:champion"] = champion.model_package_arn or champion.status
        if champion.comparison is not None:
            facts["evalops:champion-difference"] = _difference(champion.comparison)
    for name, value in sorted(summary.metrics.items()):
        facts[f"metric:{name}"] = _number(value)
    for name in sorted(summary.metrics):
        facts[f"metric-interval:{name}"] = _interval(summary.intervals.get(name))
    present = [(key, value) for key, value in facts.items() if value is not None]
    if len(present) > MAX_METADATA_ENTRIES:
        logger.warning("keeping %d of %d metadata entries (SageMaker's limit)", MAX_METADATA_ENTRIES, len(present))
    return {
        metadata_text(key, MAX_METADATA_KEY): metadata_text(value, MAX_METADATA_VALUE)
        for key, value in present[:MAX_METADATA_ENTRIES]
    }


def inference_container(summary: EvaluationSummary, model: ModelConfig) -> dict[str, Any]:
    artifact = summary.artifact
    if not artifact.image_uri:
        raise ControlPlaneError(
            f"summary.json of {summary.model}: artifact.image_uri is empty; a deployed model's summary must "
            "carry the deploy step's artifact"
        )
    if len(artifact.environment) > MAX_CONTAINER_ENVIRONMENT:
        raise ControlPlaneError(
            f"summary.json of {summary.model}: artifact.environment has {len(artifact.environment)} entries; "
            f"a model package container takes at most {MAX_CONTAINER_ENVIRONMENT}"
        )
    container: dict[str, Any] = {"Image": artifact.image_uri}
    if artifact.environment:
        container["Environment"] = dict(artifact.environment)
    url = artifact.model_data_url
    if url and url.endswith("/"):
        source: dict[str, Any] = {"S3Uri": url, "S3DataType": "S3Prefix", "CompressionType": "None"}
        if accepts_eula(model):
            source["ModelAccessConfig"] = {"AcceptEula": True}
        container["ModelDataSource"] = {"S3DataSource": source}
    elif url:
        container["ModelDataUrl"] = url
    return container


def _region() -> str:
    region = boto3.session.Session().region_name
    if not region:
        raise ControlPlaneError("no AWS region configured; set AWS_DEFAULT_REGION")
    return region


def source_uri(model: ModelConfig, summary: EvaluationSummary) -> str:
    """What a reference registration points at, for a winner this platform did not deploy."""
    provider, registration = model.model_provider, model.provider.registration
    if registration == "bedrock-arn":
        region = _region()
        partition = boto3.session.Session().get_partition_for_region(region)
        return f"arn:{partition}:bedrock:{region}::foundation-model/{model.model_id}"
    if registration == "endpoint-arn":
        identity = boto3.client("sts").get_caller_identity()
        partition = identity["Arn"].split(":")[1]
        name = summary.artifact.endpoint_name or model.endpoint_name
        return f"arn:{partition}:sagemaker:{_region()}:{identity['Account']}:endpoint/{str(name).lower()}"
    location = model.endpoint_url or model.responses_location
    if not location:
        raise ControlPlaneError(f"model {model.name!r} ({provider}) names no endpoint or responses to register")
    return location


def _group_name(config: Config, model: ModelConfig) -> str:
    return model.model_package_group_name or config.model_registry.model_package_group_name


def client_token(execution_id: str, group: str, winner: str) -> str:
    return hashlib.sha256(f"{execution_id}|{group}|{winner}".encode()).hexdigest()[:CLIENT_TOKEN_LENGTH]


def metrics_source(uri: str, data: bytes) -> dict[str, str]:
    return {
        "ContentType": JSON_CONTENT_TYPE,
        "ContentDigest": f"sha256:{hashlib.sha256(data).hexdigest()}",
        "S3Uri": uri,
    }


def package_request(
    config: Config,
    model: ModelConfig,
    summary: EvaluationSummary,
    decision: Decision,
    *,
    approval_status: str,
    execution_id: str,
    config_sha256: str,
    statistics: dict[str, str],
    constraints: dict[str, str],
) -> dict[str, Any]:
    """The CreateModelPackage request for the winner."""
    group = _group_name(config, model)
    verdict = next((c for c in decision.candidates if c.model == summary.model), None)
    artifact = summary.artifact
    what = f"{artifact.model_id or model.name}{' (fine-tuned)' if artifact.finetuned else ''}"
    headline = f"{summary.model}: {what} selected by {config.pipeline.name} execution {execution_id}."
    description = " ".join(f"{headline} {decision.reason}".split())
    request: dict[str, Any] = {
        "ModelPackageGroupName": group,
        "ModelPackageDescription": description[:MAX_DESCRIPTION],
        "ModelApprovalStatus": approval_status,
        "ClientToken": client_token(execution_id, group, summary.model),
        "Domain": "NATURAL_LANGUAGE_PROCESSING",
        "Task": "TEXT_GENERATION",
        "ModelMetrics": {"ModelQuality": {"Statistics": statistics, "Constraints": constraints}},
        "CustomerMetadataProperties": customer_metadata(
            summary, decision, verdict, execution_id=execution_id, config_sha256=config_sha256
        ),
    }
    if model.provider.registration == "container":
        specification: dict[str, Any] = {
            "Containers": [inference_container(summary, model)],
            "SupportedContentTypes": [JSON_CONTENT_TYPE],
            "SupportedResponseMIMETypes": [JSON_CONTENT_TYPE],
        }
        if model.deployment_config is not None:
            specification["SupportedRealtimeInferenceInstanceTypes"] = [model.deployment_config.instance_type]
        request["InferenceSpecification"] = specification
    else:
        request["SourceUri"] = source_uri(model, summary)
    execution_arn = os.environ.get(EXECUTION_ARN_ENV)
    if execution_arn:
        request["MetadataProperties"] = {"GeneratedBy": execution_arn}
    return request


def _store_metrics(
    root: str, summary_bytes: bytes, decision_bytes: bytes, winner: str
) -> tuple[dict[str, str], dict[str, str]]:
    statistics_uri = storage.join(root, winner, SUMMARY_FILE)
    constraints_uri = storage.join(root, DECISION_FILE)
    storage.write_bytes(statistics_uri, summary_bytes, content_type=JSON_CONTENT_TYPE)
    storage.write_bytes(constraints_uri, decision_bytes, content_type=JSON_CONTENT_TYPE)
    return metrics_source(statistics_uri, summary_bytes), metrics_source(constraints_uri, decision_bytes)


def store_evidence(target: str, evaluation_dir: Path, summary: EvaluationSummary, evaluated_as: EvaluatedAs) -> None:
    """The winner's records, per-record scores and what it was evaluated as beside its summary.json: what a
    later run compares its winner with when this package is the approved champion (step_code/champion.py),
    or, when the catalog, prompt template or algorithms changed, how it asks the champion again."""
    storage.write_bytes(
        storage.join(target, EVALUATED_AS_FILE),
        evaluated_as.model_dump_json(indent=2).encode(),
        content_type=JSON_CONTENT_TYPE,
    )
    relatives = [RECORDS_FILE, *(a.record_scores_path for a in summary.algorithms if a.record_scores_path)]
    for relative in relatives:
        source = evaluation_dir / relative
        if source.is_file():
            storage.write_bytes(storage.join(target, relative), source.read_bytes(), content_type=JSONL_CONTENT_TYPE)


def require_group(client: Any, group: str) -> None:
    if describe_or_none(client.describe_model_package_group, ModelPackageGroupName=group) is None:
        raise ControlPlaneError(
            f"model package group {group} does not exist; the registry stack creates the groups the config names"
        )


def register_in_sagemaker(client: Any, request: dict[str, Any]) -> tuple[str, int]:
    extra_tags = with_extra_tags([], job_guardrails())
    arn = client.create_model_package(**request, **({"Tags": extra_tags} if extra_tags else {}))["ModelPackageArn"]
    version = int(client.describe_model_package(ModelPackageName=arn)["ModelPackageVersion"])
    return arn, version


def _package_files(group_dir: Path) -> dict[int, Path]:
    return {int(p.stem): p for p in group_dir.glob("*.json") if p.stem.isdigit()}


def register_in_directory(registry_dir: Path, request: dict[str, Any]) -> tuple[str, int]:
    """Write the package as `<registry-dir>/<group>/<version>.json`; the same ClientToken returns the same file."""
    group_dir = registry_dir / request["ModelPackageGroupName"]
    group_dir.mkdir(parents=True, exist_ok=True)
    files = _package_files(group_dir)
    for version, path in sorted(files.items()):
        if json.loads(path.read_text(encoding="utf-8"))["request"].get("ClientToken") == request["ClientToken"]:
            return path.resolve().as_uri(), version
    version = max(files, default=0) + 1
    path = group_dir / f"{version}.json"
    response = {
        "ModelPackageGroupName": request["ModelPackageGroupName"],
        "ModelPackageVersion": version,
        "ModelPackageArn": path.resolve().as_uri(),
        "CreationTime": datetime.now(UTC).isoformat(),
        "ModelPackageStatus": "Completed",
        "ModelPackageStatusDetails": {"ValidationStatuses": [], "ImageScanStatuses": []},
        "CertifyForMarketplace": False,
        **{key: value for key, value in request.items() if key != "ClientToken"},
    }
    # Exclusive creation: two concurrent local runs cannot both take the same version number.
    with path.open("x", encoding="utf-8") as handle:
        json.dump({"request": request, "response": response}, handle, indent=2, sort_keys=True)
        handle.write("\n")
    return response["ModelPackageArn"], version


def register(
    config: Config,
    config_bytes: bytes,
    decision: Decision,
    decision_bytes: bytes,
    summaries_dir: Path,
    *,
    approval_status: str,
    execution_id: str,
    registry_dir: Path | None,
    config_path: Path,
) -> Registration:
    if approval_status not in APPROVAL_STATUSES:
        raise ControlPlaneError(f"--approval-status {approval_status!r} is not one of {', '.join(APPROVAL_STATUSES)}")
    if not decision.meets_policy or decision.winner is None:
        raise ControlPlaneError(
            f"decision.json: no model meets the selection policy, nothing to register ({decision.reason})"
        )
    model = config_model(config, decision.winner, config_path)
    summary_path = summaries_dir / decision.winner / SUMMARY_FILE
    summary = read_model(summary_path, EvaluationSummary)
    if summary.model != decision.winner:
        raise ControlPlaneError(f"{summary_path}: model is {summary.model!r}, expected the winner {decision.winner!r}")
    group = _group_name(config, model)
    if registry_dir is None:
        # Checked before anything is written, so a missing group leaves no metric copies behind.
        require_group(sagemaker_client(), group)
    if os.environ.get(ARTIFACTS_URI_ENV) or registry_dir is None:
        metrics_root = run_artifacts_uri(execution_id, "registration")
    else:
        metrics_root = str(registry_dir / group / "metrics" / execution_id)
    statistics, constraints = _store_metrics(metrics_root, summary_path.read_bytes(), decision_bytes, decision.winner)
    evaluated_as = EvaluatedAs(
        model=model.model_dump(mode="json"),
        algorithms=[item.model_dump(mode="json") for item in config.algorithms],
        dataset_sha256=summary.dataset_sha256,
        perturbations=PERTURBATION_SEEDING,
    )
    store_evidence(storage.join(metrics_root, decision.winner), summary_path.parent, summary, evaluated_as)
    request = package_request(
        config,
        model,
        summary,
        decision,
        approval_status=approval_status,
        execution_id=execution_id,
        config_sha256=hashlib.sha256(config_bytes).hexdigest(),
        statistics=statistics,
        constraints=constraints,
    )
    if registry_dir is not None:
        arn, version = register_in_directory(registry_dir, request)
    else:
        arn, version = register_in_sagemaker(sagemaker_client(), request)
    content = model_card.card_content(config, decision, summary, model_package_arn=arn, execution_id=execution_id)
    card = model_card.card_name(group, version)
    if registry_dir is not None:
        card_arn = model_card.write_in_directory(registry_dir, group, version, content)
    else:
        card_arn = model_card.upsert_in_sagemaker(sagemaker_client(), card, content)
    container = request.get("InferenceSpecification", {}).get("Containers", [{}])[0]
    data_source = container.get("ModelDataSource", {}).get("S3DataSource", {})
    logger.info("registered %s as version %d of %s (%s)", decision.winner, version, group, approval_status)
    return Registration(
        winner=decision.winner,
        model_package_group_name=group,
        model_package_arn=arn,
        model_package_version=version,
        approval_status=approval_status,
        registry="sagemaker" if registry_dir is None else "directory",
        deployable="InferenceSpecification" in request,
        source_uri=request.get("SourceUri"),
        image_uri=container.get("Image"),
        model_data_url=container.get("ModelDataUrl") or data_source.get("S3Uri"),
        statistics_uri=statistics["S3Uri"],
        constraints_uri=constraints["S3Uri"],
        execution_id=execution_id,
        model_card_name=card,
        model_card_arn=card_arn,
    )


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.register", __doc__, execution_id=True)
    parser.add_argument("--decision-dir", required=True, type=Path)
    parser.add_argument("--summaries-dir", required=True, type=Path)
    parser.add_argument("--approval-status", required=True)
    parser.add_argument("--registry-dir", type=Path, help="Keep the registry in files instead of SageMaker.")
    args = parser.parse_args(argv)

    def body() -> None:
        config = read_config(args.config)
        decision_path = args.decision_dir / DECISION_FILE
        decision = read_model(decision_path, Decision)
        registration = register(
            config,
            _read_bytes(args.config),
            decision,
            _read_bytes(decision_path),
            args.summaries_dir,
            approval_status=args.approval_status,
            execution_id=args.execution_id,
            registry_dir=args.registry_dir,
            config_path=args.config,
        )
        write_model(args.output_dir, REGISTRATION_FILE, registration)

    return run_step("register", body)


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ControlPlaneError(f"{path}: cannot read ({exc.strerror})") from None


if __name__ == "__main__":
    raise SystemExit(main())
