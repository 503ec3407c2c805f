"""`evalops start` and `evalops report` for the deployed pipeline (issue 12, item 6), against the moto server.

moto 5 keeps SageMaker pipelines as records: CreatePipeline, StartPipelineExecution, DescribePipeline(Execution)
and DescribePipelineDefinitionForExecution work, but an execution is "Succeeded" the moment it starts and
ListPipelineExecutionSteps is not implemented (HTTP 500). So `--follow`'s per-step progress and a failed step's
reason are shown with botocore's Stubber, which checks each request and response against the real SageMaker
API model; what moto cannot show is a real execution's step timings and the service's own failure texts.
"""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from pipeline_definitions.cli import deployed
from pipeline_definitions.cli.main import main
from pipeline_definitions.loading.environments import load_environments
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.local.engine import RunOptions, run_plan
from stacks.stage import sagemaker_pipeline_name
from step_code import evaluate_step
from step_code.select_step import comparison_html, load_evidence, select
from tests.pipeline_definitions.local.doubles import InstantEvaluate, RecordingEvents
from tests.step_code.select.summaries import make_summary, worst_record, write_evaluation_output
from tests.support.moto_server import MotoServer

GOLDEN = Path(__file__).resolve().parents[1] / "rendering" / "golden" / "sample.json"
# What the golden sample definition names (tests/pipeline_definitions/rendering/conftest.py targets_for).
ARTIFACTS_BUCKET = "evalops-dev-artifacts-123456789012"
GOLDEN_PIPELINE = "evalops-dev-evalops-sample"
CONFIG_KEY = "configs/7a1c/config.json"
ROLE = "arn:aws:iam::123456789012:role/evalops-dev-pipeline"
SCORES = {"llama3-8b-instruct": 0.9, "mistral-7b-instruct": 0.8, "falcon-7b-instruct": 0.4}


@pytest.fixture
def instant_evaluate(monkeypatch: pytest.MonkeyPatch) -> InstantEvaluate:
    fake = InstantEvaluate()
    monkeypatch.setattr(evaluate_step, "main", fake.main)
    return fake


