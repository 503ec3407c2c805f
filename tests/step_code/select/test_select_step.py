from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.planning.plan import build_plan, step_arguments
from step_code import select_step
from step_code.contract.results import ChampionAnswer, ChampionAnswers, Decision
from tests.step_code.select.summaries import make_summary, worst_record, write_evaluation_output

SAMPLE_SCORES = {"llama3-8b-instruct": 0.925, "mistral-7b-instruct": 0.85, "falcon-7b-instruct": 0.475}


@pytest.fixture
def step_dirs(tmp_path: Path, repo_root: Path) -> tuple[Path, Path]:
    """The select step's input and output roots, laid out as the plan says, with the sample config."""
    loaded = load_config(repo_root / "configs" / "sample.yaml")
    input_root, output_root = tmp_path / "input", tmp_path / "output"
    (input_root / "config").mkdir(parents=True)
    (input_root / "config" / "config.json").write_text(loaded.normalized_json(), encoding="utf-8")
    # What the plan's champion step answers before any package of the group is approved.
    group = loaded.config.model_registry.model_package_group_name
    answers = ChampionAnswers(answers=[ChampionAnswer(group=group, status="no-approved-package", detail="none yet")])
    (input_root / "champion").mkdir()
    (input_root / "champion" / "champion.json").write_text(answers.model_dump_json(), encoding="utf-8")
    return input_root, output_root


def _argv(input_root: Path, output_root: Path, repo_root: Path) -> list[str]:
    plan = build_plan(load_config(repo_root / "configs" / "sample.yaml").config)
    args = step_arguments(
        plan.select,
        str(input_root),
        str(output_root),
        execution_id="e1",
        approval_status="Approved",
        cache_uri="",
        local_registry_dir=str(input_root / "registry"),
    )
    return [str(arg) for arg in args]


def _write_models(input_root: Path, scores: dict[str, float], **worst: list[dict[str, Any]]) -> None:
    for model, score in scores.items():
        records = worst.get(model.replace("-", "_"), [worst_record("Answer briefly. Q?", "A", "B", 0.0)])
        write_evaluation_output(
            input_root / "summaries" / model, make_summary(model, {"factual_knowledge": score}), records
        )


def test_select_writes_the_decision_and_the_comparison(step_dirs: tuple[Path, Path], repo_root: Path) -> None:
    input_root, output_root = step_dirs
    hostile = worst_record("Answer briefly. <script>alert(1)</script>", "Canberra", "Sydney & <b>co</b>", 0.0)
    _write_models(input_root, SAMPLE_SCORES, falcon_7b_instruct=[hostile])

    assert select_step.main(_argv(input_root, output_root, repo_root)) == 0

    decision = Decision.model_validate_json((output_root / "decision" / "decision.json").read_text())
    assert decision.meets_policy and decision.winner == "llama3-8b-instruct"
    assert decision.primary_metric == "factual_knowledge"
    falcon = next(c for c in decision.candidates if c.model == "falcon-7b-instruct")
    assert falcon.reasons == ["excluded: factual_knowledge 0.4750 is below the minimum 0.5"]
    html = (output_root / "decision" / "comparison.html").read_text()
    assert all(model in html for model in SAMPLE_SCORES)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "Sydney &amp; &lt;b&gt;co&lt;/b&gt;" in html


def test_no_eligible_candidate_is_a_decision_not_a_step_failure(step_dirs: tuple[Path, Path], repo_root: Path) -> None:
    input_root, output_root = step_dirs
    _write_models(input_root, dict.fromkeys(SAMPLE_SCORES, 0.2))

    assert select_step.main(_argv(input_root, output_root, repo_root)) == 0

    decision = Decision.model_validate_json((output_root / "decision" / "decision.json").read_text())
    assert not decision.meets_policy and decision.winner is None
    assert decision.reason.startswith("no candidate meets the selection policy")
    assert "No candidate meets the selection policy" in (output_root / "decision" / "comparison.html").read_text()


def test_a_model_without_evaluation_output_fails_with_one_line(
    step_dirs: tuple[Path, Path], repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    input_root, output_root = step_dirs
    _write_models(input_root, {k: v for k, v in SAMPLE_SCORES.items() if k != "mistral-7b-instruct"})

    assert select_step.main(_argv(input_root, output_root, repo_root)) == 1

    error = capsys.readouterr().err.strip().splitlines()
    assert error == [
        f"select: error: {input_root / 'summaries' / 'mistral-7b-instruct'}: no evaluation output for model "
        "mistral-7b-instruct (did its evaluate step run?)"
    ]
    assert not (output_root / "decision" / "decision.json").exists()


def test_a_missing_worst_records_file_is_named(
    step_dirs: tuple[Path, Path], repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    input_root, output_root = step_dirs
    _write_models(input_root, SAMPLE_SCORES)
    missing = input_root / "summaries" / "falcon-7b-instruct" / "algorithms" / "factual_knowledge_worst_records.json"
    missing.unlink()

    assert select_step.main(_argv(input_root, output_root, repo_root)) == 1

    assert f"{missing}: file not found" in capsys.readouterr().err


def test_primary_metric_defaults_to_the_first_algorithms_first_score(repo_root: Path) -> None:
    config = load_config(repo_root / "configs" / "sample.yaml").config
    unset = config.model_copy(update={"selection": config.selection.model_copy(update={"primary_metric": None})})

    assert select_step.primary_metric(unset) == "factual_knowledge"
    assert select_step.metric_directions(unset) == {
        "factual_knowledge": True,
        "factual_knowledge_quasi_exact": True,
        "factual_knowledge.factual_knowledge": True,
        "factual_knowledge.factual_knowledge_quasi_exact": True,
    }


def test_the_champion_gate_needs_the_champion_steps_output(
    step_dirs: tuple[Path, Path], repo_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    input_root, output_root = step_dirs
    _write_models(input_root, SAMPLE_SCORES)
    argv = _argv(input_root, output_root, repo_root)
    at = argv.index("--champion-dir")

    assert select_step.main(argv[:at] + argv[at + 2 :]) == 1

    err = capsys.readouterr().err
    assert "--champion-dir is required with selection.baseline approved (the champion step's output)" in err
