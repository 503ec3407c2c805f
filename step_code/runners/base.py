"""What every model runner provides, and the two kinds of failure `invoke_all` tells apart.

A runner turns one rendered prompt into one `ModelResponse`, or raises:
- `RetryableError` for what may pass on its own (throttling, 5xx, timeouts, dropped connections, a
  connection cut mid-body, a 2xx body that is truncated or not JSON, a Converse answer without the members
  its API always sends): `invoke_all` backs off and tries again, at most `max_retries` times;
- `PermanentError` for what will not (4xx, a body without the configured output, no recorded
  response): the record fails at once with the message.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from step_code.contract.config import EvaluationConfig


class InvocationError(Exception):
    """A model call that did not produce an output."""


class RetryableError(InvocationError):
    """The same request may succeed later."""


class PermanentError(InvocationError):
    """Sending the same request again would fail the same way."""


@dataclass(frozen=True)
class ModelResponse:
    """One model output. Token counts are None when the API does not report them."""

    text: str
    input_tokens: int | None = None
    output_tokens: int | None = None
    log_probability: float | None = None


@runtime_checkable
class ModelRunner(Protocol):
    """Calls one configured model. Implementations must be safe to call from many threads at once.

    - `name`: the config's model name (for logs and progress).
    - `identity`: what makes two runners' answers interchangeable (`ModelConfig.identity`).
    - `request_settings`: everything besides the prompt that shapes the request or how the answer is
      read (inference parameters, content template, custom attributes, output paths); part of the
      response-cache key.
    - `sends_requests`: False for runners that answer without calling a model (recorded responses):
      their answers are neither counted as model calls nor cached.
    """

    @property
    def name(self) -> str: ...

    @property
    def identity(self) -> str: ...

    @property
    def request_settings(self) -> Mapping[str, Any]: ...

    @property
    def sends_requests(self) -> bool: ...

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        """Answer one rendered prompt (`model_input` is the raw catalog text it was rendered from)."""
        ...


def model_request_settings(evaluation_config: EvaluationConfig) -> dict[str, Any]:
    """The part of a model's `evaluation_config` that changes what a request returns (cache key input)."""
    return {
        "content_template": evaluation_config.content_template,
        "inference_parameters": evaluation_config.inference_parameters,
        "custom_attributes": evaluation_config.custom_attributes,
        "output": evaluation_config.output,
        "log_probability": evaluation_config.log_probability,
    }
