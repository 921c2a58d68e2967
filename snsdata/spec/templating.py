"""The one sandboxed Jinja2 environment every template in snsdata is compiled with."""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment


def _to_json(value: Any) -> str:
    """JSON without HTML escaping or ASCII escaping: what a model should see and write."""
    return json.dumps(value, ensure_ascii=False)


def _to_pylist(value: Any) -> str:
    """Python-literal list, the form SNS-Bench uses for CHLW answers (`['a', 'b']`)."""
    return repr(list(value))


@lru_cache(maxsize=1)
def environment() -> ImmutableSandboxedEnvironment:
    """Strict (undefined names raise), sandboxed (no attribute escapes), newline-preserving."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False
    )
    env.filters["json"] = _to_json
    env.filters["pylist"] = _to_pylist
    return env


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context (raises jinja2.TemplateSyntaxError on bad syntax)."""
    return meta.find_undeclared_variables(environment().parse(source))
