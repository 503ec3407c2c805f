"""The select step: apply the selection policy to every model's summary; write the decision and the comparison.

    python -m step_code.select_step --config C --output-dir O --summaries-dir S [--champion-dir H]

`S/<model>/` is each model's evaluation output (summary.json, worst records, per-record scores). Writes
`O/decision.json` (read by the pipeline's condition step) and `O/comparison.html`. A decision that no
candidate meets the policy is a result, not an error: the step succeeds and the condition step fails the
pipeline with its reason.

With `selection.baseline: approved`, the winner is compared with the latest Approved package of its model
package group and must pass the regression gate. `H` is the champion step's output (champion_step.py): the
champion answered on this run's catalog, or why it could not be.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from step_code import champion
from step_code.aws_resources import ControlPlaneError
from step_code.contract import algorithms
from step_code.contract.config import Config
from step_code.contract.files import CHAMPION_FILE, COMPARISON_PDF_FILE, COMPARISON_REPORT_FILE, DECISION_FILE
from step_code.contract.results import ChampionAnswers, ChampionComparison, Decision
from step_code.report import ModelEvidence, ReportContext, load_model_evidence, render_report
from step_code.selection_policy import PolicyError, decide
from step_code.step_args import step_parser
from step_code.step_io import read_config, read_model, run_step, write_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SelectArgs:
    config: Path
    output_dir: Path
    summaries_dir: Path
    champion_dir: Path | None = None


def parse_args(argv: Sequence[str] | None) -> SelectArgs:
    parser = step_parser("step_code.select_step", __doc__)
    parser.add_argument("--summaries-dir", required=True, type=Path)
    parser.add_argument("--champion-dir", type=Path, help="The champion step's output.")
    ns = parser.parse_args(argv)
    return SelectArgs(
        config=ns.config,
        output_dir=ns.output_dir,
        summaries_dir=ns.summaries_dir,
        champion_dir=ns.champion_dir,
    )


def metric_directions(config: Config) -> dict[str, bool]:
    """Score name -> higher is better, also under the `<eval_name>.<score>` names of scores two algorithms share."""
    directions = algorithms.higher_is_better(config.algorithms)
    for item in config.algorithms:
        spec = algorithms.lookup(item.algorithm)
        for score in spec.scores_for(item.config_fields()):
            directions.setdefault(f"{spec.eval_name}.{score.name}", score.higher_is_better)
    return directions


def primary_metric(config: Config) -> str:
    """The configured primary metric, else the first algorithm's first score."""
    if config.selection.primary_metric:
        return config.selection.primary_metric
    first = config.algorithms[0]
    return algorithms.lookup(first.algorithm).scores_for(first.config_fields())[0].name


def load_evidence(config: Config, summaries_dir: Path) -> list[ModelEvidence]:
    """Every configured model's evaluation output, in config order."""
    evidence: list[ModelEvidence] = []
    for model in config.models:
        folder = summaries_dir / model.name
        if not folder.is_dir():
            raise ControlPlaneError(
                f"{folder}: no evaluation output for model {model.name} (did its evaluate step run?)"
            )
        evidence.append(load_model_evidence(folder, model.name))
    return evidence


def select(config: Config, evidence: Sequence[ModelEvidence]) -> Decision:
    try:
        return decide(
            config.selection,
            [item.summary for item in evidence],
            primary_metric=primary_metric(config),
            higher_is_better=metric_directions(config),
            record_scores={item.summary.model: item.record_scores for item in evidence},
        )
    except PolicyError as exc:
        raise ControlPlaneError(str(exc)) from None


def report_context(config: Config, evidence: Sequence[ModelEvidence]) -> ReportContext:
    return ReportContext(
        pipeline_name=config.pipeline.name,
        execution_id=evidence[0].summary.execution_id if evidence else "",
        dataset_name=config.dataset.dataset_name,
        higher_is_better=metric_directions(config),
    )


def comparison_html(config: Config, decision: Decision, evidence: Sequence[ModelEvidence]) -> str:
    return render_report(decision, evidence, report_context(config, evidence))


def comparison_pdf(config: Config, decision: Decision, evidence: Sequence[ModelEvidence]) -> bytes:
    from step_code.report_pdf import render_pdf

    return render_pdf(decision, evidence, report_context(config, evidence))


def with_champion(
    config: Config,
    decision: Decision,
    evidence: Sequence[ModelEvidence],
    summaries_dir: Path,
    champion_dir: Path | None,
) -> tuple[Decision, list[ModelEvidence]]:
    """The decision gated against what the champion step answered for the winner's group, and the evidence
    with the champion in it."""
    if config.selection.baseline != "approved" or decision.winner is None or not decision.meets_policy:
        return decision, list(evidence)
    if champion_dir is None:
        raise ControlPlaneError(
            "--champion-dir is required with selection.baseline approved (the champion step's output)"
        )
    winner_model = config.model(decision.winner)
    group = winner_model.model_package_group_name or config.model_registry.model_package_group_name
    answer = read_model(champion_dir / CHAMPION_FILE, ChampionAnswers).of(group)
    if answer is None:
        raise ControlPlaneError(f"{champion_dir / CHAMPION_FILE}: no answer for model package group {group}")
    if answer.status == "no-approved-package":
        return champion.apply_gate(decision, champion.no_approved_package(group), None), list(evidence)
    package = champion.ApprovedPackage(
        str(answer.model_package_arn), int(answer.model_package_version or 0), answer.statistics_uri
    )
    if answer.status == "unanswerable" or answer.evaluation_path is None:
        comparison = ChampionComparison(
            status="unanswerable",
            detail=answer.detail,
            model_package_arn=answer.model_package_arn,
            model_package_version=answer.model_package_version,
        )
        return champion.apply_gate(decision, comparison, None), list(evidence)
    folder = champion_dir / answer.evaluation_path
    baseline = champion.load_champion(folder, package)
    winner = next(item for item in evidence if item.summary.model == decision.winner)
    comparison = champion.compare_with_champion(
        package,
        baseline,
        folder,
        winner,
        summaries_dir / winner.summary.model,
        policy=config.selection,
        primary_metric=decision.primary_metric,
        higher_is_better=metric_directions(config)[decision.primary_metric],
    )
    if comparison.status == "compared":
        comparison = comparison.model_copy(update={"detail": f"{comparison.detail}; champion {answer.detail}"})
    verdict = champion.champion_verdict(baseline, comparison)
    return champion.apply_gate(decision, comparison, verdict), [*evidence, baseline]


def _run(args: SelectArgs) -> None:
    config = read_config(args.config)
    evidence = load_evidence(config, args.summaries_dir)
    decision = select(config, evidence)
    decision, evidence = with_champion(config, decision, evidence, args.summaries_dir, args.champion_dir)
    write_model(args.output_dir, DECISION_FILE, decision)
    report = args.output_dir / COMPARISON_REPORT_FILE
    report.write_text(comparison_html(config, decision, evidence), encoding="utf-8")
    (args.output_dir / COMPARISON_PDF_FILE).write_bytes(comparison_pdf(config, decision, evidence))
    logger.info("decision: %s", decision.reason)
    logger.info("comparison report: %s", report)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    return run_step("select", lambda: _run(args))


if __name__ == "__main__":
    raise SystemExit(main())
