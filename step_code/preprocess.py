"""Preprocess step: check the prompt catalog, set bad rows aside, drop duplicates, write what evaluate reads.

Outputs (in `--output-dir`):
- `processed.jsonl`: one row per kept record — `record_id` (sha256 of input and target, so it survives
  reordering the catalog), `model_input`, `target_output`, `category` (when the config has a
  `category_key`) and `source_line` (line of a JSON Lines file, 1-based item number of a JSON array);
- `quarantine.jsonl`: every rejected row with its line and the reason: lines that are not JSON, and JSON no
  step can use (NaN/Infinity, integers of more than 4,300 digits, nesting deeper than 100 levels, lone
  surrogates; see `step_code.jsonl`), written so that no row can make writing it fail;
- `manifest.json`: counts, the processed file's sha256, the source file name, and each dropped duplicate
  row with the line it repeats.
A row needs its model input and target output (the config's JMESPaths) as non-empty text; numbers are
turned into text, anything else is rejected. Rows repeating an earlier row's input and target are
dropped and listed. The step fails when no row is valid or more than `max_quarantine_fraction` of
the rows are rejected.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jmespath

from step_code import storage
from step_code.aws_resources import ControlPlaneError
from step_code.contract.config import Config, DatasetConfig
from step_code.contract.files import MANIFEST_FILE, PROCESSED_FILE, QUARANTINE_FILE
from step_code.contract.results import CatalogManifest, DuplicateRow
from step_code.jsonl import BOM, dumps_line, json_lines, parse_document, parse_record, unusable_reason
from step_code.shard_files import write_shards
from step_code.step_args import step_parser
from step_code.step_io import read_config, run_step

logger = logging.getLogger(__name__)

RECORD_ID_CHARS = 16


class CatalogError(ControlPlaneError):
    """The prompt catalog cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True)
class CatalogRow:
    record_id: str
    model_input: str
    target_output: str
    category: str | None
    source_line: int
    # PromptStereotyping's sentence pair, when the dataset maps it (sent_more/sent_less_input_location).
    sentences: tuple[str, str] | None = None


@dataclass(frozen=True)
class QuarantinedRow:
    line: int
    reason: str
    row: Any


@dataclass(frozen=True)
class CleanCatalog:
    rows: list[CatalogRow]
    quarantined: list[QuarantinedRow]
    rows_in: int
    duplicates: list[DuplicateRow]


def record_id(model_input: str, target_output: str) -> str:
    payload = json.dumps([model_input, target_output], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:RECORD_ID_CHARS]


def _parsed_rows(text: str, mime_type: str, source: str) -> Iterator[tuple[int, Any, str | None]]:
    """(line, parsed row or raw text, reason it is unusable or None) for every row of the file."""
    if mime_type == "json":
        items, problem = parse_document(text.removeprefix(BOM))
        if problem is not None:
            raise CatalogError(f"{source}: {problem} (dataset_mime_type is json: one array of objects)")
        if not isinstance(items, list):
            raise CatalogError(f"{source}: expected a JSON array of objects (dataset_mime_type is json)")
        for number, item in enumerate(items, start=1):
            reason = unusable_reason(item)
            if reason is None and not isinstance(item, dict):
                reason = "expected a JSON object"
            yield number, item, reason
        return
    for number, line in json_lines(text):
        item, problem = parse_record(line)
        if problem is not None:
            yield number, line, problem
            continue
        yield number, item, None if isinstance(item, dict) else "expected a JSON object"


def _text(row: dict[str, Any], path: str, expression: jmespath.parser.ParsedResult) -> tuple[str | None, str | None]:
    """The value at `path` as text, or the reason it cannot be used."""
    value = expression.search(row)
    if value is None:
        return None, f"{path}: missing"
    if isinstance(value, bool):
        return None, f"{path}: expected text or a number, got a boolean"
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return None, f"{path}: expected text or a finite number, got {value}"
        return str(value), None
    if isinstance(value, str):
        return (value, None) if value.strip() else (None, f"{path}: empty")
    kind = "a list" if isinstance(value, list) else "an object"
    return None, f"{path}: expected text or a number, got {kind}"


def clean_catalog(text: str, dataset: DatasetConfig, *, source: str) -> CleanCatalog:
    """Validate and de-duplicate the catalog's rows (pure: no files are written)."""
    fields = [("model_input", dataset.model_input_key), ("target_output", dataset.target_output_key)]
    if dataset.category_key:
        fields.append(("category", dataset.category_key))
    if dataset.sent_more_input_location and dataset.sent_less_input_location:
        fields += [("sent_more_input", dataset.sent_more_input_location)]
        fields += [("sent_less_input", dataset.sent_less_input_location)]
    compiled = [(name, path, jmespath.compile(path)) for name, path in fields]
    rows: list[CatalogRow] = []
    quarantined: list[QuarantinedRow] = []
    first_line: dict[tuple[str, str], int] = {}
    duplicates: list[DuplicateRow] = []
    rows_in = 0
    for line, item, problem in _parsed_rows(text, dataset.dataset_mime_type, source):
        rows_in += 1
        if problem is not None:
            quarantined.append(QuarantinedRow(line, problem, item))
            continue
        values: dict[str, str] = {}
        reasons: list[str] = []
        for name, path, expression in compiled:
            value, reason = _text(item, path, expression)
            if reason is not None:
                reasons.append(reason)
            elif value is not None:
                values[name] = value
        if reasons:
            quarantined.append(QuarantinedRow(line, "; ".join(reasons), item))
            continue
        key = (values["model_input"], values["target_output"])
        if key in first_line:
            duplicates.append(DuplicateRow(line=line, repeats_line=first_line[key]))
            continue
        first_line[key] = line
        rows.append(
            CatalogRow(
                record_id=record_id(*key),
                model_input=key[0],
                target_output=key[1],
                category=values.get("category"),
                source_line=line,
                sentences=(values["sent_more_input"], values["sent_less_input"])
                if "sent_more_input" in values
                else None,
            )
        )
    return CleanCatalog(rows=rows, quarantined=quarantined, rows_in=rows_in, duplicates=duplicates)


