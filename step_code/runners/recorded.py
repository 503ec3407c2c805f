"""Answers a model already gave, read from a JSON Lines file: no model is called.

Two line shapes are accepted:
- Bedrock's bring-your-own-inference-responses format:
  `{"prompt": ..., "referenceResponse": ..., "modelResponses": [{"response": ..., "modelIdentifier": ...}]}`;
  the response whose modelIdentifier is the model's name or model_id is used (the only one when there
  is a single response);
- `{"prompt": ..., "model_output": ...}` or `{"model_input": ..., "model_output": ...}`.
A prompt is looked up as rendered first, then as the raw catalog input. The first line for a text wins.
"""

from __future__ import annotations

from typing import Any

from step_code import storage
from step_code.contract.config import ModelConfig
from step_code.jsonl import json_lines, parse_record
from step_code.runners.base import ModelResponse, PermanentError, model_request_settings


class RecordedResponsesError(ValueError):
    """The responses file cannot be used; the message names the file and line."""


def _pick_response(entry: dict[str, Any], names: tuple[str, ...], where: str) -> Any:
    responses = entry["modelResponses"]
    if not isinstance(responses, list) or not responses:
        raise RecordedResponsesError(f"{where}: modelResponses must be a non-empty list")
    for item in responses:
        if isinstance(item, dict) and item.get("modelIdentifier") in names:
            return item.get("response")
    if len(responses) == 1 and isinstance(responses[0], dict):
        return responses[0].get("response")
    raise RecordedResponsesError(f"{where}: no modelResponses entry has modelIdentifier {' or '.join(names)}")


def parse_recorded(text: str, *, source: str, names: tuple[str, ...]) -> dict[str, str]:
    """Recorded responses by prompt (or model input) text."""
    answers: dict[str, str] = {}
    for number, line in json_lines(text):
        where = f"{source} line {number}"
        entry, problem = parse_record(line)
        if problem is not None:
            raise RecordedResponsesError(f"{where}: {problem}")
        if not isinstance(entry, dict):
            raise RecordedResponsesError(f"{where}: expected a JSON object")
        key = entry.get("prompt", entry.get("model_input"))
        if not isinstance(key, str):
            raise RecordedResponsesError(f"{where}: expected a string 'prompt' or 'model_input'")
        output = _pick_response(entry, names, where) if "modelResponses" in entry else entry.get("model_output")
        if not isinstance(output, str):
            raise RecordedResponsesError(f"{where}: expected the response text as a string")
        answers.setdefault(key, output)
    return answers


class RecordedRunner:
    sends_requests = False

    def __init__(self, model: ModelConfig, *, responses_path: str) -> None:
        self.name = model.name
        self.identity = model.identity
        self.request_settings = model_request_settings(model.evaluation_config)
        self.responses_path = responses_path
        names = tuple(n for n in (model.name, model.model_id) if n)
        try:
            text = storage.read_text(responses_path)
        except FileNotFoundError:
            raise RecordedResponsesError(f"recorded responses file {responses_path} does not exist") from None
        self._answers = parse_recorded(text, source=responses_path, names=names)

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        answer = self._answers.get(prompt)
        if answer is None:
            answer = self._answers.get(model_input)
        if answer is None:
            raise PermanentError(f"no recorded response for this prompt in {self.responses_path}")
        return ModelResponse(text=answer)
