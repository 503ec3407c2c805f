"""The champion step: answer the approved champion of every model package group on this run's catalog.

    python -m step_code.champion_step --config C --output-dir O --execution-id E --dataset-dir D
        --cache-uri U [--registry-dir R]

For each group a winner of this config is registered in, the latest Approved package (SageMaker's
registry, or the local registry `R`) is answered:
- from its stored outputs (the summary, records and per-record scores register stored beside its metrics)
  when they fit this run: the same processed catalog (sha256), the same prompt template for the champion,
  the same algorithms and algorithm configs;
- otherwise asked again with the evaluate step's code (champion_answering.py): through its endpoint when
  one is in service, by redeploying its package, or by calling the model it references.
Writes `O/champion.json` (ChampionAnswers) and, for each answered group, `O/<group>/` in the layout of an
evaluate step's output. A champion that cannot be answered is a result with its reason, not an error: the
select step reports it in the decision.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError

from step_code import champion, storage
from step_code.aws_resources import ControlPlaneError, sagemaker_client
from step_code.champion_answering import Unanswerable, answer_again, prompt_template
from step_code.contract.algorithms import lookup
from step_code.contract.config import Config, canonical_digest
from step_code.contract.files import CHAMPION_FILE, EVALUATED_AS_FILE, MANIFEST_FILE, SUMMARY_FILE
from step_code.contract.results import (
    PERTURBATION_SEEDING,
    ChampionAnswer,
    ChampionAnswers,
    EvaluatedAs,
    EvaluationSummary,
)
from step_code.step_args import step_parser
from step_code.step_io import read_config, run_step, write_model

logger = logging.getLogger("evalops.champion")


def stale_reason(evaluated_as: EvaluatedAs | None, config: Config, dataset_sha256: str) -> str | None:
    """Why the stored outputs do not fit this run, or None when they do."""
    if evaluated_as is None:
        return f"it was registered without {EVALUATED_AS_FILE}, so its prompt template and algorithms are unknown"
    if evaluated_as.dataset_sha256 != dataset_sha256:
        return (
            f"its stored outputs were scored on catalog sha256 {evaluated_as.dataset_sha256[:12]}, this run's is "
            f"{dataset_sha256[:12]}"
        )
    recorded = str(evaluated_as.model.get("evaluation_config", {}).get("prompt_template", ""))
    if prompt_template(evaluated_as, config) != recorded:
        return "the prompt template of its model changed since it was scored"
    algorithms = [item.model_dump(mode="json") for item in config.algorithms]
    if canonical_digest(evaluated_as.algorithms) != canonical_digest(algorithms):
        return "the algorithms or their configs changed since it was scored"
    perturbs = any(lookup(item.algorithm).invokes_model for item in config.algorithms)
    if perturbs and evaluated_as.perturbations != PERTURBATION_SEEDING:
        return (
            f"its robustness perturbations were drawn {evaluated_as.perturbations}, this run's {PERTURBATION_SEEDING}, "
            "so they are other prompts"
        )
    return None


def _read_evaluated_as(folder: Path) -> EvaluatedAs | None:
    path = folder / EVALUATED_AS_FILE
    if not path.is_file():
        return None
    try:
        return EvaluatedAs.model_validate_json(path.read_text(encoding="utf-8"))
    except ValidationError as exc:
        what = exc.errors()[0]["msg"]
        raise ControlPlaneError(f"{path}: not the evaluated_as.json of a registered winner ({what})") from None


def _dataset_sha256(dataset_dir: str) -> str:
    uri = storage.join(dataset_dir, MANIFEST_FILE)
    try:
        digest = json.loads(storage.read_text(uri)).get("processed_sha256")
    except (FileNotFoundError, ValueError, AttributeError):
        digest = None
    if not isinstance(digest, str):
        raise ControlPlaneError(f"{uri}: processed_sha256: expected the processed catalog's sha256 (run preprocess)")
    return digest


def answer_group(
    config: Config,
    group: str,
    *,
    output_dir: Path,
    dataset_dir: str,
    execution_id: str,
    cache_uri: str,
    registry_dir: Path | None,
) -> ChampionAnswer:
    if registry_dir is not None:
        package = champion.latest_approved_in_directory(registry_dir, group)
    else:
        package = champion.latest_approved_in_sagemaker(sagemaker_client(), group)
    if package is None:
        detail = champion.no_approved_package(group).detail
        return ChampionAnswer(group=group, status="no-approved-package", detail=detail)
    about = {
        "group": group,
        "model_package_arn": package.arn,
        "model_package_version": package.version,
        "statistics_uri": package.statistics_uri,
    }
    if package.statistics_uri is None:
        detail = champion.unanswerable(package, "the package has no ModelQuality statistics to read").detail
        return ChampionAnswer(status="unanswerable", detail=detail, **about)
    target = output_dir / group
    try:
        with champion.stored_evidence(package.statistics_uri) as stored:
            summary = EvaluationSummary.model_validate_json((stored / SUMMARY_FILE).read_text(encoding="utf-8"))
            evaluated_as = _read_evaluated_as(stored)
            reason = stale_reason(evaluated_as, config, _dataset_sha256(dataset_dir))
            if reason is None:
                shutil.copytree(stored, target, dirs_exist_ok=True)
                return ChampionAnswer(
                    status="stored", detail="its stored outputs fit this run", evaluation_path=group, **about
                )
    except (OSError, ValueError, ControlPlaneError) as exc:
        detail = champion.unanswerable(package, f"its stored outputs cannot be read ({exc})").detail
        return ChampionAnswer(status="unanswerable", detail=detail, **about)
    if evaluated_as is None:
        detail = champion.unanswerable(package, f"{reason}; nothing records how to ask it again").detail
        return ChampionAnswer(status="unanswerable", detail=detail, **about)
    try:
        status, how = answer_again(
            config,
            evaluated_as,
            package.description,
            summary.artifact.endpoint_name,
            version=package.version,
            output_dir=target,
            dataset_dir=dataset_dir,
            execution_id=execution_id,
            cache_uri=cache_uri,
        )
    except (Unanswerable, ControlPlaneError, ClientError, BotoCoreError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        detail = champion.unanswerable(package, f"{reason}, and asking it again failed: {exc}").detail
        return ChampionAnswer(status="unanswerable", detail=detail, **about)
    logger.info("approved champion of %s: %s; %s", group, reason, how)
    return ChampionAnswer(status=status, detail=f"{reason}; {how}", evaluation_path=group, **about)


def winner_groups(config: Config) -> list[str]:
    """The groups a winner of this config is registered in: only their champions can gate it."""
    default = config.model_registry.model_package_group_name
    return list(dict.fromkeys(model.model_package_group_name or default for model in config.models))


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.champion_step", __doc__, execution_id=True)
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--cache-uri", required=True)
    parser.add_argument("--registry-dir", type=Path, help="The local registry (default: SageMaker's).")
    args = parser.parse_args(argv)

    def body() -> None:
        config = read_config(args.config)
        answers = [
            answer_group(
                config,
                group,
                output_dir=args.output_dir,
                dataset_dir=args.dataset_dir,
                execution_id=args.execution_id,
                cache_uri=args.cache_uri,
                registry_dir=args.registry_dir,
            )
            for group in winner_groups(config)
        ]
        for answer in answers:
            logger.info("%s: %s (%s)", answer.group, answer.status, answer.detail)
        write_model(args.output_dir, CHAMPION_FILE, ChampionAnswers(answers=answers))

    return run_step("champion", body)


if __name__ == "__main__":
    raise SystemExit(main())
