"""invoke_all: no record lost under faults, bounded concurrency, the cache as re-run shortcut and checkpoint."""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from step_code.contract.config import Config, ModelConfig
from step_code.invocation import (
    InvocationResult,
    PromptItem,
    estimate_tokens,
    invoke_all,
    prompt_items,
    render_prompt,
)
from step_code.progress import LoggingProgress
from step_code.response_cache import ResponseCache
from step_code.runners.base import ModelResponse, ModelRunner
from step_code.runners.factory import build_runner
from tests.step_code.prompts import numbered_prompts
from tests.support.model_server import FaultKind, ModelServer


def tgi_runner(server: ModelServer, **evaluation: Any) -> ModelRunner:
    model = ModelConfig.model_validate(
        {
            "name": "local-tgi",
            "model_provider": "http",
            "endpoint_url": server.url + "/generate",
            "evaluation_config": evaluation,
        }
    )
    return build_runner(model)


def run(items: list[PromptItem], runner: ModelRunner, cache: ResponseCache | None, **options: Any) -> InvocationResult:
    settings: dict[str, Any] = {"concurrency": 4, "max_retries": 3, "timeout_seconds": 5.0}
    settings.update(options)
    return invoke_all(items, runner, cache=cache, backoff_base_seconds=0.001, **settings)


# -- prompts ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "template",
    ["$model_input", "Answer briefly. $model_input", "Q: ${model_input}?\nA:", "Costs $$5: $model_input"],
)
def test_render_prompt_matches_fmeval(template: str) -> None:
    from fmeval.model_runners.composers.composers import PromptComposer

    model_input = "What is 2 + 2? Use $ signs {freely}."
    assert render_prompt(template, model_input) == PromptComposer(template).compose(model_input)


