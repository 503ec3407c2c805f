"""Evaluate-step fixtures: a run folder laid out like the plan's, built from a config and a catalog."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from step_code.contract.config import Config
from step_code.fmeval_runtime import JUDGE_MODELS_ENV
from step_code.preprocess import preprocess

STANDIN_HOOK = "tests.step_code.evaluate.judge_standin:install"
DETOXIFY_STANDIN_HOOK = "tests.step_code.evaluate.judge_standin:install_detoxify"


@dataclass(frozen=True)
class EvaluateRun:
    root: Path
    config: Config
    config_path: Path
    catalog_dir: Path
    dataset_dir: Path

    def output_dir(self, model: str) -> Path:
        return self.root / "output" / model

    def argv(self, model: str, *, cache: str = "cache", output: Path | None = None) -> list[str]:
        argv = [
            "--config",
            str(self.config_path),
            "--output-dir",
            str(output or self.output_dir(model)),
            "--model",
            model,
            "--execution-id",
            "exec-1",
            "--dataset-dir",
            str(self.dataset_dir),
            "--cache-uri",
            str(self.root / cache),
        ]
        if self.config.model(model).model_provider == "recorded":
            argv += ["--catalog-dir", str(self.catalog_dir)]
        return argv


def make_run(root: Path, config: Config, catalog_dir: Path) -> EvaluateRun:
    config_path = root / "input" / "config" / "config.json"
    config_path.parent.mkdir(parents=True)
    config_path.write_text(config.model_dump_json(by_alias=True), encoding="utf-8")
    dataset_dir = root / "input" / "dataset"
    preprocess(config, str(catalog_dir), str(dataset_dir))
    return EvaluateRun(root, config, config_path, catalog_dir, dataset_dir)


def trivia_rows(count: int) -> list[dict[str, str]]:
    """`count` distinct questions; the reference of question i is `answer-i` (with an alternative)."""
    return [
        {
            "question": f"Question number {i}?",
            "answer": f"answer-{i}<OR>alt-{i}",
            "topic": "even" if i % 2 == 0 else "odd",
        }
        for i in range(count)
    ]


@pytest.fixture
def http_run(tmp_path: Path) -> Callable[..., EvaluateRun]:
    """A run of one `http` model named `candidate` at `url` over a generated catalog, with `algorithms`."""

    def build(
        url: str, algorithms: Sequence[dict[str, Any]], *, rows: int = 120, category: bool = True, **evaluation: Any
    ) -> EvaluateRun:
        catalog = tmp_path / "catalog"
        catalog.mkdir(exist_ok=True)
        (catalog / "trivia.jsonl").write_text(
            "".join(json.dumps(row) + "\n" for row in trivia_rows(rows)), encoding="utf-8"
        )
        config = Config.model_validate(
            {
                "pipeline": {"name": "evaluate-test"},
                "dataset": {
                    "dataset_name": "trivia",
                    "input_data_location": "trivia.jsonl",
                    "model_input_key": "question",
                    "target_output_key": "answer",
                    **({"category_key": "topic"} if category else {}),
                },
                "models": [
                    {
                        "name": "candidate",
                        "model_provider": "http",
                        "endpoint_url": f"{url}/generate",
                        "evaluation_config": {"max_concurrency": 8, "max_retries": 1, **evaluation},
                    }
                ],
                "model_registry": {"model_package_group_name": "evaluate-test"},
                "algorithms": list(algorithms),
            }
        )
        return make_run(tmp_path / f"run-{len(list(tmp_path.glob('run-*')))}", config, catalog)

    return build


@pytest.fixture
def standin_judges(monkeypatch: pytest.MonkeyPatch) -> None:
    """fmeval's BERTScore judge replaced by `judge_standin` in this process and every Ray worker."""
    monkeypatch.setenv(JUDGE_MODELS_ENV, STANDIN_HOOK)


@pytest.fixture
def standin_judges_with_detoxify(monkeypatch: pytest.MonkeyPatch) -> None:
    """The BERTScore and Detoxify judges replaced by `judge_standin`'s stand-ins."""
    monkeypatch.setenv(JUDGE_MODELS_ENV, f"{STANDIN_HOOK},{DETOXIFY_STANDIN_HOOK}")
