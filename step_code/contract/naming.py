"""Names of the AWS resources a run creates: unique per execution, prefixed, within SageMaker's limits."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from step_code.contract.config import ModelConfig

SAGEMAKER_NAME_MAX = 63
EXECUTION_SUFFIX_LENGTH = 12


def _slug(value: str) -> str:
    return re.sub(r"-{2,}", "-", re.sub(r"[^a-zA-Z0-9-]", "-", value)).strip("-")


def execution_suffix(execution_id: str) -> str:
    """SageMaker pipeline execution ids are 12 lowercase alphanumerics; anything else is hashed to that size."""
    cleaned = re.sub(r"[^a-z0-9]", "", execution_id.lower())
    if 0 < len(cleaned) <= EXECUTION_SUFFIX_LENGTH:
        return cleaned
    return hashlib.sha256(execution_id.encode()).hexdigest()[:EXECUTION_SUFFIX_LENGTH]


def run_scoped_name(prefix: str, base: str, execution_id: str, max_length: int = SAGEMAKER_NAME_MAX) -> str:
    """`{prefix}{base}-{execution}`, at most `max_length` characters.

    The prefix is kept whole because IAM policies match on it; a base that does not fit is cut and
    given a short hash of its full text, so two long bases that share a beginning stay distinct.
    """
    suffix = execution_suffix(execution_id)
    base = _slug(base)
    room = max_length - len(prefix) - len(suffix) - 1
    if room < 6:
        raise ValueError(f"name prefix {prefix!r} leaves no room for a resource name within {max_length} characters")
    if len(base) > room:
        digest = hashlib.sha256(base.encode()).hexdigest()[:5]
        base = f"{base[: room - 6].rstrip('-')}-{digest}"
    return f"{prefix}{base}-{suffix}"


# A kept endpoint's name ends with "-k" and this many hex digits of its deployment identity's digest.
IDENTITY_SUFFIX_DIGITS = EXECUTION_SUFFIX_LENGTH - 1


def kept_endpoint_name(prefix: str, base: str, identity_digest: str) -> str:
    """`{prefix}{base}-k<digest>`: the same for every run that deploys the same thing, so a later run finds it.

    The suffix has the length of an execution suffix, so a kept name fits wherever a run-scoped one does.
    """
    return run_scoped_name(prefix, base, "k" + identity_digest[:IDENTITY_SUFFIX_DIGITS])


def kept_endpoint_stem(name: str) -> str:
    """What every kept endpoint of the same model starts with (its name without the identity suffix)."""
    return name[:-EXECUTION_SUFFIX_LENGTH]


def resource_base(pipeline_name: str, model: ModelConfig) -> str:
    """What the deploy and finetune steps name a model's resources after (before prefix and execution suffix)."""
    return model.endpoint_name or f"{pipeline_name}-{model.name}"


def deployed_pipeline_name(resource_prefix: str, pipeline_name: str) -> str:
    """The SageMaker pipeline's name: the config's, prefixed like every resource of the environment.

    It is also the value of the `evalops:pipeline` tag, on the stacks' resources and on what a run creates.
    """
    return f"{resource_prefix}{pipeline_name}"
