"""Fine-tuning data in the prompt catalog: JumpStart's channel layout, checked before a training job is started.

JumpStart's text-generation training scripts read every JSON Lines file of the `training` channel, and an
optional `template.json` beside them (`{"prompt": "...{question}...", "completion": "{answer}"}`) that turns each
record into a prompt and a completion. The reference sample keeps both in one S3 folder (`train_dataset`) and
names the folder as `train_data_path`; here that folder sits in the prompt catalog.

A relative path that names no file is normalized to end with "/" (a folder): the finetune step joins it to
the uploaded catalog's S3 prefix, and without the "/" the prefix `.../train_dataset` would also match a sibling
file such as `train_dataset_trivia.jsonl`, handing the job data it was not given.
"""

from __future__ import annotations

import json
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline_definitions.loading.validation import Finding, Loc
from step_code.contract.config import Config, FinetuningConfig
from step_code.contract.locations import is_s3

TEMPLATE_FILE = "template.json"
DATA_SUFFIXES = (".jsonl", ".json")
TEMPLATE_FIELDS = ("prompt", "completion")
PATH_KEYS = ("train_data_path", "validation_data_path")


@dataclass
class FinetuningData:
    config: Config
    errors: list[Finding] = field(default_factory=list)
    warnings: list[Finding] = field(default_factory=list)


def check_finetuning_data(config: Config, catalog: Path | None) -> FinetuningData:
    """The config with catalog folders spelled `folder/`, and what is wrong with the data the jobs would get."""
    result = FinetuningData(config)
    if catalog is None or is_s3(config.dataset.input_data_location):
        return result
    models = list(config.models)
    for index, model in enumerate(models):
        if model.finetuning is not None:
            models[index] = model.model_copy(
                update={"finetuning": _checked_channels(model.finetuning, catalog, ("models", index), result)}
            )
    result.config = config.model_copy(update={"models": models})
    return result


def _checked_channels(
    finetuning: FinetuningConfig, catalog: Path, model_loc: Loc, result: FinetuningData
) -> FinetuningConfig:
    updates: dict[str, str] = {}
    template: _Template | None = None
    records: list[tuple[Loc, list[Path]]] = []
    for key in PATH_KEYS:
        path = getattr(finetuning, key)
        target = None if path is None or is_s3(path) else _inside(catalog, path)
        if target is None:
            continue
        loc: Loc = (*model_loc, "finetuning", key)
        training = key == "train_data_path"
        if target.is_file():
            records.append((loc, [target]))
            if training and (target.parent / TEMPLATE_FILE).is_file():
                result.warnings.append(
                    Finding(
                        loc,
                        f"the training channel receives {path!r} alone, so the {TEMPLATE_FILE} beside it is not "
                        "used; name a folder holding both (JumpStart reads the template from the channel)",
                    )
                )
            continue
        # A folder, or nothing yet (the loader warns): either way the job must get that folder only.
        updates[key] = path.rstrip("/") + "/"
        if not target.is_dir():
            continue
        data_files = _data_files(target, path, loc, result)
        records.append((loc, data_files))
        if (target / TEMPLATE_FILE).is_file() and data_files:
            if training:
                template = _read_template(target / TEMPLATE_FILE, path, loc, result)
            else:
                result.warnings.append(
                    Finding(
                        loc,
                        f"{TEMPLATE_FILE} in {path!r} is not read: JumpStart takes the template from the training "
                        "channel",
                    )
                )
    if template is not None:
        # JumpStart applies the training channel's template to the validation records as well.
        for loc, data_files in records:
            problem = template.missing_fields(data_files)
            if problem is not None:
                result.errors.append(Finding(loc, f"{template.shown}: {problem}"))
    return finetuning.model_copy(update=updates) if updates else finetuning


@dataclass(frozen=True)
class _Template:
    shown: str
    placeholders: frozenset[str]

    def missing_fields(self, data_files: list[Path]) -> str | None:
        for data_file in data_files:
            record, line = _first_record(data_file)
            if record is None:
                continue
            missing = sorted(name for name in self.placeholders if name not in record)
            if missing:
                fields = ", ".join("{" + name + "}" for name in missing)
                return (
                    f"uses {fields}, which the records of {data_file.name} lack (line {line} has: {', '.join(record)})"
                )
        return None


def _data_files(folder: Path, path: str, loc: Loc, result: FinetuningData) -> list[Path]:
    uploaded = [item for item in sorted(folder.rglob("*")) if _uploaded(item, folder)]
    data_files = [item for item in uploaded if item.suffix in DATA_SUFFIXES and item.name != TEMPLATE_FILE]
    # An empty folder is warned about by the loader already.
    if uploaded and not data_files:
        result.warnings.append(
            Finding(loc, f"folder {path!r} holds no .jsonl or .json data file; the job would find no records")
        )
    return data_files


def _read_template(template: Path, path: str, loc: Loc, result: FinetuningData) -> _Template | None:
    shown = (Path(path.rstrip("/")) / TEMPLATE_FILE).as_posix()
    placeholders, problem = _template_placeholders(template)
    if problem is not None:
        result.errors.append(Finding(loc, f"{shown}: {problem}"))
        return None
    return _Template(shown, placeholders)


def channel_files(catalog: Path | None, finetuning: FinetuningConfig, key: str) -> list[str]:
    """The files a channel folder of the catalog holds, for `plan` (empty for S3 and for files)."""
    path = getattr(finetuning, key)
    if catalog is None or path is None or is_s3(path):
        return []
    target = _inside(catalog, path)
    if target is None or not target.is_dir():
        return []
    return sorted(item.relative_to(target).as_posix() for item in target.rglob("*") if _uploaded(item, target))


def _inside(catalog: Path, path: str) -> Path | None:
    root = catalog.resolve()
    target = (root / path.lstrip("/")).resolve()
    return target if target.is_relative_to(root) else None


def _uploaded(item: Path, folder: Path) -> bool:
    # The catalog upload leaves out hidden files and caches (loader.CATALOG_EXCLUDE).
    parts = item.relative_to(folder).parts
    return item.is_file() and not any(part.startswith(".") or part == "__pycache__" for part in parts)


def _template_placeholders(template: Path) -> tuple[frozenset[str], str | None]:
    """The `{fields}` of JumpStart's template, or what makes it unusable: bad JSON, missing prompt or completion."""
    try:
        parsed: Any = json.loads(template.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return frozenset(), f"cannot read the file ({exc.__class__.__name__})"
    except json.JSONDecodeError as exc:
        return frozenset(), f"invalid JSON at line {exc.lineno}: {exc.msg}"
    if not isinstance(parsed, dict) or any(not isinstance(parsed.get(name), str) for name in TEMPLATE_FIELDS):
        return frozenset(), f"expected an object with the strings {' and '.join(TEMPLATE_FIELDS)}"
    try:
        fields = [name for n in TEMPLATE_FIELDS for _, name, _, _ in string.Formatter().parse(parsed[n])]
    except ValueError as exc:
        return frozenset(), f"not a valid template ({exc})"
    return frozenset(name for name in fields if name), None


def _first_record(data_file: Path) -> tuple[dict[str, Any] | None, int]:
    """The first JSON object of a JSON Lines file (None when the file has none, or is a JSON array file)."""
    if data_file.suffix != ".jsonl":
        return None, 0
    with data_file.open(encoding="utf-8", errors="replace") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                return None, number
            return (record if isinstance(record, dict) else None), number
    return None, 0
