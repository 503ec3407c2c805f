"""The provider table: what each `model_provider` deploys, how it is invoked, priced, registered and permitted.

Adding a provider is one entry here plus its runner module under `step_code/runners/` (listed in
`step_code/runners/factory.py` by its `invocation`). tests/step_code/contract/test_providers.py fails when
a provider has no entry or an entry names an invocation no runner serves.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

ModelProvider = Literal["jumpstart", "huggingface", "bedrock", "endpoint", "http", "openai", "recorded"]
# What the deploy step creates: a JumpStart model or a Hugging Face TGI container (None: nothing).
Deploys = Literal["jumpstart-model", "huggingface-tgi"]
Invocation = Literal["sagemaker-endpoint", "bedrock", "http-tgi", "openai-chat", "recorded"]
# How a run's cost is estimated: the endpoint's instance hours, Bedrock's token prices, or not at all.
Pricing = Literal["instance-hours", "bedrock-tokens", "none"]
# What a registered model package of the winner holds: its container, or a reference to what answered.
Registration = Literal["container", "bedrock-arn", "endpoint-arn", "location"]
# What the execution role must be allowed beyond the pipeline's own resources (and, for providers that
# deploy, creating models and endpoints).
Access = Literal["jumpstart-artifacts", "bedrock-invoke", "endpoint-invoke", "none"]


@dataclass(frozen=True)
class Requirement:
    """A config field the provider cannot do without; `hint` says what the field holds for it."""

    field: str
    hint: str = ""


@dataclass(frozen=True)
class ProviderSpec:
    deploys: Deploys | None
    # The provider calls an endpoint the user owns (named in the config): never deleted, its instances priced.
    existing_endpoint: bool
    invocation: Invocation
    # False for a provider that replays recorded responses (from `responses_location`) instead of calling.
    calls_model: bool
    requires: tuple[Requirement, ...]
    finetunable: bool
    pricing: Pricing
    registration: Registration
    access: Access

    @property
    def output_required(self) -> bool:
        """SageMaker endpoints answer in the container's own JSON: the config says where the text is."""
        return self.invocation == "sagemaker-endpoint"


PROVIDERS: dict[ModelProvider, ProviderSpec] = {
    "jumpstart": ProviderSpec(
        deploys="jumpstart-model",
        existing_endpoint=False,
        invocation="sagemaker-endpoint",
        calls_model=True,
        requires=(Requirement("model_id"), Requirement("deployment_config")),
        finetunable=True,
        pricing="instance-hours",
        registration="container",
        access="jumpstart-artifacts",
    ),
    "huggingface": ProviderSpec(
        deploys="huggingface-tgi",
        existing_endpoint=False,
        invocation="sagemaker-endpoint",
        calls_model=True,
        requires=(Requirement("model_id"), Requirement("deployment_config")),
        finetunable=False,
        pricing="instance-hours",
        registration="container",
        access="none",
    ),
    "bedrock": ProviderSpec(
        deploys=None,
        existing_endpoint=False,
        invocation="bedrock",
        calls_model=True,
        requires=(Requirement("model_id", " (the Bedrock model id)"),),
        finetunable=False,
        pricing="bedrock-tokens",
        registration="bedrock-arn",
        access="bedrock-invoke",
    ),
    "endpoint": ProviderSpec(
        deploys=None,
        existing_endpoint=True,
        invocation="sagemaker-endpoint",
        calls_model=True,
        requires=(Requirement("endpoint_name", " (the existing endpoint)"),),
        finetunable=False,
        pricing="instance-hours",
        registration="endpoint-arn",
        access="endpoint-invoke",
    ),
    "http": ProviderSpec(
        deploys=None,
        existing_endpoint=False,
        invocation="http-tgi",
        calls_model=True,
        requires=(Requirement("endpoint_url"),),
        finetunable=False,
        pricing="none",
        registration="location",
        access="none",
    ),
    "openai": ProviderSpec(
        deploys=None,
        existing_endpoint=False,
        invocation="openai-chat",
        calls_model=True,
        requires=(Requirement("endpoint_url"),),
        finetunable=False,
        pricing="none",
        registration="location",
        access="none",
    ),
    "recorded": ProviderSpec(
        deploys=None,
        existing_endpoint=False,
        invocation="recorded",
        calls_model=False,
        requires=(Requirement("responses_location"),),
        finetunable=False,
        pricing="none",
        registration="location",
        access="none",
    ),
}

# Providers whose endpoint this platform creates (and therefore deletes).
DEPLOYED_PROVIDERS: tuple[ModelProvider, ...] = tuple(p for p, spec in PROVIDERS.items() if spec.deploys)
FINETUNABLE_PROVIDERS: tuple[ModelProvider, ...] = tuple(p for p, spec in PROVIDERS.items() if spec.finetunable)
