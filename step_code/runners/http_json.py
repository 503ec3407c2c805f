"""JSON over HTTP for the local-model runners (TGI, OpenAI-compatible servers).

A 2xx answer whose body is cut short or is not JSON is retried like a 5xx: a proxy hiccup or a dropped
connection mid-body (`ChunkedEncodingError`) says nothing about the request, and the AWS runners already
retry the same faults (botocore's IncompleteReadError). `invoke_all` bounds the retries with `max_retries`,
so a server that always answers garbage still fails the record.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import requests
from requests.adapters import HTTPAdapter

from step_code.runners.base import PermanentError, RetryableError
from step_code.runners.payload import snippet

# 408/429 and 5xx may pass; any other non-2xx is an answer about the request itself.
RETRYABLE_STATUS = frozenset({408, 429})


class JsonHttpClient:
    """A pooled session (one connection per concurrent call, kept alive) that posts JSON and parses the answer."""

    def __init__(self, *, max_pool_connections: int, headers: Mapping[str, str] | None = None) -> None:
        self._session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_pool_connections)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers.update({"Content-Type": "application/json", "Accept": "application/json"})
        self._session.headers.update(dict(headers or {}))

    def post(self, url: str, body: Any, *, timeout_seconds: float) -> Any:
        try:
            response = self._session.post(url, json=body, timeout=timeout_seconds)
            raw = response.content
        except (requests.Timeout, requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise RetryableError(f"{type(exc).__name__} calling {url}: {exc}") from exc
        except requests.RequestException as exc:
            raise PermanentError(f"{type(exc).__name__} calling {url}: {exc}") from exc
        status = response.status_code
        if status in RETRYABLE_STATUS or status >= 500:
            raise RetryableError(f"HTTP {status} from {url}: {snippet(raw)!r}")
        if status >= 300:
            raise PermanentError(f"HTTP {status} from {url}: {snippet(raw)!r}")
        try:
            return json.loads(raw)
        except ValueError:
            raise RetryableError(f"HTTP {status} from {url} with a body that is not JSON: {snippet(raw)!r}") from None
