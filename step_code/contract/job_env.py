"""Environment variables the pipeline sets on step jobs (and the local engine sets in-process)."""

from __future__ import annotations

# Resource names made by deploy/finetune start with this prefix; IAM policies match on it.
RESOURCE_PREFIX_ENV = "EVALOPS_RESOURCE_PREFIX"
DEFAULT_RESOURCE_PREFIX = "evalops-local-"
EXECUTION_ARN_ENV = "EVALOPS_EXECUTION_ARN"
ROLE_ARN_ENV = "EVALOPS_ROLE_ARN"
ARTIFACTS_URI_ENV = "EVALOPS_ARTIFACTS_URI"
DATA_URI_ENV = "EVALOPS_DATA_URI"
# The KMS key the steps encrypt what they write to S3 with.
KMS_KEY_ENV = "EVALOPS_KMS_KEY_ARN"
