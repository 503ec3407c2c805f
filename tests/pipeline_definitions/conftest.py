"""A throw-away repository (cdk.json, prompt catalog) and a helper that writes a config into it."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

WriteConfig = Callable[..., Path]

TRIVIA_ROWS = (
    '{"question": "What is the capital of France?", "answer": "Paris"}\n'
    "\n"
    '{"question": "How many legs does a spider have?", "answer": "8<OR>eight"}\n'
    '{"question": "Which planet is known as the Red Planet?", "answer": "Mars"}\n'
)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """`<tmp>/cdk.json`, `<tmp>/prompt_catalog/{trivia.jsonl, recorded/m1.jsonl}`, `<tmp>/configs/`."""
    (tmp_path / "cdk.json").write_text("{}\n", encoding="utf-8")
    catalog = tmp_path / "prompt_catalog"
    (catalog / "recorded").mkdir(parents=True)
    (catalog / "trivia.jsonl").write_text(TRIVIA_ROWS, encoding="utf-8")
    (catalog / "recorded" / "m1.jsonl").write_text('{"model_output": "Paris"}\n', encoding="utf-8")
    (tmp_path / "configs").mkdir()
    return tmp_path


@pytest.fixture
def write_config(workspace: Path) -> WriteConfig:
    """Write YAML (dedented) to `<workspace>/configs/<name>` and return its path."""

    def write(text: str, name: str = "x.yaml") -> Path:
        path = workspace / "configs" / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    return write
