"""No super-linear parsing: every regex that reads untrusted text, and every function that runs one, takes time
roughly proportional to its input on adversarial inputs.

The units are found, not listed, so a new regex is covered without editing this file:
- every compiled `re`/`regex` pattern at module level in snsdata.rewards, snsdata.pipeline and snsdata.spec;
- every pattern written inline in a call such as `re.sub(r"...", ...)` or `regex.compile(rf"...")` in those
  packages (found in their source; f-string parts that name a module constant take its value);
- the extraction and must-match patterns that the shipped task specs declare (they run on completions);
- every public function there whose first parameter is the text (`text: str` or `prediction: str`), every
  pipeline function of a `texts: pl.Series`, every output format's parser, and every rule filter.

Each unit reads inputs built from its own delimiters (the literal pieces of its pattern: runs of them, each
followed by filler, one left unclosed) and from shapes that break naive patterns (code fences, `<think>` tags,
"The answer is " prefixes, nested and unclosed brackets, whitespace runs, ...). The check compares the time of
an input of n characters with one of 8n: linear growth gives about 8, quadratic 64; the test fails at 24. It is
a guard against hangs, not a timing threshold: a first single-call pass screens every pair, and only pairs that
grow suspiciously fast are timed again carefully (best of several repetitions of many calls each).
"""

from __future__ import annotations

import ast
import gc
import importlib
import inspect
import math
import pkgutil
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, get_args

import polars as pl
import pytest
import regex
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import snsdata.pipeline
import snsdata.rewards
import snsdata.spec

PACKAGES = (snsdata.rewards, snsdata.pipeline, snsdata.spec)
SKIP_MODULES = {"snsdata.rewards._sandbox_child", "snsdata.rewards.sandbox"}
"""The sandbox runs programs, not parsers (its own tests cover it); importing its child module has side effects."""

BASE_CHARS = 512
"""Size n of the smaller input of the screen (the larger is 8n): small enough that both stay in the CPU caches."""
FRAME_BASE_CHARS = 4096
"""Pipeline steps carry a fixed per-call cost (a Polars query), so they are screened on larger inputs."""
GROWTH = 8
RUNGS = 4
"""Inputs of n, 8n, 64n and 512n characters: a ratio that fails on one step is checked on the next."""
MAX_RATIO = 24
SUSPECT_RATIO = 12
SCREEN_FLOOR_S = 0.0002
"""A pair is timed again carefully when single calls grow more than SUSPECT_RATIO times and the 8n call takes
more than SCREEN_FLOOR_S (below that, a scheduler hiccup outweighs the work)."""
NOISE_S = 0.001
"""A unit still faster than this on the largest input tried has shown no growth worth the name."""
SLOW_CALL_S = 1.0
"""A single call on the smallest input slower than this fails at once."""
HOPELESS_S = 10.0
"""The next, 8x larger, input is not tried when quadratic growth would take it past this: the ratio stands."""
CAREFUL_MIN_S = 0.005
CAREFUL_REPEATS = 5

TEXT_PARAMETERS = ("text", "prediction")
FILLERS = {"str": ",", "int": 1, "float": 0.5, "bool": False}
"""Values for a text function's other required parameters, by annotation (`split_items(text, separator)`)."""


# --- what to measure -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Unit:
    """One thing to time: `run(text)` on adversarial texts built from `delimiters` and the generic shapes."""

    name: str
    run: Callable[[str], Any]
    delimiters: tuple[str, ...] = ()
    base: int = BASE_CHARS
    pattern: re.Pattern[str] | regex.Pattern[str] | None = None


def modules() -> Iterator[ModuleType]:
    for package in PACKAGES:
        for info in pkgutil.walk_packages(package.__path__, package.__name__ + "."):
            if info.name not in SKIP_MODULES:
                yield importlib.import_module(info.name)


