"""Amazon Bedrock models.

By default every model is called through the Converse API: one request shape for Anthropic, Amazon
Titan/Nova, Meta Llama, Mistral and Cohere models, with token usage in every answer. A model that
Converse does not serve (imported custom models, for one) gets a `content_template` in its config:
it is then called with `InvokeModel` and that native body, and its `output` JMESPath reads the answer;
token counts come from Bedrock's X-Amzn-Bedrock-*-Token-Count response headers.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from step_code.contract.config import ModelConfig
from step_code.runners.aws_clients import RuntimeClients, classify_aws_error, read_json_body, require_complete
from step_code.runners.base import ModelResponse, PermanentError, model_request_settings
from step_code.runners.payload import TGI_ONLY_PARAMETERS, OutputReader, RequestBody, snippet

# Converse's inferenceConfig fields and the names the same settings go by in JumpStart/TGI/OpenAI configs.
CONVERSE_PARAMETER_NAMES: Mapping[str, str] = {
    "maxTokens": "maxTokens",
    "max_new_tokens": "maxTokens",
    "max_tokens": "maxTokens",
    "max_gen_len": "maxTokens",
    "max_tokens_to_sample": "maxTokens",
    "maxTokenCount": "maxTokens",
    "temperature": "temperature",
    "topP": "topP",
    "top_p": "topP",
    "stopSequences": "stopSequences",
    "stop_sequences": "stopSequences",
    "stop": "stopSequences",
}
INPUT_TOKENS_HEADER = "x-amzn-bedrock-input-token-count"
OUTPUT_TOKENS_HEADER = "x-amzn-bedrock-output-token-count"


def converse_parameters(parameters: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split inference parameters into Converse's inferenceConfig and the model-specific rest
    (additionalModelRequestFields, e.g. top_k). TGI-only switches are dropped: Bedrock rejects them."""
    inference: dict[str, Any] = {}
    additional: dict[str, Any] = {}
    for key, value in parameters.items():
        if key in TGI_ONLY_PARAMETERS:
            continue
        target = CONVERSE_PARAMETER_NAMES.get(key)
        if target is None:
            additional[key] = value
        elif target == "stopSequences" and isinstance(value, str):
            inference[target] = [value]
        else:
            inference[target] = value
    return inference, additional


def _header_int(headers: Mapping[str, str], name: str) -> int | None:
    value = headers.get(name)
    return int(value) if value is not None and value.isdigit() else None


class BedrockRunner:
    sends_requests = True

    def __init__(self, model: ModelConfig, *, region: str | None, max_pool_connections: int) -> None:
        evaluation = model.evaluation_config
        if model.model_id is None:
            raise ValueError(f"models[{model.name}].model_id (the Bedrock model id) is required")
        self.name = model.name
        self.identity = model.identity
        self.request_settings = model_request_settings(evaluation)
        self.model_id = model.model_id
        self._clients = RuntimeClients("bedrock-runtime", region=region, max_pool_connections=max_pool_connections)
        self._inference, self._additional = converse_parameters(evaluation.inference_parameters)
        self._body: RequestBody | None = None
        self._reader: OutputReader | None = None
        if evaluation.content_template is not None:
            if evaluation.output is None:
                raise ValueError(
                    f"models[{model.name}].evaluation_config.output is required with a content_template "
                    "(the model is then called with its native InvokeModel body)"
                )
            self._body = RequestBody(evaluation.content_template, evaluation.inference_parameters)
            self._reader = OutputReader(evaluation.output, evaluation.log_probability)

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        client = self._clients.get(timeout_seconds)
        try:
            if self._body is not None and self._reader is not None:
                return self._invoke_model(client, prompt, self._body, self._reader)
            return self._converse(client, prompt)
        except (ClientError, BotoCoreError) as exc:
            raise classify_aws_error(exc) from exc

    def _converse(self, client: Any, prompt: str) -> ModelResponse:
        request: dict[str, Any] = {
            "modelId": self.model_id,
            "messages": [{"role": "user", "content": [{"text": prompt}]}],
        }
        if self._inference:
            request["inferenceConfig"] = self._inference
        if self._additional:
            request["additionalModelRequestFields"] = self._additional
        response = client.converse(**request)
        require_complete(client, "Converse", response)
        content = response.get("output", {}).get("message", {}).get("content")
        texts = [block["text"] for block in content or [] if isinstance(block, dict) and "text" in block]
        if not texts:
            raise PermanentError(f"Converse answer has no text content: {snippet(json.dumps(response, default=str))!r}")
        usage = response.get("usage") or {}
        return ModelResponse(
            text="".join(texts), input_tokens=usage.get("inputTokens"), output_tokens=usage.get("outputTokens")
        )

    def _invoke_model(self, client: Any, prompt: str, body: RequestBody, reader: OutputReader) -> ModelResponse:
        response = client.invoke_model(
            modelId=self.model_id,
            body=json.dumps(body.render(prompt)).encode("utf-8"),
            contentType="application/json",
            accept="application/json",
        )
        parsed = read_json_body(response["body"])
        headers = response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        return ModelResponse(
            text=reader.text(parsed),
            input_tokens=_header_int(headers, INPUT_TOKENS_HEADER),
            output_tokens=_header_int(headers, OUTPUT_TOKENS_HEADER),
            log_probability=reader.log_probability(parsed),
        )
