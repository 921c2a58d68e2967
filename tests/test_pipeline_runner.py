"""The runner: conservation (in = kept + rejected) on every step and overall, REJECT_SCHEMA, determinism,
batching, YAML configs with located errors."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import polars as pl
import pytest

from snsdata.frames import REJECT_SCHEMA
from snsdata.pipeline.base import ROW, slice_batches
from snsdata.pipeline.config import REGISTRY, load_pipeline_config, parse_steps
from snsdata.pipeline.fasttext_filters import train_quality
from snsdata.pipeline.runner import run_pipeline, run_pipeline_to_files
from snsdata.spec.loader import SpecError

TEXTS = [
    "A perfectly normal post about the weekend trip to the mountains with friends",
    "a perfectly normal post about the weekend trip to the mountains with friends!",
    "今天天气很好，我们去公园散步吧，顺便吃了好吃的火锅",
    "今天天气很好，我们去公园散步吧，顺便吃了好吃的火锅。",
    "#ootd #love #fashion",
    "<div><p>click</p><p>here</p></div>",
    "buy now\nbuy now\nbuy now\nbuy now",
    "哈哈哈哈哈哈哈哈哈哈哈哈",
    "see https://example.com/some/very/long/link/that/dominates",
    None,
    "",
    "ok",
    "Aujourd'hui il fait très beau, allons nous promener au parc avec les enfants.",
    "$$$ !!! ??? *** ###",
    "[笑哭R][笑哭R][笑哭R]",
    "@a @b @c @d",
    "😂😂😂😂😂😂",
]


def _frame(with_ids: bool) -> pl.DataFrame:
    data: dict[str, object] = {"text": pl.Series(TEXTS, dtype=pl.String), "likes": list(range(len(TEXTS)))}
    if with_ids:
        data = {"task_id": ["t"] * len(TEXTS), "record_id": [f"r{i}" for i in range(len(TEXTS))], **data}
    return pl.DataFrame(data)


@pytest.fixture(scope="module")
def eval_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("eval") / "eval.jsonl"
    rows = [{"id": "e1", "text": "今天天气很好，我们去公园散步吧，顺便吃了好吃的火锅"}]
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def quality_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_quality(["a thoughtful post about a trip with friends"] * 6, ["buy now click here"] * 6,
                         tmp_path_factory.mktemp("q") / "q.bin", seed=1)


def _every_step(eval_file: Path, quality_model: Path) -> list[dict[str, object]]:
    extra = {"block_words": {"words": ["buy now"]}, "decontaminate": {"eval": str(eval_file)},
             "quality": {"model": str(quality_model)}, "cjk_share": {"lang_column": "lang"}}
    return [{"step": name, **extra.get(name, {})} for name in sorted(REGISTRY)]


@pytest.mark.parametrize("with_ids", [False, True])
def test_every_registered_step_conserves_rows(with_ids: bool, eval_file: Path, quality_model: Path) -> None:
    frame = _frame(with_ids).with_columns(lang=pl.lit("zh"))
    for step in _every_step(eval_file, quality_model):
        kept, rejects, counts = run_pipeline(frame, [step])
        assert counts[0].rows_in == len(TEXTS) == kept.height + rejects.height, step
        assert kept.columns == frame.columns
        assert rejects.schema == pl.Schema(REJECT_SCHEMA)
        assert (rejects["step"] == step["step"]).all()
        if with_ids:
            assert set(rejects["record_id"]) | set(kept["record_id"]) == set(frame["record_id"])
            assert (rejects["task_id"] == "t").all()


def test_chain_counts_add_up_and_rows_round_trip(eval_file: Path) -> None:
    steps = [{"step": "length", "min_chars": 5}, {"step": "near_dedup"}, {"step": "html"}, {"step": "repetition"},
             {"step": "tags_only"}, {"step": "exact_dedup"}, {"step": "decontaminate", "eval": str(eval_file)},
             {"step": "langid", "allowed": ["zh", "en"]}]
    kept, rejects, counts = run_pipeline(_frame(True), steps, batch_size=4)
    assert counts[0].rows_in == len(TEXTS)
    for before, after in itertools.pairwise(counts):
        assert after.rows_in == before.kept
    assert all(c.rows_in == c.kept + c.rejected for c in counts)
    assert counts[-1].kept == kept.height and sum(c.rejected for c in counts) == rejects.height
    # a dropped row is stored whole; duplicate_of names a row the dedup step kept (a later step may drop it)
    dedup_dropped = set(rejects.filter(pl.col("step").str.ends_with("dedup"))["record_id"])
    for row, duplicate_of in zip(rejects["row"], rejects["duplicate_of"], strict=True):
        assert json.loads(row)["record_id"] in set(_frame(True)["record_id"])
        assert duplicate_of is None or duplicate_of not in dedup_dropped
    assert rejects["duplicate_of"].drop_nulls().len() >= 2
    assert kept["record_id"].to_list() == sorted(kept["record_id"].to_list(), key=lambda r: int(r[1:]))
    assert kept["text"].to_list()[0] == TEXTS[0]  # the first of the near pair survives
    assert "r2" in set(rejects.filter(pl.col("step") == "decontaminate")["record_id"])


def test_batch_size_and_threads_do_not_change_the_result() -> None:
    steps = [{"step": "length"}, {"step": "near_dedup"}, {"step": "symbol_share"}, {"step": "repetition"},
             {"step": "langid", "allowed": ["zh", "en"]}]
    small = run_pipeline(_frame(False), steps, batch_size=3, workers=2)
    large = run_pipeline(_frame(False), steps, batch_size=1000, workers=1)
    assert small.kept.equals(large.kept) and small.counts == large.counts
    # rejects come batch by batch, so only their order depends on the batch size
    assert small.rejects.sort("step", "record_id").equals(large.rejects.sort("step", "record_id"))
    assert run_pipeline(_frame(False), steps, batch_size=3, workers=1).rejects.equals(small.rejects)


def test_any_input_kind_gives_the_same_result(tmp_path: Path) -> None:
    # an in-memory frame and a Parquet scan are sliced directly; JSONL and lazy queries are streamed to Parquet
    steps = [{"step": "length"}, {"step": "near_dedup"}, {"step": "repetition"}, {"step": "exact_dedup"}]
    memory = run_pipeline(_frame(True), steps, batch_size=4)
    _frame(True).write_ndjson(tmp_path / "in.jsonl")
    _frame(True).write_parquet(tmp_path / "in.parquet")
    lazy_inputs = [pl.scan_ndjson(tmp_path / "in.jsonl", schema=_frame(True).schema),
                   pl.scan_parquet(tmp_path / "in.parquet").filter(pl.col("likes") >= 0)]
    for lazy in lazy_inputs:
        other = run_pipeline(lazy, steps, batch_size=4)
        assert other.kept.equals(memory.kept) and other.rejects.equals(memory.rejects)
        assert other.counts == memory.counts


def test_slice_batches_cover_the_frame_once() -> None:
    frame = _frame(False).lazy()
    batches = list(slice_batches(frame, 5))
    assert [offset for offset, _ in batches] == [0, 5, 10, 15]
    assert pl.concat([batch for _, batch in batches]).equals(_frame(False))
    assert list(slice_batches(frame.head(0), 5)) == []


def test_global_step_verdicts_name_the_dropped_rows() -> None:
    result = REGISTRY["near_dedup"]().build("text")(_frame(True).lazy())
    rejected = result.rejected.collect()
    assert result.verdicts is not None
    assert result.verdicts[ROW].to_list() == rejected[ROW].to_list() == [1, 3]
    assert result.verdicts["__duplicate_of"].to_list() == ["r0", "r2"]


def test_files_are_byte_identical_between_runs(tmp_path: Path) -> None:
    source = tmp_path / "in.parquet"
    _frame(False).write_parquet(source)
    steps = [{"step": "length"}, {"step": "near_dedup"}, {"step": "repetition"}]
    outputs = []
    for run in ("a", "b"):
        out, rejects = tmp_path / f"{run}.parquet", tmp_path / f"{run}-rejects.jsonl"
        run_pipeline_to_files(pl.scan_parquet(source), steps, out, rejects)
        outputs.append((out.read_bytes(), rejects.read_bytes()))
    assert outputs[0] == outputs[1]
    memory = run_pipeline(_frame(False), steps)
    assert pl.read_parquet(tmp_path / "a.parquet").equals(memory.kept)


def test_empty_input_and_all_rejected() -> None:
    empty = _frame(False).head(0)
    kept, rejects, counts = run_pipeline(empty, [{"step": "length"}, {"step": "near_dedup"}])
    assert kept.height == 0 and rejects.height == 0 and kept.columns == empty.columns
    kept, rejects, counts = run_pipeline(_frame(False), [{"step": "length", "min_chars": 10_000}, {"step": "html"}])
    assert kept.height == 0 and rejects.height == len(TEXTS) and counts[1].rows_in == 0


def test_missing_text_column_is_named() -> None:
    with pytest.raises(ValueError, match="no column 'body'"):
        run_pipeline(_frame(False), [{"step": "length"}], text_column="body")


def test_yaml_config_list_and_mapping(tmp_path: Path) -> None:
    listed = tmp_path / "list.yaml"
    listed.write_text("- {step: length, min_chars: 5}\n- {step: langid, allowed: [zh, en], min_confidence: 0.5}\n"
                      "- {step: near_dedup, threshold: 0.85}\n")
    config = load_pipeline_config(listed)
    assert [s.step for s in config.steps] == ["length", "langid", "near_dedup"] and config.text_column == "text"
    mapped = tmp_path / "map.yaml"
    mapped.write_text("text_column: body\nsteps:\n  - step: html\n")
    assert load_pipeline_config(mapped).text_column == "body"


def test_yaml_errors_name_file_line_and_key(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("- step: length\n  min_char: 5\n- step: nosuch\n- step: near_dedup\n  threshold: 3\n")
    with pytest.raises(SpecError) as caught:
        load_pipeline_config(bad)
    message = str(caught.value)
    assert f"{bad}:2: 0.min_char: unknown key" in message
    assert f"{bad}:3: 1.step: unknown step 'nosuch'" in message
    assert f"{bad}:5: 2.threshold:" in message


def test_parse_steps_accepts_configs_and_dicts() -> None:
    steps = parse_steps([{"step": "length"}, *parse_steps([{"step": "html", "max_tag_share": 0.1}])])
    assert [s.step for s in steps] == ["length", "html"]
