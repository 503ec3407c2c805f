"""A Text Generation Inference (or any JumpStart-payload) server reached by plain HTTP, for local use.

The body is the one a SageMaker endpoint would get (see `payload.RequestBody`). Without an `output`
JMESPath the answer is TGI's own: `[{"generated_text"}]` from `/`, `{"generated_text"}` from `/generate`.
When `details` was requested, TGI reports the generated token count (`details.generated_tokens`).
"""

from __future__ import annotations

import jmespath

from step_code.contract.config import ModelConfig
from step_code.runners.base import ModelResponse, model_request_settings
from step_code.runners.http_json import JsonHttpClient
from step_code.runners.payload import OutputReader, RequestBody

TGI_OUTPUT = "[0].generated_text || generated_text"
TGI_GENERATED_TOKENS = jmespath.compile("[0].details.generated_tokens || details.generated_tokens")


class HttpTgiRunner:
    sends_requests = True

    def __init__(self, model: ModelConfig, *, max_pool_connections: int) -> None:
        evaluation = model.evaluation_config
        if model.endpoint_url is None:
            raise ValueError(f"models[{model.name}].endpoint_url is required for model_provider 'http'")
        self.name = model.name
        self.identity = model.identity
        self.request_settings = model_request_settings(evaluation)
        self.url = model.endpoint_url
        self._body = RequestBody(evaluation.content_template, evaluation.inference_parameters)
        self._reader = OutputReader(evaluation.output or TGI_OUTPUT, evaluation.log_probability)
        self._http = JsonHttpClient(max_pool_connections=max_pool_connections)

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        body = self._http.post(self.url, self._body.render(prompt), timeout_seconds=timeout_seconds)
        generated = TGI_GENERATED_TOKENS.search(body)
        return ModelResponse(
            text=self._reader.text(body),
            output_tokens=generated if isinstance(generated, int) else None,
            log_probability=self._reader.log_probability(body),
        )