def literals(source: str) -> list[str]:
    """The literal pieces of a pattern: runs of literal characters, and single characters named in classes."""
    try:
        tree = re._parser.parse(regex.sub(r"\\[pP]\{[^}]*\}|\\[xX]\{[0-9A-Fa-f]+\}", "", source))  # type: ignore[attr-defined]
    except (re.error, TypeError, ValueError):
        return []
    found: list[str] = []

    def walk(items: Any) -> None:
        run = ""
        for op, arg in items:
            name = str(op)
            if name == "LITERAL":
                run += chr(arg)
                continue
            if run:
                found.append(run)
                run = ""
            if name == "IN":
                found.extend(chr(v) for kind, v in arg if str(kind) == "LITERAL")
                found.extend(chr(v[0]) for kind, v in arg if str(kind) == "RANGE")
            elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
                walk(arg[2])
            elif name == "SUBPATTERN":
                walk(arg[-1])
            elif name == "BRANCH":
                for branch in arg[1]:
                    walk(branch)
            elif name in ("ASSERT", "ASSERT_NOT", "ATOMIC_GROUP"):
                walk(arg[-1] if isinstance(arg, tuple) else arg)
        if run:
            found.append(run)

    walk(tree)
    unique = sorted({piece for piece in found if piece.strip() or piece in (" ", "\n", "\t")}, key=lambda s: -len(s))
    return unique[:10]


def pattern_unit(name: str, pattern: re.Pattern[str] | regex.Pattern[str]) -> Unit:
    """findall (a search from every position, as search/sub/split/finditer do) and fullmatch (one anchored
    attempt with all of its backtracking)."""

    def run(text: str) -> None:
        pattern.findall(text)
        pattern.fullmatch(text)

    return Unit(name, run, tuple(literals(pattern.pattern)), pattern=pattern)


def module_patterns() -> Iterator[Unit]:
    for module in modules():
        for name, value in vars(module).items():
            if isinstance(value, re.Pattern | regex.Pattern) and isinstance(value.pattern, str):
                yield pattern_unit(f"{module.__name__}.{name}", value)


_REGEX_CALLS = {"compile", "search", "match", "fullmatch", "sub", "subn", "split", "findall", "finditer"}


def _pattern_source(node: ast.expr, namespace: dict[str, Any]) -> str | None:
    """A pattern argument as text: a literal, or an f-string whose parts are module constants (others: "x")."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        parts = []
        for value in node.values:
            if isinstance(value, ast.Constant):
                parts.append(str(value.value))
            elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name):
                constant = namespace.get(value.value.id)
                parts.append(constant if isinstance(constant, str) else "x")
            else:
                parts.append("x")
        return "".join(parts)
    if isinstance(node, ast.Name) and isinstance(namespace.get(node.id), str):
        return namespace[node.id]
    return None


def inline_patterns() -> Iterator[Unit]:
    """Patterns passed directly to `re.X(...)` / `regex.X(...)` in the packages' source (those compiled into a
    module-level object are `module_patterns`)."""
    compiled_at_module_level = {(u.pattern.pattern, u.pattern.flags) for u in module_patterns() if u.pattern}
    for module in modules():
        source = Path(inspect.getfile(module)).read_text(encoding="utf-8")
        namespace = vars(module)
        for node in ast.walk(ast.parse(source)):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args
                    and node.func.attr in _REGEX_CALLS and isinstance(node.func.value, ast.Name)):
                continue
            engine = namespace.get(node.func.value.id)
            if engine not in (re, regex):
                continue
            text = _pattern_source(node.args[0], namespace)
            if text is None:
                continue
            flags = next((k.value for k in node.keywords if k.arg == "flags"), None)
            if flags is None and node.func.attr == "compile" and len(node.args) > 1:
                flags = node.args[1]
            try:
                value = eval(compile(ast.Expression(flags), "<flags>", "eval"), namespace) if flags else 0
                compiled = engine.compile(text, value)
            except Exception:  # a pattern built at run time from parts this scan cannot know
                continue
            if (compiled.pattern, compiled.flags) in compiled_at_module_level:
                continue
            yield pattern_unit(f"{module.__name__}:{node.lineno} {text[:40]!r}", compiled)


def spec_patterns() -> Iterator[Unit]:
    """Regexes the shipped task specs declare; they run on completions."""
    from snsdata.spec import load_catalogue

    seen: set[str] = set()
    for spec in load_catalogue().values():
        for node in _walk_models(spec):
            for field in ("pattern", "must_match", "must_not_match"):
                source = getattr(node, field, None)
                if isinstance(source, str) and source not in seen and type(node).__module__.startswith("snsdata.spec"):
                    seen.add(source)
                    yield pattern_unit(f"spec {spec.id}: {source[:40]!r}", regex.compile(source))


def _walk_models(value: Any) -> Iterator[Any]:
    from pydantic import BaseModel

    if isinstance(value, BaseModel):
        yield value
        for name in type(value).model_fields:
            yield from _walk_models(getattr(value, name))
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _walk_models(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _walk_models(item)


def _fill(parameter: inspect.Parameter) -> Any:
    return FILLERS[str(parameter.annotation)]


def text_functions() -> Iterator[Unit]:
    """Public functions of a text (`text: str` / `prediction: str` first), other required arguments filled."""
    for module in modules():
        delimiters = [piece for value in vars(module).values() if isinstance(value, re.Pattern | regex.Pattern)
                      for piece in literals(value.pattern)]
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function) or function.__module__ != module.__name__:
                continue
            params = list(inspect.signature(function).parameters.values())
            if not params or params[0].name not in TEXT_PARAMETERS or str(params[0].annotation) != "str":
                continue
            required = [p for p in params[1:] if p.default is inspect.Parameter.empty]
            if any(str(p.annotation) not in FILLERS for p in required):
                continue
            extra = {p.name: _fill(p) for p in required}
            yield Unit(f"{module.__name__}.{name}()", lambda text, f=function, kw=extra: _quiet(f, text, **kw),
                       tuple(dict.fromkeys(delimiters))[:12])


def _quiet(function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call, ignoring the exceptions a parser may raise on garbage: only the time matters here."""
    try:
        return function(*args, **kwargs)
    except Exception:
        return None


