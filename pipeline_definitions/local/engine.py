"""Run an evaluation plan on this machine with the same step entry points SageMaker runs.

Each step's `step_code.<kind>.main(argv)` is called in-process with the arguments `plan.step_arguments`
builds, so a local run and a pipeline execution cannot drift apart. Layout of a run folder:

    run.json                      execution id (kept across resumed runs) and pipeline name
    config/config.json            the normalized config every step reads
    steps/<Step>/input/<name>     links to the producing step's output, the config or the prompt catalog
    steps/<Step>/output/<name>/   what the step wrote
    steps/<Step>/_SUCCESS         written after main returned 0; holds the step's fingerprint
    cache/                        model responses (survives --fresh: an unchanged prompt is never re-sent)
    registry/                     the local model registry (survives --fresh, like a real one)
    run.log                       every step's log lines
    run.lock                      held while a run uses the folder (see run_lock)

A step whose `_SUCCESS` fingerprint matches (same config, catalog, arguments and upstream results) is
skipped on a re-run; an interrupted evaluate step resumes through the response cache. Branches run in
parallel up to `pipeline.parallelism` steps; after Select, the decision plays the condition step: the
winner is registered, or the run ends with the policy's reason.
"""

from __future__ import annotations

import errno
import hashlib
import importlib
import json
import logging
import os
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import boto3
from botocore.exceptions import BotoCoreError

from pipeline_definitions.loading.loader import LoadedConfig
from pipeline_definitions.local.instances import INSTANCES_DIR, run_instances
from pipeline_definitions.local.run_lock import LOCK_FILE, folder_lock, s3_lock
from pipeline_definitions.planning.plan import (
    PARAM_PROMPT_CATALOG_URI,
    EvaluationPlan,
    PlannedStep,
    build_plan,
    step_arguments,
)
from pipeline_definitions.planning.step_kinds import STEP_KINDS
from step_code import storage
from step_code.aws_resources import ControlPlaneError
from step_code.contract.config import Config, ModelConfig
from step_code.contract.files import (
    CATALOG_INPUT,
    COMPARISON_REPORT_FILE,
    CONFIG_FILE,
    CONFIG_INPUT,
    DECISION,
    DECISION_FILE,
    DEFAULT_APPROVAL_STATUS,
    REGISTRATION,
    REGISTRATION_FILE,
    RESPONSE_CACHE_BYPASS,
    SUMMARIES,
)
from step_code.contract.locations import is_s3
from step_code.contract.results import Decision
from step_code.report import ModelEvidence, load_model_evidence
from step_code.select_step import comparison_html, comparison_pdf, select

RUN_FILE = "run.json"
LOG_FILE = "run.log"
SUCCESS_MARKER = "_SUCCESS"
STEPS_DIR = "steps"
CACHE_DIR = "cache"
REGISTRY_DIR = "registry"
EMPTY_CATALOG_DIR = "empty-catalog"

Registry = Literal["local", "sagemaker"]

logger = logging.getLogger(__name__)


class RunError(Exception):
    """The run cannot start or go on; the message is one line for the user."""


class DiskFull(RunError):
    """The disk under the run folder filled up. Everything finished before stays, so a re-run resumes."""

    def __init__(self, where: Path) -> None:
        super().__init__(
            f"the disk is full (no space left on device under {where}): free some space, then re-run the same "
            "command; it resumes where this run stopped"
        )


# ENOSPC, and EDQUOT for a user's quota: both are "no room left" and pass once room is made.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
DISK_FULL_TEXTS = tuple(os.strerror(code) for code in DISK_FULL_ERRNOS)


def is_disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno in DISK_FULL_ERRNOS


class StepsFailed(RunError):
    def __init__(self, failures: Sequence[tuple[str, str]]) -> None:
        self.failures = list(failures)
        super().__init__("; ".join(f"step {name} failed: {reason}" for name, reason in failures))


class PolicyNotMet(RunError):
    """No candidate meets the selection policy (the pipeline's FailStep)."""

    def __init__(self, decision: Decision, report: str) -> None:
        self.decision = decision
        self.report = report
        super().__init__(decision.reason)


