"""Rendering is offline: no network, no credentials, and none of the heavy evaluation libraries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.rendering.sagemaker_definition import render_definition
from tests.pipeline_definitions.rendering.conftest import REPO_ROOT, shipped_config, targets_for

CREDENTIAL_VARIABLES = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
)


def _without_credentials(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    env["AWS_CONFIG_FILE"] = str(tmp_path / "config")
    env["AWS_SHARED_CREDENTIALS_FILE"] = str(tmp_path / "credentials")
    return env


def test_renders_with_the_network_blocked_and_no_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Importing the SDK builds a default JumpStart session that walks the credential chain; that import
    # is covered by the subprocess test below, with the metadata service disabled as the Makefile does.
    import sagemaker.workflow.pipeline  # noqa: F401

    attempts: list[Any] = []

    def refuse(*args: Any, **kwargs: Any) -> None:
        attempts.append(args)
        raise OSError("network access during rendering")

    for variable in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    # The metadata service stays enabled: the renderer must not look for credentials at all.
    monkeypatch.delenv("AWS_EC2_METADATA_DISABLED", raising=False)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)

    config = shipped_config("reference")
    definition = json.loads(render_definition(build_plan(config), config, targets_for(config)))

    assert attempts == []
    assert definition["Steps"]


# Runs in a fresh interpreter: the sockets are blocked before anything is imported.
OFFLINE_PROBE = """
import json, socket, sys
attempts = []
def refuse(*args, **kwargs):
    attempts.append(repr(args))
    raise OSError("network access")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse

import pipeline_definitions.rendering.sagemaker_definition
cheap_import = "sagemaker" not in sys.modules
from tests.pipeline_definitions.rendering.conftest import shipped_config, targets_for
from pipeline_definitions.planning.plan import build_plan
from pipeline_definitions.rendering.sagemaker_definition import render_definition
config = shipped_config("reference")
render_definition(build_plan(config), config, targets_for(config))
heavy = sorted({name.split(".")[0] for name in sys.modules} & {"torch", "ray", "fmeval", "transformers"})
print(json.dumps({"attempts": attempts, "cheap_import": cheap_import, "sdk_loaded": "sagemaker" in sys.modules,
                  "heavy": heavy}))
"""


def test_a_fresh_process_renders_offline_without_evaluation_libraries(tmp_path: Path) -> None:
    env = {**_without_credentials(tmp_path), "AWS_EC2_METADATA_DISABLED": "true"}
    result = subprocess.run(
        [sys.executable, "-c", OFFLINE_PROBE],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    assert json.loads(result.stdout) == {"attempts": [], "cheap_import": True, "sdk_loaded": True, "heavy": []}
    assert result.stderr == ""
