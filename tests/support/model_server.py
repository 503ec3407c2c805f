"""A local model server for tests and benchmarks, speaking the wire formats our runners use.

Routes (POST, JSON):
- `/endpoints/<name>/invocations` — SageMaker runtime's InvokeEndpoint path (boto3 `sagemaker-runtime` with
  `endpoint_url=server.url` lands here). JumpStart/TGI `{"inputs": "...", "parameters": {...}}` ->
  `[{"generated_text": ...}]` (prompt prepended when `return_full_text` is true, TGI `details` when asked);
  Llama-2-chat `{"inputs": [[{"role", "content"}, ...]]}` -> `[{"generation": {"role", "content"}}]`.
- `/model/<id>/converse` — Bedrock Converse, with `usage`.
- `/model/<id>/invoke` — Bedrock InvokeModel native bodies: Anthropic messages, Amazon Titan `inputText`,
  Meta Llama/Mistral `prompt`; token counts in the X-Amzn-Bedrock-*-Token-Count headers.
- `/generate` and `/` — a plain TGI server.
- `/v1/chat/completions` — OpenAI-compatible chat completions, with `usage`.

Answers are a deterministic function of the prompt: `answers[prompt]` when given, else `echo: <prompt>`.
Token counts are whitespace-separated words. Faults can be injected three ways (first match wins):
`fail_prompt` (a given prompt, always or its first n requests), `inject` (the next requests in arrival
order) and `fail_rate` (a seeded random share). Fault kinds: `throttle` (429), `error` (500),
`bad_request` (400), `malformed` (200 with a body that is not JSON), `truncated` (200 with the first half
of the real JSON answer, its length declared honestly), `cut` (200 declaring the whole answer's length, then
the connection closes after half of it: requests raises ChunkedEncodingError, botocore IncompleteReadError),
`timeout` (the answer comes `timeout_sleep_seconds` late, after the client gave up) and, for Converse only,
`no_text` (a well-formed answer whose message holds no text block, as a model that stops at once gives).
"""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Literal
from urllib.parse import unquote

FaultKind = Literal["throttle", "error", "bad_request", "malformed", "truncated", "cut", "timeout", "no_text"]
# Faults that damage the body of an otherwise good answer.
BODY_FAULTS = frozenset({"truncated", "cut"})

ERROR_RESPONSES: Mapping[str, tuple[int, str]] = {
    "throttle": (429, "ThrottlingException"),
    "error": (500, "InternalFailure"),
    "bad_request": (400, "ValidationError"),
}


def word_count(text: str) -> int:
    return len(text.split())


@dataclass(frozen=True)
class ReceivedRequest:
    route: str
    model: str
    headers: dict[str, str]
    body: Any


@dataclass
class _PromptFault:
    kind: FaultKind
    remaining: int | None


