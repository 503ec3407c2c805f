"""boto3 runtime clients for model calls, and what their failures mean for a retry.

A 2xx answer whose body is cut short or is not JSON is retried like a 5xx, as the plain-HTTP runners do: a
model container under load, or a proxy in front of it, does produce such bodies, and they say nothing about
the request. `invoke_all` bounds the retries with `max_retries`, so an answer that is always damaged still
fails its record. Retries are `invoke_all`'s job (one policy, counted in `model_calls`), so botocore's own
retries are off. Endpoints follow boto3's usual settings: `AWS_ENDPOINT_URL`, or per service
`AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME` / `AWS_ENDPOINT_URL_BEDROCK_RUNTIME`.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from typing import Any, Literal

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
    IncompleteReadError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)

from step_code.runners.base import InvocationError, PermanentError, RetryableError
from step_code.runners.payload import snippet

RuntimeService = Literal["sagemaker-runtime", "bedrock-runtime"]

# Error codes that mean "not now" rather than "not this request", whatever their HTTP status.
RETRYABLE_CODES = frozenset(
    {
        "ThrottlingException",
        "Throttling",
        "TooManyRequestsException",
        "ModelNotReadyException",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "InternalFailure",
        "InternalServerException",
        "ModelTimeoutException",
        "RequestTimeout",
    }
)


class RuntimeClients:
    """One client per call timeout (botocore fixes timeouts per client); clients are thread-safe."""

    def __init__(self, service: RuntimeService, *, region: str | None, max_pool_connections: int) -> None:
        self._service = service
        self._region = region
        self._pool = max_pool_connections
        self._clients: dict[float, Any] = {}
        self._lock = threading.Lock()

    def get(self, timeout_seconds: float) -> Any:
        with self._lock:
            client = self._clients.get(timeout_seconds)
            if client is None:
                config = BotoConfig(
                    connect_timeout=timeout_seconds,
                    read_timeout=timeout_seconds,
                    retries={"total_max_attempts": 1, "mode": "standard"},
                    max_pool_connections=self._pool,
                )
                client = boto3.session.Session().client(self._service, region_name=self._region, config=config)
                self._clients[timeout_seconds] = client
            return client


def read_body(body: Any) -> bytes:
    """All of a response's streaming body, read through botocore's own `StreamingBody.read`.

    `with body as stream` would hand out urllib3's raw response, whose read lets a connection cut mid-body
    escape as urllib3's ProtocolError; botocore's read turns it into ResponseStreamingError (or
    IncompleteReadError for a short body), which `classify_aws_error` retries.
    """
    try:
        data: bytes = body.read()
    finally:
        body.close()
    return data


def read_json_body(body: Any) -> Any:
    """A streaming body (InvokeEndpoint, InvokeModel) read whole and parsed as JSON."""
    raw = read_body(body)
    try:
        return json.loads(raw)
    except ValueError:
        raise RetryableError(f"the model returned a body that is cut short or not JSON: {snippet(raw)!r}") from None


def require_complete(client: Any, operation: str, response: Mapping[str, Any]) -> None:
    """Raise RetryableError when a parsed answer lacks members its API always sends.

    For a JSON operation (Converse) botocore does not raise on a body that is cut short or not JSON: it parses
    it as `{"message": <body>}`, which matches no output member, so the answer comes back with none of them.
    The service model's required members tell that damage from a real answer.
    """
    shape = client.meta.service_model.operation_model(operation).output_shape
    missing = [name for name in shape.required_members if name not in response]
    if missing:
        raise RetryableError(f"{operation} answer without {', '.join(missing)}: the body was cut short or not JSON")


def classify_aws_error(exc: Exception) -> InvocationError:
    """Map a boto3 failure to RetryableError or PermanentError with a one-line message."""
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "")) or str(exc)
        status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        original = exc.response.get("OriginalStatusCode")
        if code == "ModelError" and original is not None:
            # SageMaker wraps the container's own answer in a 424; its original status tells us more.
            status = int(str(original))
        text = f"{code or 'HTTP ' + str(status)} ({status}): {message}"
        if status == 429 or status >= 500 or code in RETRYABLE_CODES:
            return RetryableError(text)
        return PermanentError(text)
    if isinstance(exc, HTTPClientError | BotoConnectionError | IncompleteReadError):
        return RetryableError(f"{type(exc).__name__}: {exc}")
    if isinstance(exc, BotoCoreError):
        return PermanentError(f"{type(exc).__name__}: {exc}")
    raise TypeError(f"not a boto3 error: {exc!r}")
