"""OpenAI-compatible chat completions (vLLM, Ollama, llama.cpp server, ...).

`endpoint_url` is the full `/v1/chat/completions` URL or the server's base URL (`http://host:8000` or
`http://host:8000/v1`). The prompt is sent as one user message; `model` is the config's model_id (the
served model name) or, without one, the model's name. An `OPENAI_API_KEY` in the environment is sent as a
bearer token. Token counts come from the answer's `usage`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from step_code.contract.config import ModelConfig
from step_code.runners.base import ModelResponse, PermanentError, model_request_settings
from step_code.runners.http_json import JsonHttpClient
from step_code.runners.payload import TGI_ONLY_PARAMETERS, snippet

API_KEY_ENV = "OPENAI_API_KEY"
CHAT_COMPLETIONS_PATH = "/chat/completions"
# JumpStart/TGI/Bedrock spellings of the same settings, as the chat completions API names them.
OPENAI_PARAMETER_NAMES: Mapping[str, str] = {
    "max_new_tokens": "max_tokens",
    "max_gen_len": "max_tokens",
    "maxTokens": "max_tokens",
    "topP": "top_p",
    "stop_sequences": "stop",
    "stopSequences": "stop",
}


def chat_completions_url(endpoint_url: str) -> str:
    url = endpoint_url.rstrip("/")
    if url.endswith(CHAT_COMPLETIONS_PATH):
        return url
    if url.endswith("/v1"):
        return url + CHAT_COMPLETIONS_PATH
    return url + "/v1" + CHAT_COMPLETIONS_PATH


def openai_parameters(parameters: Mapping[str, Any]) -> dict[str, Any]:
    return {
        OPENAI_PARAMETER_NAMES.get(key, key): value
        for key, value in parameters.items()
        if key not in TGI_ONLY_PARAMETERS
    }


class OpenAIChatRunner:
    sends_requests = True

    def __init__(self, model: ModelConfig, *, max_pool_connections: int) -> None:
        evaluation = model.evaluation_config
        if model.endpoint_url is None:
            raise ValueError(f"models[{model.name}].endpoint_url is required for model_provider 'openai'")
        self.name = model.name
        self.identity = model.identity
        self.request_settings = model_request_settings(evaluation)
        self.url = chat_completions_url(model.endpoint_url)
        self.served_model = model.model_id or model.name
        self._parameters = openai_parameters(evaluation.inference_parameters)
        api_key = os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else None
        self._http = JsonHttpClient(max_pool_connections=max_pool_connections, headers=headers)

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        request = {
            **self._parameters,
            "model": self.served_model,
            "messages": [{"role": "user", "content": prompt}],
        }
        body = self._http.post(self.url, request, timeout_seconds=timeout_seconds)
        try:
            text = body["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            text = None
        if not isinstance(text, str):
            raise PermanentError(f"chat completion has no choices[0].message.content: {snippet(str(body))!r}")
        usage = body.get("usage") or {}
        return ModelResponse(
            text=text, input_tokens=usage.get("prompt_tokens"), output_tokens=usage.get("completion_tokens")
        )
