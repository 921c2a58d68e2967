"""General-data generators: deterministic, disjoint between train and eval, and their golds earn full reward."""

from __future__ import annotations

import json

import polars as pl
import pytest

from snsdata.readers import read_task
from snsdata.sources import GENERATORS, UnknownGenerator, generate_source
from snsdata.spec import load_catalogue
from snsdata.spec.models import GeneratedSource

IF_PARAMS = {
    "seed": 0,
    "texts": {
        "train": [{"path": "COLDataset/COLDataset/train.csv", "reader": "csv", "field": "TEXT",
                   "where": "label = '0'"},
                  {"path": "emerging_entities_17/wnut17train.conll", "reader": "conll", "field": "text"}],
        "eval": [{"path": "emerging_entities_17/emerging.dev.conll", "reader": "conll", "field": "text"}],
    },
}


@pytest.fixture(scope="module")
def generated_specs():
    return {k: s for k, s in load_catalogue().items() if isinstance(s.source, GeneratedSource)
            and s.source.generator in GENERATORS}


def test_same_arguments_same_records_and_splits_differ() -> None:
    params = {"dataset": "basic_arithmetic", "seed": 3}
    first = generate_source("reasoning_gym", "train", 40, params)
    assert first.equals(GENERATORS["reasoning_gym"]("train", 40, dict(params)))  # not just the process cache
    assert not first.equals(generate_source("reasoning_gym", "test", 40, params))
    assert not first.equals(generate_source("reasoning_gym", "train", 40, {**params, "seed": 4}))
    assert first.columns == ["question", "answer", "source_dataset", "metadata"]
    assert all(isinstance(json.loads(m), dict) for m in first["metadata"])


def test_reasoning_gym_golds_score_full_with_its_own_scorer() -> None:
    import reasoning_gym

    frame = generate_source("reasoning_gym", "train", 20, {"dataset": "chain_sum", "seed": 0})
    dataset = reasoning_gym.create_dataset("chain_sum", size=20, seed=1)
    for row in frame.to_dicts():
        entry = {"question": row["question"], "answer": row["answer"], "metadata": json.loads(row["metadata"])}
        assert dataset.score_answer(answer=row["answer"], entry=entry) == 1.0


def test_humaneval_train_and_test_are_disjoint_slices() -> None:
    train = generate_source("humaneval", "train", 500, {"seed": 0})
    test = generate_source("humaneval", "test", 500, {"seed": 0})
    assert train.height + test.height == 164
    assert not set(train["problem_id"]) & set(test["problem_id"])
    assert test.height == round(164 * 0.25)
    assert generate_source("humaneval", "test", 5, {"seed": 0})["problem_id"].to_list() == \
        test["problem_id"].head(5).to_list()


def test_instruction_references_pass_if_verifiable_checkers() -> None:
    from if_verifiable.common import evaluate_instructions
    from if_verifiable.ifeval.instructions_registry import INSTRUCTION_DICT

    frame = generate_source("sns_instructions", "train", 400, IF_PARAMS)
    assert frame.height == 400
    assert set(frame["language"]) == {"zh", "en"}
    for row in frame.to_dicts():
        kwargs = json.loads(row["kwargs"])
        assert 2 <= len(row["instruction_ids"]) <= 4 and len(kwargs) == len(row["instruction_ids"])
        assert not {"length_constraints:number_sentences", "change_case:capital_word_frequency",
                    "language:response_language"} & set(row["instruction_ids"])
        _, scores = evaluate_instructions(row["reference"], row["instruction_ids"], kwargs, row["prompt"],
                                          INSTRUCTION_DICT)
        assert scores.binary_strict == 1.0, row
        assert row["text"] in row["prompt"]


def test_instruction_posts_follow_their_split_files() -> None:
    train = generate_source("sns_instructions", "train", 300, IF_PARAMS)
    test = generate_source("sns_instructions", "test", 60, IF_PARAMS)
    assert not set(train["text"]) & set(test["text"])
    assert set(test["language"]) == {"en"}  # the eval files here are WNUT17's dev sentences only


def test_unknown_generator_and_missing_params_say_what_is_wrong() -> None:
    with pytest.raises(UnknownGenerator, match="registered"):
        generate_source("nope", "train", 1, {})
    with pytest.raises(ValueError, match=r"params\.dataset"):
        generate_source("reasoning_gym", "train", 1, {})
    with pytest.raises(ValueError, match=r"params\.texts\.eval"):
        generate_source("sns_instructions", "test", 1, {"texts": {"train": IF_PARAMS["texts"]["train"]}})


def test_every_generated_spec_reads_renders_and_its_gold_earns_full_reward(generated_specs) -> None:
    from snsdata.rewards.selfcheck import gold_check

    assert {"gen_code_humaneval", "gen_if_sns_rewrite", "gen_math_basic_arithmetic"} <= set(generated_specs)
    for spec in generated_specs.values():
        frame = read_task(spec).frame.collect()
        for split, count in spec.source.splits.items():
            got = frame.filter(pl.col("split") == split).height
            assert got == count or spec.source.generator == "humaneval", (spec.id, split, got)
        sample = frame.group_by("split", maintain_order=True).head(8).to_dicts()
        assert gold_check(spec, sample) == [], spec.id
