"""The spec search path: the shipped catalogue plus the user's own spec folders, the same for every command and API.

User folders come from three places, all used together, in this order:
1. `configure(specs=[...])`: what this process was told (the CLI's global `--specs DIR`, repeatable);
2. `SNSDATA_SPECS`: folders separated by `os.pathsep`;
3. `snsdata.toml` in the working directory: `specs = ["my_specs"]` and `data_root = "data"`, relative to the file.

A folder holds task specs (any `*.yaml`; `_*.yaml` are `extends:` bases) and mixtures (`*.yaml` under a `mixtures/`
subfolder), laid out like the shipped `task_specs/`. A task id or mixture name that a user folder shares with the
shipped catalogue is the user's (one notice on stderr naming both files); two user folders defining one id or name
is an error naming both files. Everything here is data resolution; nothing imports the rest of snsdata.
"""

from __future__ import annotations

import json
import os
import sys
import threading
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from snsdata.spec.loader import MIXTURES_DIR, SpecError, SpecIssue, load_spec_files, specs_root
from snsdata.spec.models import TaskSpec

ENV_VAR = "SNSDATA_SPECS"
PROJECT_FILE = "snsdata.toml"
SHIPPED = "shipped"
"""The origin of what comes with the package (the alternative is the user file's path)."""
PROJECT_KEYS = ("specs", "data_root")


@dataclass(frozen=True)
class SpecFolder:
    """One user folder (or single spec file) of the search path, and what put it there (for error messages)."""

    path: Path
    given_by: str


@dataclass(frozen=True)
class Project:
    """`snsdata.toml`: the project's spec folders and default data root, resolved against the file's folder."""

    file: Path
    specs: tuple[Path, ...]
    data_root: Path | None


@dataclass(frozen=True)
class SearchPath:
    """The shipped catalogue plus user folders, each folder once (the shipped one is never a user folder)."""

    folders: tuple[SpecFolder, ...]
    project: Project | None

    @property
    def key(self) -> tuple[Path, ...]:
        """What a cache of resolved specs is keyed by."""
        return tuple(folder.path for folder in self.folders)


@dataclass(frozen=True)
class Resolved:
    """The specs of a search path with the file each came from."""

    specs: dict[str, TaskSpec]
    files: dict[str, Path]
    user: frozenset[str]
    """Ids that come from a user folder (overriding the shipped spec, or new)."""

    def origin(self, task_id: str) -> str:
        """`shipped`, or the user file's path."""
        return str(self.files[task_id]) if task_id in self.user else SHIPPED


@dataclass(frozen=True)
class MixtureFile:
    """A mixture found on the search path: its name (the file's stem), its file, and `shipped` or the file."""

    name: str
    path: Path
    origin: str


_LOCK = threading.Lock()
_configured: list[Path] = []
_projects: dict[Path, tuple[int, Project | None]] = {}
_noticed: set[tuple[str, str, str]] = set()


def configure(specs: Iterable[str | Path] = ()) -> None:
    """Set the spec folders this process was given explicitly (the CLI's global `--specs`), ahead of the
    environment variable and the project file. Replaces what an earlier call set."""
    with _LOCK:
        _configured[:] = [Path(p) for p in specs]


def add_spec_folders(specs: Iterable[str | Path]) -> None:
    """Append folders to the configured ones (a subcommand's own `--specs`, e.g. `snsdata eval --specs`)."""
    with _LOCK:
        _configured.extend(Path(p) for p in specs)


def read_project(directory: str | Path | None = None) -> Project | None:
    """`snsdata.toml` of a directory (default: the working directory), or None; re-read only when it changes."""
    file = Path(os.path.abspath(directory if directory is not None else os.getcwd())) / PROJECT_FILE
    try:
        stamp = os.stat(file).st_mtime_ns
    except OSError:
        return None
    with _LOCK:
        cached = _projects.get(file)
    if cached is not None and cached[0] == stamp:
        return cached[1]
    project = _parse_project(file)
    with _LOCK:
        _projects[file] = (stamp, project)
    return project


