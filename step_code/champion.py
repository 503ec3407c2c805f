"""The approved champion as the baseline of a run (selection.baseline: approved).

The champion is the latest Approved model package of the winner's model package group. The register step
stores, beside the summary.json the package's ModelQuality statistics point at, the winner's records and
per-record scores. The champion step (champion_step.py) answers the champion on this run's catalog: from
those stored outputs when they fit the run, else through its endpoint or a redeployment of its package;
the select step compares it with the winner record by record. A champion that cannot be answered is
reported as unanswerable, with the reason; it is never skipped silently.

The regression gate: the winner passes when the lower end of the interval of (winner - champion) on the
primary metric, oriented so that positive is better, is at least -max_regression: with the configured
confidence, the winner is not worse than the champion by more than max_regression.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from step_code import storage
from step_code.aws_resources import ControlPlaneError, describe_or_none
from step_code.contract.config import SelectionPolicy
from step_code.contract.files import EVALUATED_AS_FILE, RECORDS_FILE, SUMMARY_FILE
from step_code.contract.results import (
    CandidateVerdict,
    ChampionComparison,
    Decision,
    EvaluationSummary,
    FlippedRecord,
)
from step_code.report import ModelEvidence, read_record_scores
from step_code.uncertainty import describe_comparison, paired_comparison

APPROVED = "Approved"
FLIPS_SHOWN = 5


@dataclass(frozen=True)
class ApprovedPackage:
    arn: str
    version: int
    statistics_uri: str | None
    # The DescribeModelPackage answer: a champion answered again is redeployed from its InferenceSpecification.
    description: Mapping[str, Any] = field(default_factory=dict, compare=False)


def _statistics_uri(package: Mapping[str, Any]) -> str | None:
    uri = package.get("ModelMetrics", {}).get("ModelQuality", {}).get("Statistics", {}).get("S3Uri")
    return uri if isinstance(uri, str) else None


def latest_approved_in_directory(registry_dir: Path, group: str) -> ApprovedPackage | None:
    """The local registry (`register --registry-dir`): `<dir>/<group>/<version>.json`."""
    best: ApprovedPackage | None = None
    for path in (registry_dir / group).glob("*.json"):
        if not path.stem.isdigit():
            continue
        try:
            package = json.loads(path.read_text(encoding="utf-8"))["response"]
        except (OSError, ValueError, KeyError) as exc:
            raise ControlPlaneError(f"{path}: not a model package of the local registry ({exc})") from None
        if package.get("ModelApprovalStatus") != APPROVED:
            continue
        version = int(path.stem)
        if best is None or version > best.version:
            best = ApprovedPackage(str(package["ModelPackageArn"]), version, _statistics_uri(package), package)
    return best


def latest_approved_in_sagemaker(client: Any, group: str) -> ApprovedPackage | None:
    if describe_or_none(client.describe_model_package_group, ModelPackageGroupName=group) is None:
        return None
    listed = client.list_model_packages(
        ModelPackageGroupName=group,
        ModelApprovalStatus=APPROVED,
        SortBy="CreationTime",
        SortOrder="Descending",
        MaxResults=1,
    )["ModelPackageSummaryList"]
    if not listed:
        return None
    package = client.describe_model_package(ModelPackageName=listed[0]["ModelPackageArn"])
    return ApprovedPackage(
        package["ModelPackageArn"], int(package.get("ModelPackageVersion", 0)), _statistics_uri(package), package
    )


@contextmanager
def stored_evidence(statistics_uri: str) -> Iterator[Path]:
    """The champion's stored evaluation output (summary.json, records and per-record scores) as a folder."""
    folder = storage.join(statistics_uri.rsplit("/", 1)[0]) if storage.is_s3(statistics_uri) else None
    if folder is None:
        yield Path(statistics_uri).parent
        return
    staging = Path(tempfile.mkdtemp(prefix="evalops-champion-"))
    try:
        summary_bytes = storage.read_bytes(statistics_uri)
        (staging / SUMMARY_FILE).write_bytes(summary_bytes)
        summary = EvaluationSummary.model_validate_json(summary_bytes)
        scores = [a.record_scores_path for a in summary.algorithms if a.record_scores_path]
        relatives = [RECORDS_FILE, EVALUATED_AS_FILE, *scores]
        for relative in relatives:
            target = staging / PurePosixPath(relative)
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                target.write_bytes(storage.read_bytes(storage.join(folder, relative)))
            except FileNotFoundError:
                continue
        yield staging
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def champion_name(summary: EvaluationSummary, version: int) -> str:
    return f"champion-v{version}-{summary.model}"


