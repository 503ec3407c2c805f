"""Preprocess: validation, quarantine, de-duplication, the manifest, and failing with one clear line."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import boto3
import pytest

from pipeline_definitions.planning.plan import build_plan, step_arguments
from step_code.contract.config import Config
from step_code.contract.files import MANIFEST_FILE, PROCESSED_FILE, QUARANTINE_FILE
from step_code.preprocess import main, record_id
from tests.support.moto_server import MotoServer


def write_config(path: Path, config: Config, **dataset: Any) -> Path:
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    data["dataset"].update(dataset)
    path.write_text(json.dumps(data))
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    # "\n" only: U+2028 and friends may sit unescaped inside a written row.
    return [json.loads(line) for line in path.read_text(encoding="utf-8").split("\n") if line]


def test_runs_with_the_plan_arguments_on_the_sample(sample_config: Config, repo_root: Path, tmp_path: Path) -> None:
    inputs, outputs = tmp_path / "input", tmp_path / "output"
    (inputs / "config").mkdir(parents=True)
    write_config(inputs / "config" / "config.json", sample_config)
    (inputs / "catalog").symlink_to(repo_root / "prompt_catalog")
    argv = step_arguments(
        build_plan(sample_config).preprocess,
        str(inputs),
        str(outputs),
        execution_id="run-1",
        approval_status="PendingManualApproval",
        cache_uri=str(tmp_path / "cache"),
    )

    assert main([str(a) for a in argv]) == 0

    out = outputs / "dataset"
    rows = read_jsonl(out / PROCESSED_FILE)
    manifest = json.loads((out / MANIFEST_FILE).read_text())
    catalog = read_jsonl(repo_root / "prompt_catalog" / "evaluation_dataset_trivia.jsonl")
    assert len(rows) == len(catalog) == 40
    assert rows[0] == {
        "record_id": record_id(catalog[0]["question"], catalog[0]["answer"]),
        "model_input": catalog[0]["question"],
        "target_output": catalog[0]["answer"],
        "source_line": 1,
    }
    assert len({row["record_id"] for row in rows}) == 40
    assert manifest == {
        "dataset_name": "trivia_qa_sample",
        "source_file": "evaluation_dataset_trivia.jsonl",
        "dataset_mime_type": "jsonlines",
        "rows_in": 40,
        "rows_kept": 40,
        "quarantined": 0,
        "duplicates": 0,
        "duplicate_rows": [],
        "processed_sha256": hashlib.sha256((out / PROCESSED_FILE).read_bytes()).hexdigest(),
        "model_input_key": "question",
        "target_output_key": "answer",
        "category_key": None,
    }
    assert (out / QUARANTINE_FILE).read_text() == ""


BAD_AND_GOOD_LINES = [
    '{"q": {"text": "capital of France?"}, "a": "Paris", "topic": "geo"}',
    "{not json",
    '{"q": {"text": "2 + 2"}, "a": 4, "topic": "math"}',
    "",
    '{"q": {"text": "missing answer"}, "topic": "x"}',
    '{"q": {"text": "capital of France?"}, "a": "Paris", "topic": "geo"}',
    '{"q": {"text": true}, "a": "yes", "topic": "x"}',
    '{"q": {"text": "list answer"}, "a": ["a", "b"], "topic": "x"}',
    '{"q": {"text": "   "}, "a": "blank", "topic": "x"}',
    '["not", "an", "object"]',
    '{"q": {"text": "no topic"}, "a": "z"}',
    '{"q": {"text": "pi"}, "a": 3.14, "topic": 7}',
]


def test_quarantine_duplicates_and_conversions(sample_config: Config, tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "mixed.jsonl").write_text("\n".join(BAD_AND_GOOD_LINES) + "\n")
    config = write_config(
        tmp_path / "config.json",
        sample_config,
        input_data_location="mixed.jsonl",
        model_input_key="q.text",
        target_output_key="a",
        category_key="topic",
        max_quarantine_fraction=0.8,
    )

    code = main(
        ["--config", str(config), "--output-dir", str(tmp_path / "out"), "--catalog-dir", str(tmp_path / "catalog")]
    )

    assert code == 0
    rows = read_jsonl(tmp_path / "out" / PROCESSED_FILE)
    assert [(r["model_input"], r["target_output"], r["category"], r["source_line"]) for r in rows] == [
        ("capital of France?", "Paris", "geo", 1),
        ("2 + 2", "4", "math", 3),
        ("pi", "3.14", "7", 12),
    ]
    quarantine = {q["line"]: q["reason"] for q in read_jsonl(tmp_path / "out" / QUARANTINE_FILE)}
    assert quarantine == {
        2: quarantine[2],
        5: "a: missing",
        7: "q.text: expected text or a number, got a boolean",
        8: "a: expected text or a number, got a list",
        9: "q.text: empty",
        10: "expected a JSON object",
        11: "topic: missing",
    }
    assert quarantine[2].startswith("not valid JSON")
    manifest = json.loads((tmp_path / "out" / MANIFEST_FILE).read_text())
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["quarantined"], manifest["duplicates"]) == (
        11,
        3,
        7,
        1,
    )
    assert manifest["duplicate_rows"] == [{"line": 6, "repeats_line": 1}]


def test_too_many_bad_rows_fail_with_one_line(
    sample_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "mixed.jsonl").write_text("\n".join(BAD_AND_GOOD_LINES))
    config = write_config(
        tmp_path / "config.json",
        sample_config,
        input_data_location="mixed.jsonl",
        model_input_key="q.text",
        target_output_key="a",
    )

    code = main(
        ["--config", str(config), "--output-dir", str(tmp_path / "out"), "--catalog-dir", str(tmp_path / "catalog")]
    )

    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.count("\n") == 0 and "Traceback" not in err
    assert err.startswith("preprocess: error: mixed.jsonl: 6 of 11 rows rejected (54.5%), more than")
    assert "dataset.max_quarantine_fraction 10.0%; first: line 2: not valid JSON" in err
    assert not (tmp_path / "out" / PROCESSED_FILE).exists()
    assert len(read_jsonl(tmp_path / "out" / QUARANTINE_FILE)) == 6


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"question": 1}\n{"answer": "x"}\n', "no valid rows (2 read, 2 rejected; first: line 1: answer: missing"),
        ("\n\n", "no valid rows (0 read, 0 rejected"),
    ],
)
def test_no_valid_row_fails(
    sample_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "bad.jsonl").write_text(content)
    config = write_config(
        tmp_path / "config.json", sample_config, input_data_location="bad.jsonl", max_quarantine_fraction=1.0
    )

    assert (
        main(["--config", str(config), "--output-dir", str(tmp_path / "o"), "--catalog-dir", str(tmp_path / "catalog")])
        == 1
    )
    assert message in capsys.readouterr().err


def test_missing_catalog_file_fails_clearly(
    sample_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path / "config.json", sample_config, input_data_location="nope.jsonl")

    assert main(["--config", str(config), "--output-dir", str(tmp_path / "o"), "--catalog-dir", str(tmp_path)]) == 1
    assert capsys.readouterr().err.strip() == (
        f"preprocess: error: dataset.input_data_location: 'nope.jsonl' not found in the prompt catalog {tmp_path}"
    )


def test_json_array_catalog_and_s3_location(sample_config: Config, tmp_path: Path) -> None:
    (tmp_path / "catalog").mkdir()
    items = [{"question": "b", "answer": "2"}, {"question": "a", "answer": "1"}, "text"]
    (tmp_path / "catalog" / "catalog.json").write_text(json.dumps(items))
    config = write_config(
        tmp_path / "config.json",
        sample_config,
        input_data_location="s3://team-bucket/catalogs/catalog.json",
        dataset_mime_type="json",
        max_quarantine_fraction=0.5,
    )

    assert (
        main(["--config", str(config), "--output-dir", str(tmp_path / "o"), "--catalog-dir", str(tmp_path / "catalog")])
        == 0
    )
    rows = read_jsonl(tmp_path / "o" / PROCESSED_FILE)
    assert [(r["model_input"], r["source_line"]) for r in rows] == [("b", 1), ("a", 2)]
    assert read_jsonl(tmp_path / "o" / QUARANTINE_FILE) == [
        {"line": 3, "reason": "expected a JSON object", "row": "text"}
    ]


def test_record_ids_survive_reordering(sample_config: Config, tmp_path: Path) -> None:
    lines = ['{"question": "x", "answer": "1"}', '{"question": "y", "answer": "2"}']
    ids: list[dict[str, str]] = []
    for order in (lines, lines[::-1]):
        catalog = tmp_path / f"c{len(ids)}"
        catalog.mkdir()
        (catalog / "evaluation_dataset_trivia.jsonl").write_text("\n".join(order))
        config = write_config(tmp_path / "config.json", sample_config)
        assert main(["--config", str(config), "--output-dir", str(catalog / "o"), "--catalog-dir", str(catalog)]) == 0
        ids.append({r["model_input"]: r["record_id"] for r in read_jsonl(catalog / "o" / PROCESSED_FILE)})
    assert ids[0] == ids[1]


def test_reads_and_writes_s3(sample_config: Config, repo_root: Path, tmp_path: Path, moto: MotoServer) -> None:
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="evalops-catalog")
    catalog = (repo_root / "prompt_catalog" / "evaluation_dataset_trivia.jsonl").read_bytes()
    s3.put_object(Bucket="evalops-catalog", Key="catalog/evaluation_dataset_trivia.jsonl", Body=catalog)
    config = write_config(tmp_path / "config.json", sample_config)

    output_dir, catalog_dir = "s3://evalops-catalog/run/dataset", "s3://evalops-catalog/catalog"
    code = main(["--config", str(config), "--output-dir", output_dir, "--catalog-dir", catalog_dir])

    assert code == 0
    manifest = json.loads(s3.get_object(Bucket="evalops-catalog", Key="run/dataset/manifest.json")["Body"].read())
    processed = s3.get_object(Bucket="evalops-catalog", Key="run/dataset/processed.jsonl")["Body"].read()
    assert manifest["rows_kept"] == 40
    assert manifest["processed_sha256"] == hashlib.sha256(processed).hexdigest()


def run_preprocess(tmp_path: Path, config: Config, catalog: bytes, **dataset: Any) -> int:
    (tmp_path / "catalog").mkdir()
    (tmp_path / "catalog" / "rows.jsonl").write_bytes(catalog)
    path = write_config(tmp_path / "config.json", config, input_data_location="rows.jsonl", **dataset)
    return main(
        ["--config", str(path), "--output-dir", str(tmp_path / "o"), "--catalog-dir", str(tmp_path / "catalog")]
    )


def test_line_separators_inside_a_row_are_text_and_lines_are_the_files(sample_config: Config, tmp_path: Path) -> None:
    # U+2028, U+2029 and a form feed are valid unescaped inside a JSON string; a BOM opens the file.
    rows = [
        {"question": "one\u2028two", "answer": "a"},
        {"question": "three\u2029four", "answer": "b"},
        {"question": "five\x0csix", "answer": "c"},
    ]
    raw = ['{"question": "' + row["question"] + '", "answer": "' + row["answer"] + '"}' for row in rows]
    text = "\ufeff" + "\r\n".join(raw[:2]) + "\n\n" + raw[2] + "\n"

    assert run_preprocess(tmp_path, sample_config, text.encode("utf-8")) == 0

    processed = read_jsonl(tmp_path / "o" / PROCESSED_FILE)
    assert [(r["model_input"], r["source_line"]) for r in processed] == [
        ("one\u2028two", 1),
        ("three\u2029four", 2),
        ("five\x0csix", 4),
    ]
    assert (tmp_path / "o" / QUARANTINE_FILE).read_text() == ""


UNUSABLE_ROWS = {
    2: ('{"question": "q2", "answer": "a", "unused": ' + "9" * 4301 + "}", "an integer of 4,301 digits"),
    3: ('{"question": "q3", "answer": ' + "[" * 1000 + "]" * 1000 + "}", "nested deeper than 100 levels"),
    4: ('{"question": "q4", "answer": "a", "x": ' + "[" * 101 + "]" * 101 + "}", "nested deeper than 100 levels"),
    5: ('{"question": "q5 \\ud800", "answer": "a"}', "a string holding a lone surrogate"),
    6: ('{"question": "q6", "answer": "a", "score": NaN}', "NaN is not a JSON number"),
    7: ('{"question": "q7", "answer": Infinity}', "Infinity is not a JSON number"),
    8: ('{"\\udfff": "key", "question": "q8", "answer": "a"}', "a key holding a lone surrogate"),
}


def test_every_unusable_row_is_quarantined_with_its_line_and_reason(sample_config: Config, tmp_path: Path) -> None:
    good = [json.dumps({"question": f"ok {n}", "answer": "a"}) for n in range(20)]
    lines = [good[0]] + [UNUSABLE_ROWS[n][0] for n in sorted(UNUSABLE_ROWS)] + good[1:] + [good[3]]

    code = run_preprocess(tmp_path, sample_config, "\n".join(lines).encode(), max_quarantine_fraction=0.5)

    assert code == 0
    quarantine = read_jsonl(tmp_path / "o" / QUARANTINE_FILE)
    assert [q["line"] for q in quarantine] == sorted(UNUSABLE_ROWS)
    for entry in quarantine:
        assert entry["reason"].startswith(UNUSABLE_ROWS[entry["line"]][1]), entry["reason"]
        assert entry["row"] == UNUSABLE_ROWS[entry["line"]][0]
    manifest = json.loads((tmp_path / "o" / MANIFEST_FILE).read_text())
    assert (manifest["rows_in"], manifest["rows_kept"], manifest["quarantined"], manifest["duplicates"]) == (
        len(lines),
        20,
        len(UNUSABLE_ROWS),
        1,
    )
    assert manifest["duplicate_rows"] == [{"line": len(lines), "repeats_line": len(UNUSABLE_ROWS) + 4}]


def test_a_json_array_quarantines_unusable_items(sample_config: Config, tmp_path: Path) -> None:
    catalog = (
        '[{"question": "q", "answer": "a"}, {"question": "\\ud800", "answer": "a"}, {"question": NaN, "answer": 1}]'
    )

    assert (
        run_preprocess(tmp_path, sample_config, catalog.encode(), dataset_mime_type="json", max_quarantine_fraction=1)
        == 0
    )

    quarantine = read_jsonl(tmp_path / "o" / QUARANTINE_FILE)
    assert [(q["line"], q["reason"]) for q in quarantine] == [
        (2, "a string holding a lone surrogate (not valid Unicode)"),
        (3, "NaN is not a JSON number"),
    ]


@pytest.mark.timeout(30)
def test_a_fifo_as_the_catalog_is_refused_without_blocking(
    sample_config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "catalog").mkdir()
    os.mkfifo(tmp_path / "catalog" / "rows.jsonl")
    path = write_config(tmp_path / "config.json", sample_config, input_data_location="rows.jsonl")

    code = main(
        ["--config", str(path), "--output-dir", str(tmp_path / "o"), "--catalog-dir", str(tmp_path / "catalog")]
    )

    assert code == 1
    assert capsys.readouterr().err.strip() == (
        f"preprocess: error: {tmp_path / 'catalog' / 'rows.jsonl'}: not a regular file (a FIFO, device or folder); "
        "give the catalog file"
    )
