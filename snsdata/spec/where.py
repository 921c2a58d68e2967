"""`source.where`: a small column-expression language compiled to a Polars expression (never to SQL).

A spec's `where` selects rows by their own fields. It used to go to `pl.sql_expr`, which accepts the whole of
Polars SQL: subqueries and table functions such as `read_csv('/etc/passwd')` ran at load time. This module parses
the expression itself (tokenizer + recursive descent, no eval, no SQL engine) and builds the Polars expression
from the parse tree, so nothing but comparisons over the row's fields can ever run.

Grammar (keywords are case-insensitive; docs/writing_a_task.md has the user's version):

    condition  := or
    or         := and ("OR" and)*
    and        := not ("AND" not)*
    not        := "NOT" not | predicate
    predicate  := operand [ compare operand
                          | ["NOT"] "IN" "(" literal ("," literal)* ")"
                          | "IS" ["NOT"] "NULL"
                          | ["NOT"] ("LIKE" | "ILIKE") string ]
    compare    := "=" | "==" | "!=" | "<>" | "<" | "<=" | ">" | ">="
    operand    := literal | field | function "(" field "," literal ")" | "(" condition ")"
    function   := "array_contains" | "starts_with" | "ends_with" | "contains"
    field      := name ("." name)*          a struct's sub-field after a dot; "double quotes" for any name
    literal    := 'string' ('' inside is a quote) | number | -number | TRUE | FALSE

NULL behaves as in SQL: a comparison with a missing value is unknown and the row is not selected.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import reduce
from typing import Any

import polars as pl

from snsdata.spec.errors import InvalidInput

DESCRIPTION = (
    "Row selection: a column expression over the source's fields, not SQL. Comparisons (= == != <> < <= > >=) "
    "of fields and literals ('text' with '' for a quote, numbers, TRUE/FALSE); AND, OR, NOT and parentheses; "
    "field [NOT] IN ('a', 'b'); field IS [NOT] NULL; field [NOT] LIKE / ILIKE 'pattern' (% any run, _ one "
    "character); starts_with(field, 'x'), ends_with(field, 'x'), contains(field, 'x'); array_contains(list, value); "
    "a bare boolean field; struct.sub_field; \"double quotes\" for any field name. Missing values are unknown, as "
    "in SQL: the row is not selected. Example: src_lang = 'zh' AND NOT array_contains(tags, 'ad')."
)
KEYWORDS = frozenset({"AND", "OR", "NOT", "IN", "IS", "NULL", "LIKE", "ILIKE", "TRUE", "FALSE"})
FUNCTIONS = ("array_contains", "starts_with", "ends_with", "contains")
COMPARISONS = ("=", "==", "!=", "<>", "<", "<=", ">", ">=")
# Words that only make sense in SQL proper: named in the error so a user sees why the expression is refused.
SQL_ONLY = frozenset({"SELECT", "FROM", "WITH", "UNION", "JOIN", "EXISTS", "CASE", "WHEN", "CAST", "VALUES",
                      "INSERT", "UPDATE", "DELETE", "DROP", "CREATE", "COPY", "ATTACH", "PRAGMA", "BETWEEN"})


class WhereError(InvalidInput):
    """A `where` that is not a column expression over the spec's fields; names the offending token and column."""

    def __init__(self, message: str, column: int | None = None, token: str | None = None):
        self.problem = message
        self.column = column
        self.token = token
        where = f" at column {column}" if column is not None else ""
        shown = f" (`{token}`)" if token else ""
        super().__init__(f"{message}{where}{shown}")


@dataclass(frozen=True)
class Token:
    kind: str  # "name", "quoted", "string", "number", "op", "end"
    text: str
    column: int  # 1-based position in the expression
    value: Any = None


_TOKEN = re.compile(r"""
    (?P<space>\s+)
  | (?P<number>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<string>'(?:[^']|'')*')
  | (?P<quoted>"(?:[^"]|"")+")
  | (?P<op><=|>=|<>|!=|==|[=<>(),.\-])
""", re.VERBOSE)