@pytest.mark.parametrize(
    ("template", "message"),
    [("$model_input and $context", r"unknown placeholder \$context"), ("$model_input costs $5", "not valid")],
)
def test_render_prompt_rejects_what_fmeval_rejects(template: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_prompt(template, "x")


def test_prompt_items_from_processed_rows() -> None:
    rows = [{"record_id": "a1", "model_input": "Capital of Peru?", "target_output": "Lima", "source_line": 3}]

    assert prompt_items(rows, "Answer briefly. $model_input") == [
        PromptItem(
            record_id="a1",
            model_input="Capital of Peru?",
            target_output="Lima",
            prompt="Answer briefly. Capital of Peru?",
        )
    ]


# -- faults -----------------------------------------------------------------------------------------------


def test_no_record_lost_under_faults(model_server: ModelServer) -> None:
    items = numbered_prompts(200)
    permanent: dict[str, FaultKind] = {
        "question 7": "bad_request",
        "question 70": "malformed",
        "question 150": "bad_request",
    }
    for prompt, kind in permanent.items():
        model_server.fail_prompt(prompt, kind)
    model_server.fail_prompt("question 99", "throttle")  # throttled for good: retries run out
    model_server.fail_rate(0.25, ["throttle", "error", "timeout"], seed=7)

    result = run(items, tgi_runner(model_server), None, concurrency=8, max_retries=10, timeout_seconds=0.3)

    assert [r.record_id for r in result.records] == [item.record_id for item in items]
    assert [r.index for r in result.records] == list(range(200))
    failed = {r.prompt: r.error for r in result.records if not r.succeeded}
    assert set(failed) == {*permanent, "question 99"}
    assert "HTTP 400" in str(failed["question 7"]) and "not JSON" in str(failed["question 70"])
    assert str(failed["question 99"]).startswith("gave up after 11 attempts: HTTP 429")
    for record in result.records:
        if record.succeeded:
            assert record.model_output == model_server.answer(record.prompt)
            assert record.error is None
        else:
            assert record.model_output is None
    assert result.model_calls == sum(r.attempts for r in result.records) == model_server.requests_total
    retried = [r for r in result.records if r.succeeded and r.attempts > 1]
    assert len(retried) > 20
    assert {"throttle", "error", "timeout"} <= set(model_server.faults_served)


def test_sagemaker_endpoint_retries_through_botocore(reference_config: Config, model_server: ModelServer) -> None:
    runner = build_runner(reference_config.model("llama2-7b-f"), endpoint_name="ep")
    model_server.inject("throttle", "error", "throttle")
    model_server.fail_prompt("question 3", "bad_request")

    result = run(numbered_prompts(12), runner, None, concurrency=1)

    assert [r.succeeded for r in result.records] == [i != 3 for i in range(12)]
    assert result.records[0].attempts == 4
    assert result.model_calls == model_server.requests_total == 12 + 3


class BrokenRunner:
    """A runner with a bug for one prompt."""

    name = "broken"
    identity = "test|broken"
    request_settings: dict[str, Any] = {}
    sends_requests = True

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        if prompt == "question 1":
            raise KeyError("choices")
        return ModelResponse(text=prompt.upper())


def test_runner_bug_costs_one_record(caplog: pytest.LogCaptureFixture) -> None:
    result = run(numbered_prompts(3), BrokenRunner(), None)

    assert [r.model_output for r in result.records] == ["QUESTION 0", None, "QUESTION 2"]
    assert result.records[1].error == "unexpected KeyError: 'choices'"
    assert any("unexpected error calling broken" in r.getMessage() for r in caplog.records)


def test_cache_write_failure_keeps_the_answer(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")

    result = run(numbered_prompts(2), BrokenRunner(), ResponseCache(str(blocker)))

    assert result.records[0].model_output == "QUESTION 0"
    assert any("could not store a response in the cache" in r.getMessage() for r in caplog.records)


# -- concurrency ---------------------------------------------------------------------------------------------


def test_concurrency_never_exceeds_the_bound() -> None:
    with ModelServer(latency_seconds=0.05) as server:
        server.inject(*("throttle",) * 10)
        started = time.perf_counter()
        result = run(numbered_prompts(40), tgi_runner(server), None, concurrency=4)
        elapsed = time.perf_counter() - started

    assert result.failed == 0
    assert server.max_concurrency_observed == 4
    # 40 answers of 50 ms each, four at a time, take at least half a second: calls really overlapped, no more.
    assert elapsed >= 0.5


# -- cache -------------------------------------------------------------------------------------------------


def test_warm_cache_rerun_makes_no_calls(tmp_path: Path, model_server: ModelServer) -> None:
    cache = ResponseCache(str(tmp_path / "cache"))
    items = numbered_prompts(30)
    first = run(items, tgi_runner(model_server), cache)
    calls_after_first = model_server.requests_total

    second = run(items, tgi_runner(model_server), ResponseCache(str(tmp_path / "cache")))

    assert (first.model_calls, first.cache_hits) == (30, 0)
    assert (second.model_calls, second.cache_hits) == (0, 30)
    assert model_server.requests_total == calls_after_first == 30
    assert [r.model_output for r in second.records] == [r.model_output for r in first.records]
    assert all(r.cached and r.attempts == 0 for r in second.records)
    # Cached records carry the latency measured when the answer was produced.
    assert second.latency_stats() == first.latency_stats()
    assert second.token_stats() == first.token_stats()


def test_changed_catalog_only_calls_changed_prompts(tmp_path: Path, model_server: ModelServer) -> None:
    cache = ResponseCache(str(tmp_path / "cache"))
    original = numbered_prompts(100)
    run(original, tgi_runner(model_server), cache)
    model_server.reset_counters()
    changed = numbered_prompts(10, prefix="reworded question") + original[10:]

    result = run(changed, tgi_runner(model_server), cache)

    assert (result.model_calls, result.cache_hits) == (10, 90)
    assert set(model_server.requests_by_prompt) == {f"reworded question {i}" for i in range(10)}
    assert [r.model_output for r in result.records] == [model_server.answer(i.prompt) for i in changed]


def test_changed_inference_parameters_resend_everything(tmp_path: Path, model_server: ModelServer) -> None:
    cache = ResponseCache(str(tmp_path / "cache"))
    items = numbered_prompts(5)
    run(items, tgi_runner(model_server, inference_parameters={"max_new_tokens": 10}), cache)

    again = run(items, tgi_runner(model_server, inference_parameters={"max_new_tokens": 20}), cache)

    assert again.model_calls == 5 and again.cache_hits == 0


def test_failed_calls_are_not_cached(tmp_path: Path, model_server: ModelServer) -> None:
    cache = ResponseCache(str(tmp_path / "cache"))
    model_server.fail_prompt("question 3", "bad_request", times=1)
    first = run(numbered_prompts(6), tgi_runner(model_server), cache)
    model_server.reset_counters()

    second = run(numbered_prompts(6), tgi_runner(model_server), cache)

    assert first.failed == 1 and second.failed == 0
    assert second.model_calls == 1
    assert dict(model_server.requests_by_prompt) == {"question 3": 1}


def test_repeated_prompt_is_sent_once(model_server: ModelServer) -> None:
    base = numbered_prompts(2)
    items = [*base, PromptItem("r2", "question 0", "other target", "question 0"), base[1]]

    result = run(items, tgi_runner(model_server), None)

    assert result.model_calls == 2 == model_server.requests_total
    assert [r.cached for r in result.records] == [False, False, True, True]
    assert result.records[2].model_output == result.records[0].model_output
    assert result.records[2].target_output == "other target"


def test_killed_run_resumes_from_the_cache(tmp_path: Path, repo_root: Path) -> None:
    total = 200
    cache_dir = tmp_path / "cache"
    with ModelServer(latency_seconds=0.05) as server:
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.step_code.resume_child",
                server.url + "/generate",
                str(cache_dir),
                str(total),
            ],
            cwd=repo_root,
            env={**os.environ, "PYTHONPATH": str(repo_root)},
        )
        try:
            deadline = time.monotonic() + 60
            while len(list(cache_dir.rglob("*.json"))) < 40:
                assert child.poll() is None, "the child finished or died before it could be killed"
                assert time.monotonic() < deadline, "the child made no progress"
                time.sleep(0.02)
            os.kill(child.pid, signal.SIGKILL)
        finally:
            child.wait(timeout=30)
        cached = len(list(cache_dir.rglob("*.json")))
        first_run_calls = server.requests_total
        server.reset_counters()

        result = run(numbered_prompts(total), tgi_runner(server), ResponseCache(str(cache_dir)))

    assert child.returncode == -signal.SIGKILL
    assert 40 <= cached < total
    assert first_run_calls >= cached
    assert result.failed == 0
    assert result.cache_hits == cached
    assert result.model_calls == server.requests_total == total - cached


