"""Fuzzing the inputs: whatever bytes, JSON shapes, CSV rows, YAML specs, `where`s or templates come in, the only
exceptions are the project's located errors (SpecError, SourceError, RenderError), and every row read is kept,
excluded or rejected with its place.

Deterministic (`derandomize`) and bounded in examples so it runs in CI in seconds; raise `max_examples` (or
`HYPOTHESIS_PROFILE=deep`) to fuzz for longer.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from snsdata.readers import DataNotFound, SourceError, read_task
from snsdata.render import RenderError, render_messages, render_target
from snsdata.spec import SpecError, load_spec
from snsdata.spec.where import WhereError, parse_where

settings.register_profile("ci", max_examples=40, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("deep", max_examples=2000, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

LOCATED = (SpecError, SourceError, DataNotFound)


@contextmanager
def folder() -> Iterator[Path]:
    with tempfile.TemporaryDirectory() as name:
        yield Path(name)


def spec_text(source: dict[str, Any], user: str = "{{ text }}", target: str = "{{ label }}",
              labels: list[str] | None = None) -> dict[str, Any]:
    return {"id": "fuzz_task", "capability": "content_understanding", "languages": ["en"], "description": "fuzz",
            "source": source, "prompt": {"user": user}, "target": {"template": target},
            "output": {"format": "label", **({"labels": labels} if labels else {})},
            "reward": {"type": "exact_match"}}


def write_spec(root: Path, data: Any) -> Path:
    path = root / "fuzz_task.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def read_checked(spec_path: Path, root: Path) -> None:
    """Read a task; a located error is fine, anything else fails the test. Every row must be accounted for."""
    try:
        spec = load_spec(spec_path)
        result = read_task(spec, root)
    except LOCATED:
        return
    frame = result.frame.collect()
    for split, counts in result.counts.items():
        assert counts["read"] == counts["kept"] + counts["rejected"] + counts["excluded"], counts
        assert frame.filter(frame["split"] == split).height == counts["kept"]
    assert result.rejects.height == sum(c["rejected"] for c in result.counts.values())
    assert all(source.startswith(str(root)) for source in result.rejects["source"])
    assert frame["record_id"].n_unique() == frame.height
    for record in frame.head(20).to_dicts():
        try:
            render_messages(spec, record)
            render_target(spec, record)
        except RenderError:
            pass


READERS = {
    "jsonl": ("d.jsonl", {"reader": "jsonl", "splits": {"train": "d.jsonl"}, "fields": ["text", "label"]}),
    "json": ("d.json", {"reader": "json", "splits": {"train": "d.json"}, "fields": ["text", "label"]}),
    "csv": ("d.csv", {"reader": "csv", "splits": {"train": "d.csv"}, "fields": ["text", "label"]}),
    "conll": ("d.conll", {"reader": "conll", "splits": {"train": "d.conll"}}),
    "parquet": ("d.parquet", {"reader": "parquet", "splits": {"train": "d.parquet"}, "fields": ["text", "label"]}),
}


@given(reader=st.sampled_from(sorted(READERS)), data=st.binary(max_size=3000),
       prefix=st.sampled_from([b"", b"text,label\n", b'[{"text": "a", "label": "b"},', b'{"text": "a"}\n']))
def test_random_bytes_never_crash_a_reader(reader: str, data: bytes, prefix: bytes) -> None:
    name, source = READERS[reader]
    with folder() as root:
        (root / name).write_bytes(prefix + data)
        target = "{{ entities | json }}" if reader == "conll" else "{{ label }}"
        read_checked(write_spec(root, spec_text(source, target=target)), root)


@given(texts=st.lists(st.binary(max_size=200), max_size=20), labels=st.lists(st.binary(max_size=20), max_size=20))
def test_random_bytes_never_crash_the_tweeteval_reader(texts: list[bytes], labels: list[bytes]) -> None:
    with folder() as root:
        (root / "t_text.txt").write_bytes(b"\n".join(texts))
        (root / "t_labels.txt").write_bytes(b"\n".join(labels))
        source = {"reader": "tweeteval", "splits": {"train": "t"}, "label_maps": {"label": {"values": {"0": "a"}}}}
        read_checked(write_spec(root, spec_text(source)), root)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
RECORD = st.dictionaries(st.sampled_from(["text", "label", "extra", "x"]), JSON, max_size=4)


@given(records=st.lists(RECORD | JSON, max_size=25), as_list=st.booleans())
def test_random_json_shapes_and_mixed_types_are_rows_or_rejects(records: list[Any], as_list: bool) -> None:
    name, source = READERS["json" if as_list else "jsonl"]
    with folder() as root:
        text = json.dumps(records) if as_list else "".join(json.dumps(r) + "\n" for r in records)
        (root / name).write_text(text, encoding="utf-8")
        read_checked(write_spec(root, spec_text(source)), root)


CELL = st.text(alphabet=st.sampled_from(list("ab,\"\n\r \t;é漢")), max_size=8)


@given(rows=st.lists(st.lists(CELL, min_size=0, max_size=4), max_size=20), quoting=st.booleans())
def test_ragged_csv_rows_are_rejects_with_their_lines(rows: list[list[str]], quoting: bool) -> None:
    name, source = READERS["csv"]
    with folder() as root:
        buffer = io.StringIO()
        writer = csv.writer(buffer, quoting=csv.QUOTE_ALL if quoting else csv.QUOTE_MINIMAL)
        writer.writerow(["text", "label"])
        writer.writerows(rows)
        (root / name).write_text(buffer.getvalue(), encoding="utf-8")
        read_checked(write_spec(root, spec_text(source)), root)


VALID = spec_text({"reader": "jsonl", "splits": {"train": "d.jsonl"}, "fields": ["text", "label"],
                   "where": "label != 'z'"}, user="Text: {{ text }}", labels=["x", "y", "z"])
WHERE_TOKENS = ["label", "text", "missing", "=", "!=", "<", ">=", "AND", "OR", "NOT", "IN", "(", ")", ",", "'x'",
                "'y'", "1", "-2.5", "IS", "NULL", "LIKE", "'%a_'", "TRUE", "array_contains", "starts_with", "SELECT",
                "FROM", "read_csv", "'/etc/passwd'", ";", "*", '"text"', ".", "x.y"]
TEMPLATE_PIECES = ["{{ text }}", "{{ label }}", "{{ nope }}", "{% for c in text %}", "{% endfor %}", "{{ 'a' * 99 }}",
                   "{{ text * 10**8 }}", "{{ range(10**6) | list }}", "{% if label %}", "{% endif %}", "{{", "}}",
                   "{{ text | float }}", "{{ text | center(10**8) }}", "{{ 1 / 0 }}", "{{ text ~ text }}", "plain ",
                   "{{ text.__class__ }}", "{% set ns = namespace(s=text) %}", "{{ ns.s }}", "{{ label | int }}"]
MUTANT = JSON | st.text(max_size=40) | st.lists(st.sampled_from(TEMPLATE_PIECES), max_size=4).map("".join) \
    | st.lists(st.sampled_from(WHERE_TOKENS), max_size=8).map(" ".join)


def key_paths(value: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from key_paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from key_paths(item, (*prefix, index))


@st.composite
def mutated_specs(draw: st.DrawFn) -> Any:
    spec = copy.deepcopy(VALID)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        paths = [p for p in key_paths(spec) if p]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "delete":
            del parent[path[-1]]
        elif action == "replace":
            parent[path[-1]] = draw(MUTANT)
        elif isinstance(parent, dict):
            parent[draw(st.text(max_size=10))] = draw(MUTANT)
    return spec


@given(spec=mutated_specs(), lines=st.lists(RECORD, max_size=8))
def test_mutated_specs_load_or_fail_with_located_errors(spec: Any, lines: list[dict]) -> None:
    with folder() as root:
        (root / "d.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
        read_checked(write_spec(root, spec), root)


@given(data=st.binary(max_size=500))
def test_random_bytes_as_a_spec_file_are_spec_errors(data: bytes) -> None:
    with folder() as root:
        path = root / "fuzz_task.yaml"
        path.write_bytes(data)
        with suppress(SpecError):
            load_spec(path)


@given(text=st.text(max_size=60) | st.lists(st.sampled_from(WHERE_TOKENS), max_size=12).map(" ".join))
def test_any_where_text_parses_or_is_a_where_error(text: str) -> None:
    try:
        parse_where(text)
    except WhereError as exc:
        assert exc.problem
