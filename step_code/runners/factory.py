"""The runner for a configured model."""

from __future__ import annotations

from step_code.contract.config import ModelConfig
from step_code.runners.base import ModelRunner
from step_code.runners.bedrock import BedrockRunner
from step_code.runners.http_tgi import HttpTgiRunner
from step_code.runners.openai_chat import OpenAIChatRunner
from step_code.runners.recorded import RecordedRunner
from step_code.runners.sagemaker_endpoint import SageMakerEndpointRunner


def build_runner(
    model: ModelConfig,
    *,
    responses_path: str | None = None,
    region: str | None = None,
    endpoint_name: str | None = None,
) -> ModelRunner:
    """Build the runner for `model`.

    - `responses_path`: where the recorded provider's responses file is (local path or s3:// URI),
      already resolved by the caller; required for `recorded`.
    - `region`: AWS region of SageMaker/Bedrock calls (default: boto3's usual resolution).
    - `endpoint_name`: the endpoint to call — for jumpstart/huggingface the one deploy made
      (`deployment.json`'s `endpoint_name`, required); for `endpoint` it overrides the config's.
    Connection pools are sized to `evaluation_config.max_concurrency`.
    Raises ValueError (one line, naming the model) when something the provider needs is missing.
    """
    pool = model.evaluation_config.max_concurrency
    provider, invocation = model.model_provider, model.provider.invocation
    if invocation == "sagemaker-endpoint":
        name = endpoint_name or (model.endpoint_name if model.provider.existing_endpoint else None)
        if name is None:
            raise ValueError(
                f"models[{model.name}]: the endpoint name (deployment.json's endpoint_name) is required "
                f"to call a {provider} model"
            )
        return SageMakerEndpointRunner(model, endpoint_name=name, region=region, max_pool_connections=pool)
    if invocation == "bedrock":
        return BedrockRunner(model, region=region, max_pool_connections=pool)
    if invocation == "http-tgi":
        return HttpTgiRunner(model, max_pool_connections=pool)
    if invocation == "openai-chat":
        return OpenAIChatRunner(model, max_pool_connections=pool)
    if responses_path is None:
        raise ValueError(f"models[{model.name}]: the recorded responses file location is required")
    return RecordedRunner(model, responses_path=responses_path)
