"""Load task specs from YAML: `extends:` inheritance, template files, strict validation with located errors."""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from jinja2 import TemplateSyntaxError
from pydantic import ValidationError

from snsdata.spec.errors import InvalidInput
from snsdata.spec.models import TaskSpec
from snsdata.spec.templating import environment, template_limit_issues, template_variables
from snsdata.spec.where import WhereError, check_fields, parse_where
from snsdata.spec.yaml_loader import KeyPath, Located, SpecYamlError, load_located

MIXTURES_DIR = "mixtures"


@dataclass(frozen=True)
class SpecIssue:
    file: str
    line: int
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.key_path or '<root>'}: {self.message}"


class SpecError(InvalidInput):
    """One or more problems in spec files, each naming file, line and key path."""

    def __init__(self, issues: list[SpecIssue]):
        self.issues = issues
        super().__init__("\n".join(str(issue) for issue in issues))


@functools.cache
def specs_root() -> Path:
    """The shipped `task_specs/` directory (inside the wheel as `snsdata.task_specs`)."""
    return Path(str(resources.files("snsdata.task_specs"))).resolve()


def templates_root() -> Path:
    """The shipped `templates/` directory (inside the wheel as `snsdata.templates`)."""
    return Path(str(resources.files("snsdata.templates")))


def _dotted(path: KeyPath) -> str:
    return ".".join(str(part) for part in path)


def merge_overrides(base: Any, override: Any) -> Any:
    """Variant values win; mappings merge key by key; lists and scalars replace (specs' and mixtures' `extends:`)."""
    if isinstance(base, dict) and isinstance(override, dict):
        merged = dict(base)
        for key, value in override.items():
            merged[key] = merge_overrides(base[key], value) if key in base else value
        return merged
    return copy.deepcopy(override)


def _load_with_bases(path: Path, chain: tuple[Path, ...] = ()) -> Located:
    path = path.resolve()
    if path in chain:
        cycle = " -> ".join(str(p) for p in (*chain, path))
        raise SpecError([SpecIssue(str(path), 0, "extends", f"circular extends: {cycle}")])
    try:
        located = load_located(path)
    except SpecYamlError as exc:
        raise SpecError([SpecIssue(str(path), exc.line, exc.key, str(exc))]) from None
    if not isinstance(located.data, dict):
        raise SpecError([SpecIssue(str(path), 1, "", "a spec file is a mapping of keys")])
    base_name = located.data.pop("extends", None)
    if base_name is None:
        return located
    base_path = (path.parent / str(base_name)).resolve()
    shipped = (specs_root() / str(base_name)).resolve()
    if not base_path.is_file() and shipped.is_file():
        base_path = shipped  # a spec of your own may start from a shipped base: `content_understanding/_x.yaml`
    if not base_path.is_file():
        file, line = located.where(("extends",))
        raise SpecError([SpecIssue(file, line, "extends", f"base spec {base_name!r} not found at {base_path} "
                                                          f"(nor at {shipped}, in the shipped catalogue)")])
    base = _load_with_bases(base_path, (*chain, path))
    lines = {**base.lines, **located.lines}
    return Located(merge_overrides(base.data, located.data), lines)


def _resolve_template_files(located: Located, spec_file: Path, template_dirs: list[Path]) -> list[SpecIssue]:
    prompt = located.data.get("prompt")
    if not isinstance(prompt, dict):
        return []
    issues = []
    for role in ("system", "user"):
        name = prompt.get(f"{role}_file")
        if name is None:
            continue
        candidates = [spec_file.parent / name, *(d / name for d in template_dirs)]
        found = next((c for c in candidates if c.is_file()), None)
        if found is None:
            file, line = located.where(("prompt", f"{role}_file"))
            issues.append(SpecIssue(file, line, f"prompt.{role}_file", f"template file {name!r} not found"))
            continue
        prompt[role] = found.read_text(encoding="utf-8")
        del prompt[f"{role}_file"]
        located.lines[("prompt", role)] = located.where(("prompt", f"{role}_file"))
    return issues


_UNION_FIELDS = {"source", "reward", "gate"}


def _yaml_location(loc: tuple[Any, ...]) -> KeyPath:
    """Pydantic puts the discriminator value after a tagged-union field (`source.json.fields`); YAML has none."""
    out: list[Any] = []
    for index, part in enumerate(loc):
        if index and loc[index - 1] in _UNION_FIELDS and isinstance(part, str):
            continue
        out.append(part)
    return tuple(out)


def _validation_issues(located: Located, exc: ValidationError) -> list[SpecIssue]:
    issues = []
    for error in exc.errors():
        loc = _yaml_location(error["loc"])
        if error["type"] in {"union_tag_invalid", "union_tag_not_found"}:
            loc = (*loc, error["ctx"]["discriminator"].strip("'"))
        file, line = located.where(loc)
        message = "unknown key (misspelt?)" if error["type"] == "extra_forbidden" else error["msg"]
        issues.append(SpecIssue(file, line, _dotted(loc), message))
    return issues


