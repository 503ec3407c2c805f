"""`evalops run --local --no-cache` asks the model again instead of answering from the response cache."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from pipeline_definitions.cli.main import main
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow


def test_no_cache_sends_every_prompt_again(repo_root: Path, tmp_path: Path) -> None:
    catalog = repo_root / "prompt_catalog"
    rows = sum(1 for line in (catalog / "evaluation_dataset_trivia.jsonl").read_text().splitlines() if line.strip())
    with ModelServer(answers=lambda prompt: "Paris") as server:
        config = yaml.safe_load((repo_root / "configs" / "sample.yaml").read_text())
        config["models"] = [
            {
                "name": "chat",
                "model_provider": "openai",
                "endpoint_url": f"{server.url}/v1/chat/completions",
                "evaluation_config": {"max_concurrency": 4, "max_retries": 0},
            }
        ]
        config["selection"] = {"min_primary_score": 0.0}
        config_path = tmp_path / "chat.yaml"
        config_path.write_text(yaml.safe_dump(config))
        command = ["run", str(config_path), "--local", "--catalog-dir", str(catalog), "--output", str(tmp_path / "r")]

        assert main(command) == 0
        assert server.requests_total == rows
        server.reset_counters()
        assert main([*command, "--fresh"]) == 0
        assert server.requests_total == 0
        server.reset_counters()
        assert main([*command, "--fresh", "--no-cache"]) == 0
        assert server.requests_total == rows