def tokenize(text: str) -> list[Token]:
    """The expression's tokens; any character outside the language is an error naming its column."""
    tokens, position = [], 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            char = text[position]
            if char in "'\"":
                raise WhereError("unterminated quote", position + 1, text[position:position + 20])
            raise WhereError("unexpected character", position + 1, char)
        kind, raw = match.lastgroup or "", match.group()
        column = position + 1
        position = match.end()
        if kind == "space":
            continue
        if kind == "string":
            tokens.append(Token("string", raw, column, raw[1:-1].replace("''", "'")))
        elif kind == "quoted":
            tokens.append(Token("quoted", raw, column, raw[1:-1].replace('""', '"')))
        elif kind == "number":
            is_float = any(c in raw for c in ".eE")
            tokens.append(Token("number", raw, column, float(raw) if is_float else int(raw)))
        else:
            tokens.append(Token(kind, raw, column))
    tokens.append(Token("end", "", len(text) + 1))
    return tokens


# The parse tree: plain frozen dataclasses, compiled to Polars by `to_polars`.
@dataclass(frozen=True)
class Field:
    path: tuple[str, ...]
    column: int


@dataclass(frozen=True)
class Literal:
    value: str | int | float | bool


@dataclass(frozen=True)
class Compare:
    op: str
    left: Node
    right: Node


@dataclass(frozen=True)
class InList:
    operand: Node
    values: tuple[str | int | float | bool, ...]
    negated: bool


@dataclass(frozen=True)
class IsNull:
    operand: Node
    negated: bool


@dataclass(frozen=True)
class Like:
    operand: Node
    pattern: str
    negated: bool
    case_insensitive: bool


@dataclass(frozen=True)
class Call:
    function: str
    operand: Node
    argument: Literal


@dataclass(frozen=True)
class Logic:
    op: str  # "AND" | "OR"
    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    operand: Node


Node = Field | Literal | Compare | InList | IsNull | Like | Call | Logic | Not
_CONDITIONS = (Compare, InList, IsNull, Like, Call, Logic, Not)


