"""Rendering: the benchmark tasks send exactly the benchmark's prompts; few-shot is seeded and stable."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from snsdata.cli import app
from snsdata.readers import read_task
from snsdata.render import few_shot_examples, render_messages, render_target
from snsdata.spec import load_catalogue, load_spec

SNS_BENCH_KEYS = {
    "note_taxonomy_single": "sns-NoteTaxonomy-single",
    "note_taxonomy_multiple": "sns-NoteTaxonomy-multi",
    "note_hashtag_single": "sns-NoteHashtag-single",
    "note_hashtag_multiple": "sns-NoteHashtag-multi",
    "note_querycorr_topic": "sns-NoteQueryCorr-topic",
    "note_querycorr_explain": "sns-NoteQueryCorr-explain",
    "note_mrc_simple": "sns-NoteMRC-S",
    "note_mrc_complex": "sns-NoteMRC-C",
    "note_ner": "sns-NoteNER",
    "note_gender": "sns-NoteGender",
    "note_chlw": "sns-NoteCHLW",
    "note_querygen": "sns-NoteQueryGen",
}


def official_messages(config: dict, record: dict) -> list[dict]:
    """What OpenCompass sends: SYSTEM begin prompt, then the HUMAN round with `{column}` filled in."""
    template = config["prompt_template"]
    system = template["begin"][0]["prompt"]
    user = template["round"][0]["prompt"]
    for column in config["reader_cfg"]["input_columns"]:
        user = user.replace("{" + column + "}", str(record[column]))
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@pytest.fixture(scope="module")
def bench_config(shared_data: Path) -> dict:
    return json.loads((shared_data / "sns_bench_sample" / "prompt_templates_and_eval_cfg.json").read_text())


def test_cli_render_matches_benchmark_character_for_character(shared_data: Path, bench_config: dict) -> None:
    result = CliRunner().invoke(app, ["render", "note_taxonomy_single", "--data-root", str(shared_data),
                                      "-n", "2", "--json"])
    assert result.exit_code == 0, result.output
    rendered = json.loads(result.output)
    records = json.loads((shared_data / "sns_bench_sample" / "Note-Taxonomy-single.json").read_text())
    assert len(rendered) == 2
    for item, record in zip(rendered, records[:2], strict=True):
        assert item["messages"] == official_messages(bench_config["sns-NoteTaxonomy-single"], record)
        assert item["target"] == record["answer"]
        assert set(item) == {"record_id", "messages", "target"}


@pytest.mark.parametrize("task_id", sorted(SNS_BENCH_KEYS))
def test_every_sns_bench_record_renders_the_official_prompt(task_id: str, shared_data: Path,
                                                            bench_config: dict) -> None:
    spec = load_catalogue()[task_id]
    records = read_task(spec, shared_data).frame.collect().to_dicts()
    assert len(records) == 20
    for record in records:
        assert render_messages(spec, record) == official_messages(bench_config[SNS_BENCH_KEYS[task_id]], record)


@pytest.mark.parametrize("direction", ["zh2en", "en2zh"])
def test_redtrans_renders_the_official_prompt(direction: str, shared_data: Path, bench_config: dict) -> None:
    spec = load_catalogue()[f"redtrans_{direction}"]
    prompts = bench_config["redtrans_bench_gen.py"]["redtrans_tasks"][direction]
    source, target = direction.split("2")
    records = read_task(spec, shared_data).frame.collect().to_dicts()
    assert len(records) == 60 and all(r["src_lang"] == source for r in records)
    for record in records:
        user = prompts["user_prompt"].replace("{" + source + "}", record[source])
        assert render_messages(spec, record) == [
            {"role": "system", "content": prompts["system_prompt"]}, {"role": "user", "content": user}]
        assert render_target(spec, record) == record[target]


FEW_SHOT = """\
id: shots
capability: general
languages: [en]
description: few-shot test
source: {reader: jsonl, splits: {train: t.jsonl}, fields: [q, a]}
prompt:
  user: "Q: {{ q }}"
  few_shot: {k: 2, split: train, seed: 7}
target: {template: "{{ a }}"}
output: {format: text}
reward: {type: metric, metric: rouge_l}
"""


def test_few_shot_is_seeded_stable_and_never_the_record_itself(tmp_path: Path) -> None:
    path = tmp_path / "shots.yaml"
    path.write_text(FEW_SHOT, encoding="utf-8")
    spec = load_spec(path)
    pool = [{"record_id": f"r{i}", "q": f"question {i}", "a": f"answer {i}"} for i in range(10)]
    record = pool[3]
    first = few_shot_examples(spec, record, pool, seed=1)
    assert len(first) == 2 and record not in first
    assert few_shot_examples(spec, record, list(reversed(pool)), seed=1) == first  # order of the pool is irrelevant
    draws = {tuple(e["record_id"] for e in few_shot_examples(spec, record, pool, seed=s)) for s in range(20)}
    assert len(draws) > 1  # the seed matters
    messages = render_messages(spec, record, pool, seed=1)
    assert [m["role"] for m in messages] == ["user", "assistant", "user", "assistant", "user"]
    assert messages[1]["content"] == first[0]["a"] and messages[-1]["content"] == "Q: question 3"