class ModelServer:
    """Threaded HTTP server on 127.0.0.1 and a free port; use as a context manager (or `serve_models`)."""

    def __init__(
        self,
        *,
        answers: Mapping[str, str] | Callable[[str], str] | None = None,
        latency_seconds: float = 0.0,
        max_concurrency: int | None = None,
        timeout_sleep_seconds: float = 2.0,
        keep_requests: bool = True,
    ) -> None:
        self._answers = answers
        self.latency_seconds = latency_seconds
        self.timeout_sleep_seconds = timeout_sleep_seconds
        self._keep_requests = keep_requests
        self._slots = threading.BoundedSemaphore(max_concurrency) if max_concurrency else None
        self._lock = threading.Lock()
        self._queued_faults: deque[FaultKind] = deque()
        self._prompt_faults: dict[str, _PromptFault] = {}
        self._fault_rate = 0.0
        self._rate_kinds: tuple[FaultKind, ...] = ()
        self._random = random.Random(0)
        self._in_flight = 0
        self.reset_counters()
        self._httpd = _Server(("127.0.0.1", 0), _Handler)
        self._httpd.model_server = self
        self.port = int(self._httpd.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, args=(0.05,), name="model-server", daemon=True
        )

    # -- lifecycle ---------------------------------------------------------------------------------
    def __enter__(self) -> ModelServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=10)

    # -- configuration -----------------------------------------------------------------------------
    def answer(self, prompt: str) -> str:
        if callable(self._answers):
            return self._answers(prompt)
        if self._answers is not None and prompt in self._answers:
            return self._answers[prompt]
        return f"echo: {prompt}"

    def inject(self, *kinds: FaultKind) -> None:
        """The next len(kinds) requests (in arrival order) get these faults."""
        with self._lock:
            self._queued_faults.extend(kinds)

    def fail_prompt(self, prompt: str, kind: FaultKind, times: int | None = None) -> None:
        """Requests carrying `prompt` get `kind`: always, or only the first `times` of them."""
        with self._lock:
            self._prompt_faults[prompt] = _PromptFault(kind, times)

    def fail_rate(self, rate: float, kinds: Sequence[FaultKind], seed: int = 0) -> None:
        """A seeded random `rate` of requests gets one of `kinds`."""
        with self._lock:
            self._fault_rate = rate
            self._rate_kinds = tuple(kinds)
            self._random = random.Random(seed)

    def reset_counters(self) -> None:
        with self._lock:
            self.requests_total = 0
            self.requests_by_route: Counter[str] = Counter()
            self.requests_by_model: Counter[str] = Counter()
            self.requests_by_prompt: Counter[str] = Counter()
            self.faults_served: Counter[str] = Counter()
            # Highest number of requests being handled at once (arrivals, before the max_concurrency cap).
            self.max_concurrency_observed = 0
            self.requests: list[ReceivedRequest] = []

    # -- request handling (called from handler threads) ---------------------------------------------
    def _begin(self, request: ReceivedRequest, prompt: str) -> FaultKind | None:
        with self._lock:
            self.requests_total += 1
            self.requests_by_route[request.route] += 1
            self.requests_by_model[request.model] += 1
            self.requests_by_prompt[prompt] += 1
            if self._keep_requests:
                self.requests.append(request)
            self._in_flight += 1
            self.max_concurrency_observed = max(self.max_concurrency_observed, self._in_flight)
            fault = self._choose_fault(prompt)
            if fault is not None:
                self.faults_served[fault] += 1
            return fault

    def _choose_fault(self, prompt: str) -> FaultKind | None:
        special = self._prompt_faults.get(prompt)
        if special is not None and (special.remaining is None or special.remaining > 0):
            if special.remaining is not None:
                special.remaining -= 1
            return special.kind
        if self._queued_faults:
            return self._queued_faults.popleft()
        if self._rate_kinds and self._random.random() < self._fault_rate:
            return self._random.choice(self._rate_kinds)
        return None

    def _end(self) -> None:
        with self._lock:
            self._in_flight -= 1

    @contextmanager
    def _slot(self) -> Iterator[None]:
        if self._slots is None:
            yield
            return
        with self._slots:
            yield


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256
    model_server: ModelServer


