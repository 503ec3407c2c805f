"""`evalops run CONFIG --local` and `evalops report RUN`, registered on the command line by `main.py` (with
`evalops start`, from `deployed.py`).

Exit codes of `run`: 0 the winner is registered; 1 a step failed or the disk filled up (finished steps are
kept: the same command resumes once the cause is fixed); 2 a user error (bad config, unusable or busy run
folder, AWS needed but no credentials), which a re-run alone does not fix, so its line suggests none; 3 the
run finished but no candidate meets the selection policy (the pipeline's FailStep).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pipeline_definitions.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_POLICY_NOT_MET,
    EXIT_STEP_FAILED,
    EXIT_USER_ERROR,
    add_catalog_dir,
    print_report_paths,
)
from pipeline_definitions.cli.deployed import add_deployed_commands, cmd_report_deployed
from pipeline_definitions.loading.loader import load_config
from pipeline_definitions.local.engine import (
    DiskFull,
    PolicyNotMet,
    RunError,
    RunOptions,
    RunOutcome,
    StepsFailed,
    default_output,
    rebuild_report,
    run_plan,
)
from pipeline_definitions.local.run_lock import RunLocked
from pipeline_definitions.planning.plan import PlannedStep
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from step_code.contract.files import APPROVAL_STATUSES, DEFAULT_APPROVAL_STATUS
from step_code.contract.locations import is_s3
from step_code.contract.results import Decision

# Our loggers whose warnings reach the terminal during a run (everything is in run.log).
TERMINAL_LOGGERS = ("step_code", "evalops", "pipeline_definitions")
PLAIN_PROGRESS_EVERY = 0.25
TERMINAL_LINES_PER_KIND = 3
STEPS_FAILED_HINT = (
    "evalops run: finished steps are kept: once the cause above is fixed (or has passed, such as throttling), "
    "the same command resumes from the failed step"
)


class PlainEvents:
    """Log lines for a terminal that is not interactive (CI, a pipe): one per step event and per quarter of
    each model's prompts."""

    def __init__(self, out: Any = None) -> None:
        self._out = out or sys.stdout
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}

    def _say(self, text: str) -> None:
        with self._lock:
            print(f"{time.strftime('%H:%M:%S')} {text}", file=self._out, flush=True)

    def step_started(self, step: PlannedStep) -> None:
        self._say(f"{step.name}: started")

    def step_skipped(self, step: PlannedStep) -> None:
        self._say(f"{step.name}: already done, skipped")

    def step_finished(self, step: PlannedStep, seconds: float) -> None:
        self._say(f"{step.name}: done in {seconds:.1f} s")

    def step_failed(self, step: PlannedStep, reason: str) -> None:
        self._say(f"{step.name}: FAILED: {reason}")

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        done = invoked + cache_hits
        share = 1.0 if total == 0 else done / total
        with self._lock:
            due = self._next.get(model, 0.0)
            if share < due:
                return
            self._next[model] = 2.0 if done >= total else (int(share / PLAIN_PROGRESS_EVERY) + 1) * PLAIN_PROGRESS_EVERY
        self._say(
            f"{model}: {done}/{total} prompts ({invoked} answered now, {cache_hits} from the cache, {failed} failed)"
        )


class RichEvents:
    """Progress bars: one per model's prompts (model calls, cache hits, failures), then its scoring."""

    def __init__(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        # A console of our own: sagemaker_core (imported by the evaluate step) reconfigures rich's global one
        # in place, which would reset a live display drawn on it.
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(),
        )
        self._tasks: dict[str, Any] = {}
        self._lock = threading.Lock()

    @property
    def console(self) -> Any:
        return self.progress.console

    def _task(self, key: str, description: str) -> Any:
        with self._lock:
            task = self._tasks.get(key)
            if task is None:
                task = self.progress.add_task(description, total=None, detail="")
                self._tasks[key] = task
            return task

    @staticmethod
    def _key(step: PlannedStep) -> str:
        """Progress reported per prompt is keyed by model (what ModelEvents name); other steps by step name."""
        return step.model if STEP_KINDS[step.kind].reports_progress and step.model else step.name

    def step_started(self, step: PlannedStep) -> None:
        label = f"{step.model}: invoking" if STEP_KINDS[step.kind].reports_progress else f"{step.name}"
        self._task(self._key(step), label)

    def step_skipped(self, step: PlannedStep) -> None:
        self.console.print(f"[dim]{step.name}: already done, skipped[/dim]")

    def step_finished(self, step: PlannedStep, seconds: float) -> None:
        task = self._task(self._key(step), step.name)
        self.progress.update(task, description=f"{step.name}", total=1, completed=1)
        self.progress.stop_task(task)
        self.console.print(f"[green]✓[/green] {step.name} [dim]{seconds:.1f} s[/dim]")

    def step_failed(self, step: PlannedStep, reason: str) -> None:
        self.console.print(f"[red]✗ {step.name}[/red]: {reason}", markup=True, highlight=False)

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        done = invoked + cache_hits
        task = self._task(model, f"{model}: invoking")
        stage = "scoring (fmeval)" if done >= total else "invoking"
        self.progress.update(
            task,
            description=f"{model}: {stage}",
            total=total,
            completed=done,
            detail=f"{invoked} calls, {cache_hits} cached, {failed} failed",
        )


