"""`--response-cache bypass` (evalops run --no-cache, pipeline parameter ResponseCache) asks the model again."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from step_code.evaluate_step import main
from tests.step_code.evaluate.conftest import EvaluateRun
from tests.step_code.evaluate.test_evaluate_step import FACTUAL, answer_for, summary_of
from tests.support.model_server import ModelServer

pytestmark = pytest.mark.slow

ROWS = 12


def test_bypass_sends_every_prompt_again_and_leaves_the_cache_alone(http_run: Callable[..., EvaluateRun]) -> None:
    with ModelServer(answers=answer_for) as server:
        run = http_run(server.url, [FACTUAL], rows=ROWS)
        assert main(run.argv("candidate")) == 0
        assert server.requests_total == ROWS
        cached_files = sorted(p.relative_to(run.root) for p in (run.root / "cache").rglob("*") if p.is_file())

        server.reset_counters()
        assert main(run.argv("candidate")) == 0
        assert server.requests_total == 0
        assert summary_of(run.output_dir("candidate")).cache_hits == ROWS

        server.reset_counters()
        assert main([*run.argv("candidate"), "--response-cache", "bypass"]) == 0
        assert server.requests_total == ROWS
        summary = summary_of(run.output_dir("candidate"))
        assert (summary.model_calls, summary.cache_hits) == (ROWS, 0)
        after = sorted(p.relative_to(run.root) for p in (run.root / "cache").rglob("*") if p.is_file())
        assert after == cached_files
