"""An fmeval ModelRunner that answers from the outputs the evaluate step already has, never from a model.

fmeval's robustness and stereotyping algorithms call `model.predict(prompt)` inside their transforms.
The evaluate step sends every prompt they will ask for once, beforehand (`invocation_plan`), and hands
fmeval this runner: each prompt gets the stored answer, so fmeval's transforms run unchanged and no
prompt reaches the model twice.

A prompt that was not planned raises `UnplannedPromptError`: it means the plan and fmeval disagree
about which prompts an algorithm sends, a bug that must not turn into a silent model call or a guess.
A planned prompt whose call failed raises `FailedPromptError`, so the record is left unscored.
"""

from __future__ import annotations

from typing import Protocol

from fmeval.model_runners.model_runner import ModelRunner

from step_code.invocation_plan import StoredAnswer


class UnplannedPromptError(RuntimeError):
    """fmeval asked for a prompt the invocation plan did not contain."""


class FailedPromptError(RuntimeError):
    """The model call of a planned prompt failed; a record that needs it cannot be scored."""


class Answers(Protocol):
    """The stored answer of a planned prompt, None for a prompt that was not planned (a dict will do)."""

    def get(self, prompt: str, /) -> StoredAnswer | None: ...


class StoredOutputRunner(ModelRunner):
    def __init__(self, answers: Answers) -> None:
        # ModelRunner.__init__ only builds a request composer and a response extractor, and this runner
        # neither sends requests nor reads responses.
        self._answers = answers

    def predict(self, prompt: str) -> tuple[str | None, float | None]:
        answer = self._answers.get(prompt)
        if answer is None:
            raise UnplannedPromptError(
                f"fmeval asked for a prompt the invocation plan does not contain: {prompt[:120]!r}"
            )
        if answer.error is not None:
            raise FailedPromptError(answer.error)
        return answer.output, answer.log_probability