def catalog_file(catalog_dir: str, dataset: DatasetConfig) -> str:
    """Where the catalog file is: an s3:// location was downloaded into the catalog dir under its base name."""
    location = dataset.input_data_location
    name = storage.basename(location) if storage.is_s3(location) else location
    return storage.join(catalog_dir, name)


def _jsonl(rows: Sequence[dict[str, Any]]) -> str:
    return "".join(dumps_line(row) for row in rows)


def _processed_row(row: CatalogRow, with_category: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "record_id": row.record_id,
        "model_input": row.model_input,
        "target_output": row.target_output,
    }
    if with_category:
        out["category"] = row.category
    if row.sentences is not None:
        out["sent_more_input"], out["sent_less_input"] = row.sentences
    out["source_line"] = row.source_line
    return out


def preprocess(config: Config, catalog_dir: str, output_dir: str, shard_outputs: Sequence[str] = ()) -> CatalogManifest:
    """Read the catalog, write processed.jsonl, quarantine.jsonl and manifest.json; raise CatalogError
    when the catalog is unusable (quarantine.jsonl is still written, to show why)."""
    dataset = config.dataset
    source = catalog_file(catalog_dir, dataset)
    # Reading a FIFO (or a device) would block the step until a writer appears: only regular files are read.
    if not storage.is_s3(source) and os.path.exists(source) and not os.path.isfile(source):
        raise CatalogError(f"{source}: not a regular file (a FIFO, device or folder); give the catalog file")
    try:
        text = storage.read_text(source)
    except FileNotFoundError:
        raise CatalogError(
            f"dataset.input_data_location: {dataset.input_data_location!r} not found in the prompt catalog "
            f"{catalog_dir}"
        ) from None
    except OSError as exc:
        raise CatalogError(f"{source}: cannot read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise CatalogError(f"{source}: not UTF-8 text") from None
    clean = clean_catalog(text, dataset, source=source)
    quarantine = [{"line": q.line, "reason": q.reason, "row": q.row} for q in clean.quarantined]
    storage.write_text(storage.join(output_dir, QUARANTINE_FILE), _jsonl(quarantine), content_type="application/jsonl")

    name = storage.basename(source)
    first = f"; first: line {clean.quarantined[0].line}: {clean.quarantined[0].reason}" if clean.quarantined else ""
    if not clean.rows:
        raise CatalogError(
            f"{name}: no valid rows ({clean.rows_in} read, {len(clean.quarantined)} rejected{first}; "
            f"see {QUARANTINE_FILE})"
        )
    fraction = len(clean.quarantined) / clean.rows_in
    if fraction > dataset.max_quarantine_fraction:
        raise CatalogError(
            f"{name}: {len(clean.quarantined)} of {clean.rows_in} rows rejected ({fraction:.1%}), more than "
            f"dataset.max_quarantine_fraction {dataset.max_quarantine_fraction:.1%}{first}; see {QUARANTINE_FILE}"
        )

    with_category = dataset.category_key is not None
    processed = _jsonl([_processed_row(row, with_category) for row in clean.rows]).encode("utf-8")
    storage.write_bytes(storage.join(output_dir, PROCESSED_FILE), processed, content_type="application/jsonl")
    for shard_output in shard_outputs:
        write_shards(processed, shard_output)
    manifest = CatalogManifest(
        dataset_name=dataset.dataset_name,
        source_file=name,
        dataset_mime_type=dataset.dataset_mime_type,
        rows_in=clean.rows_in,
        rows_kept=len(clean.rows),
        quarantined=len(clean.quarantined),
        duplicates=len(clean.duplicates),
        duplicate_rows=clean.duplicates,
        processed_sha256=hashlib.sha256(processed).hexdigest(),
        model_input_key=dataset.model_input_key,
        target_output_key=dataset.target_output_key,
        category_key=dataset.category_key,
    )
    storage.write_text(
        storage.join(output_dir, MANIFEST_FILE),
        manifest.model_dump_json(indent=2) + "\n",
        content_type="application/json",
    )
    logger.info(
        "%s: %d rows read, %d kept, %d quarantined, %d duplicates",
        name,
        manifest.rows_in,
        manifest.rows_kept,
        manifest.quarantined,
        manifest.duplicates,
    )
    return manifest


def main(argv: list[str] | None = None) -> int:
    parser = step_parser("step_code.preprocess", __doc__, output_type=str)
    parser.add_argument("--catalog-dir", required=True, help="folder holding the prompt catalog file")
    parser.add_argument(
        "--shard-output", action="append", default=[], help="a shards-<K> folder to write K shard files into"
    )
    args = parser.parse_args(argv)
    return run_step("preprocess", lambda: _run(args.config, args.catalog_dir, args.output_dir, args.shard_output))


def _run(config_path: Path, catalog_dir: str, output_dir: str, shard_outputs: Sequence[str]) -> None:
    preprocess(read_config(config_path), catalog_dir, output_dir, shard_outputs)


if __name__ == "__main__":
    raise SystemExit(main())
