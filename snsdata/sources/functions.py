"""Function synthesis: procedurally generated Python problems with tests, code RL data that is no benchmark.

Each problem comes from a family (list, string and number manipulations) with randomised parameters: the
constants of the task, the function and argument names, the inputs. Its prompt says what to compute in plain
words and gives the signature; its tests are asserts calling the function by name (one unit, so a problem scores
1 or 0 as in HumanEval, without HumanEval's `check(candidate)` boilerplate) whose expected values come from the
family's reference implementation, so a row scores with the sandbox reward as a
HumanEval row does. Cases are drawn until trivial programs (return None, the first argument, a constant of the
expected values' types) fail at least one of them, so no skeleton earns reward. Deterministic in (split, seed).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import polars as pl
import xxhash

from snsdata.sources.common import EVAL_SPLITS, split_seed

FIELDS = ("problem_id", "family", "prompt", "entry_point", "signature", "reference", "test")
SCHEMA = dict.fromkeys(FIELDS, pl.String)
CASES = 8
"""Test cases per problem (two of them also shown in the prompt as examples)."""
_ATTEMPTS = 50
_SYLLABLES = ("la", "mi", "do", "re", "so")


@dataclass(frozen=True)
class Problem:
    """One drawn problem before its cases: what to write, and the reference body that defines the answer."""

    family: str
    name: str
    params: list[tuple[str, str]]
    returns: str
    task: str
    body: str
    inputs: Callable[[random.Random], tuple[Any, ...]]

    @property
    def signature(self) -> str:
        args = ", ".join(f"{arg}: {kind}" for arg, kind in self.params)
        return f"def {self.name}({args}) -> {self.returns}:"

    @property
    def reference(self) -> str:
        return f"{self.signature}\n{self.body}"


def _ints(rng: random.Random, low: int = -20, high: int = 20, size: tuple[int, int] = (0, 9)) -> list[int]:
    return [rng.randint(low, high) for _ in range(rng.randint(*size))]


def _word(rng: random.Random, letters: str = "abcdeilmnorstu", size: tuple[int, int] = (1, 7)) -> str:
    return "".join(rng.choice(letters) for _ in range(rng.randint(*size)))


def _sentence(rng: random.Random, size: tuple[int, int] = (0, 7)) -> str:
    return " ".join(_word(rng) for _ in range(rng.randint(*size)))


def _pick(rng: random.Random, *names: str) -> str:
    return rng.choice(names)


def _sum_multiples(rng: random.Random) -> Problem:
    m = rng.randint(2, 9)
    xs = _pick(rng, "values", "numbers", "items")
    return Problem("sum_multiples", _pick(rng, f"sum_of_multiples_of_{m}", f"total_divisible_by_{m}"),
                   [(xs, "list[int]")], "int",
                   f"Return the sum of the elements of `{xs}` that are divisible by {m} (negative numbers included; "
                   "0 for an empty list).",
                   f"    return sum(x for x in {xs} if x % {m} == 0)\n",
                   lambda r: (_ints(r, -30, 60),))


def _count_between(rng: random.Random) -> Problem:
    lo = rng.randint(-10, 5)
    hi = lo + rng.randint(3, 15)
    xs = _pick(rng, "readings", "values", "scores")
    return Problem("count_between", _pick(rng, "count_in_window", "how_many_in_range"), [(xs, "list[int]")], "int",
                   f"Count the elements of `{xs}` that lie between {lo} and {hi}, both ends included.",
                   f"    return sum(1 for x in {xs} if {lo} <= x <= {hi})\n",
                   lambda r: (_ints(r, lo - 8, hi + 8, (0, 10)),))


def _rotate(rng: random.Random) -> Problem:
    k = rng.randint(1, 4)
    side = rng.choice(("left", "right"))
    shift = "k % n" if side == "left" else "-(k % n)"
    xs = _pick(rng, "seq", "items", "values")
    body = (f"    n = len({xs})\n    if n == 0:\n        return []\n    k = {k}\n    s = {shift}\n"
            f"    return {xs}[s:] + {xs}[:s]\n")
    return Problem("rotate", f"rotate_{side}_by_{k}", [(xs, "list[int]")], "list[int]",
                   f"Return a new list: `{xs}` rotated {k} place(s) to the {side} (elements that fall off one end "
                   "come back at the other; the rotation wraps around for short lists).",
                   body, lambda r: (_ints(r, 0, 9, (0, 8)),))


def _chunks(rng: random.Random) -> Problem:
    k = rng.randint(2, 4)
    xs = _pick(rng, "items", "values", "data")
    return Problem("chunks", _pick(rng, f"groups_of_{k}", f"split_into_blocks_of_{k}"), [(xs, "list[int]")],
                   "list[list[int]]",
                   f"Split `{xs}` into consecutive groups of {k} elements, in order; the last group holds what is "
                   "left and may be shorter. An empty list gives no groups.",
                   f"    return [{xs}[i:i + {k}] for i in range(0, len({xs}), {k})]\n",
                   lambda r: (_ints(r, 0, 50, (0, 11)),))


def _first_occurrences(rng: random.Random) -> Problem:
    xs = _pick(rng, "values", "entries", "ids")
    body = f"    seen = set()\n    out = []\n    for x in {xs}:\n        if x not in seen:\n" \
           "            seen.add(x)\n            out.append(x)\n    return out\n"
    return Problem("first_occurrences", _pick(rng, "keep_first_seen", "distinct_in_order"), [(xs, "list[int]")],
                   "list[int]",
                   f"Return the distinct elements of `{xs}` in the order in which each first appears.",
                   body, lambda r: (_ints(r, 0, 6, (0, 12)),))


def _kth_largest(rng: random.Random) -> Problem:
    k = rng.randint(2, 4)
    xs = _pick(rng, "values", "heights", "prices")
    body = f"    distinct = sorted(set({xs}))\n    return distinct[-{k}] if len(distinct) >= {k} else None\n"
    return Problem("kth_largest", _pick(rng, f"distinct_rank_{k}", f"kth_highest_distinct_{k}"),
                   [(xs, "list[int]")], "int | None",
                   f"Return the value that ranks {k} from the top among the distinct values of `{xs}` (1 is the "
                   f"largest), or None when it has fewer than {k} distinct values.",
                   body, lambda r: (_ints(r, -9, 9, (0, 8)),))


def _count_char(rng: random.Random) -> Problem:
    ch = rng.choice("aeiostr")
    text = _pick(rng, "text", "line", "message")
    return Problem("count_char", _pick(rng, f"occurrences_of_{ch}", f"tally_letter_{ch}"), [(text, "str")], "int",
                   f"Count how many times the letter '{ch}' occurs in `{text}`, upper or lower case alike.",
                   f"    return {text}.lower().count('{ch}')\n",
                   lambda r: (_sentence(r).upper() if r.random() < 0.3 else _sentence(r),))


def _shift_letters(rng: random.Random) -> Problem:
    k = rng.randint(1, 25)
    text = _pick(rng, "text", "phrase", "word")
    body = (f"    out = []\n    for c in {text}:\n        if 'a' <= c <= 'z':\n"
            f"            out.append(chr((ord(c) - 97 + {k}) % 26 + 97))\n        else:\n"
            "            out.append(c)\n    return ''.join(out)\n")
    return Problem("shift_letters", _pick(rng, f"advance_letters_{k}", f"move_alphabet_forward_{k}"),
                   [(text, "str")], "str",
                   f"Replace every lowercase letter a-z of `{text}` by the letter {k} places later in the alphabet, "
                   "wrapping from z back to a; every other character stays as it is.",
                   body, lambda r: (_sentence(r, (0, 4)),))


def _reverse_words(rng: random.Random) -> Problem:
    text = _pick(rng, "sentence", "text", "line")
    mode = rng.choice(("order", "letters"))
    sep = rng.choice((" ", "-", "_", "/"))
    if mode == "order":
        task = (f"Return the words of `{text}` (separated by single spaces) in reverse order, joined by "
                f"{sep!r}.")
        body = f"    return {sep!r}.join(reversed({text}.split(' '))) if {text} else ''\n"
    else:
        n = rng.randint(0, 3)
        task = (f"Reverse the letters of each word of `{text}` (words are separated by single spaces) that is "
                f"longer than {n} letter(s), keep the words in their order, and join them by {sep!r}.")
        body = f"    return {sep!r}.join(w[::-1] if len(w) > {n} else w for w in {text}.split(' ')) if {text} else ''\n"
    return Problem(f"reverse_words_{mode}", _pick(rng, f"flip_word_{mode}", f"mirror_{mode}_of_words"),
                   [(text, "str")], "str", task, body, lambda r: (_sentence(r, (1, 6)),))


def _run_length(rng: random.Random) -> Problem:
    text = _pick(rng, "text", "stream", "letters")
    count_first = rng.random() < 0.5
    piece = f"str(j - i) + {text}[i]" if count_first else f"{text}[i] + str(j - i)"
    example = '"aaab" -> "3a1b"' if count_first else '"aaab" -> "a3b1"'
    order = "its length followed by the character" if count_first else "the character followed by its length"
    body = (f"    out = []\n    i = 0\n    while i < len({text}):\n        j = i\n"
            f"        while j < len({text}) and {text}[j] == {text}[i]:\n            j += 1\n"
            f"        out.append({piece})\n        i = j\n    return ''.join(out)\n")
    return Problem("run_length_count_first" if count_first else "run_length",
                   _pick(rng, "compress_runs", "encode_repeats", "squeeze_repeats"), [(text, "str")], "str",
                   f"Encode `{text}` as its runs of equal consecutive characters: each run becomes {order} "
                   f"({example}). An empty string gives an empty string.",
                   body, lambda r: ("".join(r.choice("abc") * r.randint(1, 4) for _ in range(r.randint(0, 5))),))


def _collatz(rng: random.Random) -> Problem:
    a = rng.choice((3, 5))
    n = _pick(rng, "n", "start")
    body = (f"    steps = 0\n    while {n} != 1 and steps < 1000:\n"
            f"        {n} = {n} // 2 if {n} % 2 == 0 else {a} * {n} + 1\n        steps += 1\n    return steps\n")
    return Problem("halve_or_grow", _pick(rng, "steps_to_one", "count_moves_until_one"), [(n, "int")], "int",
                   f"Starting from the positive integer `{n}`, repeat: halve it when it is even, otherwise replace "
                   f"it by {a} times it plus 1. Return how many moves it takes to reach 1, stopping after at most "
                   "1000 moves (return 1000 then).",
                   body, lambda r: (r.randint(1, 60),))


def _recurrence(rng: random.Random) -> Problem:
    p, q, m = rng.randint(2, 5), rng.randint(1, 9), rng.choice((7, 11, 13, 17, 97))
    n = _pick(rng, "n", "k")
    body = f"    value = 1\n    for _ in range({n}):\n        value = (value * {p} + {q}) % {m}\n    return value\n"
    return Problem("recurrence", _pick(rng, "term_of_sequence", "nth_sequence_value"), [(n, "int")], "int",
                   f"A sequence starts at 1, and each next term is (previous * {p} + {q}) modulo {m}. Return the "
                   f"term after `{n}` steps (`{n}` = 0 gives 1).",
                   body, lambda r: (r.randint(0, 30),))


def _base_digits(rng: random.Random) -> Problem:
    b = rng.choice((2, 3, 4, 5, 7, 8))
    n = _pick(rng, "n", "number")
    body = (f"    if {n} == 0:\n        return [0]\n    digits = []\n    while {n} > 0:\n"
            f"        digits.append({n} % {b})\n        {n} //= {b}\n    return digits[::-1]\n")
    return Problem("base_digits", f"digits_in_base_{b}", [(n, "int")], "list[int]",
                   f"Return the digits of the non-negative integer `{n}` written in base {b}, most significant "
                   "first, as a list of ints ([0] for zero).",
                   body, lambda r: (r.randint(0, 500),))


def _interleave(rng: random.Random) -> Problem:
    a, b = rng.choice((("left", "right"), ("first", "second"), ("xs", "ys")))
    k = rng.randint(1, 3)
    body = (f"    out = []\n    for i in range(0, max(len({a}), len({b})), {k}):\n"
            f"        out.extend({a}[i:i + {k}])\n        out.extend({b}[i:i + {k}])\n    return out\n")
    return Problem("interleave", _pick(rng, f"zip_alternately_by_{k}", f"merge_taking_turns_{k}"),
                   [(a, "list[int]"), (b, "list[int]")], "list[int]",
                   f"Merge `{a}` and `{b}` by taking {k} element(s) from each in turn, starting with `{a}`; when one "
                   "list runs out, the rest of the other follows in order.",
                   body, lambda r: (_ints(r, 0, 9, (0, 6)), _ints(r, 10, 19, (0, 6))))


def _gaps(rng: random.Random) -> Problem:
    xs = _pick(rng, "series", "values", "levels")
    lag = rng.randint(1, 3)
    absolute = rng.random() < 0.5
    expr = "abs(b - a)" if absolute else "b - a"
    what = "absolute differences" if absolute else "differences (later minus earlier)"
    return Problem("gaps_abs" if absolute else "gaps", _pick(rng, f"steps_at_lag_{lag}", f"changes_over_{lag}"),
                   [(xs, "list[int]")], "list[int]",
                   f"Return the {what} between each element of `{xs}` and the element {lag} position(s) after it, in "
                   f"order ({lag} fewer elements than the input; empty when it has at most {lag} elements).",
                   f"    return [{expr} for a, b in zip({xs}, {xs}[{lag}:])]\n",
                   lambda r: (_ints(r, -15, 15, (0, 9)),))


def _longest_run(rng: random.Random) -> Problem:
    xs = _pick(rng, "values", "flips", "marks")
    kind, relation = rng.choice((("equal", "=="), ("rising", "<"), ("falling", ">")))
    body = (f"    best = run = 0\n    for i, x in enumerate({xs}):\n"
            f"        run = run + 1 if i and {xs}[i - 1] {relation} x else 1\n        best = max(best, run)\n"
            "    return best\n")
    what = {"equal": "equal elements", "rising": "strictly increasing elements",
            "falling": "strictly decreasing elements"}[kind]
    return Problem(f"longest_run_{kind}", _pick(rng, f"longest_{kind}_streak", f"max_{kind}_stretch"),
                   [(xs, "list[int]")], "int",
                   f"Return the length of the longest stretch of consecutive positions of `{xs}` holding {what} (a "
                   "single element is a stretch of 1; 0 for an empty list).",
                   body, lambda r: ([r.randint(0, 3) for _ in range(r.randint(0, 12))],))


def _most_frequent_word(rng: random.Random) -> Problem:
    text = _pick(rng, "text", "post", "caption")
    tie, pick = rng.choice((("smallest", "min"), ("largest", "max")))
    body = (f"    counts = {{}}\n    for w in {text}.split():\n        counts[w] = counts.get(w, 0) + 1\n"
            "    if not counts:\n        return ''\n"
            f"    top = max(counts.values())\n    return {pick}(w for w in counts if counts[w] == top)\n")
    return Problem(f"most_frequent_word_{tie}", _pick(rng, "top_word", "commonest_token", "favourite_word"),
                   [(text, "str")], "str",
                   f"Return the word that occurs most often in `{text}` (words are separated by whitespace); on a "
                   f"tie, the alphabetically {tie} of them; an empty string when there are no words.",
                   body, lambda r: (" ".join(r.choice(_SYLLABLES) for _ in range(r.randint(0, 9))),))


def _long_words(rng: random.Random) -> Problem:
    n = rng.randint(3, 5)
    words = _pick(rng, "words", "tokens", "tags")
    return Problem("long_words_sorted", _pick(rng, f"words_of_at_least_{n}", f"keep_long_tokens_{n}"),
                   [(words, "list[str]")], "list[str]",
                   f"Return the strings of `{words}` that have at least {n} characters, sorted by length and then "
                   "alphabetically (duplicates kept).",
                   f"    return sorted((w for w in {words} if len(w) >= {n}), key=lambda w: (len(w), w))\n",
                   lambda r: ([_word(r, size=(1, 8)) for _ in range(r.randint(0, 7))],))


def _clamp(rng: random.Random) -> Problem:
    lo = rng.randint(-5, 3)
    hi = lo + rng.randint(2, 10)
    xs = _pick(rng, "samples", "values", "signal")
    return Problem("clamp", _pick(rng, "limit_to_band", "squash_into_range"), [(xs, "list[int]")], "list[int]",
                   f"Return `{xs}` with every element below {lo} replaced by {lo} and every element above {hi} "
                   f"replaced by {hi}.",
                   f"    return [min({hi}, max({lo}, x)) for x in {xs}]\n",
                   lambda r: (_ints(r, lo - 10, hi + 10, (1, 8)),))


def _grid_op(rng: random.Random) -> Problem:
    grid = _pick(rng, "grid", "table", "rows")
    op, name, task, expr, returns = rng.choice((
        ("transpose", _pick(rng, "swap_rows_and_columns", "columns_as_rows"),
         "Return its columns as rows: element [i][j] of the result is element [j][i] of the input.",
         f"[list(col) for col in zip(*{grid})]", "list[list[int]]"),
        ("rotate_clockwise", _pick(rng, "turn_grid_right", "rotate_quarter_clockwise"),
         "Return it rotated a quarter turn clockwise (the first column, read from the bottom up, becomes the first "
         "row).", f"[list(col) for col in zip(*{grid}[::-1])]", "list[list[int]]"),
        ("mirror", _pick(rng, "mirror_rows", "flip_left_right"),
         "Return it mirrored left to right: every row reversed, the rows in their order.",
         f"[row[::-1] for row in {grid}]", "list[list[int]]"),
        ("row_sums", _pick(rng, "totals_per_row", "sum_each_row"), "Return the sum of each row, in order.",
         f"[sum(row) for row in {grid}]", "list[int]"),
        ("column_sums", _pick(rng, "totals_per_column", "sum_each_column"),
         "Return the sum of each column, left to right.", f"[sum(col) for col in zip(*{grid})]", "list[int]"),
    ))
    return Problem(f"grid_{op}", name, [(grid, "list[list[int]]")], returns,
                   f"`{grid}` is a non-empty rectangular list of rows of equal length. {task}",
                   f"    return {expr}\n", _grid)


def _grid(rng: random.Random) -> tuple[list[list[int]]]:
    width = rng.randint(1, 4)
    return ([[rng.randint(0, 9) for _ in range(width)] for _ in range(rng.randint(1, 4))],)


def _pairs_to_target(rng: random.Random) -> Problem:
    t = rng.randint(4, 12)
    xs = _pick(rng, "values", "weights", "costs")
    body = (f"    n = len({xs})\n"
            f"    return sum(1 for i in range(n) for j in range(i + 1, n) if {xs}[i] + {xs}[j] == {t})\n")
    return Problem("pairs_to_target", _pick(rng, f"pairs_adding_to_{t}", f"count_pairs_total_{t}"),
                   [(xs, "list[int]")], "int",
                   f"Count the pairs of positions i < j in `{xs}` whose two elements add up to exactly {t}.",
                   body, lambda r: (_ints(r, 0, t, (0, 9)),))


def _capitalise_long(rng: random.Random) -> Problem:
    n = rng.randint(3, 5)
    text = _pick(rng, "title", "text", "headline")
    body = f"    return ' '.join(w.capitalize() if len(w) > {n} else w for w in {text}.split(' '))\n"
    return Problem("capitalise_long", _pick(rng, f"capitalise_words_over_{n}", f"headline_case_{n}"),
                   [(text, "str")], "str",
                   f"`{text}` is lowercase words separated by single spaces. Capitalise (first letter upper, rest "
                   f"lower) every word longer than {n} characters and leave the others unchanged.",
                   body, lambda r: (_sentence(r, (1, 6)),))


def _every_kth(rng: random.Random) -> Problem:
    k = rng.randint(2, 4)
    fill = rng.randint(-1, 0)
    xs = _pick(rng, "items", "slots", "values")
    return Problem("every_kth", _pick(rng, f"blank_every_{k}th", f"mask_position_multiple_{k}"), [(xs, "list[int]")],
                   "list[int]",
                   f"Return a copy of `{xs}` in which every {k}th element (positions {k}, {2 * k}, ... counting "
                   f"from 1) is replaced by {fill}.",
                   f"    return [{fill} if (i + 1) % {k} == 0 else x for i, x in enumerate({xs})]\n",
                   lambda r: (_ints(r, 1, 9, (0, 10)),))


def _digit_product(rng: random.Random) -> Problem:
    low = rng.randint(0, 4)
    n = _pick(rng, "n", "code", "value")
    body = (f"    product = 1\n    for d in str(abs({n})):\n        if int(d) > {low}:\n"
            "            product *= int(d)\n    return product\n")
    return Problem("digit_product", _pick(rng, f"multiply_digits_over_{low}", f"digit_product_above_{low}"),
                   [(n, "int")], "int",
                   f"Return the product of the decimal digits of the integer `{n}` that are greater than {low} (the "
                   "sign does not count; 1 when there are none).",
                   body, lambda r: (r.randint(-50000, 50000),))


def _balanced_brackets(rng: random.Random) -> Problem:
    opening, closing = rng.choice((("{", "}"), ("<", ">"), ("[", "]")))
    text = _pick(rng, "text", "expr", "markup")
    body = (f"    unclosed = 0\n    for c in {text}:\n        if c == {opening!r}:\n            unclosed += 1\n"
            f"        elif c == {closing!r}:\n            if not unclosed:\n                return False\n"
            "            unclosed -= 1\n    return not unclosed\n")
    chars = f"{opening}{closing}ab"
    return Problem("brackets_nest", _pick(rng, "nesting_is_valid", "markers_pair_up"), [(text, "str")], "bool",
                   f"Return True when every '{opening}' in `{text}` is closed by a later '{closing}' and no "
                   f"'{closing}' comes before its '{opening}' (other characters do not matter), else False.",
                   body, lambda r: ("".join(r.choice(chars) for _ in range(r.randint(0, 8))),))


def _index_of_extreme(rng: random.Random) -> Problem:
    xs = _pick(rng, "values", "temperatures", "times")
    kind = rng.choice(("smallest", "largest"))
    tie = rng.choice(("first", "last"))
    pick = "min" if kind == "smallest" else "max"
    find = f"{xs}.index({pick}({xs}))" if tie == "first" else f"len({xs}) - 1 - {xs}[::-1].index({pick}({xs}))"
    body = f"    if not {xs}:\n        return -1\n    return {find}\n"
    return Problem(f"index_of_{kind}", f"{tie}_position_of_{kind}", [(xs, "list[int]")], "int",
                   f"Return the position (from 0) of the {tie} {kind} element of `{xs}`, or -1 for an empty list.",
                   body, lambda r: (_ints(r, -5, 5, (0, 8)),))


FAMILIES: tuple[Callable[[random.Random], Problem], ...] = (
    _sum_multiples, _count_between, _rotate, _chunks, _first_occurrences, _kth_largest, _count_char,
    _shift_letters, _reverse_words, _run_length, _collatz, _recurrence, _base_digits, _interleave, _gaps,
    _longest_run, _most_frequent_word, _long_words, _clamp, _grid_op, _pairs_to_target, _capitalise_long,
    _every_kth, _digit_product, _balanced_brackets, _index_of_extreme,
)


def _reference(problem: Problem) -> Callable[..., Any]:
    namespace: dict[str, Any] = {}
    exec(compile(problem.reference, f"<{problem.family}>", "exec"), namespace)  # our own code, not a model's
    return namespace[problem.name]


def _trivial_answers(expected: list[Any]) -> list[Callable[[tuple[Any, ...]], Any]]:
    """Programs that know nothing: None, the first argument, and every expected value as a constant."""
    constants = {repr(v): v for v in expected}
    return [lambda args: None, lambda args: args[0], *[lambda args, v=v: v for v in constants.values()]]


def _cases(problem: Problem, rng: random.Random) -> list[tuple[tuple[Any, ...], Any]] | None:
    """Distinct inputs and their reference outputs that every trivial program fails on at least once; None when
    the drawn parameters make a problem with no such cases (a sequence stuck at a fixed point)."""
    solve = _reference(problem)
    for _ in range(_ATTEMPTS):
        seen: dict[str, tuple[Any, ...]] = {}
        for _ in range(CASES * 4):
            args = problem.inputs(rng)
            seen.setdefault(repr(args), args)
            if len(seen) == CASES:
                break
        inputs = list(seen.values())
        expected = [solve(*[_copy(a) for a in args]) for args in inputs]
        if len(inputs) == CASES and all(any(trivial(a) != e for a, e in zip(inputs, expected, strict=True))
                                        for trivial in _trivial_answers(expected)):
            return list(zip(inputs, expected, strict=True))
    return None


def _copy(value: Any) -> Any:
    return [_copy(v) for v in value] if isinstance(value, list) else value


def _call(name: str, args: tuple[Any, ...]) -> str:
    return f"{name}({', '.join(repr(a) for a in args)})"


def _record(problem: Problem, rng: random.Random, seed: int, index: int) -> dict[str, str] | None:
    cases = _cases(problem, rng)
    if cases is None:
        return None
    examples = "\n".join(f"    {_call(problem.name, a)} -> {e!r}" for a, e in cases[:2])
    prompt = (f"Write a Python function `{problem.name}`.\n\n{problem.task}\n\nSignature:\n\n    "
              f"{problem.signature}\n\nExamples:\n{examples}")
    test = "".join(f"assert {_call(problem.name, a)} == {e!r}\n" for a, e in cases)
    return {"problem_id": f"fs/{seed}/{index}", "family": problem.family, "prompt": prompt,
            "entry_point": problem.name, "signature": problem.signature, "reference": problem.reference,
            "test": test}


def spec_key(problem: Problem) -> str:
    """What a problem asks, whatever its names and examples: the family and its task text with the argument
    names blanked. Train and eval never share one, so no function is trained on and evaluated."""
    return f"{problem.family}\x1f{re.sub(r'`[^`]*`', '``', problem.task)}"


def function_synthesis_source(split: str, count: int, params: dict[str, Any]) -> pl.DataFrame:
    """`count` problems for one split (`params`: `seed`, `holdout_share` default 0.25, `max_per_function`
    default 3), families equally likely.

    A problem belongs to eval splits when the seeded hash of its `spec_key` falls in the first `holdout_share`
    of the range, else to the others. Problem i of a split is drawn from its own seeded generator, so a longer
    split starts with a shorter one; a problem of the other side, without telling cases, whose prompt repeats an
    earlier one of the split, or whose function (its reference, names included) already has `max_per_function`
    problems is drawn again: the most frequent gold solves at most that many rows.
    """
    seed, pool = split_seed(params, split), split_seed(params, "pool")
    held_out = split in EVAL_SPLITS
    cut = float(params.get("holdout_share", 0.25)) * 2**64
    most = int(params.get("max_per_function", 3))
    rows: list[dict[str, str]] = []
    prompts: set[str] = set()
    functions: dict[str, int] = {}
    index = 0
    while len(rows) < count:
        if index > count * 50 + 1000:
            raise ValueError(f"function_synthesis: only {len(rows)} distinct problems for the {count} asked")
        rng = random.Random(f"{seed}:{index}")
        problem = rng.choice(FAMILIES)(rng)
        index += 1
        if (xxhash.xxh3_64_intdigest(f"{pool}\x1f{spec_key(problem)}".encode()) < cut) != held_out \
                or functions.get(problem.reference, 0) >= most:
            continue
        row = _record(problem, rng, seed, index - 1)
        if row is not None and row["prompt"] not in prompts:
            prompts.add(row["prompt"])
            functions[problem.reference] = functions.get(problem.reference, 0) + 1
            rows.append(row)
    return pl.DataFrame(rows, schema=SCHEMA)
