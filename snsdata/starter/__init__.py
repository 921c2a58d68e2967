"""`snsdata init DIR`: a starter project outside the package that validates, renders and builds as written.

DIR gets `snsdata.toml` (spec folder and data root), `specs/` (a task spec, its JSON Schema for editors, and
`mixtures/` with a mixture of that task plus shipped general data) and `data/` (the task's records). The files are
package data under `files/`; the schema is generated from the installed models, so it matches this version.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

from snsdata.spec.loader import spec_json_schema

SCHEMA_FILE = Path("specs") / "task_spec.schema.json"
"""Beside the starter spec, whose `# yaml-language-server: $schema=` comment names it."""


class StarterExists(FileExistsError):
    """Files `init` would overwrite; nothing was written."""

    def __init__(self, paths: list[Path]):
        self.paths = paths
        super().__init__(f"{len(paths)} file(s) already exist (give --force to overwrite): "
                         + ", ".join(str(p) for p in paths))


def starter_files() -> dict[Path, bytes]:
    """Relative path -> content of every file `init` writes."""
    root = resources.files("snsdata.starter") / "files"
    out: dict[Path, bytes] = {}

    def walk(node, relative: Path) -> None:  # Traversable: works from a wheel, a zip or a source tree
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, relative / child.name)
            elif child.name != ".gitkeep":
                out[relative / child.name] = child.read_bytes()

    walk(root, Path())
    out[SCHEMA_FILE] = (json.dumps(spec_json_schema(), indent=2, ensure_ascii=False) + "\n").encode("utf-8")
    return dict(sorted(out.items()))


def write_starter(directory: str | Path, force: bool = False) -> list[Path]:
    """Write the starter into `directory` (created if needed); refuse, writing nothing, when any file exists and
    `force` is False. Returns the written paths."""
    directory = Path(directory)
    files = starter_files()
    existing = [directory / relative for relative in files if (directory / relative).exists()]
    if existing and not force:
        raise StarterExists(existing)
    written = []
    for relative, content in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content)
        written.append(path)
    return written