class RunEvents(Protocol):
    """What the run tells its display. `on_progress` is the evaluate step's ProgressListener."""

    def step_started(self, step: PlannedStep) -> None: ...
    def step_skipped(self, step: PlannedStep) -> None: ...
    def step_finished(self, step: PlannedStep, seconds: float) -> None: ...
    def step_failed(self, step: PlannedStep, reason: str) -> None: ...
    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None: ...


@dataclass(frozen=True)
class RunOptions:
    output: str
    registry: Registry = "local"
    approval_status: str = DEFAULT_APPROVAL_STATUS
    fresh: bool = False
    # Ask every model again instead of answering from the response cache (`--no-cache`).
    no_cache: bool = False


@dataclass(frozen=True)
class RunOutcome:
    location: str
    execution_id: str
    decision: Decision
    report: str
    registration: dict[str, Any]
    executed: tuple[str, ...]
    skipped: tuple[str, ...]


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @property
    def run_file(self) -> Path:
        return self.root / RUN_FILE

    @property
    def config_dir(self) -> Path:
        return self.root / CONFIG_INPUT

    @property
    def cache_dir(self) -> Path:
        return self.root / CACHE_DIR

    @property
    def registry_dir(self) -> Path:
        return self.root / REGISTRY_DIR

    @property
    def steps_dir(self) -> Path:
        return self.root / STEPS_DIR

    def step_dir(self, name: str) -> Path:
        return self.steps_dir / name

    def output(self, step: str, name: str) -> Path:
        return self.step_dir(step) / "output" / name


def default_output(plan_name: str) -> str:
    return str(Path("runs") / plan_name)


# -- AWS access, checked before the first step ---------------------------------------------------------
def _model_aws_uses(model: ModelConfig) -> list[str]:
    spec = model.provider
    uses = []
    if spec.deploys is not None:
        uses.append("deploys a SageMaker endpoint")
    if model.finetuning is not None:
        uses.append("fine-tunes on SageMaker")
    if spec.invocation == "bedrock":
        uses.append("calls Bedrock")
    if spec.existing_endpoint:
        uses.append(f"calls the SageMaker endpoint {model.endpoint_name}")
    if model.responses_location is not None and is_s3(model.responses_location):
        uses.append("reads its recorded responses from S3")
    return uses


def aws_uses(loaded: LoadedConfig, options: RunOptions) -> list[str]:
    """What in this run calls AWS, one phrase each; empty when the run needs no AWS account at all."""
    uses = [
        f"model {model.name} ({' and '.join(found)})"
        for model in loaded.config.models
        if (found := _model_aws_uses(model))
    ]
    if loaded.catalog_dir is None and is_s3(loaded.dataset_location):
        uses.append(f"the dataset {loaded.dataset_location}")
    if is_s3(options.output):
        uses.append(f"--output {options.output}")
    if options.registry == "sagemaker":
        uses.append("--registry sagemaker")
    return uses


def check_aws_access(loaded: LoadedConfig, options: RunOptions) -> None:
    """A run that needs AWS and has no credentials stops here, before any step, rather than in each step
    that calls AWS (after the others ran) with botocore's "Unable to locate credentials"."""
    uses = aws_uses(loaded, options)
    if not uses:
        return
    try:
        credentials = boto3.session.Session().get_credentials()
    except BotoCoreError as exc:
        raise RunError(f"AWS credentials are needed for {'; '.join(uses)}, and they cannot be read: {exc}") from None
    if credentials is None:
        raise RunError(
            f"AWS credentials are needed for {'; '.join(uses)}, and none were found: configure them (aws configure, "
            "AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), or evaluate those models through a "
            "local provider (http, openai or recorded)"
        )


# -- stderr per step ------------------------------------------------------------------------------
class _StepStderr:
    """sys.stderr while steps run: what a step's own thread writes is kept (and goes to run.log), so a step
    that prints its error and returns 1 (step_io.run_step) fails with that line as the reason, shown once.
    Other threads write through."""

    def __init__(self, target: TextIO) -> None:
        self._target = target
        self._local = threading.local()

    def capture(self, buffer: list[str] | None) -> None:
        self._local.buffer = buffer

    def write(self, text: str) -> int:
        buffer: list[str] | None = getattr(self._local, "buffer", None)
        if buffer is not None:
            buffer.append(text)
            return len(text)
        return self._target.write(text)

    def flush(self) -> None:
        self._target.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