def _parse_project(file: Path) -> Project:
    def fail(key: str, message: str) -> SpecError:
        return SpecError([SpecIssue(str(file), 0, key, message)])

    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise fail("", f"invalid TOML: {exc}") from None
    unknown = sorted(set(data) - set(PROJECT_KEYS))
    if unknown:
        raise fail(unknown[0], f"unknown key (known: {', '.join(PROJECT_KEYS)})")
    specs = data.get("specs", [])
    if isinstance(specs, str):
        specs = [specs]
    if not isinstance(specs, list) or not all(isinstance(item, str) and item for item in specs):
        raise fail("specs", "a list of folder paths (relative to this file), e.g. specs = [\"my_specs\"]")
    data_root = data.get("data_root")
    if data_root is not None and (not isinstance(data_root, str) or not data_root):
        raise fail("data_root", "a folder path (relative to this file), e.g. data_root = \"data\"")
    def absolute(item: str) -> Path:
        return Path(os.path.abspath(file.parent / Path(item).expanduser()))

    return Project(file, tuple(absolute(item) for item in specs), absolute(data_root) if data_root else None)


def search_path(directory: str | Path | None = None) -> SearchPath:
    """The search path now: configured folders, then `SNSDATA_SPECS`, then the project file of `directory`
    (default: the working directory). A folder that does not exist is an error naming what gave it."""
    with _LOCK:
        configured = list(_configured)
    given: list[SpecFolder] = [SpecFolder(p, "--specs") for p in configured]
    env = os.environ.get(ENV_VAR, "")
    given += [SpecFolder(Path(p), ENV_VAR) for p in env.split(os.pathsep) if p.strip()]
    project = read_project(directory)
    if project is not None:
        given += [SpecFolder(p, str(project.file)) for p in project.specs]
    folders: list[SpecFolder] = []
    seen = {specs_root()}
    issues = []
    for folder in given:
        path = Path(os.path.abspath(folder.path.expanduser()))  # not resolve(): this runs on every score() call
        if not os.path.exists(path):
            issues.append(SpecIssue(str(folder.path), 0, "", f"spec folder not found (given by {folder.given_by})"))
            continue
        if path not in seen:
            seen.add(path)
            folders.append(SpecFolder(path, folder.given_by))
    if issues:
        raise SpecError(issues)
    return SearchPath(tuple(folders), project)


def project_data_root(directory: str | Path | None = None) -> Path | None:
    """`data_root` of the project file: the default `--data-root` of every command (None without one)."""
    project = read_project(directory)
    return project.data_root if project is not None else None


def _notice(kind: str, name: str, user_file: Path, shipped_file: Path) -> None:
    """One stderr line per override per process: the user's file wins over the shipped one."""
    key = (kind, name, str(user_file))
    with _LOCK:
        if key in _noticed:
            return
        _noticed.add(key)
    print(f"snsdata: {kind} {name!r} from {user_file} overrides the shipped {shipped_file}", file=sys.stderr)


def resolve_specs(search: SearchPath | None = None) -> Resolved:
    """The specs of the search path: shipped, overridden or extended by user folders; every problem at once."""
    search = search if search is not None else search_path()
    issues: list[SpecIssue] = []
    try:
        specs, files = load_spec_files([specs_root()])
    except SpecError as exc:
        issues.extend(exc.issues)
        specs, files = {}, {}
    shipped_files = dict(files)
    user: dict[str, Path] = {}
    for folder in search.folders:
        try:
            found, found_files = load_spec_files([folder.path])
        except SpecError as exc:
            issues.extend(exc.issues)
            continue
        for task_id, spec in found.items():
            file = found_files[task_id]
            if task_id in user:
                issues.append(SpecIssue(str(file), 0, "id", f"task id {task_id!r} is defined in two spec folders: "
                                                            f"{user[task_id]} and {file}"))
                continue
            user[task_id] = file
            specs[task_id] = spec
            files[task_id] = file
    if issues:
        raise SpecError(issues)
    for task_id in sorted(user):
        if task_id in shipped_files:
            _notice("task", task_id, user[task_id], shipped_files[task_id])
    return Resolved(dict(sorted(specs.items())), files, frozenset(user))