def output_parsers() -> Iterator[Unit]:
    """`OutputParser.parse` for every output format, with every text-level normaliser declared."""
    from snsdata.rewards.normalize import NORMALIZERS
    from snsdata.rewards.parse import OutputParser
    from snsdata.spec.models import Output

    formats = get_args(Output.model_fields["format"].annotation)
    for fmt in formats:
        extra = {"labels": ["yes", "no"]} if fmt == "label" else {}
        parser = OutputParser(Output(format=fmt, **extra), list(NORMALIZERS))
        yield Unit(f"OutputParser({fmt}).parse()", lambda text, p=parser: _quiet(p.parse, text))


def pipeline_units() -> Iterator[Unit]:
    """Every rule filter (its scratch measure and reason), and pipeline functions of a `texts: pl.Series`."""
    from snsdata.pipeline.base import SCRATCH
    from snsdata.pipeline.rules import RULES

    delimiters = [piece for module in modules() if module.__name__.startswith("snsdata.pipeline")
                  for name, value in vars(module).items()
                  if isinstance(value, str) and name.strip("_").isupper() and not name.startswith("__")
                  for piece in literals(value)]
    pieces = tuple(dict.fromkeys(delimiters))[:12]
    for rule_class in RULES:
        fields = rule_class.model_fields
        required = "words" in fields and fields["words"].is_required()
        rule = rule_class(**({"words": ["spam", "广告"]} if required else {}))

        def run(text: str, rule: Any = rule) -> None:
            frame = pl.DataFrame({"text": [text]}).lazy()
            column = pl.col("text")
            scratch = rule.scratch(column)
            if scratch is not None:
                frame = frame.with_columns(scratch.alias(SCRATCH))
            frame.select(rule.reason(column)).collect()

        yield Unit(f"rule {rule_class.__name__}", run, pieces, FRAME_BASE_CHARS)
    for module in modules():
        if not module.__name__.startswith("snsdata.pipeline"):
            continue
        for name, function in vars(module).items():
            if name.startswith("_") or not inspect.isfunction(function) or function.__module__ != module.__name__:
                continue
            params = list(inspect.signature(function).parameters.values())
            if not params or params[0].name != "texts" or "Series" not in str(params[0].annotation):
                continue
            if any(p.default is inspect.Parameter.empty for p in params[1:]):
                continue
            yield Unit(f"{module.__name__}.{name}()", lambda text, f=function: f(pl.Series([text])), pieces,
                       FRAME_BASE_CHARS)
    from snsdata.pipeline.chunking import prepare_cpt

    yield Unit("chunking.prepare_cpt()", lambda text: prepare_cpt(pl.DataFrame({"text": [text]}).lazy()).collect(),
               pieces, FRAME_BASE_CHARS)


# --- adversarial inputs ------------------------------------------------------------------------------------

