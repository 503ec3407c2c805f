"""The evaluate step: send each prompt the algorithms need once, then score every algorithm in-process.

    python -m step_code.evaluate_step --config C --output-dir O --model M --execution-id E --dataset-dir D
        [--deployment-dir P] [--catalog-dir K] --cache-uri U [--response-cache use|bypass]

Output layout (`--output-dir`, a local folder; an s3:// URI is written through a local staging folder):
  summary.json                               EvaluationSummary (step_code/contract/results.py)
  records.jsonl                              every record: prompt, input, reference, category, output or
                                             error, latency, tokens, cached, attempts
  algorithms/<eval_name>.json                fmeval's EvalOutput
  algorithms/<eval_name>.jsonl               fmeval's per-record scores (EvalOutputRecord rows, dataset order)
  algorithms/<eval_name>.html                report page
  algorithms/<eval_name>_worst_records.json  the 10 worst-scored records

Algorithms are checked (config, offline assets) before the model is called, so a missing asset never
costs endpoint time. The invocation planner (`invocation_plan`) lists every prompt they need: each
record's own prompt and, for the robustness and stereotyping algorithms, the perturbed prompts and
sentence pairs; `invoke_stream` sends each distinct one once (cache, bounded concurrency, retries), the
cache is compacted, and `scoring.score_all` scores all algorithms in one pass over the records.

Memory does not grow with the number of records beyond a few bytes each: the processed file is read
twice, record by record (once to invoke, once to score); at most a window of prompts is in flight; every
distinct prompt's outcome goes to a local SQLite file (`answer_store`); records.jsonl is written as
records settle; and what the summary needs (counts, token sums, one float per latency) is accumulated.

Answers are cached under the identity of what answers (`answering_identity`); `--response-cache bypass`
neither reads nor writes the cache, so every prompt goes to the model.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from step_code import fmeval_runtime, jsonl, scoring, storage
from step_code.answer_store import AnswerStore
from step_code.answering_identity import IdentifiedRunner, answering_identity
from step_code.aws_resources import ControlPlaneError, sagemaker_client, serving_models
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import (
    DEPLOYMENT_FILE,
    MANIFEST_FILE,
    PROCESSED_FILE,
    RECORDS_FILE,
    RESPONSE_CACHE_MODES,
    RESPONSE_CACHE_USE,
    SUMMARY_FILE,
)
from step_code.contract.results import Deployment, EvaluationSummary, ModelArtifact
from step_code.contract.sharding import TOTALS_FILE
from step_code.invocation import InvocationRecord, InvocationTotals, PromptItem, invoke_stream, render_prompt
from step_code.invocation_plan import SENT_LESS_INPUT, SENT_MORE_INPUT, InvocationPlanner, PlannedAlgorithmPrompts
from step_code.progress import LoggingProgress, ProgressListener
from step_code.record_scoring import BATCH_SIZE, ScoringRecord
from step_code.response_cache import ResponseCache
from step_code.run_cost import estimate_cost
from step_code.runners.factory import build_runner
from step_code.shard_totals import write_totals
from step_code.step_args import step_parser
from step_code.step_io import config_model, read_config, read_model, run_step

logger = logging.getLogger(__name__)

UNCATEGORIZED = "uncategorized"
CONTENT_TYPES = {".json": "application/json", ".jsonl": "application/jsonlines", ".html": "text/html; charset=utf-8"}


@dataclass(frozen=True)
class EvaluateArgs:
    config: Path
    output_dir: str
    model: str
    execution_id: str
    dataset_dir: str
    deployment_dir: str | None
    catalog_dir: str | None
    cache_uri: str
    response_cache: str = RESPONSE_CACHE_USE


def parse_args(argv: Sequence[str] | None) -> EvaluateArgs:
    parser = step_parser("step_code.evaluate_step", __doc__, model=True, execution_id=True, output_type=str)
    parser.add_argument("--dataset-dir", required=True)
    parser.add_argument("--deployment-dir")
    parser.add_argument("--catalog-dir")
    parser.add_argument("--cache-uri", required=True)
    parser.add_argument("--response-cache", choices=RESPONSE_CACHE_MODES, default=RESPONSE_CACHE_USE)
    ns = parser.parse_args(argv)
    return EvaluateArgs(
        config=ns.config,
        output_dir=ns.output_dir,
        model=ns.model,
        execution_id=ns.execution_id,
        dataset_dir=ns.dataset_dir,
        deployment_dir=ns.deployment_dir,
        catalog_dir=ns.catalog_dir,
        cache_uri=ns.cache_uri,
        response_cache=ns.response_cache,
    )


def _row(uri: str, number: int, line: str) -> dict[str, Any]:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ControlPlaneError(f"{uri}: line {number}: not JSON ({exc.msg})") from None
    if not isinstance(row, dict) or not {"record_id", "model_input", "target_output"} <= row.keys():
        raise ControlPlaneError(f"{uri}: line {number}: expected record_id, model_input and target_output")
    return row


@contextmanager
def _local_file(uri: str) -> Iterator[Path]:
    """The processed dataset as a local file (a SageMaker job gets it as one; an s3:// one is downloaded)."""
    try:
        if not storage.is_s3(uri):
            path = Path(uri)
            if not path.is_file():
                raise FileNotFoundError(uri)
            yield path
            return
        with tempfile.TemporaryDirectory(prefix="evalops-dataset-") as folder:
            path = Path(folder, PROCESSED_FILE)
            path.write_bytes(storage.read_bytes(uri))
            yield path
    except FileNotFoundError:
        raise ControlPlaneError(f"{uri}: file not found (run the preprocess step first)") from None


class ProcessedRows:
    """The processed dataset's records, read from the file each time they are iterated (never all held)."""

    def __init__(self, uri: str, path: Path) -> None:
        self.uri = uri
        self._path = path

    def __iter__(self) -> Iterator[dict[str, Any]]:
        for number, line in jsonl.json_file_lines(self._path):
            yield _row(self.uri, number, line)

    def count(self) -> int:
        """Checks every record (a bad one stops the step before any model call) and counts them."""
        return sum(1 for _ in self)


def _dataset_sha256(dataset_dir: str) -> str:
    uri = storage.join(dataset_dir, MANIFEST_FILE)
    try:
        manifest = json.loads(storage.read_text(uri))
    except FileNotFoundError:
        raise ControlPlaneError(f"{uri}: file not found (run the preprocess step first)") from None
    except json.JSONDecodeError as exc:
        raise ControlPlaneError(f"{uri}: not JSON ({exc.msg})") from None
    digest = manifest.get("processed_sha256") if isinstance(manifest, dict) else None
    if not isinstance(digest, str):
        raise ControlPlaneError(f"{uri}: processed_sha256: expected the processed file's sha256")
    return digest


def _deployment(args: EvaluateArgs, model: ModelConfig) -> Deployment | None:
    if args.deployment_dir is None:
        if model.deploys_endpoint:
            raise ControlPlaneError(
                f"--deployment-dir is required to evaluate {model.model_provider} model {model.name}"
            )
        return None
    return read_model(Path(args.deployment_dir) / DEPLOYMENT_FILE, Deployment)


def responses_path(model: ModelConfig, catalog_dir: str | None) -> str | None:
    """Where a recorded model's responses are: an s3:// location as it is, else a file of the catalog."""
    location = model.responses_location
    if model.provider.calls_model or location is None:
        return None
    if storage.is_s3(location):
        return location
    if catalog_dir is None:
        raise ControlPlaneError(
            f"--catalog-dir is required: recorded responses {location!r} live in the prompt catalog"
        )
    return storage.join(catalog_dir, location)


def default_artifact(model: ModelConfig) -> ModelArtifact:
    return ModelArtifact(
        provider=model.model_provider,
        model_id=model.model_id,
        model_version=model.model_version if model.model_id else None,
        endpoint_name=model.endpoint_name if model.provider.existing_endpoint else None,
    )


def _category(row: Mapping[str, Any]) -> str:
    value = row.get("category")
    return UNCATEGORIZED if value is None or value == "" else str(value)


class _RecordsWriter:
    """Handles the invocation records in input order: writes each record's own (original) one to
    records.jsonl at once, counts the failed ones and collects what scoring needs before it starts."""

    def __init__(self, out: TextIO, *, collect_labels: bool) -> None:
        self._out = out
        # (row index, category) of each original prompt in flight, None for an extra prompt.
        self.pending: deque[tuple[int, str | None] | None] = deque()
        self._collect_labels = collect_labels
        self.target_labels: dict[str, None] = {}
        self.originals = 0
        self.failed = 0
        self.first_failure: str | None = None

    def __call__(self, record: InvocationRecord) -> None:
        original = self.pending.popleft()
        if original is None:
            return
        index, category = original
        self.originals += 1
        if not record.succeeded:
            self.failed += 1
            if self.first_failure is None:
                self.first_failure = f"e.g. record {record.record_id}: {record.error}"
        elif self._collect_labels:
            self.target_labels.setdefault(record.target_output)
        row = record.to_json()
        row["index"] = index
        if category is not None:
            row["category"] = category
        self._out.write(json.dumps(row, ensure_ascii=False) + "\n")


def _prompt_items(
    rows: Iterable[Mapping[str, Any]], planner: InvocationPlanner, writer: _RecordsWriter, *, categorized: bool
) -> Iterator[PromptItem]:
    for index, row in enumerate(rows):
        original, *extras = planner.items(row)
        writer.pending.append((index, _category(row) if categorized else None))
        yield original
        for item in extras:
            writer.pending.append(None)
            yield item


def _scoring_records(
    rows: Iterable[Mapping[str, Any]], answers: AnswerStore, prompt_template: str, *, categorized: bool
) -> Iterator[list[ScoringRecord]]:
    batch: list[ScoringRecord] = []
    for index, row in enumerate(rows):
        model_input = str(row["model_input"])
        prompt = render_prompt(prompt_template, model_input)
        answer = answers.get(prompt)
        batch.append(
            ScoringRecord(
                record_id=str(row["record_id"]),
                index=index,
                prompt=prompt,
                model_input=model_input,
                target_output=str(row["target_output"]),
                category=_category(row) if categorized else None,
                model_output=answer.output if answer is not None and answer.error is None else None,
                extra={key: row[key] for key in (SENT_MORE_INPUT, SENT_LESS_INPUT) if key in row},
            )
        )
        if len(batch) == BATCH_SIZE:
            yield batch
            batch = []
    if batch:
        yield batch


def _compact(cache: ResponseCache | None) -> None:
    if cache is None:
        return
    try:
        cache.compact()
    except Exception as exc:
        # The answers are stored as loose entries already; only the next run's read gets slower.
        logger.warning("could not compact the response cache %s: %s", cache.uri, exc)


def _throughput(totals: InvocationTotals) -> float | None:
    """Prompts the model answered per second of invocation; None when none was sent (cache, recordings)."""
    return totals.sent / totals.wall_seconds if totals.sent and totals.wall_seconds > 0 else None


@contextmanager
def staged_output(output_dir: str) -> Iterator[Path]:
    """fmeval writes local files; an s3:// output dir is staged locally and uploaded at the end."""
    if not storage.is_s3(output_dir):
        folder = Path(output_dir)
        folder.mkdir(parents=True, exist_ok=True)
        yield folder
        return
    staging = Path(tempfile.mkdtemp(prefix="evalops-evaluate-"))
    try:
        yield staging
        for path in sorted(p for p in staging.rglob("*") if p.is_file()):
            content_type = CONTENT_TYPES.get(path.suffix, "application/octet-stream")
            target = storage.join(output_dir, path.relative_to(staging).as_posix())
            storage.write_bytes(target, path.read_bytes(), content_type=content_type)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def evaluate(args: EvaluateArgs, *, progress: ProgressListener | None = None) -> EvaluationSummary:
    config: Config = read_config(args.config)
    model = config_model(config, args.model, args.config)
    try:
        planned = scoring.plan_scoring(config.algorithms, skip_missing_judges=scoring.skip_missing_judges_requested())
    except scoring.ScoringError as exc:
        raise ControlPlaneError(f"{args.config}: {exc}") from None

    dataset_uri = storage.join(args.dataset_dir, PROCESSED_FILE)
    with _local_file(dataset_uri) as dataset_path, AnswerStore() as answers:
        return _evaluate(args, config, model, planned, ProcessedRows(dataset_uri, dataset_path), answers, progress)


def _evaluate(
    args: EvaluateArgs,
    config: Config,
    model: ModelConfig,
    planned: Sequence[scoring.PlannedAlgorithm],
    rows: ProcessedRows,
    answers: AnswerStore,
    progress: ProgressListener | None,
) -> EvaluationSummary:
    records_total = rows.count()
    if not records_total:
        raise ControlPlaneError(f"{rows.uri}: no records to evaluate")
    dataset_sha256 = _dataset_sha256(args.dataset_dir)
    deployment = _deployment(args, model)
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
    settings = model.evaluation_config
    use_cache = args.response_cache == RESPONSE_CACHE_USE
    serving = (
        serving_models(sagemaker_client(), model.endpoint_name)
        if use_cache and model.provider.existing_endpoint and model.endpoint_name
        else None
    )
    identity = answering_identity(model, deployment, serving)
    try:
        runner = IdentifiedRunner(
            build_runner(
                model,
                responses_path=responses_path(model, args.catalog_dir),
                region=region,
                endpoint_name=deployment.endpoint_name if deployment else None,
            ),
            identity,
        )
        planner = InvocationPlanner(
            settings.prompt_template,
            [
                PlannedAlgorithmPrompts(
                    label=f"algorithms[{item.index}]", algorithm=item.name, config_object=item.config_object
                )
                for item in planned
            ],
        )
        # The template is checked on the first record, before any call (it renders every input alike).
        prompts_per_record = len(planner.items(next(iter(rows))))
    except ValueError as exc:
        raise ControlPlaneError(str(exc)) from None

    categorized = config.dataset.category_key is not None
    cache = ResponseCache(args.cache_uri) if use_cache else None
    with staged_output(args.output_dir) as folder:
        with (folder / RECORDS_FILE).open("w", encoding="utf-8") as out:
            writer = _RecordsWriter(out, collect_labels=scoring.needs_target_labels(planned))
            totals = invoke_stream(
                _prompt_items(rows, planner, writer, categorized=categorized),
                runner,
                on_record=writer,
                total=records_total * prompts_per_record,
                cache=cache,
                outcomes=answers,
                concurrency=settings.max_concurrency,
                max_retries=settings.max_retries,
                timeout_seconds=settings.timeout_seconds,
                progress=progress or LoggingProgress(),
            )
        failed = writer.failed
        logger.info(
            "%s: %d records, %d planned prompts (%d distinct), %d failed, %d model calls, %d cache hits, %.2f s",
            model.name,
            writer.originals,
            totals.records,
            answers.distinct_prompts,
            failed,
            totals.model_calls,
            totals.cache_hits,
            totals.wall_seconds,
        )
        if failed:
            logger.warning("%s: %d record(s) failed and are not scored; %s", model.name, failed, writer.first_failure)
        # The cache is compacted while the records are scored (file I/O and gzip, which release the GIL);
        # both are done when the block ends.
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalops-cache-compaction") as background:
            background.submit(_compact, cache)
            inputs = scoring.ScoringInputs(
                batches=lambda: _scoring_records(rows, answers, settings.prompt_template, categorized=categorized),
                answers=answers,
                dataset_name=config.dataset.dataset_name,
                prompt_template=settings.prompt_template,
                target_labels=list(writer.target_labels),
                records_failed=failed,
                judge_batch_size=model.judge_batch_size(config.pipeline),
            )
            algorithm_results = scoring.score_all(planned, inputs, folder, model=model.name)
        summary = EvaluationSummary(
            model=model.name,
            provider=model.model_provider,
            model_identity=identity,
            dataset_sha256=dataset_sha256,
            records_total=writer.originals,
            records_succeeded=writer.originals - failed,
            records_failed=failed,
            model_calls=totals.model_calls,
            cache_hits=totals.cache_hits,
            latency=totals.latency_stats(),
            tokens=totals.token_stats(),
            throughput_per_second=_throughput(totals),
            metrics=scoring.flat_metrics(algorithm_results),
            intervals=scoring.flat_intervals(algorithm_results),
            algorithms=algorithm_results,
            cost=estimate_cost(
                model,
                config,
                totals,
                deployment=deployment,
                sagemaker=sagemaker_client() if model.model_provider == "endpoint" else None,
            ),
            artifact=deployment.artifact if deployment else default_artifact(model),
            execution_id=args.execution_id,
        )
        (folder / SUMMARY_FILE).write_text(summary.model_dump_json(indent=2) + "\n", encoding="utf-8")
        write_totals(folder / TOTALS_FILE, totals)
    return summary


def main(argv: list[str] | None = None, *, progress: ProgressListener | None = None) -> int:
    """`progress`: the local runner's display; a SageMaker job logs progress lines instead."""
    args = parse_args(argv)
    return run_step("evaluate", lambda: _run(args, progress))


def _run(args: EvaluateArgs, progress: ProgressListener | None) -> None:
    try:
        evaluate(args, progress=progress)
    except fmeval_runtime.JudgeHookError as exc:
        raise ControlPlaneError(str(exc)) from None


if __name__ == "__main__":
    raise SystemExit(main())
