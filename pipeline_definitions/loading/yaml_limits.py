"""Limits on what reading one YAML file may cost, so a hostile or mistaken file fails in milliseconds.

- Only a regular file is opened: a FIFO or a device given as a config would block the reader forever.
- At most MAX_BYTES are read; a config or environments file is a few KB.
- Aliases: PyYAML shares an aliased node rather than copying it, but everything after it (the duplicate-key
  walk, the placeholder scan, pydantic) visits each use, so ten nested levels of ten aliases ("billion
  laughs") cost 10^10 visits. The node tree is measured as it would be expanded, in time linear in its
  distinct nodes, and refused past MAX_EXPANDED_NODES nodes or MAX_DEPTH levels; an alias to the node that
  holds it (a cycle) is refused too.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import yaml

MAX_BYTES = 1024 * 1024
MAX_EXPANDED_NODES = 100_000
MAX_DEPTH = 64


class YamlLimitError(Exception):
    """The file breaks one of the limits; `line` (1-based) is where, when known."""

    def __init__(self, message: str, line: int | None = None) -> None:
        super().__init__(message)
        self.line = line


def read_regular_file(path: Path) -> str:
    """The UTF-8 text of `path`; YamlLimitError when it is not a regular file or is larger than MAX_BYTES.

    The type is checked before opening (opening a FIFO blocks until a writer appears) and again on the open
    descriptor, which O_NONBLOCK keeps from blocking if the path was swapped in between.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise YamlLimitError(f"not a regular file ({_kind(mode)}); give a YAML file")
    descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
            raise YamlLimitError("not a regular file; give a YAML file")
        data = handle.read(MAX_BYTES + 1)
    if len(data) > MAX_BYTES:
        raise YamlLimitError(f"larger than {MAX_BYTES // 1024} KiB; a config this large is not read")
    return data.decode("utf-8")


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "not a file"


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_expansion(root: yaml.Node) -> None:
    """YamlLimitError when the tree, aliases expanded, has more than MAX_EXPANDED_NODES nodes or MAX_DEPTH
    levels, or contains a cycle. Each distinct node is visited once (post-order, without recursion)."""
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    pending: list[tuple[yaml.Node, bool]] = [(root, False)]
    while pending:
        node, finished = pending.pop()
        key = id(node)
        line = node.start_mark.line + 1
        if finished:
            on_path.discard(key)
            children = _children(node)
            size[key] = 1 + sum(size[id(child)] for child in children)
            depth[key] = 1 + max((depth[id(child)] for child in children), default=0)
            if size[key] > MAX_EXPANDED_NODES:
                raise YamlLimitError(
                    f"YAML aliases expand this value to more than {MAX_EXPANDED_NODES:,} nodes; refused", line
                )
            if depth[key] > MAX_DEPTH:
                raise YamlLimitError(f"nested more than {MAX_DEPTH} levels deep (aliases expanded); refused", line)
            continue
        if key in size:
            continue
        if key in on_path:
            raise YamlLimitError("a YAML alias refers to a node that contains it (a cycle); refused", line)
        on_path.add(key)
        pending.append((node, True))
        pending.extend((child, False) for child in _children(node) if id(child) not in size)
