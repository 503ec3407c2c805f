"""The catalog changes between runs: the approved champion is asked again through its endpoint (the local model
server) in `evalops run --local`, with the local registry, and the regression gate still applies."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pipeline_definitions.cli.main import main
from step_code.contract.results import ChampionAnswers, Decision, EvaluationSummary
from tests.support.model_server import ModelServer

GROUP = "evalops-champion-again"
CHAMPION_OUTPUT = Path("steps/Champion/output/champion")


def _rows(repo_root: Path) -> list[dict[str, Any]]:
    path = repo_root / "prompt_catalog" / "evaluation_dataset_trivia.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _catalog(folder: Path, rows: list[dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    text = "".join(json.dumps(row) + "\n" for row in rows)
    (folder / "evaluation_dataset_trivia.jsonl").write_text(text, encoding="utf-8")
    return folder


def _config(repo_root: Path, path: Path, server: ModelServer, models: dict[str, str]) -> Path:
    config = yaml.safe_load((repo_root / "configs" / "sample-challenger.yaml").read_text(encoding="utf-8"))
    config["models"] = [
        {
            "name": name,
            "model_provider": "openai",
            "endpoint_url": f"{server.url}/v1/chat/completions",
            "evaluation_config": {"prompt_template": template, "max_retries": 0},
        }
        for name, template in models.items()
    ]
    config["model_registry"]["model_package_group_name"] = GROUP
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def _run(config: Path, output: Path, catalog: Path, *extra: str) -> int:
    return main(["run", str(config), "--local", "--output", str(output), "--catalog-dir", str(catalog), *extra])


@pytest.mark.slow
def test_a_champion_scored_on_another_catalog_is_asked_again_and_gates_the_winner(
    repo_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = _rows(repo_root)
    first_catalog = _catalog(tmp_path / "catalog-1", rows[:30])
    second_catalog = _catalog(tmp_path / "catalog-2", rows)
    # The champion answers every question right; the challenger misses the ten the first catalog did not have.
    answers = {f"Answer briefly. {row['question']}": row["answer"].split("<OR>")[0] for row in rows}
    answers |= {f"Q: {row['question']}": row["answer"].split("<OR>")[0] for row in rows[:30]}
    answers |= {f"Q: {row['question']}": "I am not sure." for row in rows[30:]}
    output = tmp_path / "run"
    with ModelServer(answers=answers) as server:
        champion_config = _config(
            repo_root, tmp_path / "champion.yaml", server, {"direct": "Answer briefly. $model_input"}
        )
        assert _run(champion_config, output, first_catalog, "--approval-status", "Approved") == 0
        assert (output / "registry" / GROUP / "1.json").is_file()
        server.reset_counters()

        challenger_config = _config(repo_root, tmp_path / "challenger.yaml", server, {"terse": "Q: $model_input"})
        capsys.readouterr()
        assert _run(challenger_config, output, second_catalog) == 3

        # The champion's answers to the first catalog's 30 questions come from the response cache; the ten new
        # questions go to its endpoint once each.
        asked = {prompt for prompt in server.requests_by_prompt if prompt.startswith("Answer briefly. ")}
        assert asked == {f"Answer briefly. {row['question']}" for row in rows[30:]}

    [answer] = ChampionAnswers.model_validate_json((output / CHAMPION_OUTPUT / "champion.json").read_text()).answers
    assert answer.group == GROUP and answer.status == "endpoint" and answer.model_package_version == 1
    assert answer.detail.startswith("its stored outputs were scored on catalog sha256 ")
    assert f"asked again through openai {server.url}/v1/chat/completions" in answer.detail
    summary = EvaluationSummary.model_validate_json((output / CHAMPION_OUTPUT / GROUP / "summary.json").read_text())
    assert summary.model == "direct" and summary.records_total == 40
    assert summary.metrics["factual_knowledge"] == pytest.approx(1.0)

    decision = Decision.model_validate_json((output / "steps/Select/output/decision/decision.json").read_text())
    champion = decision.champion
    assert champion is not None and champion.status == "compared" and not champion.passed
    assert champion.champion == "champion-v1-direct" and (champion.worse, champion.better) == (10, 0)
    assert champion.comparison is not None and champion.comparison.n == 40
    assert champion.comparison.difference == pytest.approx(0.75 - 1.0)
    assert not decision.meets_policy and decision.reason.startswith("terse is not registered: ")
    assert "fails the regression gate" in capsys.readouterr().err
    assert not (output / "registry" / GROUP / "2.json").exists()
