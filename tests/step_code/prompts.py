"""Prompt lists shared by the invocation tests and the resume test's child process."""

from __future__ import annotations

from step_code.invocation import PromptItem


def numbered_prompts(count: int, *, start: int = 0, prefix: str = "question") -> list[PromptItem]:
    return [
        PromptItem(record_id=f"r{i}", model_input=f"{prefix} {i}", target_output=f"answer {i}", prompt=f"{prefix} {i}")
        for i in range(start, start + count)
    ]
