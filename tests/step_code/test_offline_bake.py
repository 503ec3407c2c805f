"""The step image bakes with `python -m step_code.offline_assets` before the step code bundle exists, so the
Dockerfile copies every first-party module that module imports (it reads the algorithm table)."""

from __future__ import annotations

import ast
from pathlib import Path

from tests.step_code.evaluate.test_step_image import instructions

BAKE_DIR = "/opt/evalops/bake/"


def _first_party_closure(repo_root: Path, module: str) -> set[str]:
    """Files (relative to the repository) of `module`, what it imports from step_code, and their packages."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        path = repo_root.joinpath(*parts).with_suffix(".py")
        if not path.is_file():
            path = repo_root.joinpath(*parts, "__init__.py")
        if not path.is_file():
            continue
        relative = path.relative_to(repo_root).as_posix()
        if relative in seen:
            continue
        seen.add(relative)
        for index in range(1, len(parts)):
            todo.append(".".join(parts[:index]))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("step_code"):
                todo += [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            elif isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names if alias.name.startswith("step_code")]
    return seen


def _copied_for_baking(repo_root: Path) -> set[str]:
    copied: set[str] = set()
    for keyword, args in instructions(repo_root / "step_code" / "Dockerfile"):
        *sources, destination = args.split()
        if keyword == "COPY" and destination.startswith(BAKE_DIR):
            target = destination.removeprefix(BAKE_DIR).rstrip("/")
            copied |= {f"{target}/{Path(source).name}" for source in sources}
    return copied


def test_the_bake_copies_what_offline_assets_imports(repo_root: Path) -> None:
    assert _first_party_closure(repo_root, "step_code.offline_assets") <= _copied_for_baking(repo_root)
