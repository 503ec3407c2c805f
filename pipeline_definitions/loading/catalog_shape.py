"""Whether a local prompt catalog holds records in the shape its `dataset_mime_type` declares.

Preprocess would fail on an empty catalog, and would quarantine every line of a JSON array declared as
`jsonlines` (each line a fragment of the array); `evalops validate` says so first. Only the start of a JSON
Lines file is read (its first record), so this stays fast on a large catalog; a JSON catalog is one document
and is parsed whole. Rows are checked one by one by preprocess, which quarantines what it cannot use.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from step_code.jsonl import BOM, JSON_WHITESPACE, parse_document

# The first record of a JSON Lines catalog is read at most this far (a record is a few KB).
FIRST_RECORD_CHARS = 1024 * 1024


def catalog_shape_problem(path: Path, mime_type: str) -> str | None:
    """Why the catalog at `path` is not usable as `mime_type`, or None."""
    if not stat.S_ISREG(os.stat(path).st_mode):
        return f"{path} is not a regular file"
    try:
        if mime_type == "json":
            return _json_problem(path.read_text(encoding="utf-8").removeprefix(BOM))
        with path.open(encoding="utf-8", newline="\n") as handle:
            return _jsonlines_problem(handle.read(FIRST_RECORD_CHARS).removeprefix(BOM))
    except UnicodeDecodeError:
        return f"{path.name} is not UTF-8 text"


def _jsonlines_problem(start: str) -> str | None:
    first = next((line for line in start.split("\n") if line.strip(JSON_WHITESPACE)), None)
    if first is None:
        if len(start) == FIRST_RECORD_CHARS:
            return None  # a megabyte of blank lines: preprocess reads on
        return "the catalog is empty (no records); add JSON Lines records, one object per line"
    if first.strip(JSON_WHITESPACE).startswith("["):
        return (
            "the catalog starts with a JSON array, but dataset_mime_type is jsonlines (one object per line); "
            "set dataset_mime_type: json, or write one record per line"
        )
    return None


def _json_problem(text: str) -> str | None:
    if not text.strip(JSON_WHITESPACE):
        return "the catalog is empty (no records); add a JSON array of objects"
    document, problem = parse_document(text)
    if problem is not None:
        return (
            f"the catalog is not one JSON document ({problem}), as dataset_mime_type json requires; "
            "for one record per line set dataset_mime_type: jsonlines"
        )
    if not isinstance(document, list):
        return "expected a JSON array of records (dataset_mime_type is json)"
    if not document:
        return "the catalog is an empty JSON array (no records)"
    return None


def catalog_record_count(path: Path, mime_type: str) -> int:
    """Prompts in a catalog whose shape is usable: a JSON array's items, or a JSON Lines file's non-blank lines
    (preprocess may quarantine some of them, so this is the count it reads)."""
    if mime_type == "json":
        document, _ = parse_document(path.read_text(encoding="utf-8").removeprefix(BOM))
        return len(document) if isinstance(document, list) else 0
    with path.open(encoding="utf-8", newline="\n") as handle:
        return sum(1 for line in handle if line.removeprefix(BOM).strip(JSON_WHITESPACE + "\n"))
