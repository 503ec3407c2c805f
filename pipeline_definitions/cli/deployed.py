"""`evalops start` and `evalops report s3://... | --execution ARN`: the SageMaker pipeline that `cdk deploy` made.

The pipeline of an environment is named as the stage names it (`{prefix}-{env}-{pipeline}`, see
`step_code.contract.naming.deployed_pipeline_name`); the environment comes from `configs/environments.yaml`,
read here with the stacks' defaults (this layer may not import `stacks`; a test keeps both names equal).

A report is rebuilt from what the execution itself ran: its own pipeline definition names the Select step's
config object, the evaluation summaries and the decision, so a later change of the deployed pipeline does not
send the rebuild to the wrong place. Only each model's summary.json and the worst-records files it names are
downloaded, never the per-record outputs.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from pipeline_definitions.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_POLICY_NOT_MET,
    EXIT_STEP_FAILED,
    EXIT_USER_ERROR,
    print_report_paths,
)
from pipeline_definitions.loading.loader import ConfigError, Problem, load_config, read_yaml_mapping
from pipeline_definitions.local.engine import RUN_FILE, STEPS_DIR, RunError, rebuild_report
from pipeline_definitions.planning.plan import FAIL_STEP, PARAM_RESPONSE_CACHE, SELECT_STEP
from step_code import storage
from step_code.aws_resources import ControlPlaneError
from step_code.contract.config import Config
from step_code.contract.files import (
    CONFIG_INPUT,
    DECISION,
    DECISION_FILE,
    RESPONSE_CACHE_BYPASS,
    SUMMARIES,
    SUMMARY_FILE,
)
from step_code.contract.locations import is_s3
from step_code.contract.naming import deployed_pipeline_name
from step_code.contract.results import Decision, EvaluationSummary
from step_code.report import worst_records_path
from step_code.select_step import comparison_html, comparison_pdf, load_evidence, select

# The stacks' defaults for an environment entry (pipeline_definitions/loading/environments.py `Environment`).
DEFAULT_PREFIX = "evalops"
DEFAULT_REGION = "us-east-1"
DEFAULT_ENVIRONMENTS_FILE = Path("configs") / "environments.yaml"
EXECUTION_ID_VARIABLE = "Execution.PipelineExecutionId"
RUNS_FOLDER = "runs"
FINISHED = frozenset({"Succeeded", "Failed", "Stopped"})
DEFAULT_POLL_SECONDS = 30.0


class DeployedError(Exception):
    """One line for the user: what could not be done with the deployed pipeline, and why."""


# -- which pipeline ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class DeployedPipeline:
    environment: str
    name: str
    region: str


def deployed_pipeline(environments_file: Path, environment: str) -> DeployedPipeline:
    """The SageMaker pipeline `cdk deploy` made for `environment`; ConfigError for a bad file or name."""
    _, data = read_yaml_mapping(environments_file, "settings (environments, delivery)")
    entries = data.get("environments")
    if not isinstance(entries, list):
        raise ConfigError([Problem(str(environments_file), None, "environments", "expected a list of environments")])
    known = [entry for entry in entries if isinstance(entry, dict)]
    match = next((entry for entry in known if entry.get("name") == environment), None)
    if match is None:
        names = ", ".join(str(entry.get("name")) for entry in known)
        raise ConfigError(
            [Problem(str(environments_file), None, "environments", f"no environment {environment!r} (found: {names})")]
        )
    config_path = match.get("config")
    if not isinstance(config_path, str):
        raise ConfigError([Problem(str(environments_file), None, f"environments[{environment}].config", "missing")])
    loaded = load_config(Path(config_path))
    prefix = str(match.get("prefix") or DEFAULT_PREFIX)
    resource_prefix = f"{prefix}-{environment}-"
    return DeployedPipeline(
        environment=environment,
        name=deployed_pipeline_name(resource_prefix, loaded.config.pipeline.name),
        region=str(match.get("region") or DEFAULT_REGION),
    )


def sagemaker_client(region: str | None = None) -> Any:
    return boto3.session.Session().client("sagemaker", region_name=region)


def _aws_line(exc: ClientError | BotoCoreError) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'error')}: {error.get('Message', '')}".rstrip(": ")
    return str(exc)


def _not_found(exc: ClientError) -> bool:
    # SageMaker answers ResourceNotFound; some emulations a ValidationException saying so.
    error = exc.response.get("Error", {})
    message = str(error.get("Message", "")).lower()
    return error.get("Code") == "ResourceNotFound" or "not find" in message or "does not exist" in message


# -- evalops start ----------------------------------------------------------------------------------
def start_execution(client: Any, pipeline: DeployedPipeline, *, bypass_cache: bool = False) -> str:
    request: dict[str, Any] = {
        "PipelineName": pipeline.name,
        "PipelineExecutionDescription": f"started by evalops start --env {pipeline.environment}",
    }
    if bypass_cache:
        request["PipelineParameters"] = [{"Name": PARAM_RESPONSE_CACHE, "Value": RESPONSE_CACHE_BYPASS}]
    try:
        response = client.start_pipeline_execution(**request)
    except ClientError as exc:
        if _not_found(exc):
            raise DeployedError(
                f"no pipeline {pipeline.name} in {pipeline.region} for this account: deploy environment "
                f"{pipeline.environment} first (cdk deploy), or check the credentials' account"
            ) from None
        raise DeployedError(f"cannot start {pipeline.name} in {pipeline.region}: {_aws_line(exc)}") from None
    except BotoCoreError as exc:
        raise DeployedError(f"cannot start {pipeline.name} in {pipeline.region}: {_aws_line(exc)}") from None
    arn: str = response["PipelineExecutionArn"]
    return arn


@dataclass(frozen=True)
class Outcome:
    status: str
    failure_reason: str
    failed_steps: tuple[str, ...]


def _steps(client: Any, arn: str) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = []
    for page in client.get_paginator("list_pipeline_execution_steps").paginate(PipelineExecutionArn=arn):
        steps += page["PipelineExecutionSteps"]
    # SageMaker lists the most recent step first.
    return sorted(steps, key=lambda step: step.get("StartTime") or 0)


def follow_execution(
    client: Any,
    arn: str,
    out: TextIO,
    *,
    poll_seconds: float = DEFAULT_POLL_SECONDS,
    sleep: Callable[[float], None] | None = None,
) -> Outcome:
    """Print a line per step state change (with a failed step's reason) until the execution ends."""
    shown: dict[str, str] = {}
    while True:
        try:
            execution = client.describe_pipeline_execution(PipelineExecutionArn=arn)
            steps = _steps(client, arn)
        except (ClientError, BotoCoreError) as exc:
            raise DeployedError(f"cannot follow {arn}: {_aws_line(exc)}") from None
        for step in steps:
            name, status = step["StepName"], step["StepStatus"]
            if shown.get(name) == status:
                continue
            shown[name] = status
            reason = step.get("FailureReason")
            detail = f": {reason}" if status == "Failed" and reason else ""
            print(f"{time.strftime('%H:%M:%S')} {name}: {status}{detail}", file=out, flush=True)
        status = execution["PipelineExecutionStatus"]
        if status in FINISHED:
            failed = tuple(s["StepName"] for s in steps if s["StepStatus"] == "Failed")
            return Outcome(status, execution.get("FailureReason") or "", failed)
        (sleep or time.sleep)(poll_seconds)


# -- evalops report (deployed) ----------------------------------------------------------------------
def _resolve(value: Any, execution_id: str, what: str) -> str:
    """A definition value as a plain string: literal, or a Std:Join over literals and the execution id."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and value.get("Get") == EXECUTION_ID_VARIABLE:
        return execution_id
    join = value.get("Std:Join") if isinstance(value, Mapping) else None
    if isinstance(join, Mapping):
        return str(join.get("On", "")).join(_resolve(item, execution_id, what) for item in join.get("Values", []))
    raise DeployedError(f"the execution's {what} is {json.dumps(value)[:200]}, which evalops cannot resolve")


@dataclass(frozen=True)
class ExecutionOutputs:
    execution_id: str
    config_uri: str
    summaries_uri: str
    decision_uri: str


def execution_outputs(client: Any, arn: str) -> ExecutionOutputs:
    """Where the Select step of this execution read its config and summaries and wrote its decision."""
    try:
        text = client.describe_pipeline_definition_for_execution(PipelineExecutionArn=arn)["PipelineDefinition"]
    except (ClientError, BotoCoreError) as exc:
        raise DeployedError(f"cannot read the definition of {arn}: {_aws_line(exc)}") from None
    execution_id = arn.rsplit("/", 1)[-1]
    steps = {step.get("Name"): step for step in json.loads(text).get("Steps", [])}
    select_step = steps.get(SELECT_STEP)
    if select_step is None:
        raise DeployedError(f"{arn} is not an evalops pipeline execution (its definition has no {SELECT_STEP} step)")
    try:
        arguments = select_step["Arguments"]
        inputs = {item["InputName"]: item["S3Input"]["S3Uri"] for item in arguments["ProcessingInputs"]}
        outputs = {
            item["OutputName"]: item["S3Output"]["S3Uri"] for item in arguments["ProcessingOutputConfig"]["Outputs"]
        }
        return ExecutionOutputs(
            execution_id=execution_id,
            config_uri=_resolve(inputs[CONFIG_INPUT], execution_id, "config input"),
            summaries_uri=_resolve(inputs[SUMMARIES], execution_id, "summaries input"),
            decision_uri=_resolve(outputs[DECISION], execution_id, "decision output"),
        )
    except (KeyError, TypeError) as exc:
        raise DeployedError(
            f"the {SELECT_STEP} step of {arn} has no {exc} input or output: not a definition this version reads"
        ) from None


def execution_arn_for_run_folder(client: Any, uri: str) -> str:
    """`s3://<bucket>/<pipeline>/runs/<execution id>[/...]`, where a deployed execution keeps its outputs."""
    _, key = storage.split_s3(uri)
    parts = [part for part in key.split("/") if part]
    if len(parts) < 3 or parts[1] != RUNS_FOLDER:
        raise DeployedError(
            f"{uri} is neither a local run's s3:// output (no {CONFIG_INPUT}/config.json under it) nor a pipeline "
            f"execution's folder (s3://<artifacts bucket>/<pipeline>/{RUNS_FOLDER}/<execution id>)"
        )
    pipeline, execution_id = parts[0], parts[2]
    try:
        pipeline_arn: str = client.describe_pipeline(PipelineName=pipeline)["PipelineArn"]
    except (ClientError, BotoCoreError) as exc:
        raise DeployedError(f"cannot find pipeline {pipeline} of {uri}: {_aws_line(exc)}") from None
    return f"{pipeline_arn}/execution/{execution_id}"


def _download(uri: str, target: Path) -> None:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        raise DeployedError(f"{uri} does not exist (did that step of the execution run?)") from None
    except (ClientError, BotoCoreError) as exc:
        raise DeployedError(f"cannot read {uri}: {_aws_line(exc)}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)


def rebuild_execution_report(outputs: ExecutionOutputs, destination: Path, *, pdf: bool = False) -> bool:
    """Write the execution's comparison report to `destination` (and with `pdf` the PDF beside it); True when
    the decision had to be computed (the execution stopped before Select wrote one)."""
    with tempfile.TemporaryDirectory(prefix="evalops-report-") as temp:
        root = Path(temp)
        config_file = root / "config.json"
        _download(outputs.config_uri, config_file)
        try:
            config = Config.model_validate_json(config_file.read_text(encoding="utf-8"))
        except ValueError as exc:
            what = exc.__class__.__name__
            raise DeployedError(f"{outputs.config_uri}: not a config this version reads ({what})") from None
        summaries = root / SUMMARIES
        for model in config.models:
            base = storage.join(outputs.summaries_uri, model.name)
            folder = summaries / model.name
            _download(storage.join(base, SUMMARY_FILE), folder / SUMMARY_FILE)
            summary = EvaluationSummary.model_validate_json((folder / SUMMARY_FILE).read_text(encoding="utf-8"))
            for result in summary.algorithms:
                relative = worst_records_path(result)
                if relative is not None:
                    _download(storage.join(base, relative), folder / relative)
        decision_uri = storage.join(outputs.decision_uri, DECISION_FILE)
        try:
            evidence = load_evidence(config, summaries)
            computed = not storage.exists(decision_uri)
            decision = (
                select(config, evidence) if computed else Decision.model_validate_json(storage.read_bytes(decision_uri))
            )
        except ControlPlaneError as exc:
            raise DeployedError(str(exc)) from None
        destination.parent.mkdir(parents=True, exist_ok=True)
        destination.write_text(comparison_html(config, decision, evidence), encoding="utf-8")
        if pdf:
            destination.with_suffix(".pdf").write_bytes(comparison_pdf(config, decision, evidence))
    return computed


def default_report_path(execution_id: str) -> Path:
    return Path(f"comparison-{execution_id}.html")


def is_local_run_prefix(uri: str) -> bool:
    return is_s3(uri) and storage.exists(storage.join(uri, CONFIG_INPUT, "config.json"))


def download_local_run(uri: str, root: Path) -> None:
    """What `evalops report` reads of a local run's s3:// output (its config, run file and step outputs; not
    the response cache or the registry), copied into `root`."""
    for name in storage.list_names(uri):
        if name == RUN_FILE or name.startswith((f"{CONFIG_INPUT}/", f"{STEPS_DIR}/")):
            _download(storage.join(uri, name), root / name)


# -- the commands -----------------------------------------------------------------------------------
def cmd_start(args: argparse.Namespace) -> int:
    try:
        pipeline = deployed_pipeline(args.environments, args.env)
        client = sagemaker_client(pipeline.region)
        arn = start_execution(client, pipeline, bypass_cache=args.no_cache)
        print(f"Started {pipeline.name} in {pipeline.region}: {arn}", flush=True)
        if not args.follow:
            print(f"When it has finished: evalops report --execution {arn}")
            return EXIT_OK
        try:
            outcome = follow_execution(client, arn, sys.stdout, poll_seconds=args.poll_seconds)
        except KeyboardInterrupt:
            print(f"\nevalops start: stopped following; the execution goes on: {arn}", file=sys.stderr)
            return EXIT_INTERRUPTED
    except DeployedError as exc:
        print(f"evalops start: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    if outcome.status == "Succeeded":
        print(f"Execution succeeded: evalops report --execution {arn}")
        return EXIT_OK
    reason = f": {outcome.failure_reason}" if outcome.failure_reason else ""
    print(f"evalops start: execution {outcome.status.lower()}{reason}", file=sys.stderr)
    return EXIT_POLICY_NOT_MET if FAIL_STEP in outcome.failed_steps else EXIT_STEP_FAILED


def cmd_report_deployed(run: str | None, execution: str | None, output: Path | None, *, pdf: bool = False) -> int:
    """`evalops report` of a local run's s3:// output, of an execution's s3:// folder, or of --execution ARN."""
    try:
        if execution is None and run is not None and is_local_run_prefix(run):
            with tempfile.TemporaryDirectory(prefix="evalops-report-") as temp:
                root = Path(temp)
                download_local_run(run, root)
                execution_id = json.loads((root / RUN_FILE).read_text(encoding="utf-8")).get("execution_id", "run")
                destination = output or default_report_path(str(execution_id))
                path, computed = rebuild_report(root, destination, pdf=pdf)
        else:
            client = sagemaker_client()
            arn = execution or execution_arn_for_run_folder(client, str(run))
            outputs = execution_outputs(client, arn)
            path = output or default_report_path(outputs.execution_id)
            computed = rebuild_execution_report(outputs, path, pdf=pdf)
    except (DeployedError, RunError) as exc:
        print(f"evalops report: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return print_report_paths(path, computed=computed, pdf=pdf)


def add_deployed_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    start = subparsers.add_parser(
        "start",
        help="Start the deployed SageMaker pipeline of an environment (after cdk deploy).",
        description="Start the SageMaker pipeline `cdk deploy` made for an environment, and optionally follow it.",
    )
    start.add_argument("--env", required=True, help="environment name from the environments file, e.g. dev")
    start.add_argument(
        "--environments",
        type=Path,
        default=DEFAULT_ENVIRONMENTS_FILE,
        help="environments file (default: configs/environments.yaml; its config paths are relative to the "
        "current folder, the repository root)",
    )
    start.add_argument(
        "--follow", action="store_true", help="show each step's progress (and a failed step's reason) until it ends"
    )
    start.add_argument(
        "--no-cache",
        action="store_true",
        help="send every prompt to the models again (pipeline parameter ResponseCache=bypass)",
    )
    start.add_argument("--poll-seconds", type=float, default=DEFAULT_POLL_SECONDS, help=argparse.SUPPRESS)
    start.set_defaults(handler=cmd_start)
