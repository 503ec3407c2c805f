"""Child process of the resume test: invokes a TGI-over-HTTP model for N prompts with a response cache.

Run as `python -m tests.step_code.resume_child URL CACHE_DIR COUNT`; the test kills it part-way.
"""

from __future__ import annotations

import sys

from step_code.contract.config import ModelConfig
from step_code.invocation import invoke_all
from step_code.response_cache import ResponseCache
from step_code.runners.factory import build_runner
from tests.step_code.prompts import numbered_prompts


def main(url: str, cache_dir: str, count: int) -> None:
    model = ModelConfig.model_validate({"name": "resumable", "model_provider": "http", "endpoint_url": url})
    invoke_all(
        numbered_prompts(count),
        build_runner(model),
        cache=ResponseCache(cache_dir),
        concurrency=4,
        max_retries=0,
        timeout_seconds=30,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