def _template_issues(spec: TaskSpec, located: Located) -> list[SpecIssue]:
    """Compile every template now and check that it reads only fields the source provides."""
    issues = []
    allowed = spec.template_fields | set(environment().globals)
    texts = {
        ("prompt", "system"): spec.prompt.system,
        ("prompt", "user"): spec.prompt.user,
        ("target", "template"): spec.target.template,
        ("target", "rationale_template"): spec.target.rationale_template,
    }
    for key_path, text in texts.items():
        if text is None:
            continue
        file, line = located.where(key_path)
        try:
            names = template_variables(text)
        except TemplateSyntaxError as exc:
            issues.append(SpecIssue(file, line, _dotted(key_path),
                                    f"template syntax error (template line {exc.lineno}): {exc.message}"))
            continue
        missing = sorted(names - allowed)
        if missing:
            issues.append(SpecIssue(file, line, _dotted(key_path),
                                    f"template uses {missing}, which the source does not provide "
                                    f"(provided: {sorted(spec.template_fields)})"))
        issues.extend(SpecIssue(file, line, _dotted(key_path), problem) for problem in template_limit_issues(text))
    return issues


def _field_reference_issues(spec: TaskSpec, located: Located) -> list[SpecIssue]:
    fields = spec.source.provided_fields()
    refs: dict[KeyPath, str | None] = {
        ("output", "candidates_field"): spec.output.candidates_field,
        ("target", "rationale_field"): spec.target.rationale_field,
    }
    for key in spec.source.label_maps:
        refs[("source", "label_maps", key)] = key
    reward = spec.reward
    if reward.type == "sandbox":
        refs[("reward", "tests_field")] = reward.tests_field
        refs[("reward", "entry_point_field")] = reward.entry_point_field
        refs[("reward", "prompt_field")] = reward.prompt_field
    for index, declared in enumerate(spec.source.known_bad):
        for key in declared.match or {}:
            refs[("source", "known_bad", index, "match", key)] = key
    issues = []
    for key_path, name in refs.items():
        if name is not None and name not in fields:
            file, line = located.where(key_path)
            issues.append(SpecIssue(file, line, _dotted(key_path),
                                    f"field {name!r} is not provided by the source (provided: {sorted(fields)})"))
    if spec.source.where is not None:
        try:
            check_fields(parse_where(spec.source.where), fields)
        except WhereError as exc:
            file, line = located.where(("source", "where"))
            issues.append(SpecIssue(file, line, "source.where", str(exc)))
    return issues


def load_spec(path: str | Path, template_dirs: Iterable[Path] | None = None) -> TaskSpec:
    """Load and fully validate one task spec file; raise SpecError naming every problem found."""
    path = Path(path)
    located = _load_with_bases(path)
    dirs = list(template_dirs) if template_dirs is not None else [templates_root()]
    issues = _resolve_template_files(located, path, dirs)
    if issues:
        raise SpecError(issues)
    try:
        spec = TaskSpec.model_validate(located.data)
    except ValidationError as exc:
        raise SpecError(_validation_issues(located, exc)) from None
    issues = _template_issues(spec, located) + _field_reference_issues(spec, located)
    if issues:
        raise SpecError(issues)
    return spec


def discover_spec_files(paths: Iterable[str | Path] | None = None) -> list[Path]:
    """Task spec files under the given files/folders (default: the shipped catalogue).

    Files whose name starts with `_` are bases for `extends:` and the `mixtures/` folder holds mixtures:
    neither is a task; hidden folders (`.git`, `.github`) are not looked into.
    """
    roots = [Path(p) for p in paths] if paths else [specs_root()]
    files: list[Path] = []
    for root in roots:
        if root.is_file():
            files.append(root)
            continue
        for candidate in sorted(root.rglob("*.yaml")):
            relative = candidate.relative_to(root)
            folders = relative.parts[:-1]
            if candidate.name.startswith("_") or MIXTURES_DIR in folders or any(f.startswith(".") for f in folders):
                continue
            files.append(candidate)
    return files


def load_spec_files(paths: Iterable[str | Path]) -> tuple[dict[str, TaskSpec], dict[str, Path]]:
    """Every task spec under exactly these files/folders: (id -> spec, id -> file); all problems reported together.

    `snsdata.spec.load_catalogue()` without paths resolves the search path (shipped catalogue + user folders).
    """
    specs: dict[str, TaskSpec] = {}
    origin: dict[str, Path] = {}
    issues: list[SpecIssue] = []
    for file in discover_spec_files(paths):
        try:
            spec = load_spec(file)
        except SpecError as exc:
            issues.extend(_mixture_hint(file, exc.issues))
            continue
        if spec.id in specs:
            issues.append(SpecIssue(str(file), 0, "id", f"duplicate task id {spec.id!r} (also {origin[spec.id]})"))
            continue
        specs[spec.id] = spec
        origin[spec.id] = file
    if issues:
        raise SpecError(issues)
    return dict(sorted(specs.items())), origin


def _mixture_hint(file: Path, issues: list[SpecIssue]) -> list[SpecIssue]:
    """A mixture saved among the task specs fails as a spec; say where mixtures go instead of listing its keys."""
    try:
        data = load_located(file).data
    except SpecYamlError:
        return issues
    if isinstance(data, dict) and "components" in data and "id" not in data:
        return [SpecIssue(str(file), 0, "", f"this looks like a mixture (it has `components`); mixtures live in a "
                                            f"`{MIXTURES_DIR}/` folder of a spec folder, task specs outside it")]
    return issues


def spec_json_schema() -> dict:
    """The JSON Schema of a task spec file (`extends:` added: the loader resolves it before validation), for editors
    (docs/task_spec.schema.json, and the copy `snsdata init` writes beside the starter spec)."""
    schema = TaskSpec.model_json_schema()
    schema["properties"]["extends"] = {"type": "string", "description": "Base spec file this one overrides."}
    for role in ("system", "user"):
        prompt = schema["$defs"]["Prompt"]["properties"]
        prompt.setdefault(f"{role}_file", {"type": "string"})
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "snsdata task spec"
    return schema