@contextmanager
def _stderr_per_step() -> Iterator[_StepStderr]:
    original = sys.stderr
    routed = _StepStderr(original)
    sys.stderr = routed
    try:
        yield routed
    finally:
        sys.stderr = original


class _RunLogHandler(logging.FileHandler):
    """run.log. When a write fails (a full disk) it stops writing instead of printing "--- Logging error ---"
    and a traceback to stderr for every later record; the run then ends with one line about the disk."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, encoding="utf-8")
        self.failure: OSError | None = None

    def emit(self, record: logging.LogRecord) -> None:
        if self.failure is None:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            self.failure = error
            return
        super().handleError(record)


@contextmanager
def _run_log(path: Path) -> Iterator[_RunLogHandler]:
    """Every log line of the run goes to run.log; the display keeps its own handlers."""
    handler = _RunLogHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(levelname)s %(name)s %(message)s"))
    handler.setLevel(logging.INFO)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    if root.getEffectiveLevel() > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)
        handler.close()


# -- the run folder --------------------------------------------------------------------------------
def _prepare(layout: RunLayout, loaded: LoadedConfig, fresh: bool) -> str:
    """Create or reuse the run folder; returns the execution id."""
    name = loaded.config.pipeline.name
    state: dict[str, Any] = {}
    if layout.run_file.is_file():
        try:
            state = json.loads(layout.run_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RunError(f"{layout.run_file}: not JSON ({exc.msg}); delete the run folder to start over") from None
        # Checked before --fresh deletes anything: a mistyped --output must not wipe another pipeline's run.
        if state.get("pipeline") != name:
            raise RunError(
                f"{layout.root} holds a run of pipeline {state.get('pipeline')!r}, not {name!r}; "
                "choose another --output"
            )
    if fresh:
        shutil.rmtree(layout.steps_dir, ignore_errors=True)
        state = {}
    execution_id = state.get("execution_id")
    if not isinstance(execution_id, str) or not execution_id:
        # 12 lowercase alphanumerics, the shape of a SageMaker execution id, so resource names stay short.
        execution_id = secrets.token_hex(6)
        layout.root.mkdir(parents=True, exist_ok=True)
        layout.run_file.write_text(
            json.dumps({"pipeline": name, "execution_id": execution_id}, indent=2) + "\n", encoding="utf-8"
        )
    layout.config_dir.mkdir(parents=True, exist_ok=True)
    (layout.config_dir / CONFIG_FILE).write_text(loaded.normalized_json(), encoding="utf-8")
    layout.cache_dir.mkdir(exist_ok=True)
    return execution_id


def _catalog_digest(catalog: Path | None) -> str:
    digest = hashlib.sha256()
    if catalog is not None:
        for path in sorted(p for p in catalog.rglob("*") if p.is_file()):
            digest.update(path.relative_to(catalog).as_posix().encode() + b"\0")
            digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def _link(link: Path, target: Path, root: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    # Links inside the run folder are relative, so a moved or downloaded run folder still reads.
    pointer = os.path.relpath(target, link.parent) if target.is_relative_to(root) else str(target)
    link.symlink_to(pointer, target_is_directory=True)


# -- the run ---------------------------------------------------------------------------------------
@dataclass
class _Runner:
    plan: EvaluationPlan
    layout: RunLayout
    catalog: Path
    execution_id: str
    options: RunOptions
    events: RunEvents
    base_fingerprint: str
    stderr: _StepStderr
    run_log: _RunLogHandler
    fingerprints: dict[str, str] = field(default_factory=dict)
    executed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    disk_filled: bool = False

    @property
    def disk_full(self) -> bool:
        """Whether a step, the run's own bookkeeping or run.log ran out of room."""
        return self.disk_filled or (self.run_log.failure is not None and is_disk_full(self.run_log.failure))

    def arguments(self, step: PlannedStep) -> list[str]:
        folder = self.layout.step_dir(step.name)
        return [
            str(arg)
            for arg in step_arguments(
                step,
                str(folder / "input"),
                str(folder / "output"),
                execution_id=self.execution_id,
                approval_status=self.options.approval_status,
                cache_uri=str(self.layout.cache_dir),
                response_cache=RESPONSE_CACHE_BYPASS if self.options.no_cache else None,
                local_registry_dir=str(self.layout.registry_dir) if self.options.registry == "local" else None,
            )
        ]

    def fingerprint(self, step: PlannedStep, argv: Sequence[str]) -> str:
        upstream = {name: self.fingerprints.get(name, "") for name in step.depends_on}
        # Paths count relative to the run folder, so a run downloaded into another folder still resumes.
        relative = [arg.replace(str(self.layout.root), "<run>") for arg in argv]
        payload = json.dumps([self.base_fingerprint, relative, upstream], sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()

    def link_inputs(self, step: PlannedStep) -> None:
        root = self.layout.step_dir(step.name) / "input"
        shutil.rmtree(root, ignore_errors=True)  # removes the links, never what they point to
        for item in step.inputs:
            if item.name == CONFIG_INPUT:
                target = self.layout.config_dir
            elif item.step is not None and item.output is not None:
                target = self.layout.output(item.step, item.output)
            elif item.parameter == PARAM_PROMPT_CATALOG_URI or item.name == CATALOG_INPUT:
                target = self.catalog
            else:
                raise RunError(f"step {step.name}: input {item.name} has no local source")
            _link(root / item.name, target, self.layout.root)

    def run_step(self, step: PlannedStep) -> None:
        """Run one step unless its last successful run had the same fingerprint; raises on failure."""
        argv = self.arguments(step)
        fingerprint = self.fingerprint(step, argv)
        folder = self.layout.step_dir(step.name)
        marker = folder / SUCCESS_MARKER
        if marker.is_file() and marker.read_text(encoding="utf-8").strip() == fingerprint:
            self.fingerprints[step.name] = fingerprint
            self.skipped.append(step.name)
            self.events.step_skipped(step)
            return
        marker.unlink(missing_ok=True)
        shutil.rmtree(folder / "output", ignore_errors=True)
        self.link_inputs(step)
        for name in step.outputs:
            (folder / "output" / name).mkdir(parents=True, exist_ok=True)
        self.events.step_started(step)
        started = time.monotonic()
        if step.instance_count > 1:
            shutil.rmtree(folder / INSTANCES_DIR, ignore_errors=True)
            status, reason = run_instances(step, folder, argv)
        else:
            status, reason = self._call(step, argv)
        if status != 0:
            self.events.step_failed(step, reason)
            raise _StepFailure(step.name, reason)
        marker.write_text(fingerprint + "\n", encoding="utf-8")
        self.fingerprints[step.name] = fingerprint
        self.executed.append(step.name)
        self.events.step_finished(step, time.monotonic() - started)

    def _call(self, step: PlannedStep, argv: list[str]) -> tuple[int, str]:
        module = importlib.import_module(STEP_KINDS[step.kind].entry_module)
        entry: Callable[..., int] = module.main
        lines: list[str] = []
        self.stderr.capture(lines)
        logger.info("%s: step_code.%s %s", step.name, step.kind, " ".join(argv))
        try:
            # A step that reports per-prompt progress feeds the display; the others finish quickly.
            status = entry(argv, progress=self.events) if STEP_KINDS[step.kind].reports_progress else entry(argv)
        except SystemExit as exc:
            # argparse exits 2 on arguments it does not accept: a mismatch between plan and step code.
            status = exc.code if isinstance(exc.code, int) else 1
        except Exception as exc:
            if is_disk_full(exc):
                self.disk_filled = True
            else:
                logger.exception("%s failed", step.name)
            return 1, f"{exc.__class__.__name__}: {exc}"
        finally:
            self.stderr.capture(None)
            if lines:
                logger.info("%s wrote to stderr:\n%s", step.name, "".join(lines).rstrip())
        if status == 0:
            return 0, ""
        said = [line.strip() for line in "".join(lines).splitlines() if line.strip()]
        reason = said[-1] if said else f"exited with status {status} (see {self.layout.root / LOG_FILE})"
        # A step that caught the error itself only says it; the text is the OS's own.
        if any(text in reason for text in DISK_FULL_TEXTS):
            self.disk_filled = True
        return status, reason

    def run_branches(self, steps: Sequence[PlannedStep]) -> list[tuple[str, str]]:
        """Run steps in dependency order, independent ones in parallel; returns (step, reason) failures.

        A step whose data inputs failed does not run. Steps that only wait for another one (`after`, the
        endpoint clean-up) still run when it failed, so an endpoint is deleted even if its evaluation broke.
        """
        pending = {step.name: step for step in steps}
        finished: set[str] = set()
        failures: dict[str, str] = {}
        blocked: set[str] = set()
        running: dict[Future[None], PlannedStep] = {}
        with ThreadPoolExecutor(max_workers=self.plan.max_parallel_steps, thread_name_prefix="step") as pool:
            while pending or running:
                for name, step in list(pending.items()):
                    data = [s for s in step.depends_on if s not in step.after]
                    if any(s in failures or s in blocked for s in data):
                        blocked.add(name)
                        del pending[name]
                    elif all(s in finished or s in failures or s in blocked for s in step.depends_on):
                        del pending[name]
                        running[pool.submit(self._in_thread, step)] = step
                if not running:
                    break
                done, _ = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    step = running.pop(future)
                    error = future.exception()
                    if error is None:
                        finished.add(step.name)
                    else:
                        failures[step.name] = error.reason if isinstance(error, _StepFailure) else str(error)
        return list(failures.items())

    def _in_thread(self, step: PlannedStep) -> None:
        threading.current_thread().name = step.name
        try:
            self.run_step(step)
        except OSError as exc:
            # Preparing the step's folder failed (disk full, permissions): the step did not run.
            self.disk_filled = self.disk_filled or is_disk_full(exc)
            self.events.step_failed(step, str(exc))
            raise _StepFailure(step.name, str(exc)) from exc


class _StepFailure(Exception):
    def __init__(self, step: str, reason: str) -> None:
        super().__init__(f"{step}: {reason}")
        self.step = step
        self.reason = reason


def _read_decision(path: Path) -> Decision:
    try:
        return Decision.model_validate_json(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RunError(f"{path}: the select step wrote no decision") from None


def run_in_folder(
    loaded: LoadedConfig, run_dir: Path, options: RunOptions, events: RunEvents, *, location: str | None = None
) -> RunOutcome:
    """Run (or resume) the plan of `loaded` in `run_dir`; raises DiskFull when the disk fills up."""
    layout = RunLayout(run_dir.resolve())
    try:
        return _run_in_layout(loaded, layout, options, events, location)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFull(layout.root) from None
        raise


def _run_in_layout(
    loaded: LoadedConfig, layout: RunLayout, options: RunOptions, events: RunEvents, location: str | None
) -> RunOutcome:
    plan = build_plan(loaded.config)
    execution_id = _prepare(layout, loaded, options.fresh)
    catalog = loaded.catalog_dir
    if catalog is None:
        catalog = layout.root / EMPTY_CATALOG_DIR
        catalog.mkdir(exist_ok=True)
    base = hashlib.sha256(f"{loaded.config_sha256}:{_catalog_digest(loaded.catalog_dir)}".encode()).hexdigest()
    with _run_log(layout.root / LOG_FILE) as run_log, _stderr_per_step() as stderr:
        runner = _Runner(plan, layout, catalog, execution_id, options, events, base, stderr, run_log)
        failures = runner.run_branches([s for s in plan.processing_steps if s.name != plan.register.name])
        if failures:
            raise DiskFull(layout.root) if runner.disk_full else StepsFailed(failures)
        decision = _read_decision(layout.output(plan.select.name, DECISION) / DECISION_FILE)
        report = layout.output(plan.select.name, DECISION) / COMPARISON_REPORT_FILE
        report_location = _location(location, layout, report)
        if not decision.meets_policy:
            raise PolicyNotMet(decision, report_location)
        try:
            runner.run_step(plan.register)
        except _StepFailure as exc:
            raise DiskFull(layout.root) if runner.disk_full else StepsFailed([(exc.step, exc.reason)]) from None
    registration_file = layout.output(plan.register.name, REGISTRATION) / REGISTRATION_FILE
    return RunOutcome(
        location=location or str(layout.root),
        execution_id=execution_id,
        decision=decision,
        report=report_location,
        registration=json.loads(registration_file.read_text(encoding="utf-8")),
        executed=tuple(runner.executed),
        skipped=tuple(runner.skipped),
    )


def _location(remote: str | None, layout: RunLayout, path: Path) -> str:
    if remote is None:
        return str(path)
    return remote.rstrip("/") + "/" + path.relative_to(layout.root).as_posix()


# -- s3:// output ----------------------------------------------------------------------------------
def _files(root: Path) -> Iterator[Path]:
    """Regular files of a run folder; input links are skipped (they point at outputs stored anyway)."""
    for folder, dirs, files in os.walk(root, followlinks=False):
        base = Path(folder)
        dirs[:] = [d for d in dirs if not (base / d).is_symlink()]
        for name in files:
            path = base / name
            if not path.is_symlink():
                yield path


def run_plan(loaded: LoadedConfig, options: RunOptions, events: RunEvents) -> RunOutcome:
    """Run in `options.output`; an s3:// output runs in a temporary folder synchronised with that prefix.
    Either way the run holds the folder's lock first (raises RunLocked when another run holds it)."""
    check_aws_access(loaded, options)
    if not is_s3(options.output):
        with folder_lock(Path(options.output)):
            return run_in_folder(loaded, Path(options.output), options, events)
    prefix = options.output.rstrip("/")
    with s3_lock(prefix), tempfile.TemporaryDirectory(prefix="evalops-run-") as temp:
        root = Path(temp)
        # Download the previous state first, so a run into the same prefix resumes like a local one.
        try:
            for name in storage.list_names(prefix):
                if name == LOCK_FILE or (options.fresh and (name == RUN_FILE or name.startswith(f"{STEPS_DIR}/"))):
                    continue
                target = root / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(storage.read_bytes(f"{prefix}/{name}"))
        except OSError as exc:
            if is_disk_full(exc):
                raise DiskFull(root) from None
            raise
        before = {path: path.stat().st_mtime_ns for path in _files(root)}
        try:
            return run_in_folder(loaded, root, options, events, location=prefix)
        finally:
            for path in _files(root):
                if before.get(path) != path.stat().st_mtime_ns:
                    storage.write_bytes(f"{prefix}/{path.relative_to(root).as_posix()}", path.read_bytes())
            if options.fresh:
                _delete_stale(prefix, root)


def _delete_stale(prefix: str, root: Path) -> None:
    """After --fresh, objects of the old run's steps that this run did not write are removed."""
    kept = {path.relative_to(root).as_posix() for path in _files(root)}
    stale = [name for name in storage.list_names(prefix) if name.startswith(f"{STEPS_DIR}/") and name not in kept]
    if stale:
        bucket, key = storage.split_s3(prefix)
        client = storage.s3_client()
        for start in range(0, len(stale), 1000):
            batch = stale[start : start + 1000]
            client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": f"{key}/{name}" if key else name} for name in batch]}
            )


# -- evalops report --------------------------------------------------------------------------------
def rebuild_report(run_dir: Path, output: Path | None = None, *, pdf: bool = False) -> tuple[Path, bool]:
    """Write the comparison report of a local run again; returns its path and whether the decision had to
    be computed (a run that stopped before its select step). `pdf`: also the PDF, beside it (`.pdf`)."""
    layout = RunLayout(run_dir.resolve())
    config_file = layout.config_dir / CONFIG_FILE
    if not config_file.is_file():
        raise RunError(f"{run_dir} is not a local run folder (it has no {CONFIG_INPUT}/{CONFIG_FILE})")
    try:
        config = Config.model_validate_json(config_file.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise RunError(f"{config_file}: not a config this version reads ({exc.__class__.__name__})") from None
    plan = build_plan(config)
    try:
        evidence: list[ModelEvidence] = []
        for item in plan.select.inputs:
            if item.step is None or item.output is None or not item.name.startswith(f"{SUMMARIES}/"):
                continue
            folder = layout.output(item.step, item.output)
            if not folder.is_dir():
                raise RunError(f"{folder}: step {item.step} has not run; run `evalops run` first")
            evidence.append(load_model_evidence(folder, item.name.split("/", 1)[1]))
        decision_file = layout.output(plan.select.name, DECISION) / DECISION_FILE
        computed = not decision_file.is_file()
        decision = select(config, evidence) if computed else _read_decision(decision_file)
        html = comparison_html(config, decision, evidence)
        document = comparison_pdf(config, decision, evidence) if pdf else None
    except ControlPlaneError as exc:
        raise RunError(str(exc)) from None
    default = layout.root / COMPARISON_REPORT_FILE if computed else decision_file.parent / COMPARISON_REPORT_FILE
    path = output or default
    path.write_text(html, encoding="utf-8")
    if document is not None:
        path.with_suffix(".pdf").write_bytes(document)
    return path, computed
