"""The one sandboxed Jinja2 environment every template in snsdata is compiled with, and its resource limits.

Jinja's sandbox stops attribute escapes but not resource exhaustion: `{{ 'a' * 10**9 }}` allocates a gigabyte (at
compile time even, through constant folding), `'x' | center(10**9)` likewise, and a loop can run for ever. Every
operation that can grow a string, a list or a number is checked *before* it allocates, loops and `range` share a
per-render budget, output is counted as it is produced, and a render has a deadline. A template over a limit
fails with `TemplateLimitError` (a Jinja `SecurityError`), which every caller already reports as a render error;
any other exception inside a render becomes a `TemplateRuntimeError` naming its type, never a traceback.
Constant expressions over the limits are found when the spec loads (`template_limit_issues`).
"""

from __future__ import annotations

import json
import math
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError, meta, nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.filters import (
    do_batch,
    do_center,
    do_float,
    do_format,
    do_indent,
    do_int,
    do_join,
    do_replace,
    do_slice,
    do_wordwrap,
)
from jinja2.nodes import EvalContext, Impossible
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_environment, pass_eval_context

MAX_CHARS = 4_000_000
"""Longest string (or list) one template operation may build, and most characters one render may output."""
MAX_RANGE = 100_000
"""Most items one `range(...)` may have."""
MAX_ITERATIONS = 1_000_000
"""Most loop iterations (all `for` loops together) of one render."""
MAX_INT_BITS = 65_536
"""Largest integer an arithmetic operation may produce (about 20,000 digits)."""
MAX_SECONDS = 10.0
"""Wall-clock time one render may take."""


class TemplateLimitError(SecurityError):
    """A template that would exceed a resource limit; raised before the allocation happens."""


@dataclass
class _Budget:
    deadline: float = field(default_factory=lambda: time.monotonic() + MAX_SECONDS)
    iterations: int = 0
    output: int = 0


_BUDGET: ContextVar[_Budget | None] = ContextVar("snsdata_template_budget", default=None)


def _tick(budget: _Budget | None = None) -> None:
    budget = budget or _BUDGET.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise TemplateLimitError(f"rendering took longer than {MAX_SECONDS:g} s")


def _size(value: Any) -> int | None:
    return len(value) if isinstance(value, str | bytes | list | tuple) else None


def _limit(size: int, what: str) -> None:
    if size > MAX_CHARS:
        raise TemplateLimitError(f"{what} would make a string or list of {size:,} (the limit is {MAX_CHARS:,})")


_PRINTF = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?[hlL]?([a-zA-Z%])")


def _check_printf(text: str) -> None:
    """`'%10000000s' % x` pads before anything can look at the result: add up the widths first."""
    padding = 0
    for width, precision, _ in _PRINTF.findall(text):
        if "*" in (width, precision):
            raise TemplateLimitError("a `*` width in a %-format is not allowed in templates")
        padding += max(int(width or 0), int(precision or 0))
    _limit(len(text) + padding, "%-formatting")


_FORMAT_SPEC = re.compile(r"^(?:.?[<>=^])?[+\- ]?z?#?0?(\d*)[,_]?(?:\.(\d+))?[a-zA-Z%]?$")


def _check_str_format(text: str) -> None:
    padding = 0
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError:
        return  # the call itself reports the malformed format string
    for _, _, spec, _ in parsed:
        if not spec:
            continue
        if "{" in spec:
            raise TemplateLimitError("nested replacement fields in a format spec are not allowed in templates")
        match = _FORMAT_SPEC.match(spec)
        if match:
            padding += max(int(match.group(1) or 0), int(match.group(2) or 0))
    _limit(len(text) + padding, "str.format")


def _check_int(value: Any, what: str) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise TemplateLimitError(f"{what} would produce an integer of {value.bit_length():,} bits "
                                 f"(the limit is {MAX_INT_BITS:,})")


