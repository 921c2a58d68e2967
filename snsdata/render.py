"""Records into chat messages and targets, with the spec's compiled templates and seeded few-shot turns."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

from jinja2 import TemplateError

from snsdata.spec.errors import InvalidInput
from snsdata.spec.models import TaskSpec

Message = dict[str, str]


class RenderError(InvalidInput):
    """A record the templates cannot render (names the task and record)."""


def _context(spec: TaskSpec, record: dict[str, Any]) -> dict[str, Any]:
    return {**spec.vars, **record}


def _user_turn(spec: TaskSpec, record: dict[str, Any]) -> str:
    return spec.compiled["user"].render(_context(spec, record))


def render_target(spec: TaskSpec, record: dict[str, Any]) -> str:
    """The gold assistant completion of a record."""
    try:
        return spec.render_target(record)
    except TemplateError as exc:
        raise RenderError(f"{spec.id}: record {record.get('record_id', '?')}: target: {exc}") from None


def few_shot_examples(
    spec: TaskSpec, record: dict[str, Any], pool: Sequence[dict[str, Any]] | None, seed: int = 0
) -> list[dict[str, Any]]:
    """The k examples shown before a record: drawn per record from a seed and the record id, never itself.

    Seeding by record id (not by position) keeps a record's prompt the same whatever else is in the build.
    """
    shots = spec.prompt.few_shot
    if shots.k == 0:
        return []
    candidates = list(shots.examples) if shots.split is None else list(pool or [])
    own_id = record.get("record_id")
    candidates = [c for c in candidates if own_id is None or c.get("record_id") != own_id]
    candidates.sort(key=lambda c: str(c.get("record_id", "")))
    rng = random.Random(f"{spec.id}:{shots.seed}:{seed}:{own_id}")
    return rng.sample(candidates, min(shots.k, len(candidates)))


def render_messages(
    spec: TaskSpec,
    record: dict[str, Any],
    few_shot_pool: Sequence[dict[str, Any]] | None = None,
    seed: int = 0,
) -> list[Message]:
    """System prompt, few-shot user/assistant turns, then the record's user turn."""
    try:
        messages: list[Message] = []
        if "system" in spec.compiled:
            messages.append({"role": "system", "content": spec.compiled["system"].render(_context(spec, record))})
        for example in few_shot_examples(spec, record, few_shot_pool, seed):
            messages.append({"role": "user", "content": _user_turn(spec, example)})
            messages.append({"role": "assistant", "content": spec.render_target(example)})
        messages.append({"role": "user", "content": _user_turn(spec, record)})
    except TemplateError as exc:
        raise RenderError(f"{spec.id}: record {record.get('record_id', '?')}: {exc}") from None
    return messages