GENERIC_UNITS = (
    "```", "```python\n", "``` ", "```a", "<think>", "</think>", "<think>a</think>", "<think>\n", "The answer is ",
    "Answer: ", "answer is", "答案是", "答案：", " ", "\n", " \t\n", "\t", "\u3000", "[", "]", "[a, ", "['a', ", "[1,",
    "{", "}", '{"a": ', '{"a": [', '"', "'", '"a", ', "\\", "\\boxed{", "####", "#### 1", "**", "**a", "*a", "_a",
    "__", "`a", "`", "1,", "1", "1.", "-1", "1/", "1e", "1,000,", "-", "#", "# ", "> ", "<Result>", "</Result>",
    "<a>", "<", ">", "<|im_end|>", "<|", "|", "。", "，", "、", "😀", "哈", "a哈", "http://", "www.", "#tag", "#话题#",
    "@a", "@", "&amp;", "&", "&#", "a", "a ", "end", ".", ",", ";", ":", "Final answer: ", "- ", "1. ", "[笑R]", "=",
    "**a ", "*a ", "_a ", "__a ", "`a ", "answer ", "<think>a ",
)
NESTED = (("[", "]"), ("{", "}"), ("(", ")"), ("<think>", "</think>"), ("**", "**"), ("<Result>", "</Result>"),
          ("```\n", "\n```"), ("[", "],"), ('{"a": ', "}"))


