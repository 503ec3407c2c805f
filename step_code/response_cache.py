"""Model answers kept between runs, keyed by what produced them; also the evaluate step's checkpoint.

Key: sha256 over canonical JSON of (model identity, request settings, rendered prompt), where the
request settings are the inference parameters, content template, custom attributes and the output
paths the answer was read with (`runners.base.model_request_settings`). Change any of them and the
prompt is sent again; change nothing and it never is.

Layout under `<cache uri>/<sha256(identity)[:16]>/`:
- `<key>.json`: a loose entry, one small JSON object per answer, written as soon as the call succeeds.
  That is what makes a killed evaluate resumable: a restart finds every answer that completed.
  Failed calls are not stored.
- `segments/<sha256(settings)[:16]>/<utc time>-<uuid>.jsonl.gz`: a segment, many entries in one object
  (a header line with the identity and settings, then one line per key). `compact()` writes one when
  the step ends, from the loose entries this process stored or read, and only then deletes exactly
  those loose entries. The settings digest in the path is the segments' index: a load reads only the
  segments of its own settings, found by the listing it makes anyway.

Why segments: a re-run of 100k prompts over loose entries costs 100 LISTs and 100k GETs (742 s
against the moto server on a shared 2-core box, 41.5 MB in 100k objects); over one segment it costs one
LIST and one GET (1.4 s, 5.4 MB in one object). The compaction itself: one LIST, one PUT and 100
DeleteObjects batches, 7 s (`benchmarks/cache_bench.py`).

`load(prompts)`: one listing of the model's prefix, every segment of these settings read in full
(parallel GETs), then GETs for the loose entries that exist and no segment holds.

Concurrent runs of one model lose nothing: a segment's name is unique, a compaction deletes only the
loose entries its own segment covers (a deleted entry is therefore always in a segment), and a loose
entry that vanishes between the listing and its GET (another run compacted it) sends the load back
to the segments once more. A key found twice (a compaction killed before its deletes, two runs that
asked the same prompt) is just a duplicate: either answer is a valid one. When there are more than
`MAX_SEGMENTS` segments, a compaction merges them into its own and deletes the ones it read.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import logging
import shutil
import sqlite3
import tempfile
import threading
import uuid
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import IO, Any

from step_code import storage

logger = logging.getLogger(__name__)

ENTRY_SUFFIX = ".json"
SEGMENTS_FOLDER = "segments"
SEGMENT_SUFFIX = ".jsonl.gz"
SEGMENT_FORMAT = 1
IDENTITY_DIGEST_CHARS = 16
SETTINGS_DIGEST_CHARS = 16
DEFAULT_READ_THREADS = 32
# A load reads every segment of its settings, so their number is its GET count; merging beyond this
# keeps it small without rewriting a large segment on every run.
MAX_SEGMENTS = 8
# Level 1 is within a few percent of the default's size on these repetitive lines, at a fraction of the CPU.
GZIP_LEVEL = 1
# Loose entries deleted per call (the URIs of a 100k-answer run would otherwise be one 15 MB list).
DELETE_CHUNK = 10_000


@dataclass(frozen=True)
class CachedResponse:
    """A stored answer with what was measured when it was first produced."""

    model_output: str
    input_tokens: int | None
    output_tokens: int | None
    tokens_estimated: bool
    latency_ms: float | None
    log_probability: float | None


@dataclass(frozen=True)
class CompactionResult:
    """What `compact()` did: the segment it wrote (None: nothing to write) and what that made redundant."""

    segment: str | None
    entries: int
    loose_deleted: int
    segments_merged: int


RESPONSE_FIELDS = tuple(CachedResponse.__dataclass_fields__)


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cache_key(identity: str, settings: Mapping[str, Any], prompt: str) -> str:
    payload = canonical_json({"identity": identity, "settings": dict(settings), "prompt": prompt})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _digest(text: str, chars: int) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:chars]


def _response(data: Mapping[str, Any]) -> CachedResponse:
    return CachedResponse(**{field: data[field] for field in RESPONSE_FIELDS})


class UnreadableSegment(ValueError):
    """A segment that is not a segment of this model and settings (or not a segment at all)."""


class ModelResponseCache:
    """The cache entries of one model identity under one set of request settings.

    `store` may be called from many threads at once. Entries stored or read from loose files are also
    appended to a local spool file, which `compact()` turns into a segment without reading them again.
    """

    def __init__(self, prefix: str, identity: str, settings: Mapping[str, Any], *, read_threads: int) -> None:
        self.prefix = prefix
        self.identity = identity
        self.settings = dict(settings)
        self._read_threads = read_threads
        self.segments_prefix = storage.join(
            prefix, SEGMENTS_FOLDER, _digest(canonical_json(self.settings), SETTINGS_DIGEST_CHARS)
        )
        self._segments_relative = f"{SEGMENTS_FOLDER}/{storage.basename(self.segments_prefix)}/"
        self._lock = threading.Lock()
        self._spool: IO[bytes] | None = None
        # Keys as 32 raw bytes, not 64 hex characters: one per answer of the run.
        self._spooled: set[bytes] = set()
        # Loose entries whose key a segment already holds (left by a compaction killed before its deletes).
        self._redundant_loose: set[str] = set()
        self._segments_seen = 0

    def key(self, prompt: str) -> str:
        return cache_key(self.identity, self.settings, prompt)

    def _uri(self, key: str) -> str:
        return storage.join(self.prefix, key + ENTRY_SUFFIX)

    # -- reading ---------------------------------------------------------------------------------------

    def load(self, prompts: Iterable[str]) -> dict[str, CachedResponse]:
        """Cached answers of the given prompts, by prompt (prompts without an entry are absent)."""
        wanted = list(prompts)
        if not wanted:
            return {}
        with self.lookup() as lookup:
            return lookup.get_many(wanted)

    def lookup(self) -> CacheLookup:
        """A lookup over this cache as it is now: one listing, every segment of these settings read once
        into a local index file; `get_many` then answers chunk after chunk of prompts from it, with GETs
        only for the loose entries no segment holds. Its memory does not grow with the cache's size."""
        return CacheLookup(self)

    def _note_redundant(self, keys: Iterable[str]) -> None:
        with self._lock:
            self._redundant_loose.update(keys)

    def _is_own_segment(self, name: str) -> bool:
        return name.startswith(self._segments_relative) and name.endswith(SEGMENT_SUFFIX) and name.count("/") == 2

    def _segment_entries(self, uri: str) -> Iterator[tuple[str, str, CachedResponse]]:
        """(key, prompt, answer) of every entry of a segment; raises on anything that is not ours."""
        with gzip.GzipFile(fileobj=io.BytesIO(storage.read_bytes(uri))) as lines:
            header = json.loads(lines.readline())
            if header.get("format") != SEGMENT_FORMAT:
                raise UnreadableSegment(f"format {header.get('format')!r}, expected {SEGMENT_FORMAT}")
            # Compared in canonical form: settings with tuples or non-JSON values come back as lists or strings.
            same_settings = canonical_json(header.get("settings")) == canonical_json(self.settings)
            if header.get("identity") != self.identity or not same_settings:
                raise UnreadableSegment("it belongs to another model or request settings")
            for line in lines:
                data = json.loads(line)
                yield data["key"], data["prompt"], _response(data)

    def _read_loose(self, keys: list[str], wanted: Mapping[str, str], found: dict[str, CachedResponse]) -> list[str]:
        """Read loose entries into `found` (and the spool); returns the keys whose entry had vanished."""
        if not keys:
            return []
        vanished: list[str] = []
        with ThreadPoolExecutor(max_workers=min(self._read_threads, len(keys))) as pool:
            for key, (entry, gone) in zip(keys, pool.map(self._read, keys, (wanted[k] for k in keys)), strict=True):
                if gone:
                    vanished.append(key)
                elif entry is not None:
                    found[key] = entry
                    self._spool_entry(key, wanted[key], entry)
        return vanished

    def _read(self, key: str, prompt: str) -> tuple[CachedResponse | None, bool]:
        """(the loose entry or None when it is unreadable, whether it no longer exists)."""
        uri = self._uri(key)
        try:
            data = json.loads(storage.read_bytes(uri))
            if data.get("prompt") != prompt or data.get("identity") != self.identity:
                raise ValueError("entry belongs to another prompt or model")
            return _response(data), False
        except FileNotFoundError:
            return None, True
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            # An unreadable entry only costs a model call; it must not stop the evaluation.
            logger.warning("ignoring unreadable response cache entry %s: %s", uri, exc)
            return None, False

    # -- writing ---------------------------------------------------------------------------------------

    def store(self, prompt: str, response: CachedResponse) -> None:
        """Write the answer as a loose entry at once (the checkpoint) and spool it for `compact()`."""
        key = self.key(prompt)
        self._spool_entry(key, prompt, response)
        entry = {"identity": self.identity, "settings": self.settings, "prompt": prompt, **asdict(response)}
        storage.write_bytes(self._uri(key), canonical_json(entry).encode("utf-8"), content_type="application/json")

    def _spool_entry(self, key: str, prompt: str, response: CachedResponse) -> None:
        line = (canonical_json({"key": key, "prompt": prompt, **asdict(response)}) + "\n").encode("utf-8")
        with self._lock:
            if self._spool is None:
                # Lives until compact() closes it (or the process ends: a temporary file deletes itself).
                self._spool = tempfile.TemporaryFile(prefix="evalops-cache-spool-")  # noqa: SIM115
            raw = bytes.fromhex(key)
            if raw not in self._spooled:
                self._spooled.add(raw)
                self._spool.write(line)

    def compact(self) -> CompactionResult:
        """Write the spooled entries (and, past `MAX_SEGMENTS`, the existing segments) as one new segment,
        then delete the loose entries and segments it covers. Costs no request when there is nothing to do."""
        with self._lock:
            spool, spooled, redundant = self._spool, self._spooled, self._redundant_loose
            self._spool, self._spooled, self._redundant_loose = None, set(), set()
        try:
            if not spooled and self._segments_seen < MAX_SEGMENTS:
                storage.delete_many([self._uri(key) for key in sorted(redundant)])
                return CompactionResult(None, 0, len(redundant), 0)
            existing = [n for n in storage.list_names(self.segments_prefix) if n.endswith(SEGMENT_SUFFIX)]
            merged = existing if len(existing) >= MAX_SEGMENTS else []
            if not spooled and not merged:
                self._segments_seen = len(existing)
                storage.delete_many([self._uri(key) for key in sorted(redundant)])
                return CompactionResult(None, 0, len(redundant), 0)
            segment = storage.join(self.segments_prefix, f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{uuid.uuid4().hex}")
            segment += SEGMENT_SUFFIX
            data, entries, merged_read = self._segment_bytes(
                spool, spooled, [storage.join(self.segments_prefix, n) for n in merged]
            )
            storage.write_bytes(segment, data, content_type="application/gzip")
        finally:
            if spool is not None:
                spool.close()
        # Only now: everything deleted below is in the segment just written (or was already in one).
        # Raw keys sort as their hex forms do.
        loose = sorted(spooled | {bytes.fromhex(key) for key in redundant})
        for start in range(0, len(loose), DELETE_CHUNK):
            storage.delete_many([self._uri(raw.hex()) for raw in loose[start : start + DELETE_CHUNK]])
        storage.delete_many(merged_read)
        self._segments_seen = len(existing) - len(merged_read) + 1
        logger.info(
            "response cache %s: compacted %d entries into %s (%d loose entries and %d segments deleted)",
            self.prefix,
            entries,
            storage.basename(segment),
            len(loose),
            len(merged_read),
        )
        return CompactionResult(segment, entries, len(loose), len(merged_read))

    def _segment_bytes(
        self, spool: IO[bytes] | None, spooled: set[bytes], merge: list[str]
    ) -> tuple[bytes, int, list[str]]:
        """The gzip'd segment: the spool's entries (their keys: `spooled`), then those of the segments to
        merge (first copy of a key wins); returns it, the number of entries and the segments read in full.
        It is written to a temporary file first, so its only copy in memory is the finished one."""
        header = canonical_json({"format": SEGMENT_FORMAT, "identity": self.identity, "settings": self.settings})
        written = set(spooled)
        merged_read: list[str] = []
        with tempfile.TemporaryFile(prefix="evalops-cache-segment-") as buffer:
            with gzip.GzipFile(fileobj=buffer, mode="wb", compresslevel=GZIP_LEVEL, mtime=0) as out:
                out.write((header + "\n").encode("utf-8"))
                if spool is not None:
                    spool.seek(0)
                    shutil.copyfileobj(spool, out)
                self._merge_into(out, merge, written, merged_read)
            buffer.seek(0)
            return buffer.read(), len(written), merged_read

    def _merge_into(self, out: gzip.GzipFile, merge: list[str], written: set[bytes], merged_read: list[str]) -> None:
        for uri in merge:
            try:
                lines = [
                    (key, canonical_json({"key": key, "prompt": prompt, **asdict(answer)}) + "\n")
                    for key, prompt, answer in self._segment_entries(uri)
                ]
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                # Gone (another run merged it) or unreadable: it is not merged, so it is not deleted.
                logger.warning("not merging response cache segment %s: %s", uri, exc)
                continue
            for key, text in lines:
                if bytes.fromhex(key) not in written:
                    written.add(bytes.fromhex(key))
                    out.write(text.encode("utf-8"))
            merged_read.append(uri)


class CacheLookup:
    """See `ModelResponseCache.lookup`. The index is a temporary SQLite file (key -> prompt and answer)."""

    def __init__(self, cache: ModelResponseCache) -> None:
        self._cache = cache
        self._index_file = tempfile.NamedTemporaryFile(prefix="evalops-cache-index-", suffix=".sqlite")  # noqa: SIM115
        self._db = sqlite3.connect(self._index_file.name, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE entries (key TEXT PRIMARY KEY, prompt TEXT NOT NULL, answer TEXT NOT NULL)")
        names = storage.list_names(cache.prefix)
        self._loose = {name[: -len(ENTRY_SUFFIX)] for name in names if "/" not in name and name.endswith(ENTRY_SUFFIX)}
        self._segments = [name for name in names if cache._is_own_segment(name)]
        self._index(self._segments)
        cache._note_redundant(key for key in self._loose if self._has(key))
        cache._segments_seen = len(self._segments)

    def __enter__(self) -> CacheLookup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._index_file.close()

    def _has(self, key: str) -> bool:
        return self._db.execute("SELECT 1 FROM entries WHERE key = ?", (key,)).fetchone() is not None

    def _index(self, names: list[str]) -> None:
        """Every entry of these segments into the index (the first copy of a key wins)."""
        if not names:
            return
        cache = self._cache

        def read(name: str) -> list[tuple[str, str, str]]:
            uri = storage.join(cache.prefix, name)
            try:
                return [
                    (key, prompt, canonical_json(asdict(answer))) for key, prompt, answer in cache._segment_entries(uri)
                ]
            except (OSError, EOFError, ValueError, KeyError, TypeError) as exc:
                # An unreadable segment only costs model calls; it must not stop the evaluation.
                logger.warning("ignoring unreadable response cache segment %s: %s", uri, exc)
                return []

        # One segment's entries at a time in memory: the index is on disk.
        with ThreadPoolExecutor(max_workers=min(cache._read_threads, len(names), 4)) as pool:
            for entries in pool.map(read, names):
                self._db.executemany("INSERT OR IGNORE INTO entries VALUES (?, ?, ?)", entries)
        self._db.commit()

    def _indexed(self, wanted: Mapping[str, str]) -> dict[str, CachedResponse]:
        found: dict[str, CachedResponse] = {}
        keys = list(wanted)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for key, prompt, answer in self._db.execute(
                f"SELECT key, prompt, answer FROM entries WHERE key IN ({marks})",
                chunk,
            ):
                if wanted[key] == prompt:
                    found[key] = _response(json.loads(answer))
        return found

    def get_many(self, prompts: Iterable[str]) -> dict[str, CachedResponse]:
        """Cached answers of these prompts, by prompt (prompts without an entry are absent)."""
        cache = self._cache
        wanted = {cache.key(prompt): prompt for prompt in prompts}
        if not wanted:
            return {}
        found = self._indexed(wanted)
        keys = [key for key in wanted if key in self._loose and key not in found]
        vanished = cache._read_loose(keys, wanted, found)
        if vanished:
            # Another run compacted them between our listing and our GETs: they are in its new segment.
            later = [name for name in storage.list_names(cache.segments_prefix) if name.endswith(SEGMENT_SUFFIX)]
            fresh = [cache._segments_relative + name for name in later]
            fresh = [name for name in fresh if name not in self._segments]
            self._index(fresh)
            self._segments.extend(fresh)
            cache._segments_seen = len(self._segments)
            found.update(self._indexed({key: wanted[key] for key in vanished}))
        return {wanted[key]: answer for key, answer in found.items()}


class ResponseCache:
    """Answers of every model under one cache location (a local folder or `s3://bucket/.../response-cache/`).

    `for_model` hands out one `ModelResponseCache` per (identity, settings), so `compact()` here, called
    when the evaluate step ends, compacts what every model cache of this object stored or read.
    """

    def __init__(self, uri: str, *, read_threads: int = DEFAULT_READ_THREADS) -> None:
        self.uri = uri
        self.read_threads = read_threads
        self._models: dict[tuple[str, str], ModelResponseCache] = {}
        self._lock = threading.Lock()

    def for_model(self, identity: str, settings: Mapping[str, Any]) -> ModelResponseCache:
        with self._lock:
            handle = (identity, canonical_json(dict(settings)))
            model = self._models.get(handle)
            if model is None:
                prefix = storage.join(self.uri, _digest(identity, IDENTITY_DIGEST_CHARS))
                model = ModelResponseCache(prefix, identity, settings, read_threads=self.read_threads)
                self._models[handle] = model
            return model

    def compact(self) -> list[CompactionResult]:
        with self._lock:
            models = list(self._models.values())
        return [model.compact() for model in models]