class _Parser:
    def __init__(self, text: str):
        self.tokens = tokenize(text)
        self.index = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.index]

    def advance(self) -> Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def keyword(self, *words: str) -> bool:
        token = self.token
        return token.kind == "name" and token.text.upper() in words

    def expect_op(self, op: str, what: str) -> Token:
        if self.token.kind != "op" or self.token.text != op:
            raise self.unexpected(f"expected {what}")
        return self.advance()

    def unexpected(self, message: str) -> WhereError:
        token = self.token
        if token.kind == "end":
            return WhereError(f"{message}, but the expression ended", token.column)
        if token.kind == "name" and token.text.upper() in SQL_ONLY:
            return WhereError(f"SQL `{token.text.upper()}` is not supported: `where` is a column expression over "
                              "the spec's fields (no subqueries, table functions or file access)",
                              token.column, token.text)
        return WhereError(message, token.column, token.text)

    def parse(self) -> Node:
        if self.token.kind == "end":
            raise WhereError("empty expression", 1)
        node = self.parse_or()
        if self.token.kind != "end":
            raise self.unexpected("unexpected token")
        return _condition(node, self.tokens[0].column)

    def parse_or(self) -> Node:
        parts = [self.parse_and()]
        while self.keyword("OR"):
            column = self.advance().column
            parts.append(self.parse_and())
            parts[-2:] = [_condition(p, column) for p in parts[-2:]]
        return parts[0] if len(parts) == 1 else Logic("OR", tuple(parts))

    def parse_and(self) -> Node:
        parts = [self.parse_not()]
        while self.keyword("AND"):
            column = self.advance().column
            parts.append(self.parse_not())
            parts[-2:] = [_condition(p, column) for p in parts[-2:]]
        return parts[0] if len(parts) == 1 else Logic("AND", tuple(parts))

    def parse_not(self) -> Node:
        if self.keyword("NOT"):
            column = self.advance().column
            return Not(_condition(self.parse_not(), column))
        return self.parse_predicate()

    def parse_predicate(self) -> Node:
        left = self.parse_operand()
        token = self.token
        if token.kind == "op" and token.text in COMPARISONS:
            self.advance()
            right = self.parse_operand()
            for side in (left, right):
                if isinstance(side, _CONDITIONS):
                    raise WhereError("a comparison compares fields and literals, not conditions", token.column,
                                     token.text)
            if self.token.kind == "op" and self.token.text in COMPARISONS:
                raise self.unexpected("comparisons do not chain; join them with AND")
            return Compare("==" if token.text == "=" else "!=" if token.text == "<>" else token.text, left, right)
        negated = False
        if self.keyword("NOT"):
            negated = True
            self.advance()
            if not self.keyword("IN", "LIKE", "ILIKE"):
                raise self.unexpected("expected IN, LIKE or ILIKE after NOT")
        if self.keyword("IN"):
            self.advance()
            return InList(self.value_operand(left, token), self.parse_list(), negated)
        if self.keyword("LIKE", "ILIKE"):
            case_insensitive = self.advance().text.upper() == "ILIKE"
            if self.token.kind != "string":
                raise self.unexpected("LIKE takes a quoted pattern")
            return Like(self.value_operand(left, token), self.advance().value, negated, case_insensitive)
        if self.keyword("IS"):
            self.advance()
            is_not = self.keyword("NOT")
            if is_not:
                self.advance()
            if not self.keyword("NULL"):
                raise self.unexpected("expected NULL after IS")
            self.advance()
            return IsNull(self.value_operand(left, token), is_not)
        return left

    def value_operand(self, node: Node, token: Token) -> Node:
        if isinstance(node, _CONDITIONS):
            raise WhereError("IN, LIKE and IS apply to a field, not to a condition", token.column, token.text)
        return node

    def parse_list(self) -> tuple[str | int | float | bool, ...]:
        self.expect_op("(", "'(' and a list of literals after IN")
        values = [self.parse_literal("a literal in the IN list (subqueries are not supported)").value]
        while self.token.kind == "op" and self.token.text == ",":
            self.advance()
            values.append(self.parse_literal("a literal in the IN list").value)
        self.expect_op(")", "',' or ')' in the IN list")
        kinds = {_kind(v) for v in values}
        if len(kinds) > 1:
            raise WhereError(f"an IN list mixes {' and '.join(sorted(kinds))} values", self.token.column)
        return tuple(values)

    def parse_literal(self, what: str) -> Literal:
        token = self.token
        if token.kind in ("string", "number"):
            self.advance()
            return Literal(token.value)
        if token.kind == "op" and token.text == "-" and self.tokens[self.index + 1].kind == "number":
            self.advance()
            return Literal(-self.advance().value)
        if self.keyword("TRUE", "FALSE"):
            return Literal(self.advance().text.upper() == "TRUE")
        if self.keyword("NULL"):
            raise self.unexpected("NULL is not a value here; test missing values with IS NULL / IS NOT NULL")
        raise self.unexpected(f"expected {what}")

    def parse_operand(self) -> Node:
        token = self.token
        if token.kind == "op" and token.text == "(":
            self.advance()
            node = self.parse_or()
            self.expect_op(")", "')'")
            return node
        if token.kind in ("string", "number") or (token.kind == "op" and token.text == "-") \
                or self.keyword("TRUE", "FALSE", "NULL"):
            return self.parse_literal("a literal")
        if token.kind == "quoted" or (token.kind == "name" and token.text.upper() not in KEYWORDS
                                      and token.text.upper() not in SQL_ONLY):
            following = self.tokens[self.index + 1]
            if token.kind == "name" and following.kind == "op" and following.text == "(":
                return self.parse_call()
            return self.parse_field()
        raise self.unexpected("expected a field, a literal or '('")

    def parse_field(self) -> Field:
        first = self.advance()
        path = [first.value if first.kind == "quoted" else first.text]
        while self.token.kind == "op" and self.token.text == ".":
            self.advance()
            part = self.token
            if part.kind not in ("name", "quoted"):
                raise self.unexpected("expected a sub-field name after '.'")
            self.advance()
            path.append(part.value if part.kind == "quoted" else part.text)
        return Field(tuple(path), first.column)

    def parse_call(self) -> Call:
        name = self.advance()
        function = name.text.lower()
        if function not in FUNCTIONS:
            raise WhereError(f"unknown function {name.text!r}; `where` knows {', '.join(FUNCTIONS)} "
                             "(no table functions or file access)", name.column, name.text)
        self.expect_op("(", "'('")
        operand = self.parse_operand()
        if not isinstance(operand, Field):
            raise WhereError(f"{function}() takes a field first", name.column, name.text)
        self.expect_op(",", f"',' and a literal: {function}(field, value)")
        argument = self.parse_literal(f"a literal as the second argument of {function}()")
        if function != "array_contains" and not isinstance(argument.value, str):
            raise WhereError(f"{function}() takes a quoted string", name.column, name.text)
        self.expect_op(")", f"')' after the two arguments of {function}()")
        return Call(function, operand, argument)


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "boolean"
    return "string" if isinstance(value, str) else "number"