# -- statistics and progress -----------------------------------------------------------------------------------


def test_statistics_report_estimates_and_reported_tokens(model_server: ModelServer) -> None:
    items = numbered_prompts(4)
    estimated = run(items, tgi_runner(model_server), None)
    openai = ModelConfig.model_validate(
        {"name": "chat", "model_provider": "openai", "model_id": "m", "endpoint_url": model_server.url}
    )
    reported = run(items, build_runner(openai), None)

    assert all(r.tokens_estimated for r in estimated.records)
    first = estimated.records[0]
    assert first.input_tokens == estimate_tokens("question 0") == math.ceil(len("question 0") / 4)
    assert not any(r.tokens_estimated for r in reported.records)
    stats = reported.token_stats()
    assert (stats.input_total, stats.output_total) == (4 * 2, 4 * 3)
    assert (stats.input_mean, stats.output_mean) == (2.0, 3.0)
    latency = reported.latency_stats()
    assert latency.p50_ms is not None and latency.p95_ms is not None and latency.mean_ms is not None
    assert 0 < latency.p50_ms <= latency.p95_ms


def test_latency_percentiles_over_successful_records() -> None:
    with ModelServer(latency_seconds=0.02) as server:
        server.fail_prompt("question 0", "bad_request")
        result = run(numbered_prompts(11), tgi_runner(server), None)

    latency = result.latency_stats()
    assert result.records[0].latency_ms is None
    measured = sorted(r.latency_ms for r in result.records if r.latency_ms is not None)
    assert len(measured) == 10
    assert latency.p50_ms == pytest.approx((measured[4] + measured[5]) / 2)
    assert measured[0] >= 20


class RecordingListener:
    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int, int, int]] = []

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        self.calls.append((model, invoked, cache_hits, failed, total))


def test_progress_is_reported(tmp_path: Path, model_server: ModelServer) -> None:
    cache = ResponseCache(str(tmp_path / "cache"))
    run(numbered_prompts(5), tgi_runner(model_server), cache)
    model_server.fail_prompt("question 6", "bad_request")
    listener = RecordingListener()

    run(numbered_prompts(8), tgi_runner(model_server), cache, progress=listener)

    assert listener.calls[0] == ("local-tgi", 0, 5, 0, 8)
    assert listener.calls[-1] == ("local-tgi", 3, 5, 1, 8)
    assert len(listener.calls) == 1 + 3


def test_logging_progress_logs_every_tenth(model_server: ModelServer, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="step_code.progress"):
        run(numbered_prompts(100), tgi_runner(model_server), None, progress=LoggingProgress(every_percent=10))

    lines = [r.getMessage() for r in caplog.records if r.name == "step_code.progress"]
    assert lines[0].startswith("local-tgi: 0/100 done (0%)")
    assert lines[-1] == "local-tgi: 100/100 done (100%): 100 answered now, 0 from the cache, 0 failed"
    assert 11 <= len(lines) <= 12


