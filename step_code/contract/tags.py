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
# also carries; when a run last used it (ISO 8601 UTC); the config's keep_for_hours when set; and, once a
# later run deployed another identity of the same model, that endpoint's name.
TAG_DEPLOYMENT_IDENTITY = "evalops:deployment-identity"
TAG_LAST_USED = "evalops:last-used"
TAG_KEEP_FOR_HOURS = "evalops:keep-for-hours"
TAG_SUPERSEDED_BY = "evalops:superseded-by"
# The values of the two tags the safety net's hourly sweep reads to delete a kept endpoint unused for its
# keep_for_hours: a UTC time in this format, and a number of hours.
LAST_USED_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
# On a training job: the digest of what its weights depend on, so a later run with the same inputs can use it.
TAG_TRAINING_IDENTITY = "evalops:training-identity"


def keep_for_hours_value(hours: float) -> str:
    return f"{hours:g}"
