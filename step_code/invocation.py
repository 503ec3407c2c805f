"""Send every prompt to a model once: bounded concurrency, retries with backoff, a response cache.

`invoke_all` is the model-invocation layer of the evaluate step. Its guarantees:
- every input yields exactly one `InvocationRecord`, in input order, with either `model_output` or
  `error` set — nothing is dropped, whatever the model does;
- at most `concurrency` requests are in flight;
- throttling, 5xx, timeouts and broken connections (`RetryableError`) are retried up to `max_retries`
  times with exponential backoff and full jitter; 4xx and unreadable answers (`PermanentError`) fail
  the record at once;
- answers found in the cache are not requested again, each new answer is stored as soon as it arrives
  (a killed run resumes from there), and a prompt that occurs several times is sent once.

Statistics (`InvocationResult.latency_stats`, `token_stats`) cover the records that succeeded. A cached
record carries the latency and token counts measured when its answer was first produced, so a re-run on
a warm cache reports the same figures as the run that filled it. Latency is that of the successful
attempt alone (time spent on failed attempts and backoff is not model latency). When an API reports no
token counts, they are estimated as ceil(characters / 4) — the usual rule of thumb for BPE tokenizers on
English text — and the record says `tokens_estimated=True`.
"""

from __future__ import annotations

import logging
import math
import random
import string
import time
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from typing import Any

from step_code.contract.results import LatencyStats, TokenStats
from step_code.progress import ProgressListener
from step_code.response_cache import CachedResponse, ModelResponseCache, ResponseCache
from step_code.runners.base import ModelResponse, ModelRunner, PermanentError, RetryableError

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
DEFAULT_BACKOFF_BASE_SECONDS = 0.5
DEFAULT_BACKOFF_MAX_SECONDS = 20.0


def render_prompt(template: str, model_input: str) -> str:
    """The prompt fmeval's PromptComposer would build: `$model_input` replaced by the input, `$$` -> `$`.

    Raises ValueError when the template has another `$name` or a stray `$` (fmeval fails there too).
    """
    try:
        return string.Template(template).substitute(model_input=model_input)
    except KeyError as exc:
        raise ValueError(
            f"prompt template {template!r} has the unknown placeholder ${exc.args[0]} "
            "(only $model_input is filled in; write $$ for a literal $)"
        ) from None
    except ValueError as exc:
        raise ValueError(f"prompt template {template!r} is not valid: {exc} (write $$ for a literal $)") from None


def estimate_tokens(text: str) -> int:
    return math.ceil(len(text) / CHARS_PER_TOKEN)


# slots: one per planned prompt, so their size is what invocation holds per prompt.
@dataclass(frozen=True, slots=True)
class PromptItem:
    """One catalog record to send: its id, raw input, reference answer and the rendered prompt."""

    record_id: str
    model_input: str
    target_output: str
    prompt: str