def _condition(node: Node, column: int) -> Node:
    """AND, OR, NOT and the whole expression take conditions: a predicate or a bare (boolean) field."""
    if isinstance(node, Literal) and not isinstance(node.value, bool):
        raise WhereError("a literal is not a condition (compare a field with it)", column, repr(node.value))
    return node


def parse_where(text: str) -> Node:
    """Parse a `where` expression; raises WhereError naming the offending token and its column."""
    if not isinstance(text, str):
        raise WhereError("`where` is a string")
    return _Parser(text).parse()


def fields_read(node: Node) -> Iterator[Field]:
    """Every field reference in the tree, in the order written."""
    if isinstance(node, Field):
        yield node
    elif isinstance(node, Compare):
        yield from fields_read(node.left)
        yield from fields_read(node.right)
    elif isinstance(node, InList | IsNull | Like | Call | Not):
        yield from fields_read(node.operand)
    elif isinstance(node, Logic):
        for part in node.parts:
            yield from fields_read(part)


def check_fields(node: Node, fields: Iterable[str]) -> None:
    """Raise WhereError for the first field the source does not provide, listing the ones it does."""
    provided = set(fields)
    for field in fields_read(node):
        if field.path[0] not in provided:
            raise WhereError(f"unknown field {field.path[0]!r}; the source provides {sorted(provided)}",
                             field.column, ".".join(field.path))


def _like_regex(pattern: str, case_insensitive: bool) -> str:
    """SQL LIKE (`%` any run, `_` one character; no escape character) as an anchored regex."""
    meta = set("\\.+*?()|[]{}^$#&-~")
    body = "".join(".*" if c == "%" else "." if c == "_" else f"\\{c}" if c in meta else c for c in pattern)
    return f"(?s{'i' if case_insensitive else ''})^{body}$"


def _null_unless_present(operand: pl.Expr, test: pl.Expr) -> pl.Expr:
    """SQL's three-valued logic for IN: a missing value is unknown, whatever Polars version computes `is_in`."""
    return pl.when(operand.is_not_null()).then(test)


def to_polars(node: Node) -> pl.Expr:
    """The Polars expression of a parsed `where`."""
    if isinstance(node, Field):
        expr = pl.col(node.path[0])
        for part in node.path[1:]:
            expr = expr.struct.field(part)
        return expr
    if isinstance(node, Literal):
        return pl.lit(node.value)
    if isinstance(node, Compare):
        left, right = to_polars(node.left), to_polars(node.right)
        return {"==": left.__eq__, "!=": left.__ne__, "<": left.__lt__, "<=": left.__le__, ">": left.__gt__,
                ">=": left.__ge__}[node.op](right)
    if isinstance(node, InList):
        operand = to_polars(node.operand)
        test = operand.is_in(pl.Series(list(node.values)).implode())
        return _null_unless_present(operand, ~test if node.negated else test)
    if isinstance(node, IsNull):
        operand = to_polars(node.operand)
        return operand.is_not_null() if node.negated else operand.is_null()
    if isinstance(node, Like):
        operand = to_polars(node.operand).cast(pl.String)
        test = operand.str.contains(_like_regex(node.pattern, node.case_insensitive))
        return ~test if node.negated else test
    if isinstance(node, Call):
        operand, value = to_polars(node.operand), node.argument.value
        if node.function == "array_contains":
            return operand.list.contains(value)
        if node.function == "starts_with":
            return operand.str.starts_with(str(value))
        if node.function == "ends_with":
            return operand.str.ends_with(str(value))
        return operand.str.contains(str(value), literal=True)
    if isinstance(node, Logic):
        parts = [to_polars(p) for p in node.parts]
        return reduce(lambda a, b: (a & b) if node.op == "AND" else (a | b), parts)
    if isinstance(node, Not):
        return ~to_polars(node.operand)
    raise TypeError(f"not a where node: {node!r}")


def where_expression(text: str, fields: Iterable[str] | None = None) -> pl.Expr:
    """Parse `text`, check its fields against `fields` (when given) and return the Polars filter expression."""
    node = parse_where(text)
    if fields is not None:
        check_fields(node, fields)
    return to_polars(node)
