"""The post-deploy step's shell commands, run with the AWS CLI against the moto server.

As in CodeBuild, the only credentials come from a container credentials endpoint; the commands must
assume the environment's role and start the SageMaker pipeline in the environment's account.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import boto3
import pytest

from stacks.components.delivery_evaluation_start import EXECUTION_ARN_VARIABLE, START_COMMANDS
from tests.support.moto_server import MotoServer

TARGET_ACCOUNT = "222222222222"
START_ROLE_ARN = f"arn:aws:iam::{TARGET_ACCOUNT}:role/acme-prod-delivery-start"
PIPELINE_NAME = "acme-prod-evaluation"
EXECUTION_ID = "0f1e2d3c-4b5a-6978-8695-a4b3c2d1e0f9"

# The AWS CLI comes with the dev requirements (as it comes with the CodeBuild image), beside this Python.
VENV_BIN = str(Path(sys.executable).parent)


class ContainerCredentials(BaseHTTPRequestHandler):
    """Serves the tooling-side role's credentials the way CodeBuild's container endpoint does."""

    calls = 0

    def do_GET(self) -> None:
        type(self).calls += 1
        body = json.dumps(
            {
                "AccessKeyId": "AKIATOOLINGCODEBUILD",
                "SecretAccessKey": "tooling-secret",
                "Token": "tooling-token",
                "Expiration": "2099-01-01T00:00:00Z",
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        return


@pytest.fixture
def credentials_url() -> Iterator[str]:
    ContainerCredentials.calls = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), ContainerCredentials)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v2/credentials/codebuild"
    finally:
        server.shutdown()
        thread.join()


def target_account_sagemaker(moto: MotoServer) -> Any:
    """SageMaker in the target account: moto attributes assumed-role credentials to the role's account."""
    sts = boto3.client("sts", endpoint_url=moto.url)
    credentials = sts.assume_role(RoleArn=START_ROLE_ARN, RoleSessionName="test-setup")["Credentials"]
    return boto3.client(
        "sagemaker",
        endpoint_url=moto.url,
        region_name="eu-west-1",
        aws_access_key_id=credentials["AccessKeyId"],
        aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"],
    )


def run_start_commands(moto: MotoServer, credentials_url: str, home: Path) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("AWS_") or key in {"AWS_ENDPOINT_URL", "AWS_EC2_METADATA_DISABLED"}
    }
    environment.update(
        {
            "HOME": str(home),
            "PATH": os.pathsep.join([VENV_BIN, os.environ.get("PATH", "")]),
            "AWS_CONTAINER_CREDENTIALS_FULL_URI": credentials_url,
            # CodeBuild's own region (the tooling account's), not the target's.
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_REGION": "us-east-1",
            "START_ROLE_ARN": START_ROLE_ARN,
            "TARGET_REGION": "eu-west-1",
            "ENVIRONMENT_NAME": "prod",
            "DELIVERY_NAME": "evalops-delivery",
            "CODEPIPELINE_EXECUTION_ID": EXECUTION_ID,
            "EVALUATION_PIPELINE_NAME": PIPELINE_NAME,
        }
    )
    # CodeBuild runs a phase's commands in one shell and fails the build on the first failing command;
    # the last line reads the variable the way CodeBuild exports it, from the environment of a child process.
    script = "\n".join([*START_COMMANDS, f"bash -c 'echo exported=${EXECUTION_ARN_VARIABLE}'"])
    return subprocess.run(
        ["bash", "-e", "-c", script], env=environment, capture_output=True, text=True, timeout=120, check=False
    )


def test_starts_the_pipeline_in_the_target_account_and_reports_the_arn(
    moto: MotoServer, credentials_url: str, tmp_path: Path
) -> None:
    sagemaker = target_account_sagemaker(moto)
    sagemaker.create_pipeline(
        PipelineName=PIPELINE_NAME,
        PipelineDefinition=json.dumps({"Version": "2020-12-01", "Steps": []}),
        RoleArn=f"arn:aws:iam::{TARGET_ACCOUNT}:role/acme-prod-pipeline",
    )

    result = run_start_commands(moto, credentials_url, tmp_path)

    assert result.returncode == 0, result.stderr
    (execution,) = sagemaker.list_pipeline_executions(PipelineName=PIPELINE_NAME)["PipelineExecutionSummaries"]
    arn = execution["PipelineExecutionArn"]
    assert arn.startswith(f"arn:aws:sagemaker:eu-west-1:{TARGET_ACCOUNT}:pipeline/{PIPELINE_NAME}/execution/")
    assert result.stdout.splitlines() == [f"Started SageMaker pipeline execution {arn}", f"exported={arn}"]
    assert execution["PipelineExecutionDisplayName"] == f"delivery-{EXECUTION_ID}"
    assert ContainerCredentials.calls >= 1


def test_fails_when_the_pipeline_does_not_exist(moto: MotoServer, credentials_url: str, tmp_path: Path) -> None:
    result = run_start_commands(moto, credentials_url, tmp_path)
    assert result.returncode != 0
    assert f"Could not find pipeline with PipelineName {PIPELINE_NAME}" in result.stderr
    assert "Started SageMaker pipeline execution" not in result.stdout
