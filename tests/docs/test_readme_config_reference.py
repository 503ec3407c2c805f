"""The README's config reference names every key path the config model accepts, so the docs cannot drift.

A row's key cell names full paths (`models[].name`) and siblings of the first one (`models[].model_id`,
`model_version`); a key below a documented path may instead be named in that row's text, relative to it
(`models[].finetuning` ... `parameters.instance_type`, `num_instances`). A section counts as documented by its keys.
"""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from step_code.contract.config import Config

SPAN = re.compile(r"`([^`]+)`")


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
    return []


def _is_list(annotation: object) -> bool:
    if typing.get_origin(annotation) in (list, tuple):
        return True
    return any(_is_list(arg) for arg in typing.get_args(annotation)) if typing.get_origin(annotation) else False


def key_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    paths: set[str] = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}{name}"
        paths.add(path)
        marker = "[]" if _is_list(field.annotation) else ""
        for nested in _models_in(field.annotation):
            paths |= key_paths(nested, f"{path}{marker}.")
    return paths


def documented(reference: str) -> tuple[set[str], dict[str, set[str]]]:
    """Paths named in key cells, and for each of them the code spans of its row's text."""
    rows: dict[str, set[str]] = {}
    paths: set[str] = set()
    for line in reference.splitlines():
        cells = line.split("|")
        if len(cells) < 4 or not line.startswith("| `"):
            continue
        spans = SPAN.findall(cells[1])
        first = spans[0].removesuffix("[]")
        parent = first.rsplit(".", 1)[0] + "." if "." in first else ""
        named = {first, *(parent + span for span in spans[1:])}
        paths |= named
        for path in named:
            rows[path] = _with_siblings(SPAN.findall(cells[2]))
    return paths, rows


def _with_siblings(spans: list[str]) -> set[str]:
    """`parameters.instance_type`, `num_instances`: a plain span after a dotted one is its sibling too."""
    expanded: set[str] = set()
    parent = ""
    for span in spans:
        expanded.add(span)
        if "." in span:
            parent = span.rsplit(".", 1)[0] + "."
        elif parent:
            expanded.add(parent + span)
    return expanded


def _covered(path: str, paths: set[str], rows: dict[str, set[str]]) -> bool:
    plain = path.replace("[]", "")
    named = {p.replace("[]", "") for p in paths}
    # A section is documented by its keys.
    if plain in named or any(p.startswith(f"{plain}.") for p in named):
        return True
    for row_path, spans in rows.items():
        row = row_path.replace("[]", "")
        if plain.startswith(f"{row}."):
            rest = plain.removeprefix(f"{row}.")
            if rest in spans or any(span.split(":")[0] == rest for span in spans):
                return True
    return False


def _reference(repo_root: Path) -> str:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    return readme.split("## Config reference", 1)[1].split("\n## ", 1)[0]


def test_every_config_key_path_is_in_the_config_reference(repo_root: Path) -> None:
    paths, rows = documented(_reference(repo_root))
    missing = sorted(p for p in key_paths(Config) if not _covered(p, paths, rows))
    assert missing == []


def test_a_key_named_only_under_another_parent_is_missing() -> None:
    reference = "| `models[].name` | unique name |\n| `dataset.dataset_name` | mentions `endpoint_url` |\n"
    paths, rows = documented(reference)
    assert _covered("models.name", paths, rows)
    assert not _covered("models.endpoint_url", paths, rows)
    assert not _covered("pipeline.name", paths, rows)
