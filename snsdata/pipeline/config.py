"""The registry of named steps and the pipeline config, declared in YAML as a list of steps.

```yaml
- {step: length, min_chars: 5}
- {step: langid, allowed: [zh, en], min_confidence: 0.5}
- {step: near_dedup, threshold: 0.8}
```
or as a mapping `{text_column: content, steps: [...]}`. Unknown steps and unknown keys fail with file and line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from snsdata.pipeline.base import StepConfig
from snsdata.pipeline.decontam import Decontaminate
from snsdata.pipeline.dedup import DEDUP_STEPS
from snsdata.pipeline.fasttext_filters import FASTTEXT_STEPS
from snsdata.pipeline.rules import RULES
from snsdata.spec.loader import SpecError, SpecIssue
from snsdata.spec.yaml_loader import SpecYamlError, load_located

STEP_TYPES: tuple[type[StepConfig], ...] = (*RULES, *FASTTEXT_STEPS, Decontaminate, *DEDUP_STEPS)
REGISTRY: dict[str, type[StepConfig]] = {cls.model_fields["step"].default: cls for cls in STEP_TYPES}

AnyStep = Annotated[Union[STEP_TYPES], Field(discriminator="step")]  # noqa: UP007 (a union built from a tuple)


class PipelineConfig(BaseModel):
    """A pipeline: the steps in order, and the column that holds the text."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    text_column: str = "text"
    steps: list[AnyStep]


_STEPS = TypeAdapter(list[AnyStep])


def parse_steps(items: Sequence[StepConfig | dict[str, Any]]) -> list[StepConfig]:
    """Step configs from configs or plain dicts (as they come from YAML or code)."""
    return [item if isinstance(item, StepConfig) else _STEPS.validate_python([item])[0] for item in items]


def _issues(exc: ValidationError, where: Callable[[tuple[Any, ...]], tuple[str, int]]) -> list[SpecIssue]:
    issues = []
    for error in exc.errors():
        loc: list[Any] = []
        for part in error["loc"]:
            if isinstance(part, str) and part in REGISTRY and loc and isinstance(loc[-1], int):
                continue  # pydantic names the union member; YAML has no such key
            loc.append(part)
        if error["type"] == "union_tag_invalid":
            loc.append("step")
            message = f"unknown step {error['ctx']['tag']!r}; known: {', '.join(sorted(REGISTRY))}"
        elif error["type"] == "union_tag_not_found":
            message = "missing `step:`"
        elif error["type"] == "extra_forbidden":
            message = "unknown key (misspelt?)"
        else:
            message = error["msg"]
        file, line = where(tuple(loc))
        issues.append(SpecIssue(file, line, ".".join(str(p) for p in loc), message))
    return issues


def load_pipeline_config(path: str | Path) -> PipelineConfig:
    """Read a pipeline YAML file (a list of steps, or a mapping with `steps:`), with located errors."""
    path = Path(path)
    if not path.exists():
        raise SpecError([SpecIssue(str(path), 0, "", "file not found")])
    try:
        located = load_located(path)
    except SpecYamlError as exc:
        raise SpecError([SpecIssue(str(path), exc.line, exc.key, str(exc))]) from None
    try:
        if isinstance(located.data, list):
            return PipelineConfig(steps=_STEPS.validate_python(located.data))
        return PipelineConfig.model_validate(located.data)
    except ValidationError as exc:
        raise SpecError(_issues(exc, located.where)) from None