def prompt_items(rows: Iterable[Mapping[str, Any]], prompt_template: str) -> list[PromptItem]:
    """PromptItems from processed catalog rows (`record_id`, `model_input`, `target_output`)."""
    return [
        PromptItem(
            record_id=str(row["record_id"]),
            model_input=str(row["model_input"]),
            target_output=str(row["target_output"]),
            prompt=render_prompt(prompt_template, str(row["model_input"])),
        )
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class InvocationRecord:
    """The outcome for one input. Exactly one of `model_output` and `error` is set.

    `attempts`: requests sent for this record (0 when the answer came from the cache, from an earlier
    identical prompt of the same run, or from recorded responses). `cached`: answered without a request
    of its own (cache or an identical prompt of this run).
    """

    record_id: str
    index: int
    prompt: str
    model_input: str
    target_output: str
    model_output: str | None
    error: str | None
    latency_ms: float | None
    input_tokens: int | None
    output_tokens: int | None
    tokens_estimated: bool
    cached: bool
    attempts: int
    log_probability: float | None

    @property
    def succeeded(self) -> bool:
        return self.error is None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _percentile(ordered: Sequence[float], fraction: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


@dataclass(frozen=True)
class InvocationResult:
    """All records in input order; `model_calls` counts requests actually sent (retries included)."""

    records: list[InvocationRecord]
    model_calls: int
    cache_hits: int
    wall_seconds: float

    @property
    def succeeded(self) -> int:
        return sum(1 for record in self.records if record.succeeded)

    @property
    def failed(self) -> int:
        return len(self.records) - self.succeeded

    def latency_stats(self) -> LatencyStats:
        """p50/p95/mean over successful records with a measured latency (fresh or first measured for a
        cached answer); all None when there is none (recorded responses)."""
        values = sorted(r.latency_ms for r in self.records if r.succeeded and r.latency_ms is not None)
        if not values:
            return LatencyStats()
        return LatencyStats(
            p50_ms=_percentile(values, 0.50), p95_ms=_percentile(values, 0.95), mean_ms=sum(values) / len(values)
        )

    def token_stats(self) -> TokenStats:
        """Totals and per-record means over successful records (reported or estimated counts)."""
        ok = [r for r in self.records if r.succeeded]
        inputs = [r.input_tokens for r in ok if r.input_tokens is not None]
        outputs = [r.output_tokens for r in ok if r.output_tokens is not None]
        return TokenStats(
            input_total=sum(inputs),
            output_total=sum(outputs),
            input_mean=sum(inputs) / len(inputs) if inputs else None,
            output_mean=sum(outputs) / len(outputs) if outputs else None,
        )


@dataclass(frozen=True)
class _Outcome:
    answer: CachedResponse | None
    error: str | None
    attempts: int


class _Progress:
    def __init__(self, listener: ProgressListener | None, model: str, total: int) -> None:
        self._listener = listener
        self._model = model
        self._total = total
        self.invoked = 0
        self.cache_hits = 0
        self.failed = 0

    def report(self) -> None:
        if self._listener is not None:
            self._listener.on_progress(self._model, self.invoked, self.cache_hits, self.failed, self._total)


def _answer(prompt: str, response: ModelResponse, latency_ms: float | None) -> CachedResponse:
    input_tokens = response.input_tokens
    output_tokens = response.output_tokens
    estimated = input_tokens is None or output_tokens is None
    return CachedResponse(
        model_output=response.text,
        input_tokens=estimate_tokens(prompt) if input_tokens is None else input_tokens,
        output_tokens=estimate_tokens(response.text) if output_tokens is None else output_tokens,
        tokens_estimated=estimated,
        latency_ms=latency_ms,
        log_probability=response.log_probability,
    )


class _Caller:
    """Sends one prompt with retries; stores the answer in the cache as soon as it succeeds."""

    def __init__(
        self,
        runner: ModelRunner,
        cache: ModelResponseCache | None,
        *,
        max_retries: int,
        timeout_seconds: float,
        backoff_base_seconds: float,
        backoff_max_seconds: float,
    ) -> None:
        self._runner = runner
        self._cache = cache
        self._max_retries = max_retries
        self._timeout = timeout_seconds
        self._base = backoff_base_seconds
        self._max = backoff_max_seconds

    def __call__(self, item: PromptItem) -> _Outcome:
        counts = 1 if self._runner.sends_requests else 0
        attempt = 0
        while True:
            attempt += 1
            started = time.perf_counter()
            try:
                response = self._runner.invoke(item.prompt, model_input=item.model_input, timeout_seconds=self._timeout)
            except RetryableError as exc:
                if attempt > self._max_retries:
                    return _Outcome(None, f"gave up after {attempt} attempts: {exc}", attempt * counts)
                # Full jitter: spreads retries of many workers hitting one throttled endpoint.
                time.sleep(random.uniform(0, min(self._max, self._base * 2 ** (attempt - 1))))
                continue
            except PermanentError as exc:
                return _Outcome(None, str(exc), attempt * counts)
            except Exception as exc:
                # A runner bug must cost one record, not the other thousands; the traceback goes to the log.
                logger.exception("unexpected error calling %s", self._runner.name)
                return _Outcome(None, f"unexpected {type(exc).__name__}: {exc}", attempt * counts)
            latency = (time.perf_counter() - started) * 1000.0 if self._runner.sends_requests else None
            answer = _answer(item.prompt, response, latency)
            if self._cache is not None:
                _store(self._cache, item.prompt, answer)
            return _Outcome(answer, None, attempt * counts)


def _store(cache: ModelResponseCache, prompt: str, answer: CachedResponse) -> None:
    try:
        cache.store(prompt, answer)
    except Exception as exc:
        # The answer stands; only the chance to reuse it after a restart is lost.
        logger.warning("could not store a response in the cache %s: %s", cache.prefix, exc)


def _record(item: PromptItem, index: int, outcome: _Outcome, *, cached: bool, attempts: int) -> InvocationRecord:
    answer = outcome.answer
    return InvocationRecord(
        record_id=item.record_id,
        index=index,
        prompt=item.prompt,
        model_input=item.model_input,
        target_output=item.target_output,
        model_output=answer.model_output if answer else None,
        error=outcome.error,
        latency_ms=answer.latency_ms if answer else None,
        input_tokens=answer.input_tokens if answer else None,
        output_tokens=answer.output_tokens if answer else None,
        tokens_estimated=answer.tokens_estimated if answer else False,
        cached=cached,
        attempts=attempts,
        log_probability=answer.log_probability if answer else None,
    )


def invoke_all(
    prompts: Sequence[PromptItem],
    runner: ModelRunner,
    *,
    cache: ResponseCache | None,
    concurrency: int,
    max_retries: int,
    timeout_seconds: float,
    progress: ProgressListener | None = None,
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS,
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS,
) -> InvocationResult:
    """Answer every prompt with `runner` (see the module docstring for the guarantees).

    - `cache`: where answers are looked up and stored; None disables caching. Runners that send no
      requests (recorded responses) bypass it.
    - `concurrency`: most requests in flight at once (threads).
    - `max_retries`: retries of a retryable failure after the first attempt.
    - `timeout_seconds`: per request.
    - `progress`: told after the cache lookup and after each settled prompt.
    - `backoff_base_seconds` / `backoff_max_seconds`: the n-th retry waits uniform(0, min(max, base·2ⁿ⁻¹)).
    """
    if concurrency < 1 or max_retries < 0 or timeout_seconds <= 0:
        raise ValueError("invoke_all needs concurrency >= 1, max_retries >= 0 and timeout_seconds > 0")
    started = time.perf_counter()
    items = list(prompts)
    groups: dict[str, list[int]] = {}
    for index, item in enumerate(items):
        groups.setdefault(item.prompt, []).append(index)
    model_cache = (
        cache.for_model(runner.identity, runner.request_settings)
        if cache is not None and runner.sends_requests
        else None
    )
    found = model_cache.load(groups) if model_cache is not None else {}

    records: list[InvocationRecord | None] = [None] * len(items)
    tracker = _Progress(progress, runner.name, len(items))
    for prompt, answer in found.items():
        for index in groups[prompt]:
            records[index] = _record(items[index], index, _Outcome(answer, None, 0), cached=True, attempts=0)
        tracker.cache_hits += len(groups[prompt])
    tracker.report()

    model_calls = 0
    caller = _Caller(
        runner,
        model_cache,
        max_retries=max_retries,
        timeout_seconds=timeout_seconds,
        backoff_base_seconds=backoff_base_seconds,
        backoff_max_seconds=backoff_max_seconds,
    )
    pending = [prompt for prompt in groups if prompt not in found]
    if pending:
        with ThreadPoolExecutor(max_workers=min(concurrency, len(pending))) as pool:
            futures = {pool.submit(caller, items[groups[prompt][0]]): prompt for prompt in pending}
            for future in as_completed(futures):
                indices = groups[futures[future]]
                outcome = future.result()
                model_calls += outcome.attempts
                first, *repeats = indices
                records[first] = _record(items[first], first, outcome, cached=False, attempts=outcome.attempts)
                # Repeats of a prompt share its answer as if cached; they share a failure as a failure.
                for index in repeats:
                    records[index] = _record(items[index], index, outcome, cached=outcome.error is None, attempts=0)
                if outcome.error is None:
                    tracker.invoked += 1
                    tracker.cache_hits += len(repeats)
                else:
                    tracker.invoked += len(indices)
                    tracker.failed += len(indices)
                tracker.report()

    settled = [record for record in records if record is not None]
    assert len(settled) == len(items), "every input must produce exactly one record"
    return InvocationResult(
        records=settled,
        model_calls=model_calls,
        cache_hits=sum(1 for record in settled if record.cached),
        wall_seconds=time.perf_counter() - started,
    )
