"""Tag keys on the AWS resources a run creates.

The safety-net Lambda (`stacks/safety_net_lambda/index.py`, which cannot import this package) matches on
the same keys, and a test keeps the two lists equal.
"""

from __future__ import annotations

TAG_EXECUTION_ID = "evalops:execution-id"
TAG_EXECUTION_ARN = "evalops:execution-arn"
TAG_MODEL = "evalops:model"
TAG_PIPELINE = "evalops:pipeline"
TAG_PROVIDER = "evalops:provider"
TAG_MANAGED_BY = "evalops:managed-by"
MANAGED_BY = "evalops"
# An endpoint tagged so outlives its run: the safety net leaves it alone.
TAG_KEEP = "evalops:keep"
KEEP = "true"
# On a kept endpoint (and its model and config): the digest of its deployment identity, which its name
# also carries; when a run last used it (ISO 8601 UTC: its deploy, or the end of the pipeline execution that
# held it); the config's keep_for_hours when set; and, once a
# later run deployed another identity of the same model, that endpoint's name.
TAG_DEPLOYMENT_IDENTITY = "evalops:deployment-identity"
TAG_LAST_USED = "evalops:last-used"
TAG_KEEP_FOR_HOURS = "evalops:keep-for-hours"
TAG_SUPERSEDED_BY = "evalops:superseded-by"
# On a kept endpoint (and its config and model) while a pipeline execution uses it: one key per execution,
# `evalops:in-use-by:<execution id>`, valued with the execution's ARN. A key per execution, not one shared key,
# because runs overlap and each must hold the endpoint until it ends: the deploy step (or the champion step)
# adds it; the safety net removes it when that execution ends, stamping `evalops:last-used` with the end time.
TAG_IN_USE_BY_PREFIX = "evalops:in-use-by:"
# The values of the two tags the safety net's hourly sweep reads to delete a kept endpoint unused for its
# keep_for_hours: a UTC time in this format, and a number of hours.
LAST_USED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# On a training job: the digest of what its weights depend on, so a later run with the same inputs can use it.
TAG_TRAINING_IDENTITY = "evalops:training-identity"


def keep_for_hours_value(hours: float) -> str:
    return f"{hours:g}"


def in_use_by_key(execution_id: str) -> str:
    return f"{TAG_IN_USE_BY_PREFIX}{execution_id}"


def in_use(tags: dict[str, str]) -> bool:
    """Whether a pipeline execution that has not ended yet holds the kept resource these tags are on."""
    return any(key.startswith(TAG_IN_USE_BY_PREFIX) for key in tags)
