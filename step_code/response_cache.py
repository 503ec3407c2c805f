"""Model answers kept between runs, keyed by what produced them; also the evaluate step's checkpoint.

Key: sha256 over canonical JSON of (model identity, request settings, rendered prompt), where the
request settings are the inference parameters, content template, custom attributes and the output
paths the answer was read with (`runners.base.model_request_settings`). Change any of them and the
prompt is sent again; change nothing and it never is.

Layout: `<cache uri>/<sha256(identity)[:16]>/<key>.json`, one small JSON object per answer, written as
soon as the call succeeds. That is what makes a killed evaluate resumable: a restart finds every answer
that completed. Failed calls are not stored.

Reading thousands of entries from S3: the model's prefix is listed once (1,000 keys per LIST call, so
a cold cache costs one request, not one per prompt) and only the entries this run needs are fetched,
by `read_threads` parallel GETs. Measured with 2,000 entries against the moto server on a 2-core box:
listing 0.9 s; fetching 10.1 s with 1 thread, 7.1 s with 8, 5.9 s with 32, 7.4 s with 64 — moto's own
CPU is the limit there, while S3 GETs are latency-bound and gain more from threads, hence 32.
Packing entries into fewer, larger objects would cut requests further but gives up the write-per-answer
checkpoint or needs deletes; not worth it at these sizes.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any

from step_code import storage

logger = logging.getLogger(__name__)

ENTRY_SUFFIX = ".json"
IDENTITY_DIGEST_CHARS = 16
DEFAULT_READ_THREADS = 32


@dataclass(frozen=True)
class CachedResponse:
    """A stored answer with what was measured when it was first produced."""

    model_output: str
    input_tokens: int | None
    output_tokens: int | None
    tokens_estimated: bool
    latency_ms: float | None
    log_probability: float | None


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(identity: str, settings: Mapping[str, Any], prompt: str) -> str:
    payload = canonical_json({"identity": identity, "settings": dict(settings), "prompt": prompt})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class ModelResponseCache:
    """The cache entries of one model identity under one set of request settings."""

    def __init__(self, prefix: str, identity: str, settings: Mapping[str, Any], *, read_threads: int) -> None:
        self.prefix = prefix
        self.identity = identity
        self.settings = dict(settings)
        self._read_threads = read_threads

    def key(self, prompt: str) -> str:
        return cache_key(self.identity, self.settings, prompt)

    def _uri(self, key: str) -> str:
        return storage.join(self.prefix, key + ENTRY_SUFFIX)

    def load(self, prompts: Iterable[str]) -> dict[str, CachedResponse]:
        """Cached answers of the given prompts, by prompt (prompts without an entry are absent)."""
        wanted = {self.key(prompt): prompt for prompt in prompts}
        present = {
            name[: -len(ENTRY_SUFFIX)] for name in storage.list_names(self.prefix) if name.endswith(ENTRY_SUFFIX)
        }
        keys = [key for key in wanted if key in present]
        if not keys:
            return {}
        with ThreadPoolExecutor(max_workers=min(self._read_threads, len(keys))) as pool:
            entries = list(pool.map(self._read, keys, (wanted[key] for key in keys)))
        return {wanted[key]: entry for key, entry in zip(keys, entries, strict=True) if entry is not None}

    def _read(self, key: str, prompt: str) -> CachedResponse | None:
        uri = self._uri(key)
        try:
            data = json.loads(storage.read_bytes(uri))
            if data.get("prompt") != prompt or data.get("identity") != self.identity:
                raise ValueError("entry belongs to another prompt or model")
            return CachedResponse(**{field: data[field] for field in CachedResponse.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # An unreadable entry only costs a model call; it must not stop the evaluation.
            logger.warning("ignoring unreadable response cache entry %s: %s", uri, exc)
            return None

    def store(self, prompt: str, response: CachedResponse) -> None:
        entry = {"identity": self.identity, "settings": self.settings, "prompt": prompt, **asdict(response)}
        storage.write_bytes(
            self._uri(self.key(prompt)), canonical_json(entry).encode("utf-8"), content_type="application/json"
        )


class ResponseCache:
    """Answers of every model under one cache location (a local folder or `s3://bucket/.../response-cache/`)."""

    def __init__(self, uri: str, *, read_threads: int = DEFAULT_READ_THREADS) -> None:
        self.uri = uri
        self.read_threads = read_threads

    def for_model(self, identity: str, settings: Mapping[str, Any]) -> ModelResponseCache:
        digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:IDENTITY_DIGEST_CHARS]
        return ModelResponseCache(storage.join(self.uri, digest), identity, settings, read_threads=self.read_threads)