class _FewOfAKind(logging.Filter):
    """Lets each warning through once, and at most TERMINAL_LINES_PER_KIND of one kind (one format string, such
    as a cache write failing with each entry's path): a cause that hits every prompt (a full disk under the
    response cache, an endpoint that keeps failing) would otherwise print thousands of lines. run.log keeps
    them all."""

    def __init__(self) -> None:
        super().__init__()
        self._seen: set[tuple[str, str]] = set()
        self._kinds: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        message = (record.name, record.getMessage())
        kind = (record.name, str(record.msg))
        with self._lock:
            if message in self._seen or self._kinds[kind] >= TERMINAL_LINES_PER_KIND:
                return False
            self._seen.add(message)
            self._kinds[kind] += 1
            return True


class _MessageOnly(logging.Formatter):
    """The message without a traceback: on the terminal a step's error is one line; run.log has the traceback.
    (Formatter.format would cache a shortened exc_text on the record, which run.log's handler shares.)"""

    def format(self, record: logging.LogRecord) -> str:
        return record.getMessage()


@contextmanager
def _terminal_warnings(handler: logging.Handler) -> Iterator[None]:
    handler.setLevel(logging.WARNING)
    handler.addFilter(_FewOfAKind())
    handler.setFormatter(_MessageOnly())
    loggers = [logging.getLogger(name) for name in TERMINAL_LOGGERS]
    for item in loggers:
        item.addHandler(handler)
    try:
        yield
    finally:
        for item in loggers:
            item.removeHandler(handler)


def _print_decision(decision: Decision) -> None:
    print()
    for verdict in sorted(decision.candidates, key=lambda c: (c.rank is None, c.rank or 0, c.model)):
        score = "n/a" if verdict.weighted_score is None else f"{verdict.weighted_score:.4f}"
        place = f"#{verdict.rank}" if verdict.rank else "excluded"
        print(f"  {place:<9} {verdict.model:<40} {score:>8}  {'; '.join(verdict.reasons)}")
    print()
    print(f"Decision: {decision.reason}")


def _execute(args: argparse.Namespace, events: PlainEvents | RichEvents) -> RunOutcome:
    # The sagemaker SDK (imported by fmeval) prints where it looked for SDK defaults unless its logger
    # already has a level; a local run uses none of them.
    logging.getLogger("sagemaker.config").setLevel(logging.WARNING)
    loaded = load_config(args.config, catalog_dir=args.catalog_dir)
    options = RunOptions(
        output=args.output or default_output(loaded.config.pipeline.name),
        registry=args.registry,
        approval_status=args.approval_status,
        fresh=args.fresh,
        no_cache=args.no_cache,
    )
    print(f"Running {loaded.config.pipeline.name} locally in {options.output}")
    return run_plan(loaded, options, events)


