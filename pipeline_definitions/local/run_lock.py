"""One `evalops run` at a time per run folder.

Two runs on one folder share an execution id and overwrite each other's step outputs (one may register
from outputs the other then rewrites), so the second run stops at once with a line naming the holder.

- A local folder: an exclusive `flock` on `<run>/run.lock`. The kernel drops it when the holder exits,
  however it exits (kill -9 included), so a crashed run never blocks the next one. The file is never
  deleted: deleting it would let a third run lock a new file while the second still holds the old one.
  (flock is advisory and local to one machine; two machines sharing a network folder are not covered.)
- An s3:// prefix: S3 has no locks, but a conditional PUT (`If-None-Match: *`) of `<prefix>/run.lock`
  succeeds for exactly one writer. The holder deletes it when it ends, also on error and Ctrl-C. A run
  that is killed outright leaves it behind: there is no lease, because a heartbeat-based lease would let a
  second run take over from a holder that is only slow (a long evaluate step), which is the corruption this
  lock exists to prevent. The line says which object to delete once that holder is known to be gone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from step_code import storage

LOCK_FILE = "run.lock"
# S3's answers to a conditional PUT that lost: the object exists, or another conditional write is in flight.
LOST_RACE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})


class RunLocked(Exception):
    """Another run holds the run folder; the message is one line for the user."""


def _holder() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }


def _describe(raw: bytes) -> str:
    try:
        holder = json.loads(raw)
        return f"pid {int(holder['pid'])} on {holder['host']}, started {holder['started']}"
    except (ValueError, KeyError, TypeError):
        return "a run that has not said who it is yet"


@contextmanager
def folder_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _describe(os.pread(fd, 4096, 0))
            raise RunLocked(
                f"{root} is in use by another evalops run ({holder}; lock {path}): "
                "wait for it to end, or choose another --output"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(_holder()).encode(), 0)
        yield
    finally:
        os.close(fd)


@contextmanager
def s3_lock(prefix: str) -> Iterator[None]:
    uri = f"{prefix.rstrip('/')}/{LOCK_FILE}"
    bucket, key = storage.split_s3(uri)
    client = storage.s3_client()
    try:
        client.put_object(Bucket=bucket, Key=key, Body=json.dumps(_holder()).encode(), IfNoneMatch="*")
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in LOST_RACE_CODES:
            raise
        try:
            holder = _describe(storage.read_bytes(uri))
        except FileNotFoundError:
            holder = "a run that has just ended"
        raise RunLocked(
            f"{prefix} is in use by another evalops run ({holder}; lock {uri}): wait for it to end, or choose "
            f"another --output; if that run was killed, delete {uri} and run again"
        ) from None
    try:
        yield
    finally:
        client.delete_object(Bucket=bucket, Key=key)
