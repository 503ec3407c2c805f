"""Safety net: delete the SageMaker resources a pipeline execution left behind.

Two events start it: an execution that ends, and an hourly schedule for an execution that never ends (one
hanging in Executing sends no status event).

Event: EventBridge "SageMaker Model Building Pipeline Execution Status Change". The execution id is the
last path segment of `detail.pipelineExecutionArn` (`arn:...:pipeline/<name>/execution/<id>`), the same
id the pipeline passes to its steps as `--execution-id` and that they tag their resources with.

What is touched when an execution ends Failed or Stopped: endpoints, endpoint configs and models whose name
starts with RESOURCE_PREFIX and whose tags say `evalops:managed-by=evalops` and `evalops:execution-id=<id>`
(and `evalops:execution-arn`, when the resource has it, equal to the event's ARN). They are deleted, endpoints
first. Training jobs of the execution still in progress are stopped: the pipeline stopping the finetune step
does not stop the job it started. A resource tagged `evalops:provider=endpoint` is never deleted (the deploy
step never tags an endpoint it did not create, so none should exist; this guards against a mistake
elsewhere), nor one tagged `evalops:keep=true` (the deploy step's mark for a model with
`cleanup_endpoint: false`) except by keep_for_hours.

Kept resources in use: the deploy (or champion) step of an execution that takes a kept endpoint tags it, its
config and model `evalops:in-use-by:<id>`. When that execution ends, however it ends (Succeeded too), the
mark is removed and `evalops:last-used` set to the event's time (never moved back). While any such mark is
on a kept resource, keep_for_hours does not expire it: a run may evaluate or wait for longer than that.

Scheduled sweep (EventBridge "Scheduled Event"): endpoints, endpoint configs and models under RESOURCE_PREFIX
tagged `evalops:managed-by=evalops` whose CreationTime is more than ENDPOINT_MAX_AGE_HOURS before the event's
time are deleted, whatever their execution; the same two tags keep a resource. Training jobs are not swept:
each has its own MaxRuntimeInSeconds. The same sweep applies keep_for_hours: a kept resource that no
execution holds and whose `evalops:last-used` is at least `evalops:keep-for-hours` hours before the event's
time is deleted, whatever its age (superseded or not); a kept resource without `evalops:keep-for-hours` is
never deleted.

Idempotent: a resource already gone counts as done. Any other failure is logged and raised after the
rest was tried, so Lambda's retries of the asynchronous event try again. Logs are JSON lines on stdout.
Standard library and boto3 only: this folder is the Lambda's code asset.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
from botocore.exceptions import ClientError

# Same keys as step_code/aws_resources.py (a test keeps them equal).
TAG_EXECUTION_ID = "evalops:execution-id"
TAG_EXECUTION_ARN = "evalops:execution-arn"
TAG_PROVIDER = "evalops:provider"
TAG_MANAGED_BY = "evalops:managed-by"
MANAGED_BY = "evalops"
# Same keys, value and time format as step_code/contract/tags.py, which the deploy step writes with.
TAG_KEEP = "evalops:keep"
KEEP = "true"
TAG_LAST_USED = "evalops:last-used"
TAG_KEEP_FOR_HOURS = "evalops:keep-for-hours"
TAG_IN_USE_BY_PREFIX = "evalops:in-use-by:"
LAST_USED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
PREFIX_ENV = "RESOURCE_PREFIX"
MAX_AGE_ENV = "ENDPOINT_MAX_AGE_HOURS"
SCHEDULED_EVENT = "Scheduled Event"

# Executions ending so may leave resources behind; every end releases the kept resources the execution held.
ENDED_STATUSES = frozenset({"Failed", "Stopped"})
RELEASING_STATUSES = frozenset({"Succeeded", *ENDED_STATUSES})
USER_OWNED_PROVIDER = "endpoint"


@dataclass(frozen=True)
class ResourceKind:
    label: str
    list_operation: str
    result_key: str
    name_key: str
    arn_key: str
    delete: Callable[[Any, str], object]


# Endpoints before their configs and models: a config or model in use by a live endpoint is still needed
# by it until the endpoint is gone.
DELETED_KINDS = (
    ResourceKind(
        "endpoint",
        "list_endpoints",
        "Endpoints",
        "EndpointName",
        "EndpointArn",
        lambda client, name: client.delete_endpoint(EndpointName=name),
    ),
    ResourceKind(
        "endpoint-config",
        "list_endpoint_configs",
        "EndpointConfigs",
        "EndpointConfigName",
        "EndpointConfigArn",
        lambda client, name: client.delete_endpoint_config(EndpointConfigName=name),
    ),
    ResourceKind(
        "model",
        "list_models",
        "Models",
        "ModelName",
        "ModelArn",
        lambda client, name: client.delete_model(ModelName=name),
    ),
)
TRAINING_JOBS = ResourceKind(
    "training-job",
    "list_training_jobs",
    "TrainingJobSummaries",
    "TrainingJobName",
    "TrainingJobArn",
    lambda client, name: client.stop_training_job(TrainingJobName=name),
)


def log(message: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"message": message, **fields}, default=str, sort_keys=True) + "\n")
    sys.stdout.flush()


def _is_missing(error: ClientError) -> bool:
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    return code == "ResourceNotFound" or (
        code == "ValidationException" and "Could not find" in details.get("Message", "")
    )


def _error_text(error: ClientError) -> str:
    details = error.response.get("Error", {})
    return f"{details.get('Code', 'Error')}: {details.get('Message', str(error))}"


def _items(client: Any, kind: ResourceKind, prefix: str, **filters: Any) -> Iterator[dict[str, Any]]:
    """Every resource of the kind whose name starts with the prefix, across all pages."""
    pages = client.get_paginator(kind.list_operation).paginate(NameContains=prefix, **filters)
    for page in pages:
        for item in page.get(kind.result_key, []):
            if item[kind.name_key].startswith(prefix):
                yield item


def _tags(client: Any, arn: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for page in client.get_paginator("list_tags").paginate(ResourceArn=arn):
        tags.update({tag["Key"]: tag["Value"] for tag in page.get("Tags", [])})
    return tags


def is_managed(tags: dict[str, str]) -> bool:
    return tags.get(TAG_MANAGED_BY) == MANAGED_BY


def belongs_to(tags: dict[str, str], execution_id: str, execution_arn: str) -> bool:
    if not is_managed(tags) or tags.get(TAG_EXECUTION_ID) != execution_id:
        return False
    recorded_arn = tags.get(TAG_EXECUTION_ARN)
    return recorded_arn is None or recorded_arn == execution_arn


def _parse_time(value: str) -> datetime:
    return datetime.strptime(value, LAST_USED_FORMAT).replace(tzinfo=UTC)


def kept_expired(tags: dict[str, str], now: datetime) -> bool:
    """A kept resource no running execution holds and no run has used for its keep_for_hours; never, without
    one or with an unreadable tag."""
    if any(key.startswith(TAG_IN_USE_BY_PREFIX) for key in tags):
        return False
    try:
        hours = float(tags[TAG_KEEP_FOR_HOURS])
        last_used = _parse_time(tags[TAG_LAST_USED])
    except (KeyError, ValueError):
        return False
    return now - last_used >= timedelta(hours=hours)


def _later_use(recorded: str | None, ended: datetime) -> str:
    """The end of the execution as the last use, unless the tag already records a later one."""
    try:
        if recorded is not None and _parse_time(recorded) >= ended:
            return recorded
    except ValueError:
        pass
    return ended.astimezone(UTC).strftime(LAST_USED_FORMAT)


def release_kept(client: Any, prefix: str, execution_id: str, ended: datetime) -> tuple[list[str], list[str]]:
    """Remove the execution's hold from the kept resources it took; their last use becomes its end.

    Returns what was released and the errors (the rest is still tried). The stamp goes before the removal,
    so an interrupted release leaves the hold, and the retried event finishes it."""
    key = f"{TAG_IN_USE_BY_PREFIX}{execution_id}"
    released: list[str] = []
    errors: list[str] = []
    for kind in DELETED_KINDS:
        try:
            items = list(_items(client, kind, prefix))
        except ClientError as exc:
            errors.append(f"{kind.label}/*: {_error_text(exc)}")
            continue
        for item in items:
            name, arn = item[kind.name_key], item[kind.arn_key]
            try:
                tags = _tags(client, arn)
                if not is_managed(tags) or key not in tags:
                    continue
                last_used = _later_use(tags.get(TAG_LAST_USED), ended)
                client.add_tags(ResourceArn=arn, Tags=[{"Key": TAG_LAST_USED, "Value": last_used}])
                client.delete_tags(ResourceArn=arn, TagKeys=[key])
            except ClientError as exc:
                if not _is_missing(exc):
                    log("release failed", kind=kind.label, name=name, error=_error_text(exc))
                    errors.append(f"{kind.label}/{name}: {_error_text(exc)}")
                continue
            log("released a kept resource the execution held", kind=kind.label, name=name, last_used=last_used)
            released.append(f"{kind.label}/{name}")
    return released, errors


Selects = Callable[[dict[str, str], dict[str, Any]], bool]


def _never(tags: dict[str, str]) -> bool:
    return False


class _Sweep:
    """One clean-up: of what `selects(tags, listed item)`; collects what happened for the summary.

    A kept resource is deleted only when `releases(tags)` says its keep has run out."""

    def __init__(
        self,
        client: Any,
        prefix: str,
        selects: Selects,
        kinds: tuple[ResourceKind, ...],
        releases: Callable[[dict[str, str]], bool] = _never,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.selects = selects
        self.kinds = kinds
        self.releases = releases
        self.done: dict[str, list[str]] = {kind.label: [] for kind in kinds}
        self.kept: list[str] = []
        self.errors: list[str] = []

    def _ours(self, kind: ResourceKind, item: dict[str, Any]) -> bool:
        name = item[kind.name_key]
        try:
            tags = self._tags_or_none(item[kind.arn_key])
        except ClientError as exc:
            self._fail(kind, name, exc)
            return False
        if tags is None or not self.selects(tags, item):
            return False
        if tags.get(TAG_PROVIDER) == USER_OWNED_PROVIDER:
            log("keeping a resource tagged as a user's endpoint", kind=kind.label, name=name)
            self.kept.append(f"{kind.label}/{name}")
            return False
        if tags.get(TAG_KEEP) == KEEP and self.releases(tags):
            log(
                "deleting a kept resource no run has used for its keep_for_hours",
                kind=kind.label,
                name=name,
                last_used=tags.get(TAG_LAST_USED),
                keep_for_hours=tags.get(TAG_KEEP_FOR_HOURS),
            )
            return True
        if tags.get(TAG_KEEP) == KEEP:
            log("keeping a resource its config keeps (cleanup_endpoint: false)", kind=kind.label, name=name)
            self.kept.append(f"{kind.label}/{name}")
            return False
        return True

    def _tags_or_none(self, arn: str) -> dict[str, str] | None:
        try:
            return _tags(self.client, arn)
        except ClientError as exc:
            if _is_missing(exc):
                return None
            raise

    def _fail(self, kind: ResourceKind, name: str, error: ClientError) -> None:
        text = f"{kind.label}/{name}: {_error_text(error)}"
        log("clean-up failed", kind=kind.label, name=name, error=_error_text(error))
        self.errors.append(text)

    def _act(self, kind: ResourceKind, name: str) -> None:
        try:
            kind.delete(self.client, name)
        except ClientError as exc:
            if not _is_missing(exc):
                self._fail(kind, name, exc)
                return
            log("already gone", kind=kind.label, name=name)
        else:
            log("stopped" if kind is TRAINING_JOBS else "deleted", kind=kind.label, name=name)
        self.done[kind.label].append(name)

    def run(self) -> None:
        for kind in self.kinds:
            filters = {"StatusEquals": "InProgress"} if kind is TRAINING_JOBS else {}
            try:
                matching = [
                    item[kind.name_key]
                    for item in _items(self.client, kind, self.prefix, **filters)
                    if self._ours(kind, item)
                ]
            except ClientError as exc:
                self._fail(kind, "*", exc)
                continue
            for name in matching:
                self._act(kind, name)


def _prefix() -> str:
    prefix = os.environ.get(PREFIX_ENV, "")
    if not prefix:
        # An empty prefix would make every tagged resource in the account a candidate.
        raise RuntimeError(f"environment variable {PREFIX_ENV} is not set; refusing to look for resources")
    return prefix


def _raise_on_errors(sweep: _Sweep, what: str) -> None:
    if sweep.errors:
        raise RuntimeError(f"{len(sweep.errors)} resources {what} could not be cleaned up: {sweep.errors}")


def _event_time(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["time"]).replace("Z", "+00:00"))


def sweep_aged(event: dict[str, Any]) -> dict[str, Any]:
    """Delete the managed resources older than the age bound, measured from the scheduled event's time."""
    prefix = _prefix()
    max_age_hours = float(os.environ.get(MAX_AGE_ENV, "0"))
    if max_age_hours <= 0:
        raise RuntimeError(f"environment variable {MAX_AGE_ENV} is not a positive number of hours; refusing to sweep")
    now = _event_time(event)
    cutoff = now - timedelta(hours=max_age_hours)

    def expired(tags: dict[str, str]) -> bool:
        return kept_expired(tags, now)

    def aged_or_expired(tags: dict[str, str], item: dict[str, Any]) -> bool:
        return is_managed(tags) and (item["CreationTime"] <= cutoff or expired(tags))

    log("sweeping resources older than the age bound", prefix=prefix, max_age_hours=max_age_hours, cutoff=cutoff)
    sweep = _Sweep(boto3.client("sagemaker"), prefix, aged_or_expired, DELETED_KINDS, releases=expired)
    sweep.run()
    summary = {
        "action": "swept",
        "max_age_hours": max_age_hours,
        "cutoff": cutoff.isoformat(),
        "deleted": sweep.done,
        "kept": sweep.kept,
        "errors": sweep.errors,
    }
    log("sweep finished", **summary)
    _raise_on_errors(sweep, f"older than {max_age_hours} hours")
    return summary


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("detail-type") == SCHEDULED_EVENT:
        return sweep_aged(event)
    detail = event.get("detail") or {}
    execution_arn = str(detail.get("pipelineExecutionArn") or "")
    status = detail.get("currentPipelineExecutionStatus")
    if not execution_arn or status not in RELEASING_STATUSES:
        log("ignoring event", status=status, execution_arn=execution_arn)
        return {"action": "ignored", "status": status, "execution_arn": execution_arn}
    execution_id = execution_arn.rstrip("/").rsplit("/", 1)[-1]
    prefix = _prefix()
    client = boto3.client("sagemaker")
    summary: dict[str, Any] = {"action": "released", "status": status, "execution_id": execution_id}
    errors: list[str] = []
    if status in ENDED_STATUSES:
        log("cleaning up after execution", status=status, execution_id=execution_id, prefix=prefix)

        def of_execution(tags: dict[str, str], item: dict[str, Any]) -> bool:
            return belongs_to(tags, execution_id, execution_arn)

        sweep = _Sweep(client, prefix, of_execution, (TRAINING_JOBS, *DELETED_KINDS))
        sweep.run()
        summary.update(
            action="cleaned",
            execution_arn=execution_arn,
            deleted={label: names for label, names in sweep.done.items() if label != TRAINING_JOBS.label},
            stopped_training_jobs=sweep.done[TRAINING_JOBS.label],
            kept=sweep.kept,
        )
        errors += sweep.errors
    released, release_errors = release_kept(client, prefix, execution_id, _event_time(event))
    summary.update(released=released, errors=errors + release_errors)
    log("clean-up finished" if status in ENDED_STATUSES else "release finished", **summary)
    if summary["errors"]:
        raise RuntimeError(
            f"{len(summary['errors'])} resources of execution {execution_id} could not be cleaned up or released: "
            f"{summary['errors']}"
        )
    return summary