@dataclass(frozen=True)
class Shape:
    """`prefix + unit * k + suffix` (or k nested pairs) of about `n` characters."""

    label: str
    prefix: str = ""
    unit: str = ""
    suffix: str = ""
    close: str = ""

    def build(self, n: int) -> str:
        k = max(1, n // max(1, len(self.unit) + len(self.close)))
        if self.close:
            return self.prefix + self.unit * k + self.close * k + self.suffix
        return self.prefix + self.unit * k + self.suffix


def shapes(delimiters: tuple[str, ...]) -> list[Shape]:
    out = [Shape(f"{u!r}*k", unit=u) for u in GENERIC_UNITS]
    out += [Shape(f"{o!r}*k+{c!r}*k", unit=o, close=c) for o, c in NESTED]
    out += [Shape("'Answer: '+'a '*k", prefix="Answer: ", unit="a "),
            Shape("'```python\\n'+'x = 1\\n'*k", prefix="```python\n", unit="x = 1\n"),
            Shape("'<think>'+'a'*k", prefix="<think>", unit="a"), Shape("'['+'a'*k", prefix="[", unit="a"),
            Shape("'{\"a\": \"'+'a'*k", prefix='{"a": "', unit="a")]
    for piece in delimiters:
        out += [Shape(f"{piece!r}*k", unit=piece), Shape(f"({piece!r}+'x')*k", unit=piece + "x"),
                Shape(f"({piece!r}+' ')*k", unit=piece + " "), Shape(f"({piece!r}+'x ')*k", unit=piece + "x "),
                Shape(f"{piece!r}+'x'*k", prefix=piece, unit="x"), Shape(f"{piece!r}+' '*k+'x'", prefix=piece,
                                                                          unit=" ", suffix="x"),
                Shape(f"'x'*k+{piece!r}", unit="x", suffix=piece)]
    return list({s.label: s for s in out}.values())


# --- timing --------------------------------------------------------------------------------------------------


@contextmanager
def _no_gc() -> Iterator[None]:
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# Times are CPU seconds of this process (all its threads): on a shared machine, time spent waiting for a core is
# not work, and wall-clock ratios of small timings swing with the load.


def _best_single(run: Callable[[str], Any], text: str, repeats: int = 3) -> float:
    best = math.inf
    for _ in range(repeats):
        start = time.process_time()
        run(text)
        best = min(best, time.process_time() - start)
    return best


def _careful(run: Callable[[str], Any], text: str) -> float:
    """Best of several mean call times, each over enough calls to last CAREFUL_MIN_S."""
    single = _best_single(run, text, 1)
    loops = max(1, math.ceil(CAREFUL_MIN_S / max(single, 1e-7)))
    best = single
    for _ in range(CAREFUL_REPEATS if single < 0.1 else 1):
        start = time.process_time()
        for _ in range(loops):
            run(text)
        best = min(best, (time.process_time() - start) / loops)
    return best


def growth(unit: Unit, shape: Shape) -> tuple[float, float]:
    """(time of an 8x larger input / time of the smaller one, seconds of the smaller one).

    Screened on single calls at n and 8n; a suspicious screen is timed again carefully. A ratio that still fails
    is checked one step up (8n against 64n, then 64n against 512n) unless quadratic growth would make that step
    hopelessly long: a linear unit whose larger input merely fell out of the CPU caches, or hit a fixed cap, is
    linear again on the next step, while super-linear growth persists."""
    size = unit.base
    first = _best_single(unit.run, shape.build(size))
    if first > SLOW_CALL_S:
        return math.inf, first
    second = _best_single(unit.run, shape.build(size * GROWTH))
    if second < SCREEN_FLOOR_S or second / max(first, 1e-9) <= SUSPECT_RATIO:
        return second / max(first, 1e-9), first
    smaller = _careful(unit.run, shape.build(size))
    for rung in range(1, RUNGS):
        size *= GROWTH
        larger = _careful(unit.run, shape.build(size))
        ratio = larger / smaller
        if ratio < MAX_RATIO:
            return ratio, smaller
        if rung == RUNGS - 1 or larger * GROWTH**2 > HOPELESS_S:
            return (ratio if larger >= NOISE_S else 0.0), smaller
        smaller = larger
    raise AssertionError("unreachable")


def growth_failures(unit: Unit) -> list[str]:
    """Shapes on which the unit's time grows super-linearly, as readable lines (empty when none)."""
    failures = []
    for shape in shapes(unit.delimiters):
        with _no_gc():  # as timeit: a collection landing in one call is noise, not growth
            ratio, small_time = growth(unit, shape)
        if ratio >= MAX_RATIO:
            failures.append(f"{unit.name} on {shape.label}: x{ratio:.0f} for x{GROWTH} input "
                            f"({small_time * 1000:.2f} ms for the smaller)")
    return failures


# --- tests ---------------------------------------------------------------------------------------------------


def test_the_scan_finds_the_known_regexes_and_parsers():
    names = {u.name for u in module_patterns()}
    assert {"snsdata.rewards.parse._FENCE", "snsdata.rewards.normalize._THINK_OPEN",
            "snsdata.rewards.official_text._CUT_A", "snsdata.rewards.patterns._FENCED"} <= names
    inline = [u.name for u in inline_patterns()]
    assert any(name.startswith("snsdata.rewards.official_text:") for name in inline)  # general_postprocess
    f_string = ast.parse('rf"<{name}>[{CJK}]"').body[0].value  # type: ignore[attr-defined]
    assert _pattern_source(f_string, {"CJK": "中"}) == "<x>[中]"  # module constants in, other parts "x"
    functions = {u.name for u in text_functions()}
    assert {"snsdata.rewards.normalize.strip_think()", "snsdata.rewards.parse.split_items()",
            "snsdata.rewards.parse.extract_code()", "snsdata.rewards.parse.find_json()",
            "snsdata.rewards.parse.parse_number()", "snsdata.rewards.parse.bracket_spans()",
            "snsdata.pipeline.textnorm.normalize_text()"} <= functions
    assert {"rule Length", "rule TagsOnly"} <= {u.name for u in pipeline_units()}
    assert literals(r"```[ \t]*([\w+#.-]*)") [:1] == ["```"]


def _units(kind: str) -> list[Unit]:
    return list({"module": module_patterns, "inline": inline_patterns, "spec": spec_patterns,
                 "function": text_functions, "parser": output_parsers, "pipeline": pipeline_units}[kind]())


@pytest.mark.parametrize("kind", [
    "module", "inline", "spec", "function", "parser",
    # Rust's regex engine, which runs the pipeline's patterns, is linear by construction; this guards the numpy
    # and Python around it, at a Polars query per call (about 40 s).
    pytest.param("pipeline", marks=pytest.mark.slow),
])
def test_time_grows_linearly_on_adversarial_input(kind):
    units = _units(kind)
    assert units
    failures = [line for unit in units for line in growth_failures(unit)]
    assert not failures, "super-linear on adversarial input:\n" + "\n".join(failures)


# --- the linear rewrites return what the patterns they replace returned ----------------------------------------

_OLD_FENCE = regex.compile(r"```[ \t]*([\w+#.-]*)[^\n]*\n(.*?)(?:```|\Z)", regex.DOTALL)
_OLD_FENCED = regex.compile(r"\s*```[\w+-]*[^\n]*\n(.*?)\n?```\s*", regex.DOTALL)
_OLD_FENCE_CLOSE = re.compile(r"\s*```$")
_OLD_LEVEL_SPLIT = re.compile(r"\s*[|/>›»,;，；、]\s*|\s+-\s+")
_OLD_CHATTER = re.compile(
    r"^[*#\s]*(?:the\s+)?(?:final\s+)?answer(?:\s+is)?\s*\**\s*[:：](?:\s*\*\*(?=\s))?\s*"
    r"|^[*#\s]*(?:the\s+)?(?:final\s+)?answer\s+is\b\s*",
    re.IGNORECASE,
)


def _texts(pieces: list[str]) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=14).map("".join)


