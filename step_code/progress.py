"""Progress of model invocation: a listener protocol and the default that writes log lines."""

from __future__ import annotations

import logging
import threading
from typing import Protocol

logger = logging.getLogger(__name__)


class ProgressListener(Protocol):
    """Told after the cache lookup (invoked=0) and after each record is settled.

    `invoked`: records answered or failed by the model so far; `cache_hits`: records answered from the
    cache; `failed`: records that ended with an error; `total`: all records of the model.
    Calls come from worker threads, one at a time.
    """

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None: ...


class LoggingProgress:
    """Logs one line each time another `every_percent` of the records is done, and at the end, so a
    SageMaker job's CloudWatch log shows progress without a line per record."""

    def __init__(self, every_percent: float = 10.0, log: logging.Logger | None = None) -> None:
        if not 0 < every_percent <= 100:
            raise ValueError("every_percent must be in (0, 100]")
        self._every = every_percent
        self._log = log or logger
        self._next_step: dict[str, int] = {}
        self._lock = threading.Lock()

    def on_progress(self, model: str, invoked: int, cache_hits: int, failed: int, total: int) -> None:
        done = invoked + cache_hits
        percent = 100.0 if total == 0 else 100.0 * done / total
        step = int(percent // self._every)
        with self._lock:
            if step < self._next_step.get(model, 0) and done < total:
                return
            if done == total and self._next_step.get(model) == -1:
                return
            self._next_step[model] = -1 if done == total else step + 1
        self._log.info(
            "%s: %d/%d done (%.0f%%): %d answered now, %d from the cache, %d failed",
            model,
            done,
            total,
            percent,
            invoked,
            cache_hits,
            failed,
        )
