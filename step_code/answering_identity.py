"""The identity of what answers, as the evaluate step knows it: the response cache's model key.

`ModelConfig.identity` is what the config says. A run knows more, and each of these changes the key:
- a deployed model (jumpstart, huggingface, fine-tuned): what deploy recorded in `deployment.json`, i.e.
  the version `*` resolved to, the image, the weights (for a fine-tuned model the trained artifact) and
  the container environment, plus the digest of the fine-tuning data;
- an existing endpoint (`model_provider: endpoint`): the image (the digest SageMaker resolved, when it
  reports one), model data and environment of every model behind the endpoint, read with
  DescribeEndpoint / DescribeEndpointConfig / DescribeModel, so a model swapped behind the same name
  is a new identity.
What the key leaves out on purpose: the endpoint's name (a run-scoped name would make every run a miss)
and the instance type and count (the same weights answer the same on other hardware).
An http/openai server is known only by its URL: `evalops run --no-cache` (pipeline parameter
`ResponseCache=bypass`) is the way to ask a model swapped behind the same URL again.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from step_code.contract.config import ModelConfig, canonical_digest
from step_code.contract.results import Deployment, ModelArtifact
from step_code.runners.base import ModelResponse, ModelRunner

# The fields of a deployed model's artifact that change its answers.
ANSWERING_ARTIFACT_FIELDS = (
    "model_id",
    "model_version",
    "image_uri",
    "model_data_url",
    "environment",
    "training_data_sha256",
)


def artifact_identity(artifact: ModelArtifact) -> dict[str, Any]:
    return {name: getattr(artifact, name) for name in ANSWERING_ARTIFACT_FIELDS}


def answering_identity(
    model: ModelConfig,
    deployment: Deployment | None = None,
    endpoint_models: list[dict[str, Any]] | None = None,
) -> str:
    """`model.identity`, extended with the deployed artifact and the models behind an existing endpoint."""
    parts = [model.identity]
    if deployment is not None:
        parts.append("deployed:" + canonical_digest(artifact_identity(deployment.artifact)))
    if endpoint_models is not None:
        parts.append("serving:" + canonical_digest(endpoint_models))
    return "|".join(parts)


@dataclass(frozen=True)
class IdentifiedRunner:
    """A runner answering under the identity the run resolved (the runner itself knows only the config's)."""

    runner: ModelRunner
    identity: str

    @property
    def name(self) -> str:
        return self.runner.name

    @property
    def request_settings(self) -> Mapping[str, Any]:
        return self.runner.request_settings

    @property
    def sends_requests(self) -> bool:
        return self.runner.sends_requests

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        return self.runner.invoke(prompt, model_input=model_input, timeout_seconds=timeout_seconds)
