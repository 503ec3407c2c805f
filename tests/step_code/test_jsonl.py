"""One JSON Lines reader for every step: `\n` ends a line, line numbers are the file's, a BOM is accepted."""

from __future__ import annotations

from pathlib import Path

import pytest

from step_code.aws_resources import ControlPlaneError
from step_code.evaluate_step import ProcessedRows
from step_code.jsonl import dumps_line, json_lines, parse_record
from step_code.runners.recorded import RecordedResponsesError, parse_recorded

# Characters `str.splitlines()` splits on that JSON allows unescaped inside a string.
SEPARATORS = ["\u2028", "\u2029", "\x0c", "\x0b", "\x1c", "\x85"]


@pytest.mark.parametrize("separator", SEPARATORS)
def test_a_separator_inside_a_string_stays_in_its_row(separator: str) -> None:
    # Written raw, not escaped: as another tool may write them.
    text = "\ufeff" + '{"a": "x' + separator + 'y"}' + "\r\n\n" + '{"b": 1}\n'

    lines = list(json_lines(text))

    assert [number for number, _ in lines] == [1, 3]
    assert parse_record(lines[0][1]) == ({"a": f"x{separator}y"}, None)


def test_a_line_of_only_a_form_feed_is_a_row_and_is_reported() -> None:
    assert list(json_lines("\x0c\n \t\n")) == [(1, "\x0c")]
    assert parse_record("\x0c")[1] is not None


def test_unusable_json_is_a_reason_never_an_exception() -> None:
    assert parse_record("[" * 5000)[1] == "nested deeper than 100 levels"
    assert parse_record("1" * 5000)[1] == "an integer of 5,000 digits (at most 4,300 are read)"
    assert parse_record("-" + "1" * 4300) == (-int("1" * 4300), None)
    assert parse_record('"\\ud83d\\ude00"') == ("\U0001f600", None)
    assert parse_record('["\\ud83d"]')[1] == "a string holding a lone surrogate (not valid Unicode)"
    assert dumps_line(["\ud83d", "é"]) == '["\\ud83d", "\\u00e9"]\n'
    assert dumps_line(["é"]) == '["é"]\n'


def test_recorded_responses_keep_separators_and_number_lines_as_the_file() -> None:
    text = "\ufeff" + '{"prompt": "p\u2028q", "model_output": "a\x0cb"}' + "\n\n"
    text += '{"prompt": "r", "model_output": NaN}\n'

    with pytest.raises(RecordedResponsesError, match=r"^f line 3: NaN is not a JSON number$"):
        parse_recorded(text, source="f", names=("m",))
    assert parse_recorded(text.rsplit("\n\n", 1)[0], source="f", names=("m",)) == {"p\u2028q": "a\x0cb"}


def test_the_evaluate_step_reads_processed_rows_holding_separators(tmp_path: Path) -> None:
    rows = [
        {"record_id": str(n), "model_input": f"in{sep}put", "target_output": "t"} for n, sep in enumerate(SEPARATORS)
    ]
    path = tmp_path / "processed.jsonl"
    path.write_text("".join(dumps_line(row) for row in rows) + "{oops\n", encoding="utf-8")

    with pytest.raises(ControlPlaneError, match=rf"line {len(rows) + 1}: not JSON"):
        ProcessedRows(str(path), path).count()
    path.write_text("".join(dumps_line(row) for row in rows), encoding="utf-8")
    assert list(ProcessedRows(str(path), path)) == rows


def test_a_file_read_line_by_line_gives_the_same_lines_as_its_text(tmp_path: Path) -> None:
    from step_code.jsonl import json_file_lines, json_lines

    text = '\ufeff{"a": 1}\r\n\n  \n{"b": "x\u2028y\fz"}\n{"c": 3}'
    path = tmp_path / "rows.jsonl"
    path.write_bytes(text.encode("utf-8"))
    assert (
        list(json_file_lines(path))
        == list(json_lines(text))
        == [
            (1, '{"a": 1}'),
            (4, '{"b": "x\u2028y\fz"}'),
            (5, '{"c": 3}'),
        ]
    )