def _last_user_text(messages: Any) -> str:
    """The text of the last user message of a chat (OpenAI, Llama-2-chat, Anthropic or Converse shape)."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return "".join(block.get("text", "") for block in content if isinstance(block, dict))
    raise ValueError("no user message")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _body_fault: FaultKind | None = None
    _no_text = False

    def setup(self) -> None:
        super().setup()
        # Headers and body leave in separate writes; without this, delayed ACKs add ~40 ms per request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: benchmarks send thousands of requests."""

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        try:
            body = json.loads(raw)
            route, model, prompt = self._route(body)
        except (ValueError, KeyError, TypeError, IndexError) as exc:
            self._send_json(400, {"message": f"bad request: {exc}"}, error_type="ValidationError")
            return
        owner = self.server.model_server
        request = ReceivedRequest(route, model, {k.lower(): v for k, v in self.headers.items()}, body)
        fault = owner._begin(request, prompt)
        try:
            with owner._slot():
                if fault == "timeout":
                    time.sleep(owner.timeout_sleep_seconds)
                elif owner.latency_seconds:
                    time.sleep(owner.latency_seconds)
                if fault in ERROR_RESPONSES:
                    status, error_type = ERROR_RESPONSES[str(fault)]
                    self._send_json(status, {"message": f"injected {fault}"}, error_type=error_type)
                elif fault == "malformed":
                    self._send_raw(200, b"<html>upstream hiccup", "application/json")
                else:
                    self._body_fault = fault if fault in BODY_FAULTS else None
                    self._no_text = fault == "no_text"
                    self._answer(route, body, prompt, owner.answer(prompt))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (timeout fault): nothing to deliver
        finally:
            owner._end()

    def _route(self, body: Any) -> tuple[str, str, str]:
        path = self.path.split("?", 1)[0]
        parts = [unquote(p) for p in path.strip("/").split("/")]
        if len(parts) == 3 and parts[0] == "endpoints" and parts[2] == "invocations":
            inputs = body["inputs"]
            if isinstance(inputs, list):
                return "sagemaker-chat", parts[1], _last_user_text(inputs[0])
            return "sagemaker", parts[1], str(inputs)
        if len(parts) == 3 and parts[0] == "model" and parts[2] == "converse":
            return "bedrock-converse", parts[1], _last_user_text(body["messages"])
        if len(parts) == 3 and parts[0] == "model" and parts[2] == "invoke":
            if "messages" in body:
                return "bedrock-anthropic", parts[1], _last_user_text(body["messages"])
            if "inputText" in body:
                return "bedrock-titan", parts[1], str(body["inputText"])
            return "bedrock-prompt", parts[1], str(body["prompt"])
        if path == "/v1/chat/completions":
            return "openai", str(body.get("model", "")), _last_user_text(body["messages"])
        if path == "/generate":
            return "tgi-generate", "tgi", str(body["inputs"])
        if path == "/":
            return "tgi", "tgi", str(body["inputs"])
        raise KeyError(f"no route for {path}")

    def _answer(self, route: str, body: Any, prompt: str, answer: str) -> None:
        parameters = body.get("parameters") or {}
        if route in ("sagemaker", "tgi", "tgi-generate"):
            text = prompt + answer if parameters.get("return_full_text") else answer
            generation: dict[str, Any] = {"generated_text": text}
            if parameters.get("details"):
                words = answer.split()
                generation["details"] = {
                    "finish_reason": "length",
                    "generated_tokens": len(words),
                    "tokens": [{"id": i, "text": w, "logprob": -0.5} for i, w in enumerate(words)],
                }
            self._send_json(200, generation if route == "tgi-generate" else [generation])
        elif route == "sagemaker-chat":
            self._send_json(200, [{"generation": {"role": "assistant", "content": answer}}])
        elif route == "bedrock-converse":
            usage = {"inputTokens": word_count(prompt), "outputTokens": word_count(answer)}
            usage["totalTokens"] = usage["inputTokens"] + usage["outputTokens"]
            self._send_json(
                200,
                {
                    "output": {
                        "message": {"role": "assistant", "content": [] if self._no_text else [{"text": answer}]}
                    },
                    "stopReason": "max_tokens" if self._no_text else "end_turn",
                    "usage": usage,
                    "metrics": {"latencyMs": 1},
                },
            )
        elif route == "openai":
            self._send_json(
                200,
                {
                    "id": "chatcmpl-local",
                    "object": "chat.completion",
                    "model": body.get("model", ""),
                    "choices": [
                        {"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}
                    ],
                    "usage": {"prompt_tokens": word_count(prompt), "completion_tokens": word_count(answer)},
                },
            )
        else:
            self._answer_bedrock_native(route, prompt, answer)

    def _answer_bedrock_native(self, route: str, prompt: str, answer: str) -> None:
        tokens_in, tokens_out = word_count(prompt), word_count(answer)
        payload: dict[str, Any]
        if route == "bedrock-anthropic":
            payload = {
                "type": "message",
                "role": "assistant",
                "content": [{"type": "text", "text": answer}],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": tokens_in, "output_tokens": tokens_out},
            }
        elif route == "bedrock-titan":
            payload = {
                "inputTextTokenCount": tokens_in,
                "results": [{"tokenCount": tokens_out, "outputText": answer, "completionReason": "FINISH"}],
            }
        else:
            payload = {
                "generation": answer,
                "prompt_token_count": tokens_in,
                "generation_token_count": tokens_out,
                "stop_reason": "stop",
            }
        headers = {
            "X-Amzn-Bedrock-Input-Token-Count": str(tokens_in),
            "X-Amzn-Bedrock-Output-Token-Count": str(tokens_out),
        }
        self._send_json(200, payload, extra_headers=headers)

    def _send_json(
        self,
        status: int,
        payload: Any,
        *,
        error_type: str | None = None,
        extra_headers: Mapping[str, str] | None = None,
    ) -> None:
        headers = dict(extra_headers or {})
        if error_type:
            # How AWS JSON protocols name the error; botocore reads it into Error.Code.
            headers["x-amzn-ErrorType"] = error_type
        self._send_raw(status, json.dumps(payload).encode("utf-8"), "application/json", headers)

    def _send_raw(self, status: int, data: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        fault, self._body_fault = self._body_fault, None
        declared = len(data)
        if fault is not None:
            data = data[: len(data) // 2]
            if fault == "truncated":
                declared = len(data)
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(declared))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if fault == "cut":
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)
        if fault == "cut":
            self.wfile.flush()
            self.close_connection = True
            # Without a shutdown, the client would wait for the rest until its read timeout.
            self.connection.shutdown(socket.SHUT_RDWR)


@contextmanager
def serve_models(**options: Any) -> Iterator[ModelServer]:
    """`with serve_models(latency_seconds=0.05) as server: ...` (options as for ModelServer)."""
    with ModelServer(**options) as server:
        yield server