_SETTINGS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@_SETTINGS
@given(_texts(["<Result>", "</Result>", "<Result", "Result>", "<", "/", "x", "\n", "<answer>", "</answer>"]))
def test_tag_bodies_is_the_lazy_tag_regex(text):
    from snsdata.rewards.parse import tag_bodies

    assert tag_bodies(text, "Result") == re.findall(r"<Result>(.*?)</Result>", text, re.DOTALL)
    assert tag_bodies(text, "<Result>", allow_empty=False) == re.findall(r"<Result>(.+?)</Result>", text, re.DOTALL)
    assert tag_bodies(text, "answer") == re.findall(r"<answer>(.*?)</answer>", text, re.DOTALL)


@_SETTINGS
@given(_texts(["```", "`", "\n", " ", "\t", "py", "json", "x", "{", "}", "#", "-", "a b", "```py\n"]))
def test_fences_match_as_before_unless_an_opener_line_holds_a_backtick(text):
    from snsdata.rewards.parse import _FENCE
    from snsdata.rewards.patterns import _FENCED

    def backtick_opener(pattern: regex.Pattern[str]) -> bool:
        return any("`" in text[m.start() + 3: text.find("\n", m.start())] for m in pattern.finditer(text))

    old = [(m.span(), m.groups()) for m in _OLD_FENCE.finditer(text)]
    if not backtick_opener(_OLD_FENCE):
        assert [(m.span(), m.groups()) for m in _FENCE.finditer(text)] == old
    opener_line = text.lstrip()[3:].split("\n", 1)[0]
    if "`" not in opener_line:
        old_full, new_full = _OLD_FENCED.fullmatch(text), _FENCED.fullmatch(text)
        assert (old_full and old_full.groups()) == (new_full and new_full.groups())


def test_fence_opener_line_with_a_backtick_is_no_fence():
    from snsdata.rewards.parse import extract_code, find_json

    assert extract_code("```python\nprint(1)\n```") == "print(1)\n"
    assert extract_code("Run ``` `x` \nprint(1)") == "Run ``` `x` \nprint(1)"  # CommonMark: not an opener
    assert find_json('```json\n{"a": 1}\n```') == ({"a": 1}, True)


@_SETTINGS
@given(_texts(["```", "`", "\n", " ", "\t", "x", "\u3000", "|", ",", "-", "a", "b c", "、", "answer", "Answer",
               "the", "final", "is", "*", "**", ":", "：", "#"]))
def test_whitespace_rewrites_match_as_before(text):
    from snsdata.rewards.official import _LEVEL_SPLIT, _levels
    from snsdata.rewards.official_text import _CHATTER, _FENCE_CLOSE

    def old_levels(value: str) -> list[str]:
        parts = (re.sub(r"\s+", " ", re.sub(r"[^\w\s]", "", p)).strip() for p in _OLD_LEVEL_SPLIT.split(value))
        return [p for p in parts if p]

    assert _FENCE_CLOSE.sub("", text) == _OLD_FENCE_CLOSE.sub("", text)
    assert _levels(text) == old_levels(text)
    assert _LEVEL_SPLIT.pattern != _OLD_LEVEL_SPLIT.pattern
    assert _CHATTER.sub("", text, count=1) == _OLD_CHATTER.sub("", text, count=1)


def test_bold_ends_at_a_delimiter_after_a_space():
    from snsdata.rewards.normalize import strip_markdown

    assert strip_markdown("**Yes** and __no__, ***both***") == "Yes and no, both"
    assert strip_markdown("**a **b**") == "**a b"  # was "a **b": a spaced `**` cannot close, and now ends the bold


@_SETTINGS
@given(_texts(["[", "]", "'a'", "'b'", '"c"', ", ", "x", " ", "[crying R]", "'so [cute'", "{", "}", "1", "'",
               "\n", "```", "it's "]))
def test_list_literal_budget_changes_nothing_on_ordinary_answers(text):
    from snsdata.rewards.official_text import _MAX_LIST_TRIES, parse_list_literal, safe_eval, strip_fence

    def unbudgeted(value: str) -> list[Any] | None:
        value = strip_fence(value)
        opens = [i for i, ch in enumerate(value) if ch == "["]
        closes = [i for i, ch in enumerate(value) if ch == "]"]
        tries = 0
        for start in opens:
            for end in reversed(closes):
                if end < start or tries >= _MAX_LIST_TRIES:
                    break
                tries += 1
                try:
                    parsed = safe_eval(value[start: end + 1])
                except Exception:
                    continue
                if isinstance(parsed, list):
                    return parsed
        return None

    assert parse_list_literal(text) == unbudgeted(text)