@pytest.fixture
def in_repo(repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(repo_root)
    return repo_root


def _environments(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "environments.yaml"
    path.write_text(body)
    return path


# -- which pipeline -----------------------------------------------------------------------------------


def test_the_pipeline_is_named_as_the_stage_names_it(in_repo: Path, tmp_path: Path) -> None:
    files = [
        in_repo / "configs" / "environments.yaml",
        _environments(
            tmp_path,
            "environments:\n  - {name: prod, prefix: acme, region: eu-west-1, config: configs/reference.yaml}\n"
            "  - {name: dev, config: configs/sample.yaml}\n",
        ),
    ]
    for path in files:
        for environment in load_environments(path).environments:
            loaded = load_config(in_repo / environment.config)
            found = deployed.deployed_pipeline(path, environment.name)
            assert found.name == sagemaker_pipeline_name(environment, loaded)
            assert found.region == environment.region


def test_an_unknown_environment_is_one_line(in_repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", "--env", "prod"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "configs/environments.yaml: environments: no environment 'prod' (found: dev)"
    ]


# -- evalops start ------------------------------------------------------------------------------------------


def test_start_starts_the_environments_pipeline(
    in_repo: Path, moto: MotoServer, capsys: pytest.CaptureFixture[str]
) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_pipeline(PipelineName=GOLDEN_PIPELINE, PipelineDefinition=GOLDEN.read_text(), RoleArn=ROLE)

    assert main(["start", "--env", "dev"]) == 0

    (execution,) = sagemaker.list_pipeline_executions(PipelineName=GOLDEN_PIPELINE)["PipelineExecutionSummaries"]
    arn = execution["PipelineExecutionArn"]
    assert execution["PipelineExecutionDescription"] == "started by evalops start --env dev"
    assert capsys.readouterr().out.splitlines() == [
        f"Started {GOLDEN_PIPELINE} in us-east-1: {arn}",
        f"When it has finished: evalops report --execution {arn}",
    ]


def test_start_no_cache_sets_the_response_cache_parameter(in_repo: Path, moto: MotoServer) -> None:
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_pipeline(PipelineName=GOLDEN_PIPELINE, PipelineDefinition=GOLDEN.read_text(), RoleArn=ROLE)

    assert main(["start", "--env", "dev"]) == 0
    assert main(["start", "--env", "dev", "--no-cache"]) == 0

    summaries = sagemaker.list_pipeline_executions(PipelineName=GOLDEN_PIPELINE)["PipelineExecutionSummaries"]
    parameters = [
        sagemaker.list_pipeline_parameters_for_execution(PipelineExecutionArn=s["PipelineExecutionArn"]).get(
            "PipelineParameters", []
        )
        for s in summaries
    ]
    assert sorted(parameters, key=len) == [[], [{"Name": "ResponseCache", "Value": "bypass"}]]
    declared = {p["Name"]: p for p in json.loads(GOLDEN.read_text())["Parameters"]}
    assert set(declared["ResponseCache"]["EnumValues"]) >= {"use", "bypass"}


def test_start_before_deploy_is_one_line(in_repo: Path, moto: MotoServer, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["start", "--env", "dev"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"evalops start: no pipeline {GOLDEN_PIPELINE} in us-east-1 for this account: deploy environment dev first "
        "(cdk deploy), or check the credentials' account"
    ]


ARN = f"arn:aws:sagemaker:us-east-1:123456789012:pipeline/{GOLDEN_PIPELINE}/execution/abcdef123456"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _step(name: str, status: str, minute: int, reason: str | None = None) -> dict[str, Any]:
    step: dict[str, Any] = {"StepName": name, "StepStatus": status, "StartTime": T0 + timedelta(minutes=minute)}
    if reason:
        step["FailureReason"] = reason
    return step


def _poll(stub: Stubber, status: str, steps: list[dict[str, Any]], reason: str | None = None) -> None:
    execution: dict[str, Any] = {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": status}
    if reason:
        execution["FailureReason"] = reason
    stub.add_response("describe_pipeline_execution", execution, {"PipelineExecutionArn": ARN})
    # SageMaker lists the newest step first.
    stub.add_response(
        "list_pipeline_execution_steps",
        {"PipelineExecutionSteps": list(reversed(steps))},
        {"PipelineExecutionArn": ARN},
    )


def _stubbed_execution(final_step: str, reason: str) -> tuple[Any, Stubber]:
    client = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": ARN})
    _poll(stub, "Executing", [_step("Preprocess", "Executing", 0)])
    _poll(
        stub, "Executing", [_step("Preprocess", "Succeeded", 0), _step("Evaluate-falcon-7b-instruct", "Executing", 1)]
    )
    _poll(
        stub,
        "Failed",
        [
            _step("Preprocess", "Succeeded", 0),
            _step("Evaluate-falcon-7b-instruct", "Succeeded", 1),
            _step("Select", "Succeeded", 2),
            _step(final_step, "Failed", 3, reason),
        ],
        reason=f"Step failure: One or multiple steps failed. {final_step}: {reason}",
    )
    return client, stub


@pytest.mark.parametrize(
    ("final_step", "reason", "exit_code"),
    [
        ("SelectionPolicyNotMet", "no candidate meets the selection policy", 3),
        ("Cleanup-falcon-7b-instruct", "AlgorithmError: ClientError: AccessDenied", 1),
    ],
)
def test_follow_shows_each_step_and_the_failure_reason(
    in_repo: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    final_step: str,
    reason: str,
    exit_code: int,
) -> None:
    client, stub = _stubbed_execution(final_step, reason)
    monkeypatch.setattr(deployed, "sagemaker_client", lambda region=None: client)

    with stub:
        code = main(["start", "--env", "dev", "--follow", "--poll-seconds", "0"])
        stub.assert_no_pending_responses()

    assert code == exit_code
    captured = capsys.readouterr()
    progress = [line.split(" ", 1)[1] for line in captured.out.splitlines()[1:]]
    assert progress == [
        "Preprocess: Executing",
        "Preprocess: Succeeded",
        "Evaluate-falcon-7b-instruct: Executing",
        "Evaluate-falcon-7b-instruct: Succeeded",
        "Select: Succeeded",
        f"{final_step}: Failed: {reason}",
    ]
    assert captured.err.splitlines() == [
        f"evalops start: execution failed: Step failure: One or multiple steps failed. {final_step}: {reason}"
    ]


def test_follow_ends_on_success() -> None:
    client = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(client)
    _poll(stub, "Succeeded", [_step("Preprocess", "Succeeded", 0), _step("RegisterWinner", "Succeeded", 5)])
    out = io.StringIO()
    with stub:
        outcome = deployed.follow_execution(client, ARN, out, poll_seconds=0)
    assert outcome == deployed.Outcome("Succeeded", "", ())
    assert [line.split(" ", 1)[1] for line in out.getvalue().splitlines()] == [
        "Preprocess: Succeeded",
        "RegisterWinner: Succeeded",
    ]


# -- evalops report of a deployed execution ---------------------------------------------------------------


def _upload_tree(s3: Any, folder: Path, bucket: str, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            s3.put_object(Bucket=bucket, Key=f"{prefix}/{path.relative_to(folder).as_posix()}", Body=path.read_bytes())


def _execution_with_outputs(repo_root: Path, tmp_path: Path) -> tuple[str, str]:
    """A started execution of the golden sample pipeline, with what its steps would have written to S3."""
    sagemaker = boto3.client("sagemaker", region_name="us-east-1")
    sagemaker.create_pipeline(PipelineName=GOLDEN_PIPELINE, PipelineDefinition=GOLDEN.read_text(), RoleArn=ROLE)
    arn = sagemaker.start_pipeline_execution(PipelineName=GOLDEN_PIPELINE)["PipelineExecutionArn"]
    execution_id = arn.rsplit("/", 1)[-1]
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=ARTIFACTS_BUCKET)
    loaded = load_config(repo_root / "configs" / "sample.yaml")
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=CONFIG_KEY, Body=loaded.normalized_json().encode())
    for model, score in SCORES.items():
        summary = make_summary(model, {"factual_knowledge": score}).model_copy(update={"execution_id": execution_id})
        folder = write_evaluation_output(tmp_path / "evaluations" / model, summary, [worst_record("Q?", "A", "B", 0.0)])
        _upload_tree(s3, folder, ARTIFACTS_BUCKET, f"{GOLDEN_PIPELINE}/runs/{execution_id}/evaluations/{model}")
    # Per-record outputs stay in S3: the report never needs them.
    s3.put_object(
        Bucket=ARTIFACTS_BUCKET,
        Key=f"{GOLDEN_PIPELINE}/runs/{execution_id}/evaluations/falcon-7b-instruct/records.jsonl",
        Body=b"{}\n" * 1000,
    )
    return arn, execution_id


def test_report_of_an_execution_is_rebuilt_from_its_outputs(
    in_repo: Path, moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arn, execution_id = _execution_with_outputs(in_repo, tmp_path)
    loaded = load_config(in_repo / "configs" / "sample.yaml")
    evidence = load_evidence(loaded.config, tmp_path / "evaluations")
    decision = select(loaded.config, evidence)
    expected = comparison_html(loaded.config, decision, evidence)
    target = tmp_path / "report.html"

    assert main(["report", "--execution", arn, "--output", str(target)]) == 0

    assert capsys.readouterr().out.splitlines() == [
        "The run has no decision.json: the decision was computed from the evaluation summaries.",
        f"Comparison report: {target}",
    ]
    assert target.read_text() == expected
    assert "Winner: llama3-8b-instruct" in expected

    # The decision Select stored wins over a recomputed one; the execution's folder names the same run.
    stored = decision.model_copy(update={"reason": "the decision as Select stored it"})
    s3 = boto3.client("s3", region_name="us-east-1")
    key = f"{GOLDEN_PIPELINE}/runs/{execution_id}/Select/decision/decision.json"
    s3.put_object(Bucket=ARTIFACTS_BUCKET, Key=key, Body=stored.model_dump_json().encode())
    folder = f"s3://{ARTIFACTS_BUCKET}/{GOLDEN_PIPELINE}/runs/{execution_id}"
    in_repo_output = tmp_path / "from-folder.html"

    assert main(["report", folder, "--output", str(in_repo_output), "--pdf"]) == 0

    assert capsys.readouterr().out.splitlines() == [
        f"Comparison report: {in_repo_output}",
        f"PDF report: {in_repo_output.with_suffix('.pdf')}",
    ]
    assert in_repo_output.read_text() == comparison_html(loaded.config, stored, evidence)
    assert in_repo_output.with_suffix(".pdf").read_bytes().startswith(b"%PDF")


def test_report_of_a_missing_evaluation_is_one_line(
    in_repo: Path, moto: MotoServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    arn, execution_id = _execution_with_outputs(in_repo, tmp_path)
    s3 = boto3.client("s3", region_name="us-east-1")
    summary = f"{GOLDEN_PIPELINE}/runs/{execution_id}/evaluations/mistral-7b-instruct/summary.json"
    s3.delete_object(Bucket=ARTIFACTS_BUCKET, Key=summary)

    assert main(["report", "--execution", arn, "--output", str(tmp_path / "r.html")]) == 2

    assert capsys.readouterr().err.splitlines() == [
        f"evalops report: s3://{ARTIFACTS_BUCKET}/{summary} does not exist (did that step of the execution run?)"
    ]


def test_report_of_a_local_runs_s3_output(
    in_repo: Path,
    moto: MotoServer,
    instant_evaluate: InstantEvaluate,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="evalops-runs")
    prefix = "s3://evalops-runs/team/sample"
    outcome = run_plan(load_config(in_repo / "configs" / "sample.yaml"), RunOptions(output=prefix), RecordingEvents())
    stored = s3.get_object(Bucket="evalops-runs", Key="team/sample/steps/Select/output/decision/comparison.html")
    target = tmp_path / "local.html"

    assert main(["report", prefix, "--output", str(target)]) == 0

    assert capsys.readouterr().out.splitlines() == [f"Comparison report: {target}"]
    assert target.read_text() == stored["Body"].read().decode()
    assert outcome.decision.winner == "llama3-8b-instruct"


def test_report_needs_a_run_or_an_execution(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report"]) == 2
    assert "give a run (folder or s3:// prefix) or --execution ARN, not both" in capsys.readouterr().err
    assert main(["report", "runs/x", "--execution", ARN]) == 2


def test_ctrl_c_while_following_leaves_the_execution_running(
    in_repo: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    client = boto3.client("sagemaker", region_name="us-east-1")
    stub = Stubber(client)
    stub.add_response("start_pipeline_execution", {"PipelineExecutionArn": ARN})
    stub.add_response(
        "describe_pipeline_execution",
        {"PipelineExecutionArn": ARN, "PipelineExecutionStatus": "Executing"},
        {"PipelineExecutionArn": ARN},
    )
    stub.add_response("list_pipeline_execution_steps", {"PipelineExecutionSteps": []}, {"PipelineExecutionArn": ARN})
    monkeypatch.setattr(deployed, "sagemaker_client", lambda region=None: client)

    def interrupted(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(deployed.time, "sleep", interrupted)

    with stub:
        assert main(["start", "--env", "dev", "--follow"]) == 130

    assert capsys.readouterr().err.strip() == f"evalops start: stopped following; the execution goes on: {ARN}"
