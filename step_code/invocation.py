"""Send every prompt to a model once: bounded concurrency, retries with backoff, a response cache.

`invoke_stream` is the model-invocation layer of the evaluate step (`invoke_all` is the same over a list,
keeping the records). Its guarantees:
- every input yields exactly one `InvocationRecord`, handed over in input order, with either
  `model_output` or `error` set — nothing is dropped, whatever the model does;
- the inputs are read as they are needed and at most a window of them waits at once, so memory does
  not grow with their number (only the outcome store does, and the evaluate step keeps it on disk);
- at most `concurrency` requests are in flight;
- throttling, 5xx, timeouts and broken connections (`RetryableError`) are retried up to `max_retries`
  times with exponential backoff and full jitter; 4xx and unreadable answers (`PermanentError`) fail
  the record at once;
- answers found in the cache are not requested again, each new answer is stored as soon as it arrives
  (a killed run resumes from there), and a prompt that occurs several times is sent once.

Statistics (`InvocationTotals.latency_stats`, `token_stats`) cover the records that succeeded. A cached
record carries the latency and token counts measured when its answer was first produced, so a re-run on
a warm cache reports the same figures as the run that filled it. Latency is that of the successful
attempt alone (time spent on failed attempts and backoff is not model latency). When an API reports no
token counts, they are estimated as ceil(characters / 4) — the usual rule of thumb for BPE tokenizers on
English text — and the record says `tokens_estimated=True`.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import random
import string
import time
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from step_code.contract.results import LatencyStats, TokenStats
from step_code.progress import ProgressListener
from step_code.response_cache import CachedResponse, ModelResponseCache, ResponseCache
from step_code.runners.base import ModelResponse, ModelRunner, PermanentError, RetryableError

logger = logging.getLogger(__name__)

CHARS_PER_TOKEN = 4
DEFAULT_BACKOFF_BASE_SECONDS = 0.5
DEFAULT_BACKOFF_MAX_SECONDS = 20.0
# Inputs looked up in the cache at once, and waiting per worker (see `window_size`).
LOOKUP_CHUNK = 512
WINDOW_PER_WORKER = 64


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


class InvocationTotals:
    """What the summary needs of all records, accumulated record by record in compact form (a float per
    latency, sums of tokens), so that a streamed invocation keeps no record.

    `sent`: records answered by a request of their own (not cached, at least one attempt).
    """

    def __init__(self) -> None:
        self.records = 0
        self.succeeded = 0
        self.sent = 0
        self.cached = 0
        self.model_calls = 0
        self.wall_seconds = 0.0
        self._latencies = array("d")
        self._input_tokens = [0, 0]
        self._output_tokens = [0, 0]

    @property
    def cache_hits(self) -> int:
        return self.cached

    @property
    def failed(self) -> int:
        return self.records - self.succeeded

    def add(self, record: InvocationRecord) -> None:
        self.records += 1
        self.model_calls += record.attempts
        if record.cached:
            self.cached += 1
        elif record.attempts > 0:
            self.sent += 1
        if not record.succeeded:
            return
        self.succeeded += 1
        if record.latency_ms is not None:
            self._latencies.append(record.latency_ms)
        for totals, value in ((self._input_tokens, record.input_tokens), (self._output_tokens, record.output_tokens)):
            if value is not None:
                totals[0] += value
                totals[1] += 1

    def latency_stats(self) -> LatencyStats:
        """p50/p95/mean over successful records with a measured latency (fresh or first measured for a
        cached answer); all None when there is none (recorded responses)."""
        values = sorted(self._latencies)
        if not values:
            return LatencyStats()
        return LatencyStats(
            p50_ms=_percentile(values, 0.50), p95_ms=_percentile(values, 0.95), mean_ms=sum(values) / len(values)
        )

    def token_stats(self) -> TokenStats:
        """Totals and per-record means over successful records (reported or estimated counts)."""
        (input_total, inputs), (output_total, outputs) = self._input_tokens, self._output_tokens
        return TokenStats(
            input_total=input_total,
            output_total=output_total,
            input_mean=input_total / inputs if inputs else None,
            output_mean=output_total / outputs if outputs else None,
        )


@dataclass(frozen=True)
class InvocationResult:
    """All records in input order (`invoke_all`); `totals` is what `invoke_stream` returns for them."""

    records: list[InvocationRecord]
    totals: InvocationTotals

    @property
    def model_calls(self) -> int:
        return self.totals.model_calls

    @property
    def cache_hits(self) -> int:
        return self.totals.cache_hits

    @property
    def wall_seconds(self) -> float:
        return self.totals.wall_seconds

    @property
    def succeeded(self) -> int:
        return self.totals.succeeded

    @property
    def failed(self) -> int:
        return self.totals.failed

    def latency_stats(self) -> LatencyStats:
        return self.totals.latency_stats()

    def token_stats(self) -> TokenStats:
        return self.totals.token_stats()


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
    """`invoke_stream` over a list, keeping every record (for callers with few prompts)."""
    records: list[InvocationRecord] = []
    totals = invoke_stream(
        prompts,
        runner,
        on_record=records.append,
        total=len(prompts),
        cache=cache,
        concurrency=concurrency,
        max_retries=max_retries,
        timeout_seconds=timeout_seconds,
        progress=progress,
        backoff_base_seconds=backoff_base_seconds,
        backoff_max_seconds=backoff_max_seconds,
    )
    return InvocationResult(records=records, totals=totals)


class OutcomeStore(Protocol):
    """Where `invoke_stream` keeps each distinct prompt's outcome, for the prompt's later repeats."""

    def put(self, prompt: str, answer: CachedResponse | None, error: str | None) -> None: ...

    def outcome(self, prompt: str) -> tuple[CachedResponse | None, str | None] | None: ...


class MemoryOutcomes:
    """An `OutcomeStore` in a dict: fine for a list of prompts that is in memory anyway."""

    def __init__(self) -> None:
        self._outcomes: dict[str, tuple[CachedResponse | None, str | None]] = {}

    def put(self, prompt: str, answer: CachedResponse | None, error: str | None) -> None:
        self._outcomes[prompt] = (answer, error)

    def outcome(self, prompt: str) -> tuple[CachedResponse | None, str | None] | None:
        return self._outcomes.get(prompt)


@dataclass
class _Slot:
    """One input waiting to be settled in order: a cache answer, or the call of its prompt (its own,
    or that of an earlier occurrence of the same prompt still in flight)."""

    item: PromptItem
    future: Future[_Outcome] | None = None
    outcome: _Outcome | None = None
    first: bool = False
    cached: bool = False


def invoke_stream(
    prompts: Iterable[PromptItem],
    runner: ModelRunner,
    *,
    on_record: Callable[[InvocationRecord], None],
    total: int,
    cache: ResponseCache | None,
    concurrency: int,
    max_retries: int,
    timeout_seconds: float,
    outcomes: OutcomeStore | None = None,
    progress: ProgressListener | None = None,
    backoff_base_seconds: float = DEFAULT_BACKOFF_BASE_SECONDS,
    backoff_max_seconds: float = DEFAULT_BACKOFF_MAX_SECONDS,
) -> InvocationTotals:
    """Answer every prompt with `runner` (see the module docstring for the guarantees), handing each
    record to `on_record` in input order as soon as it and all before it are settled.

    Memory: the inputs are read `LOOKUP_CHUNK` at a time and at most `window_size(concurrency)` of them
    are waiting at once; besides that, only the outcome of every distinct prompt, in `outcomes`
    (default: in memory; the evaluate step passes a store on disk).

    - `total`: the number of inputs (for `progress`).
    - `cache`: where answers are looked up and stored; None disables caching. Runners that send no
      requests (recorded responses) bypass it.
    - `concurrency`: most requests in flight at once (threads).
    - `max_retries`: retries of a retryable failure after the first attempt.
    - `timeout_seconds`: per request.
    - `progress`: told after each settled input.
    - `backoff_base_seconds` / `backoff_max_seconds`: the n-th retry waits uniform(0, min(max, base·2ⁿ⁻¹)).
    """
    if concurrency < 1 or max_retries < 0 or timeout_seconds <= 0:
        raise ValueError("invoke_all needs concurrency >= 1, max_retries >= 0 and timeout_seconds > 0")
    started = time.perf_counter()
    store = outcomes if outcomes is not None else MemoryOutcomes()
    model_cache = (
        cache.for_model(runner.identity, runner.request_settings)
        if cache is not None and runner.sends_requests
        else None
    )
    caller = _Caller(
        runner,
        model_cache,
        max_retries=max_retries,
        timeout_seconds=timeout_seconds,
        backoff_base_seconds=backoff_base_seconds,
        backoff_max_seconds=backoff_max_seconds,
    )
    totals = InvocationTotals()
    tracker = _Progress(progress, runner.name, total)
    window = window_size(concurrency)
    waiting: deque[_Slot] = deque()
    in_flight: dict[str, Future[_Outcome]] = {}
    inputs = iter(prompts)
    index = 0
    first_chunk = True

    def settle(slot: _Slot) -> None:
        nonlocal index
        outcome = slot.outcome
        if outcome is None:
            assert slot.future is not None
            outcome = slot.future.result()
            if slot.first:
                in_flight.pop(slot.item.prompt, None)
                store.put(slot.item.prompt, outcome.answer, outcome.error)
        if slot.first:
            record = _record(slot.item, index, outcome, cached=False, attempts=outcome.attempts)
        else:
            # Repeats of a prompt share its answer as if cached; they share a failure as a failure.
            cached = slot.cached or outcome.error is None
            record = _record(slot.item, index, outcome, cached=cached, attempts=0)
        index += 1
        totals.add(record)
        on_record(record)
        if slot.future is not None:
            _count(tracker, cached=record.cached, succeeded=record.succeeded)
            tracker.report()

    with contextlib.ExitStack() as stack:
        lookup = stack.enter_context(model_cache.lookup()) if model_cache is not None else None
        pool = ThreadPoolExecutor(max_workers=concurrency)
        # If a record cannot be handed over (on_record raised), the prompts still queued are not sent.
        stack.callback(pool.shutdown, wait=True, cancel_futures=True)
        while True:
            chunk = list(itertools.islice(inputs, LOOKUP_CHUNK))
            if not chunk:
                break
            unknown = {item.prompt for item in chunk if item.prompt not in in_flight}
            unknown = {prompt for prompt in unknown if store.outcome(prompt) is None}
            found = lookup.get_many(unknown) if lookup is not None and unknown else {}
            for prompt, answer in found.items():
                store.put(prompt, answer, None)
            known = 0
            for item in chunk:
                while len(waiting) >= window:
                    settle(waiting.popleft())
                slot = _slot(item, in_flight, store, pool, caller)
                if slot.future is None:
                    known += 1
                    failed = slot.outcome is not None and slot.outcome.error is not None
                    _count(tracker, cached=slot.cached, succeeded=not failed)
                waiting.append(slot)
            # Like the calls below, the answers known at once (the cache's) are reported as a whole.
            if known or first_chunk:
                tracker.report()
            first_chunk = False
        while waiting:
            settle(waiting.popleft())
    totals.wall_seconds = time.perf_counter() - started
    return totals


def _count(tracker: _Progress, *, cached: bool, succeeded: bool) -> None:
    if cached:
        tracker.cache_hits += 1
    else:
        tracker.invoked += 1
        tracker.failed += 0 if succeeded else 1


def window_size(concurrency: int) -> int:
    """Inputs waiting at once: enough for every worker to have its next prompt while earlier ones settle."""
    return max(WINDOW_PER_WORKER * concurrency, LOOKUP_CHUNK)


def _slot(
    item: PromptItem,
    in_flight: dict[str, Future[_Outcome]],
    store: OutcomeStore,
    pool: ThreadPoolExecutor,
    caller: _Caller,
) -> _Slot:
    earlier = in_flight.get(item.prompt)
    if earlier is not None:
        return _Slot(item, future=earlier)
    known = store.outcome(item.prompt)
    if known is not None:
        answer, error = known
        # Answered before this run (cache) or earlier in it: no request of its own.
        return _Slot(item, outcome=_Outcome(answer, error, 0), cached=error is None)
    future = pool.submit(caller, item)
    in_flight[item.prompt] = future
    return _Slot(item, future=future, first=True)