def load_catalogue(paths: Iterable[str | Path] | None = None) -> dict[str, TaskSpec]:
    """Task specs keyed by id: the search path (shipped catalogue + user folders) by default, or exactly the
    given files/folders."""
    if paths is not None:
        return load_spec_files(paths)[0]
    return resolve_specs().specs


def frozen_specs(build: str | Path) -> dict[str, TaskSpec]:
    """The specs a build froze (`specs.json` of a build directory, or that file itself, e.g. a verl export's):
    what every consumer of the build scores with, so it needs none of the folders it was built from.
    FileNotFoundError without one; SpecError when it does not validate."""
    path = Path(build)
    file = path / "specs.json" if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"{path}: no specs.json (a build directory holds one)")
    try:
        frozen = json.loads(file.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise SpecError([SpecIssue(str(file), 0, "", f"not a specs.json: {exc}")]) from None
    if not isinstance(frozen, dict):
        raise SpecError([SpecIssue(str(file), 0, "", "not a specs.json: a JSON object of task id -> spec")])
    specs: dict[str, TaskSpec] = {}
    issues = []
    for task_id, raw in frozen.items():
        try:
            specs[task_id] = TaskSpec.model_validate(raw)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in (task_id, *error["loc"]))
            issues.append(SpecIssue(str(file), 0, where, f"frozen spec does not validate (written by another "
                                                         f"snsdata version?): {error['msg']}"))
    if issues:
        raise SpecError(issues)
    return specs


def _mixture_files(root: Path) -> list[Path]:
    """Mixture files of one folder: `*.yaml` under a `mixtures/` folder (`_*.yaml` are bases, not listed)."""
    found = []
    for path in sorted(root.rglob("*.yaml")):
        folders = path.relative_to(root).parts[:-1]
        if MIXTURES_DIR in folders and not path.name.startswith("_") and not any(f.startswith(".") for f in folders):
            found.append(path)
    return found


def mixture_files(search: SearchPath | None = None) -> dict[str, MixtureFile]:
    """Every mixture of the search path by name; a user mixture replaces a shipped one of the same name, and one
    name in two user folders (or twice in one) is an error naming both files."""
    search = search if search is not None else search_path()
    found = {p.stem: MixtureFile(p.stem, p, SHIPPED) for p in _mixture_files(specs_root())}
    user: dict[str, Path] = {}
    issues = []
    for folder in search.folders:
        if not folder.path.is_dir():
            continue
        for path in _mixture_files(folder.path):
            if path.stem in user:
                issues.append(SpecIssue(str(path), 0, "", f"mixture {path.stem!r} is defined twice: "
                                                          f"{user[path.stem]} and {path}"))
                continue
            user[path.stem] = path
            found[path.stem] = MixtureFile(path.stem, path, str(path))
    if issues:
        raise SpecError(issues)
    return dict(sorted(found.items()))


def shipped_mixture(name: str) -> Path | None:
    """The shipped mixture file of that name, if any (what a user mixture of the same name may extend)."""
    path = specs_root() / MIXTURES_DIR / f"{name}.yaml"
    return path if path.is_file() else None


def find_mixture(name: str, search: SearchPath | None = None) -> MixtureFile | None:
    """The mixture a name means on the search path (a notice when a user file replaces a shipped one)."""
    found = mixture_files(search).get(name)
    shipped = shipped_mixture(name)
    if found is not None and found.origin != SHIPPED and shipped is not None:
        _notice("mixture", name, found.path, shipped)
    return found
