"""Fixtures for the local runner tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline_definitions.loading.loader import LoadedConfig, load_config
from step_code import evaluate_step
from tests.pipeline_definitions.local.doubles import InstantEvaluate, RecordingEvents


@pytest.fixture
def instant_evaluate(monkeypatch: pytest.MonkeyPatch) -> InstantEvaluate:
    fake = InstantEvaluate()
    monkeypatch.setattr(evaluate_step, "main", fake.main)
    return fake


@pytest.fixture(scope="session")
def sample(repo_root: Path) -> LoadedConfig:
    return load_config(repo_root / "configs" / "sample.yaml")


@pytest.fixture
def events() -> RecordingEvents:
    return RecordingEvents()