def read_records(folder: Path, wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The records.jsonl rows of `wanted` record ids (prompt, reference, output)."""
    rows: dict[str, dict[str, Any]] = {}
    path = folder / RECORDS_FILE
    if not wanted or not path.is_file():
        return rows
    with path.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            if row.get("record_id") in wanted:
                rows[str(row["record_id"])] = row
    return rows


def _flips(
    challenger: Mapping[str, float | None],
    champion: Mapping[str, float | None],
    higher_is_better: bool,
) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
    """(worse, better): (oriented change, record_id), the largest change first."""
    worse: list[tuple[float, str]] = []
    better: list[tuple[float, str]] = []
    for key, new in challenger.items():
        old = champion.get(key)
        if new is None or old is None or new == old:
            continue
        change = (new - old) if higher_is_better else (old - new)
        (better if change > 0 else worse).append((abs(change), key))
    return sorted(worse, key=lambda x: (-x[0], x[1])), sorted(better, key=lambda x: (-x[0], x[1]))


def _flipped(
    keys: list[tuple[float, str]],
    challenger_rows: Mapping[str, Mapping[str, Any]],
    champion_rows: Mapping[str, Mapping[str, Any]],
    challenger: Mapping[str, float | None],
    champion: Mapping[str, float | None],
) -> list[FlippedRecord]:
    out = []
    for _, key in keys[:FLIPS_SHOWN]:
        mine, theirs = challenger_rows.get(key, {}), champion_rows.get(key, {})
        out.append(
            FlippedRecord(
                record_id=key,
                prompt=mine.get("model_input") or theirs.get("model_input"),
                reference=mine.get("target_output") or theirs.get("target_output"),
                champion_output=theirs.get("model_output"),
                challenger_output=mine.get("model_output"),
                champion_score=float(champion[key]),  # type: ignore[arg-type]
                challenger_score=float(challenger[key]),  # type: ignore[arg-type]
            )
        )
    return out


def unanswerable(package: ApprovedPackage, detail: str) -> ChampionComparison:
    return ChampionComparison(
        status="unanswerable",
        detail=f"approved champion {package.arn} (version {package.version}) cannot be answered: {detail}",
        model_package_arn=package.arn,
        model_package_version=package.version,
    )


def compare_with_champion(
    package: ApprovedPackage,
    champion: ModelEvidence,
    champion_folder: Path,
    winner: ModelEvidence,
    winner_folder: Path,
    *,
    policy: SelectionPolicy,
    primary_metric: str,
    higher_is_better: bool,
) -> ChampionComparison:
    """The winner against the champion on the primary metric, on the records both scored."""
    name = champion.summary.model
    if champion.summary.dataset_sha256 != winner.summary.dataset_sha256:
        return unanswerable(
            package,
            f"its stored outputs were scored on catalog sha256 {champion.summary.dataset_sha256[:12]}, this run's is "
            f"{winner.summary.dataset_sha256[:12]} (the champion step answers it again on this run's catalog)",
        )
    mine, theirs = winner.record_scores.get(primary_metric), champion.record_scores.get(primary_metric)
    if mine is None or theirs is None:
        missing = winner.summary.model if mine is None else name
        return unanswerable(package, f"{missing} has no per-record {primary_metric} scores")
    comparison = paired_comparison(
        primary_metric,
        winner.summary.model,
        mine,
        name,
        theirs,
        higher_is_better=higher_is_better,
        confidence=policy.confidence,
    )
    worse, better = _flips(mine, theirs, higher_is_better)
    wanted = {key for _, key in worse[:FLIPS_SHOWN] + better[:FLIPS_SHOWN]}
    winner_rows, champion_rows = read_records(winner_folder, wanted), read_records(champion_folder, wanted)
    passed, words = _gate(comparison.low, comparison.high, policy, higher_is_better, comparison.n)
    return ChampionComparison(
        status="compared",
        detail=f"{winner.summary.model} against approved champion {name} ({package.arn}): {words}; "
        f"{describe_comparison(comparison)}",
        model_package_arn=package.arn,
        model_package_version=package.version,
        champion=name,
        challenger=winner.summary.model,
        comparison=comparison,
        max_regression=policy.max_regression,
        passed=passed,
        worse=len(worse),
        better=len(better),
        worst_worse=_flipped(worse, winner_rows, champion_rows, mine, theirs),
        worst_better=_flipped(better, winner_rows, champion_rows, mine, theirs),
    )


def _gate(
    low: float | None, high: float | None, policy: SelectionPolicy, higher_is_better: bool, n: int
) -> tuple[bool, str]:
    if low is None or high is None:
        return False, "no shared scored records, so the regression gate cannot be passed"
    worst_case = low if higher_is_better else -high
    level = f"{policy.confidence:.0%}"
    if worst_case >= -policy.max_regression:
        return True, (
            f"passes the regression gate: at {level} confidence it is at most {max(0.0, -worst_case):.4f} worse "
            f"(limit {policy.max_regression:g}) over {n} records"
        )
    return False, (
        f"fails the regression gate: at {level} confidence it may be up to {-worst_case:.4f} worse than the "
        f"champion, more than max_regression {policy.max_regression:g}, over {n} records"
    )


def champion_verdict(champion: ModelEvidence, comparison: ChampionComparison) -> CandidateVerdict:
    summary = champion.summary
    return CandidateVerdict(
        model=comparison.champion or summary.model,
        weighted_score=None,
        metrics=dict(summary.metrics),
        p95_latency_ms=summary.latency.p95_ms,
        cost_per_1k_prompts_usd=summary.cost.cost_per_1k_prompts_usd,
        failed_fraction=summary.records_failed / summary.records_total if summary.records_total else 1.0,
        eligible=False,
        reasons=[f"approved champion (model package version {comparison.model_package_version}): the baseline"],
        intervals=dict(summary.intervals),
        champion=True,
    )


def apply_gate(decision: Decision, comparison: ChampionComparison, verdict: CandidateVerdict | None) -> Decision:
    """The decision with the champion as a candidate and, when the winner fails the gate, not met."""
    candidates = [*decision.candidates, *([verdict] if verdict is not None else [])]
    reason = f"{decision.reason}; {comparison.detail}"
    if comparison.status == "compared" and not comparison.passed:
        reason = f"{decision.winner} is not registered: {comparison.detail}"
        return decision.model_copy(
            update={"meets_policy": False, "reason": reason, "candidates": candidates, "champion": comparison}
        )
    return decision.model_copy(update={"reason": reason, "candidates": candidates, "champion": comparison})


def load_champion(folder: Path, package: ApprovedPackage) -> ModelEvidence:
    """The champion's stored summary and per-record scores, under its candidate name."""
    path = folder / SUMMARY_FILE
    try:
        summary = EvaluationSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ControlPlaneError(f"{path}: not the summary.json of an evaluation ({exc.__class__.__name__})") from None
    scores = read_record_scores(folder, summary)
    renamed = summary.model_copy(update={"model": champion_name(summary, package.version)})
    return ModelEvidence(summary=renamed, worst_records=[], record_scores=scores)


def no_approved_package(group: str) -> ChampionComparison:
    return ChampionComparison(
        status="no-approved-package",
        detail=f"no Approved package in model package group {group} yet, so there is no champion to gate against",
    )
