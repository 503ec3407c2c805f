"""The README's config reference names every key the config model accepts, so the docs cannot drift."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from step_code.contract.config import Config


def _models_in(annotation: object) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        return [model for arg in typing.get_args(annotation) for model in _models_in(arg)]
    return []


def _keys(model: type[BaseModel]) -> set[str]:
    keys: set[str] = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        for nested in _models_in(field.annotation):
            keys |= _keys(nested)
    return keys


def test_every_config_key_is_in_the_config_reference(repo_root: Path) -> None:
    readme = (repo_root / "README.md").read_text(encoding="utf-8")
    reference = readme.split("## Config reference", 1)[1].split("\n## ", 1)[0]
    # A key counts when it stands as a code span, or as a part of a dotted path such as `models[].name`.
    missing = sorted(key for key in _keys(Config) if not re.search(rf"[`.]{re.escape(key)}[`.\[]", reference))
    assert missing == []
