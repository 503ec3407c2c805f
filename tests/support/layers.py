"""The layer order of the packages (docs/architecture.md) and a checker that finds imports breaking it.

Layers, top first; a module may import its own layer and the layers below it, never one above. A module
belongs to the longest prefix that names it. `stacks.safety_net_lambda` ships to Lambda on its own, so it
imports no first-party module at all.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

LAYERS: tuple[str, ...] = (
    "stacks",
    "pipeline_definitions.cli",
    "pipeline_definitions.local",
    "pipeline_definitions",
    "step_code",
    "step_code.contract",
)
ISOLATED: tuple[str, ...] = ("stacks.safety_net_lambda",)
FIRST_PARTY: tuple[str, ...] = ("stacks", "pipeline_definitions", "step_code")


@dataclass(frozen=True)
class UpwardImport:
    module: str
    line: int
    imported: str

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.imported}, which is above it (or outside what it may use)"


def _within(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(f"{prefix}.")


def layer_of(module: str) -> int | None:
    matches = [i for i, prefix in enumerate(LAYERS) if _within(module, prefix)]
    return max(matches, key=lambda i: len(LAYERS[i])) if matches else None


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # `from package import name` may name a submodule: judge each as `package.name`.
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def upward_imports(source: str, module: str) -> list[UpwardImport]:
    own = layer_of(module)
    isolated = any(_within(module, prefix) for prefix in ISOLATED)
    problems = []
    for line, imported in _imported_modules(ast.parse(source)):
        if not any(_within(imported, prefix) for prefix in FIRST_PARTY):
            continue
        target = layer_of(imported)
        if isolated or (own is not None and target is not None and target < own):
            problems.append(UpwardImport(module, line, imported))
    return problems


def module_name(repo_root: Path, path: Path) -> str:
    parts = list(path.relative_to(repo_root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def tree_upward_imports(repo_root: Path) -> list[UpwardImport]:
    problems: list[UpwardImport] = []
    for package in FIRST_PARTY:
        for path in sorted((repo_root / package).rglob("*.py")):
            problems += upward_imports(path.read_text(encoding="utf-8"), module_name(repo_root, path))
    return problems
