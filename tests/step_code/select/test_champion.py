"""The approved champion as the baseline, end to end in `evalops run --local` with the local registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pipeline_definitions.cli.main import main
from step_code.contract.results import Decision

DECISION = Path("steps/Select/output/decision/decision.json")


def _run(config: Path, output: Path, *extra: str) -> int:
    return main(["run", str(config), "--local", "--output", str(output), "--fresh", *extra])


def _decision(output: Path) -> Decision:
    return Decision.model_validate_json((output / DECISION).read_text(encoding="utf-8"))


def _challenger(repo_root: Path, tmp_path: Path, **selection: object) -> Path:
    """The demo challenger config (llama3 left out), with selection overrides, beside a copy of the catalog."""
    config = yaml.safe_load((repo_root / "configs" / "sample-challenger.yaml").read_text(encoding="utf-8"))
    config["selection"].update(selection)
    path = tmp_path / "config" / "challenger.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def approved_champion(repo_root: Path, tmp_path: Path) -> Path:
    """A run folder whose local registry holds llama3-8b-instruct (0.925 on the sample) as Approved v1."""
    output = tmp_path / "run"
    assert _run(repo_root / "configs" / "sample.yaml", output, "--approval-status", "Approved") == 0
    first = _decision(output)
    assert first.champion is not None and first.champion.status == "no-approved-package"
    assert "no Approved package in model package group evalops-sample-trivia" in first.reason
    return output


def test_a_challenger_worse_than_the_champion_fails_the_gate_and_exits_3(
    repo_root: Path, tmp_path: Path, approved_champion: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _challenger(repo_root, tmp_path)
    capsys.readouterr()

    assert _run(config, approved_champion, "--catalog-dir", str(repo_root / "prompt_catalog")) == 3

    err = capsys.readouterr().err
    assert "selection policy not met: mistral-7b-instruct is not registered" in err
    assert "fails the regression gate: at 95% confidence it may be up to 0.2000 worse" in err
    decision = _decision(approved_champion)
    champion = decision.champion
    assert champion is not None and champion.status == "compared" and not champion.passed
    assert champion.champion == "champion-v1-llama3-8b-instruct" and champion.model_package_version == 1
    comparison = champion.comparison
    assert comparison is not None and comparison.n == 40 and comparison.test == "mcnemar-exact"
    assert comparison.difference == pytest.approx(0.85 - 0.925)
    # The recorded answers: llama3 is right on 37 records and mistral on 34, with 4 + 1 discordant records.
    assert (champion.worse, champion.better) == (4, 1)
    assert champion.worst_worse[0].champion_score == 1.0 and champion.worst_worse[0].challenger_score == 0.0
    assert champion.worst_worse[0].prompt and champion.worst_worse[0].challenger_output
    verdict = next(c for c in decision.candidates if c.champion)
    assert verdict.model == "champion-v1-llama3-8b-instruct" and not verdict.eligible
    html = (approved_champion / DECISION).with_name("comparison.html").read_text(encoding="utf-8")
    assert "Worst of the worse" in html and "champion-v1-llama3-8b-instruct" in html
    assert not (approved_champion / "registry" / "evalops-sample-trivia" / "2.json").exists()

    # `evalops report` rebuilds the report from decision.json: the champion's row comes from its verdict.
    assert main(["report", str(approved_champion), "--pdf"]) == 0
    rebuilt = (approved_champion / DECISION).with_name("comparison.html").read_text(encoding="utf-8")
    assert '<th scope="row">champion-v1-llama3-8b-instruct</th><td>registry</td>' in rebuilt
    assert "[0.7961, 0.9843] n=40" in rebuilt


def test_a_challenger_within_max_regression_is_registered(
    repo_root: Path, tmp_path: Path, approved_champion: Path
) -> None:
    config = _challenger(repo_root, tmp_path, max_regression=0.25)

    assert _run(config, approved_champion, "--catalog-dir", str(repo_root / "prompt_catalog")) == 0

    champion = _decision(approved_champion).champion
    assert champion is not None and champion.passed
    assert "passes the regression gate: at 95% confidence it is at most 0.2000 worse (limit 0.25)" in champion.detail
    assert (approved_champion / "registry" / "evalops-sample-trivia" / "2.json").is_file()


def test_a_champion_scored_on_another_catalog_is_reported_not_skipped(
    repo_root: Path, tmp_path: Path, approved_champion: Path
) -> None:
    registry = approved_champion / "registry" / "evalops-sample-trivia" / "metrics"
    [stored] = registry.glob("*/*/evaluated_as.json")
    evaluated_as = json.loads(stored.read_text(encoding="utf-8"))
    # Registered by this version: robustness perturbations drawn per record.
    assert evaluated_as["perturbations"] == "per-record"
    evaluated_as["dataset_sha256"] = "f" * 64
    stored.write_text(json.dumps(evaluated_as), encoding="utf-8")
    config = _challenger(repo_root, tmp_path)

    assert _run(config, approved_champion, "--catalog-dir", str(repo_root / "prompt_catalog")) == 0

    decision = _decision(approved_champion)
    assert decision.champion is not None and decision.champion.status == "unanswerable"
    assert "cannot be answered: its stored outputs were scored on catalog sha256 ffffffffffff" in decision.reason
    # A recorded champion cannot be asked prompts it was not recorded on: said, not skipped.
    assert "asking it again failed: model llama3-8b-instruct replays recorded responses" in decision.reason
