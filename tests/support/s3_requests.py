"""Count the S3 requests our storage layer sends, by operation, with a botocore event hook."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from step_code import storage

# Emitted once per HTTP attempt (`before-send.s3.<Operation>`), so retries count as S3 bills them.
EVENT = "before-send.s3"


class S3RequestCounter:
    """Requests by operation name (`ListObjectsV2`, `GetObject`, `PutObject`, `DeleteObjects`, ...).

    A paginated listing counts one request per page.
    """

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _count(self, event_name: str, **_: Any) -> None:
        with self._lock:
            self.counts[event_name.rsplit(".", 1)[-1]] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self.counts)

    def reset(self) -> None:
        with self._lock:
            self.counts.clear()

    @property
    def total(self) -> int:
        return sum(self.snapshot().values())


@contextmanager
def counting_s3_requests() -> Iterator[S3RequestCounter]:
    """Count the requests of `storage.s3_client()` (the client for the current endpoint settings)."""
    counter = S3RequestCounter()
    events = storage.s3_client().meta.events
    events.register(EVENT, counter._count, unique_id="evalops-s3-request-counter")
    try:
        yield counter
    finally:
        events.unregister(EVENT, unique_id="evalops-s3-request-counter")
