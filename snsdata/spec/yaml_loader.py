"""YAML loading that remembers where every key came from, so errors can name file, line and key path."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

KeyPath = tuple[str | int, ...]


@dataclass
class Located:
    """A parsed YAML document plus the (file, line) of every key path in it."""

    data: Any
    lines: dict[KeyPath, tuple[str, int]] = field(default_factory=dict)

    def where(self, path: KeyPath) -> tuple[str, int]:
        """The file and line of the longest prefix of `path` that has a known location."""
        for cut in range(len(path), -1, -1):
            hit = self.lines.get(tuple(path[:cut]))
            if hit:
                return hit
        return ("<unknown>", 0)


class SpecYamlError(ValueError):
    """A YAML file that does not parse, with its line and (for duplicate keys) the key."""

    def __init__(self, message: str, line: int = 0, key: str = ""):
        super().__init__(message)
        self.line = line
        self.key = key


class _UniqueKeyLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: ~10x faster
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise SpecYamlError(f"duplicate key {key!r}", key_node.start_mark.line + 1, str(key))
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _walk(node: yaml.Node, path: KeyPath, file: str, out: dict[KeyPath, tuple[str, int]]) -> None:
    out.setdefault(path, (file, node.start_mark.line + 1))
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key_path = (*path, key_node.value)
            out[key_path] = (file, key_node.start_mark.line + 1)
            _walk(value_node, key_path, file, out)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _walk(item, (*path, index), file, out)


def load_located(path: Path) -> Located:
    """Parse one YAML file into data plus key-path line numbers."""
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SpecYamlError(f"not valid UTF-8 (byte {exc.start + 1})", data[:exc.start].count(b"\n") + 1) from None
    try:
        node = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)
    except SpecYamlError:
        raise
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        raise SpecYamlError(f"invalid YAML: {getattr(exc, 'problem', exc)}", line) from None
    lines: dict[KeyPath, tuple[str, int]] = {}
    if node is not None:
        _walk(node, (), str(path), lines)
    return Located(data if data is not None else {}, lines)
