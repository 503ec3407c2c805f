"""Request bodies from a config's content template, and answers read out of JSON responses.

The content template follows the reference sample: it is the *inputs* of a JumpStart/TGI request unless
it is a whole body (a JSON object).
- no template                       -> `{"inputs": prompt, "parameters": inference_parameters}`
- text, e.g. "PROMPT_PLACEHOLDER"     -> `{"inputs": <text with the prompt>, "parameters": ...}` (falcon/TGI)
- a list, e.g. [[{"role": "user", "content": "PROMPT_PLACEHOLDER"}]]
                                     -> `{"inputs": <the list with the prompt>, "parameters": ...}` (llama-2-chat)
- an object (or JSON text of one)    -> that body; inference parameters are merged into its `parameters`
  object when it has one or has `inputs` (TGI/LMI shape), else at its top level (flat bodies such as
  Bedrock's native ones or older JumpStart `text_inputs` models). Inference parameters win over values
  the template also sets.
`parameters` is left out when there are no inference parameters.
PROMPT_PLACEHOLDER is replaced inside JSON strings by the prompt, which is what substituting the
JSON-escaped prompt into the template text amounts to; a bare (unquoted) placeholder in JSON text
stands for the prompt as a JSON string.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import jmespath

from step_code.contract.config import PROMPT_PLACEHOLDER
from step_code.runners.base import PermanentError

SNIPPET_CHARS = 200
# TGI switches with no meaning for chat-style APIs (they never echo the prompt), which reject them.
TGI_ONLY_PARAMETERS = frozenset({"return_full_text", "do_sample", "details", "decoder_input_details"})


def snippet(data: bytes | str) -> str:
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS] + "..."


def _template_structure(template: str) -> Any:
    """JSON text of a list or object, parsed; None for a plain text template."""
    for candidate in (template, template.replace(PROMPT_PLACEHOLDER, json.dumps(PROMPT_PLACEHOLDER))):
        try:
            parsed = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(parsed, dict | list):
            return parsed
    if template.lstrip().startswith(("{", "[")):
        raise ValueError(f"content template {snippet(template)!r} starts like JSON but is not valid JSON")
    return None


def _fill(template: Any, prompt: str) -> Any:
    if isinstance(template, str):
        return template.replace(PROMPT_PLACEHOLDER, prompt)
    if isinstance(template, list):
        return [_fill(item, prompt) for item in template]
    if isinstance(template, dict):
        return {key: _fill(value, prompt) for key, value in template.items()}
    return template


class RequestBody:
    """Renders the JSON request body for one prompt (see the module docstring for the rules)."""

    def __init__(self, content_template: Any, inference_parameters: Mapping[str, Any]) -> None:
        if isinstance(content_template, str):
            structure = _template_structure(content_template)
            self._template: Any = content_template if structure is None else structure
        else:
            self._template = content_template
        self._parameters = dict(inference_parameters)

    def render(self, prompt: str) -> Any:
        filled = prompt if self._template is None else _fill(self._template, prompt)
        if isinstance(filled, dict):
            return self._merge(filled)
        body: dict[str, Any] = {"inputs": filled}
        if self._parameters:
            body["parameters"] = dict(self._parameters)
        return body

    def _merge(self, body: dict[str, Any]) -> dict[str, Any]:
        if not self._parameters:
            return body
        existing = body.get("parameters")
        if isinstance(existing, dict):
            return {**body, "parameters": {**existing, **self._parameters}}
        if "inputs" in body:
            return {**body, "parameters": dict(self._parameters)}
        return {**body, **self._parameters}


def content_template_problem(content_template: Any, inference_parameters: Mapping[str, Any]) -> str | None:
    """Why the runners could not build a request body from this template, or None: the config check."""
    try:
        json.dumps(RequestBody(content_template, inference_parameters).render("prompt"))
    except (TypeError, ValueError) as exc:
        return str(exc)
    return None


class OutputReader:
    """Reads the generated text (and optionally a log probability) out of a parsed response."""

    def __init__(self, output: str, log_probability: str | None = None) -> None:
        self._output_path = output
        self._output = jmespath.compile(output)
        self._log_probability = jmespath.compile(log_probability) if log_probability else None

    def text(self, body: Any) -> str:
        value = self._output.search(body)
        if isinstance(value, str):
            return value
        if isinstance(value, int | float) and not isinstance(value, bool):
            return str(value)
        found = "nothing" if value is None else f"a {type(value).__name__}"
        raise PermanentError(
            f"output path {self._output_path!r} found {found} in the response, expected text: "
            f"{snippet(json.dumps(body))!r}"
        )

    def log_probability(self, body: Any) -> float | None:
        if self._log_probability is None:
            return None
        value = self._log_probability.search(body)
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        return None