def _checked_binop(op: str, left: Any, right: Any) -> None:
    """Refuse `*`, `**`, `+` and `%` whose result would be over the limits, from the operands alone."""
    if op == "*":
        sizes = (_size(left), _size(right))
        counts = (right, left)
        for size, count in zip(sizes, counts, strict=True):
            if size is not None and isinstance(count, int):
                _limit(size * max(count, 0), "repetition")
        if isinstance(left, int) and isinstance(right, int) and left.bit_length() + right.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"multiplication would produce an integer over {MAX_INT_BITS:,} bits")
    elif op == "**":
        if isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0 \
                and right * math.log2(abs(left)) > MAX_INT_BITS:
            raise TemplateLimitError(f"{left} ** {right} would produce an integer over {MAX_INT_BITS:,} bits")
    elif op == "+":
        sizes = (_size(left), _size(right))
        if None not in sizes:
            _limit(sum(s or 0 for s in sizes), "concatenation")
    elif op == "%" and isinstance(left, str):
        _check_printf(left)


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    """Size checks for the str methods that grow their input; returns the (possibly materialised) arguments."""
    wrapped = getattr(obj, "__wrapped__", None)
    owner = getattr(wrapped or obj, "__self__", None)
    if not isinstance(owner, str | bytes):
        return args
    name = getattr(wrapped or obj, "__name__", "")
    if name in ("format", "format_map") and isinstance(owner, str):
        _check_str_format(owner)
    elif name in ("ljust", "rjust", "center", "zfill") and args and isinstance(args[0], int):
        _limit(args[0], f"str.{name}")
    elif name == "expandtabs":
        tabsize = args[0] if args else kwargs.get("tabsize", 8)
        if isinstance(tabsize, int):
            _limit(len(owner) + owner.count("\t" if isinstance(owner, str) else b"\t") * tabsize, "expandtabs")
    elif name == "replace" and len(args) >= 2 and _size(args[0]) is not None and _size(args[1]) is not None:
        occurrences = owner.count(args[0]) if args[0] else len(owner) + 1
        _limit(len(owner) + occurrences * max(len(args[1]) - len(args[0]), 0), "str.replace")
    elif name == "join" and args:
        items = list(args[0])
        _limit(sum(len(x) if isinstance(x, str | bytes) else 0 for x in items)
               + len(owner) * max(len(items) - 1, 0), "str.join")
        return (items, *args[1:])
    elif name == "translate" and args and isinstance(args[0], dict):
        longest = max((len(v) for v in args[0].values() if isinstance(v, str)), default=1)
        _limit(len(owner) * max(longest, 1), "str.translate")
    return args


# Filters that grow their input, checked before they run.
def _center(value: Any, width: int = 80) -> str:
    if isinstance(width, int):
        _limit(max(width, len(str(value))), "center")
    return do_center(value, width)


def _indent(s: Any, width: int | str = 4, first: bool = False, blank: bool = False) -> str:
    text = str(s)
    pad = width if isinstance(width, int) else len(str(width))
    _limit(len(text) + (text.count("\n") + 1) * max(pad, 0), "indent")
    return do_indent(text, width, first, blank)


def _format(value: Any, *args: Any, **kwargs: Any) -> str:
    _check_printf(str(value))
    return do_format(value, *args, **kwargs)


@pass_eval_context
def _replace(eval_ctx: EvalContext, s: Any, old: Any, new: Any, count: int | None = None) -> str:
    text, old_text, new_text = str(s), str(old), str(new)
    occurrences = text.count(old_text) if old_text else len(text) + 1
    if count is not None and count >= 0:
        occurrences = min(occurrences, count)
    _limit(len(text) + occurrences * max(len(new_text) - len(old_text), 0), "replace")
    return do_replace(eval_ctx, s, old, new, count)


@pass_eval_context
def _join(eval_ctx: EvalContext, value: Iterable[Any], d: str = "", attribute: Any = None) -> str:
    items = list(value)
    if attribute is None:
        _limit(sum(len(x) if isinstance(x, str) else 0 for x in items) + len(str(d)) * max(len(items) - 1, 0),
               "join")
    return do_join(eval_ctx, items, d, attribute)


