"""JSON Lines as the files hold them: one record per `\\n`-ended line, numbered as an editor numbers them.

`str.splitlines()` also splits on U+2028, U+2029, form feeds and other separators that JSON allows unescaped
inside a string, so it cuts valid records in two; here only `\\n` ends a line (and a `\\r` before it is
dropped). A UTF-8 byte order mark at the start of the file is not part of the first record.

`parse_record` reads one record without ever raising: what Python's `json` would accept but a step cannot
use (NaN/Infinity, integers beyond Python's 4,300-digit conversion limit, nesting deeper than MAX_DEPTH,
strings holding a lone surrogate, which cannot be written back as UTF-8) comes back as a reason.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BOM = "\ufeff"
# JSON's own whitespace: a line holding only these is blank. A form feed alone is not, so it is reported.
JSON_WHITESPACE = " \t\r"
MAX_DEPTH = 100
# Python refuses to convert longer decimal integers (sys.get_int_max_str_digits' default).
MAX_INT_DIGITS = 4300


def json_lines(text: str) -> Iterator[tuple[int, str]]:
    """(line number, line) for every line of `text` that is not blank; line numbers are the file's."""
    if text.startswith(BOM):
        text = text[len(BOM) :]
    for number, line in enumerate(text.split("\n"), start=1):
        line = line.removesuffix("\r")
        if line.strip(JSON_WHITESPACE):
            yield number, line


def json_file_lines(path: Path) -> Iterator[tuple[int, str]]:
    """`json_lines` of a file read line by line, so that a large file is never held whole."""
    with path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            line = raw.decode("utf-8").removesuffix("\n").removesuffix("\r")
            if number == 1:
                line = line.removeprefix(BOM)
            if line.strip(JSON_WHITESPACE):
                yield number, line


class _Unusable(str):
    """Stands in for a value `json` would build but a step cannot use; its text says why."""


def _constant(name: str) -> _Unusable:
    return _Unusable(f"{name} is not a JSON number")


def _integer(digits: str) -> int | _Unusable:
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        return _Unusable(f"an integer of {len(digits.lstrip('-')):,} digits (at most {MAX_INT_DIGITS:,} are read)")
    return int(digits)


# strict=False: a raw control character (a form feed, say) inside a string is kept as text, not refused.
_DECODER = json.JSONDecoder(parse_constant=_constant, parse_int=_integer, strict=False)


def unusable_reason(value: Any) -> str | None:
    """Why a value `parse_document` built cannot be used, walking it without recursion; None when it can."""
    pending: list[tuple[Any, int]] = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        if isinstance(item, _Unusable):
            return str(item)
        if isinstance(item, str):
            if not _encodable(item):
                return "a string holding a lone surrogate (not valid Unicode)"
            continue
        if isinstance(item, dict | list):
            if depth > MAX_DEPTH:
                return f"nested deeper than {MAX_DEPTH} levels"
            if isinstance(item, dict):
                for key, child in item.items():
                    if not _encodable(key):
                        return "a key holding a lone surrogate (not valid Unicode)"
                    pending.append((child, depth + 1))
            else:
                pending.extend((child, depth + 1) for child in item)
    return None


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def parse_record(text: str) -> tuple[Any, str | None]:
    """(the parsed value, None) or (None, why it cannot be used); never raises."""
    value, reason = parse_document(text)
    if reason is None:
        reason = unusable_reason(value)
    return (None, reason) if reason is not None else (value, None)


def parse_document(text: str) -> tuple[Any, str | None]:
    """(the parsed value, None) or (None, why it is not JSON); never raises.

    The value may hold stand-ins for unusable numbers: check each part a step reads with `unusable_reason`.
    """
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        return None, f"not valid JSON ({exc.msg} at column {exc.colno})"
    except RecursionError:
        return None, f"nested deeper than {MAX_DEPTH} levels"
    return value, None


def dumps_line(value: Any) -> str:
    """One JSON line, UTF-8 text kept readable; text that cannot be UTF-8 is written escaped instead of failing."""
    line = json.dumps(value, ensure_ascii=False)
    if not _encodable(line):
        line = json.dumps(value, ensure_ascii=True)
    return line + "\n"