def test_invalid_settings_are_rejected(model_server: ModelServer) -> None:
    with pytest.raises(ValueError, match="concurrency >= 1"):
        invoke_all([], tgi_runner(model_server), cache=None, concurrency=0, max_retries=1, timeout_seconds=1)


# -- streaming: bounded memory ------------------------------------------------------------------------------


class EchoRunner:
    """Answers at once with the prompt itself; counts its calls."""

    name = "echo"
    identity = "echo|1"
    request_settings: dict[str, Any] = {}
    sends_requests = True

    def __init__(self, delay_seconds: float = 0.0) -> None:
        self.calls = 0
        self._delay = delay_seconds

    def invoke(self, prompt: str, *, model_input: str, timeout_seconds: float) -> ModelResponse:
        self.calls += 1
        time.sleep(self._delay)
        return ModelResponse(text=prompt.upper())


def test_invoke_stream_reads_inputs_only_a_window_ahead_and_hands_records_over_in_order(tmp_path: Path) -> None:
    from step_code.answer_store import AnswerStore
    from step_code.invocation import LOOKUP_CHUNK, invoke_stream, window_size

    total, concurrency = 5_000, 4
    read = 0

    def inputs() -> Any:
        nonlocal read
        for i in range(total):
            read += 1
            # Every 10th prompt repeats an earlier one: sent once, answered for both.
            prompt = f"p{i - 7 if i % 10 == 9 else i}"
            yield PromptItem(record_id=str(i), model_input=prompt, target_output="t", prompt=prompt)

    handed: list[int] = []
    ahead: list[int] = []

    def on_record(record: Any) -> None:
        assert record.model_output == record.prompt.upper() and record.index == len(handed)
        handed.append(int(record.record_id))
        ahead.append(read - len(handed))

    runner = EchoRunner()
    with AnswerStore() as store:
        totals = invoke_stream(
            inputs(),
            runner,
            on_record=on_record,
            total=total,
            cache=ResponseCache(str(tmp_path / "cache")),
            outcomes=store,
            concurrency=concurrency,
            max_retries=0,
            timeout_seconds=1.0,
        )
        assert store.distinct_prompts == runner.calls == total - total // 10
        assert store.get("p3") is not None and store.get("never asked") is None

    assert handed == list(range(total))
    # What is held at once: the window, plus the chunk read for one cache lookup.
    assert max(ahead) <= window_size(concurrency) + LOOKUP_CHUNK
    assert (totals.records, totals.model_calls, totals.cache_hits, totals.sent) == (
        total,
        total - total // 10,
        total // 10,
        total - total // 10,
    )


def test_a_cache_lookup_reads_segments_once_and_answers_chunk_after_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from step_code import storage
    from step_code.response_cache import CachedResponse

    cache = ResponseCache(str(tmp_path))
    view = cache.for_model("m", {})
    answer = CachedResponse("a", 1, 1, False, 1.0, None)
    for i in range(300):
        view.store(f"p{i}", answer)
    cache.compact()
    for i in range(300, 320):
        view.store(f"p{i}", answer)  # loose entries a killed run left

    reads: list[str] = []
    real_read = storage.read_bytes
    monkeypatch.setattr(storage, "read_bytes", lambda uri: reads.append(uri) or real_read(uri))
    with ResponseCache(str(tmp_path)).for_model("m", {}).lookup() as lookup:
        first = lookup.get_many([f"p{i}" for i in range(0, 200)])
        second = lookup.get_many([f"p{i}" for i in range(200, 330)])
    assert set(first) == {f"p{i}" for i in range(200)}
    assert set(second) == {f"p{i}" for i in range(200, 320)}
    # One segment read, then only the loose entries that were asked for.
    assert sum(uri.endswith(".jsonl.gz") for uri in reads) == 1
    assert sum(uri.endswith(".json") for uri in reads) == 20


def test_when_a_record_cannot_be_handed_over_the_queued_prompts_are_not_sent() -> None:
    from step_code.invocation import invoke_stream, window_size

    items = (PromptItem(record_id=str(i), model_input=f"p{i}", target_output="t", prompt=f"p{i}") for i in range(5_000))

    def on_record(record: Any) -> None:
        raise OSError("disk full")

    runner = EchoRunner(delay_seconds=0.01)
    with pytest.raises(OSError, match="disk full"):
        invoke_stream(
            items,
            runner,
            on_record=on_record,
            total=5_000,
            cache=None,
            concurrency=2,
            max_retries=0,
            timeout_seconds=1.0,
        )
    # The first record is handed over once its call is done; a window of prompts was queued by then.
    assert runner.calls < 50 < window_size(2)
