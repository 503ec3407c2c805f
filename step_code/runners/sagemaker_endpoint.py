"""Models behind a SageMaker real-time endpoint: the ones we deploy (jumpstart, huggingface) and existing
ones (`endpoint` provider), called with `sagemaker-runtime` `InvokeEndpoint`."""

from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code.contract.config import ModelConfig, custom_attributes_header
from step_code.runners.aws_clients import RuntimeClients, classify_aws_error, read_json_body
from step_code.runners.base import ModelResponse, model_request_settings
from step_code.runners.payload import OutputReader, RequestBody


class SageMakerEndpointRunner:
    """JSON in, JSON out; the body follows the content template (see `payload.RequestBody`), the answer is
    read with the `output` JMESPath and the config's custom attributes go in the CustomAttributes header
    (JumpStart's gated models need `accept_eula=true` there). Endpoints report no token counts."""

    sends_requests = True

    def __init__(
        self, model: ModelConfig, *, endpoint_name: str, region: str | None, max_pool_connections: int
    ) -> None:
        evaluation = model.evaluation_config
        if evaluation.output is None:
            raise ValueError(f"models[{model.name}].evaluation_config.output is required for a SageMaker endpoint")
        self.name = model.name
        self.identity = model.identity
        self.request_settings = model_request_settings(evaluation)
        self.endpoint_name = endpoint_name
        self._body = RequestBody(evaluation.content_template, evaluation.inference_parameters)
        self._reader = OutputReader(evaluation.output, evaluation.log_probability)
        self._custom_attributes = custom_attributes_header(evaluation.custom_attributes)
        self._clients = RuntimeClients("sagemaker-runtime", region=region, max_pool_connections=max_pool_connections)

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        request: dict[str, Any] = {
            "EndpointName": self.endpoint_name,
            "ContentType": "application/json",
            "Accept": "application/json",
            "Body": json.dumps(self._body.render(prompt)).encode("utf-8"),
        }
        if self._custom_attributes:
            request["CustomAttributes"] = self._custom_attributes
        try:
            response = self._clients.get(timeout_seconds).invoke_endpoint(**request)
            body = read_json_body(response["Body"])
        except (ClientError, BotoCoreError) as exc:
            raise classify_aws_error(exc) from exc
        return ModelResponse(text=self._reader.text(body), log_probability=self._reader.log_probability(body))