@pass_environment
def _wordwrap(environment: Any, s: str, width: int = 79, break_long_words: bool = True,
              wrapstring: str | None = None, break_on_hyphens: bool = True) -> str:
    text = str(s)
    if isinstance(width, int) and width > 0:
        _limit(len(text) + (len(text) // width + text.count(" ") + 1) * len(wrapstring or "\n"), "wordwrap")
    return do_wordwrap(environment, s, width, break_long_words, wrapstring, break_on_hyphens)


def _slice(value: Any, slices: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(slices, int):
        _limit(slices, "slice")
    return do_slice(value, slices, fill_with)


def _batch(value: Any, linecount: int, fill_with: Any = None) -> Iterator[list[Any]]:
    if isinstance(linecount, int):
        _limit(linecount, "batch")
    return do_batch(value, linecount, fill_with)


_MISSING = object()


def _strict_float(value: Any, default: Any = _MISSING) -> float:
    """Jinja's `float` turns anything unparsable into 0.0, so a label "n/a" became the gold "0.0"; here it is an
    error unless the template names its own default."""
    if default is not _MISSING:
        return do_float(value, default)
    number = do_float(value, _MISSING)
    if number is _MISSING or isinstance(value, bool) or not math.isfinite(number):
        raise TemplateRuntimeError(f"float: {value!r} is not a finite number")
    return number


def _strict_int(value: Any, default: Any = _MISSING, base: int = 10) -> int:
    """`int` without the silent 0 (see `_strict_float`)."""
    if default is not _MISSING:
        return do_int(value, default, base)
    number = do_int(value, _MISSING, base)
    if number is _MISSING or isinstance(value, bool):
        raise TemplateRuntimeError(f"int: {value!r} is not an integer")
    return number


def _range(*args: int) -> range:
    values = range(*args)
    if len(values) > MAX_RANGE:
        raise TemplateLimitError(f"range of {len(values):,} items (the limit is {MAX_RANGE:,})")
    return values


def _loop_guard(iterable: Any) -> Iterator[Any]:
    """Every `for` loop iterates through this: iterations count against the render's budget and deadline."""
    budget = _BUDGET.get()
    for item in iterable:
        if budget is not None:
            budget.iterations += 1
            if budget.iterations > MAX_ITERATIONS:
                raise TemplateLimitError(f"more than {MAX_ITERATIONS:,} loop iterations in one render")
            if budget.iterations % 1024 == 0:
                _tick(budget)
        yield item


def _checked_concat(parts: Iterable[Any]) -> str:
    """The `~` operator: its operands are measured before they are joined."""
    texts = [str(p) for p in parts]
    _limit(sum(len(t) for t in texts), "`~` concatenation")
    return "".join(texts)


def _count_output(value: Any) -> Any:
    """Every `{{ ... }}` output passes here (macros and `{% set %}` blocks included)."""
    budget = _BUDGET.get()
    if budget is not None:
        budget.output += len(value) if isinstance(value, str) else len(str(value))
        if budget.output > MAX_CHARS:
            raise TemplateLimitError(f"the template output more than {MAX_CHARS:,} characters")
    return value


class _LimitedCodeGenerator(CodeGenerator):
    """Compiles `~` to a measured join and wraps every `for` loop's iterable in the loop guard."""

    def visit_Template(self, node: nodes.Template, frame: Frame | None = None) -> None:
        for loop in node.find_all(nodes.For):
            if not (isinstance(loop.iter, nodes.Filter) and loop.iter.name == "_snsdata_loop_guard"):
                loop.iter = nodes.Filter(loop.iter, "_snsdata_loop_guard", [], [], None, None, lineno=loop.lineno)
        super().visit_Template(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        self.write("environment.checked_concat((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedTemplate(Template):
    """A template whose render runs under one budget and raises only Jinja's own errors."""

    def render(self, *args: Any, **kwargs: Any) -> str:
        token = _BUDGET.set(_Budget())
        try:
            text = super().render(*args, **kwargs)
        except TemplateError:
            raise
        except RecursionError:
            raise TemplateRuntimeError("the template recursed too deeply") from None
        except Exception as exc:  # a template's own error (ZeroDivisionError, TypeError, ...) is a render error
            raise TemplateRuntimeError(f"{type(exc).__name__}: {exc}") from None
        finally:
            _BUDGET.reset(token)
        _limit(len(text), "the template's output")
        return text


class LimitedSandbox(ImmutableSandboxedEnvironment):
    """Strict, sandboxed, and bounded in memory, loop iterations and time (limits above)."""

    intercepted_binops = frozenset({"*", "**", "+", "%"})
    code_generator_class = _LimitedCodeGenerator
    template_class = LimitedTemplate

    def __init__(self, **kwargs: Any):
        super().__init__(finalize=_count_output, **kwargs)
        self.globals["range"] = _range
        self.checked_concat = _checked_concat

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        _tick()
        _checked_binop(operator, left, right)
        result = super().call_binop(context, operator, left, right)
        _check_int(result, operator)
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _tick()
        args = _check_call(__obj, args, kwargs)
        return super().call(__context, __obj, *args, **kwargs)


def _to_json(value: Any) -> str:
    """JSON without HTML escaping or ASCII escaping: what a model should see and write."""
    return json.dumps(value, ensure_ascii=False)


def _to_pylist(value: Any) -> str:
    """Python-literal list, the form SNS-Bench uses for CHLW answers (`['a', 'b']`)."""
    return repr(list(value))


_CHECKED_FILTERS: dict[str, Callable[..., Any]] = {
    "center": _center, "indent": _indent, "format": _format, "replace": _replace, "join": _join,
    "wordwrap": _wordwrap, "slice": _slice, "batch": _batch, "float": _strict_float, "int": _strict_int,
}


@lru_cache(maxsize=1)
def environment() -> LimitedSandbox:
    """Strict (undefined names raise), sandboxed (no attribute escapes), bounded, newline-preserving."""
    env = LimitedSandbox(undefined=StrictUndefined, keep_trailing_newline=True, autoescape=False)
    env.filters.update(_CHECKED_FILTERS)
    env.filters["_snsdata_loop_guard"] = _loop_guard
    env.filters["json"] = _to_json
    env.filters["pylist"] = _to_pylist
    return env


def template_variables(source: str) -> set[str]:
    """Names a template reads from its context (raises jinja2.TemplateSyntaxError on bad syntax)."""
    return meta.find_undeclared_variables(environment().parse(source))


class _NotConstant(Exception):
    pass


def _constant(node: nodes.Node, env: LimitedSandbox) -> Any:
    """The value of a constant expression, computed through the same checks as a render."""
    if isinstance(node, nodes.BinExpr) and node.operator in env.intercepted_binops:
        return env.call_binop(None, node.operator, _constant(node.left, env), _constant(node.right, env))
    if isinstance(node, nodes.Filter) and node.name in _CHECKED_FILTERS and node.node is not None:
        if node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _NotConstant
        func = env.filters[node.name]
        args = [_constant(node.node, env), *(_constant(a, env) for a in node.args)]
        kwargs = {k.key: _constant(k.value, env) for k in node.kwargs}
        pass_arg = _PassArg.from_obj(func)
        if pass_arg is _PassArg.eval_context:
            args.insert(0, EvalContext(env))
        elif pass_arg is _PassArg.environment:
            args.insert(0, env)
        elif pass_arg is not None:
            raise _NotConstant
        return func(*args, **kwargs)
    if isinstance(node, nodes.Call) and isinstance(node.node, nodes.Name) and node.node.name == "range":
        if node.kwargs or node.dyn_args is not None or node.dyn_kwargs is not None:
            raise _NotConstant
        return _range(*(_constant(a, env) for a in node.args))
    try:
        return node.as_const(EvalContext(env))
    except Impossible:
        raise _NotConstant from None


def template_limit_issues(source: str) -> list[str]:
    """Constant expressions that exceed a limit whatever the record (`'a' * 10**9`, `range(10**7)`), found
    without computing them; a template that does not parse yields none (its syntax error is reported apart)."""
    env = environment()
    try:
        tree = env.parse(source)
    except TemplateError:
        return []
    problems: list[str] = []
    for node in tree.find_all((nodes.BinExpr, nodes.Filter, nodes.Call)):
        try:
            _constant(node, env)
        except TemplateLimitError as exc:
            if str(exc) not in problems:
                problems.append(str(exc))
        except Exception:  # not constant, or an error the render reports with its record
            continue
    return problems
