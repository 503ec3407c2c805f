"""Fixtures for step code tests: a local model server that boto3 runtime clients reach, and the shipped configs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from step_code.contract.config import Config
from tests.support.model_server import ModelServer


@pytest.fixture
def model_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelServer]:
    """A fresh model server; `sagemaker-runtime` and `bedrock-runtime` clients created in the test call it."""
    with ModelServer(timeout_sleep_seconds=1.0) as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", server.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", server.url)
        yield server


def load_yaml_config(path: Path) -> Config:
    return Config.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))


@pytest.fixture(scope="session")
def reference_config(repo_root: Path) -> Config:
    return load_yaml_config(repo_root / "configs" / "reference.yaml")


@pytest.fixture(scope="session")
def sample_config(repo_root: Path) -> Config:
    return load_yaml_config(repo_root / "configs" / "sample.yaml")
