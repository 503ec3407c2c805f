"""The outcome of every distinct prompt of one evaluate run, kept on local disk rather than in memory.

The invocation pass (`invoke_stream`) puts each prompt's outcome here as it settles and reads it back
for the prompt's later repeats; the scoring pass reads it for every record's own prompt and, through
`StoredOutputRunner`, for the prompts fmeval's robustness and stereotyping transforms ask for. At 100k
prompts the outcomes are tens of megabytes of text; in a temporary SQLite file (rows keyed by a 16-byte
digest of the prompt, a small page cache) they cost the process almost nothing, so its memory does
not grow with the number of prompts.
"""

from __future__ import annotations

import hashlib
import sqlite3
import tempfile

from step_code.invocation_plan import StoredAnswer
from step_code.response_cache import CachedResponse

DIGEST_BYTES = 16


def _digest(prompt: str) -> bytes:
    return hashlib.blake2b(prompt.encode("utf-8"), digest_size=DIGEST_BYTES).digest()


class AnswerStore:
    """An `invocation.OutcomeStore` and the answers `StoredOutputRunner` reads; one thread at a time."""

    def __init__(self) -> None:
        self._file = tempfile.NamedTemporaryFile(prefix="evalops-answers-", suffix=".sqlite")  # noqa: SIM115
        self._db = sqlite3.connect(self._file.name, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute(
            "CREATE TABLE outcomes (digest BLOB PRIMARY KEY, output TEXT, input_tokens INTEGER,"
            " output_tokens INTEGER, tokens_estimated INTEGER, latency_ms REAL, log_probability REAL, error TEXT)"
        )
        self.distinct_prompts = 0

    def __enter__(self) -> AnswerStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        self._file.close()

    def put(self, prompt: str, answer: CachedResponse | None, error: str | None) -> None:
        values: tuple[object, ...] = (None, None, None, 0, None, None)
        if answer is not None:
            values = (answer.model_output, answer.input_tokens, answer.output_tokens, int(answer.tokens_estimated))
            values = (*values, answer.latency_ms, answer.log_probability)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (_digest(prompt), *values, error)
        )
        self.distinct_prompts += cursor.rowcount

    def outcome(self, prompt: str) -> tuple[CachedResponse | None, str | None] | None:
        row = self._db.execute("SELECT * FROM outcomes WHERE digest = ?", (_digest(prompt),)).fetchone()
        if row is None:
            return None
        _, output, input_tokens, output_tokens, estimated, latency, log_probability, error = row
        if output is None:
            return None, error
        return CachedResponse(output, input_tokens, output_tokens, bool(estimated), latency, log_probability), error

    def get(self, prompt: str) -> StoredAnswer | None:
        """The stored answer of a prompt (None: it was not planned)."""
        row = self._db.execute(
            "SELECT output, log_probability, error FROM outcomes WHERE digest = ?", (_digest(prompt),)
        ).fetchone()
        return None if row is None else StoredAnswer(output=row[0], log_probability=row[1], error=row[2])