def cmd_run(args: argparse.Namespace) -> int:
    if not args.local:
        print(
            "evalops run: only --local is supported here; on SageMaker, deploy the stacks (cdk deploy), then "
            "evalops start --env ENV",
            file=sys.stderr,
        )
        return EXIT_USER_ERROR
    try:
        if sys.stdout.isatty():
            from rich.logging import RichHandler

            rich_events = RichEvents()
            with rich_events.progress, _terminal_warnings(RichHandler(console=rich_events.console)):
                outcome = _execute(args, rich_events)
        else:
            with _terminal_warnings(logging.StreamHandler(sys.stderr)):
                outcome = _execute(args, PlainEvents())
    except StepsFailed as exc:
        for step, reason in exc.failures:
            print(f"evalops run: step {step} failed: {reason}", file=sys.stderr)
        # A failed step may need a fix first (a 4xx, a denied permission); only some faults pass on their own.
        print(STEPS_FAILED_HINT, file=sys.stderr)
        return EXIT_STEP_FAILED
    except DiskFull as exc:
        print(f"evalops run: {exc}", file=sys.stderr)
        return EXIT_STEP_FAILED
    except PolicyNotMet as exc:
        _print_decision(exc.decision)
        print(f"Comparison report: {exc.report}")
        print(f"evalops run: selection policy not met: {exc.decision.reason}", file=sys.stderr)
        return EXIT_POLICY_NOT_MET
    except (RunError, RunLocked) as exc:
        print(f"evalops run: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        # Worker threads may be inside a model call; answers already received are in the response cache.
        print("\nevalops run: interrupted; re-run the same command to resume", file=sys.stderr, flush=True)
        os._exit(EXIT_INTERRUPTED)
    _print_decision(outcome.decision)
    registration = outcome.registration
    print(
        f"Registered {registration.get('winner')} as {registration.get('model_package_arn')} "
        f"({registration.get('approval_status')})"
    )
    print(f"Run folder: {outcome.location} (execution {outcome.execution_id})")
    print(f"Comparison report: {outcome.report}")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    if (args.run is None) == (args.execution is None):
        print("evalops report: give a run (folder or s3:// prefix) or --execution ARN, not both", file=sys.stderr)
        return EXIT_USER_ERROR
    if args.execution is not None or is_s3(args.run):
        return cmd_report_deployed(args.run, args.execution, args.output, pdf=args.pdf)
    try:
        path, computed = rebuild_report(Path(args.run), args.output, pdf=args.pdf)
    except RunError as exc:
        print(f"evalops report: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    return print_report_paths(path, computed=computed, pdf=args.pdf)


def add_run_commands(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `run` and `report`; each sets `handler` (a function of the parsed args returning the exit code)."""
    run = subparsers.add_parser(
        "run",
        help="Run the evaluation on this machine (same steps as the SageMaker pipeline).",
        description="Run the evaluation on this machine, resuming a previous run in the same output folder.",
    )
    run.add_argument("config", metavar="CONFIG", help="evaluation config, e.g. configs/sample.yaml")
    run.add_argument("--local", action="store_true", help="run every step in this process (required)")
    add_catalog_dir(run)
    run.add_argument(
        "--output", default=None, help="run folder or s3:// prefix (default: runs/<pipeline name>)", metavar="DIR"
    )
    run.add_argument(
        "--registry",
        choices=("local", "sagemaker"),
        default="local",
        help="where the winner is registered: files in <run>/registry/ (default) or SageMaker",
    )
    run.add_argument("--approval-status", choices=APPROVAL_STATUSES, default=DEFAULT_APPROVAL_STATUS)
    run.add_argument(
        "--fresh",
        action="store_true",
        help="start over with a new execution id (cached model responses and the registry are kept)",
    )
    run.add_argument(
        "--no-cache",
        action="store_true",
        help="send every prompt to the model again; the response cache is neither read nor written",
    )
    run.set_defaults(handler=cmd_run)

    report = subparsers.add_parser(
        "report",
        help="Rebuild the comparison report of a local run or of a pipeline execution.",
        description="Rebuild the comparison report (HTML) of a run from its evaluation outputs.",
    )
    report.add_argument(
        "run",
        metavar="RUN",
        nargs="?",
        help="a local run folder (runs/evalops-sample), a local run's s3:// output, or a pipeline execution's "
        "folder s3://<artifacts bucket>/<pipeline>/runs/<execution id>",
    )
    report.add_argument("--execution", metavar="ARN", default=None, help="a SageMaker pipeline execution ARN")
    report.add_argument(
        "--output",
        type=Path,
        default=None,
        help="where to write the HTML (default: in a local run folder, else comparison-<execution id>.html here)",
    )
    report.add_argument("--pdf", action="store_true", help="also write the report as a PDF beside the HTML")
    report.set_defaults(handler=cmd_report)
    add_deployed_commands(subparsers)
