"""The task catalogue: size and coverage, every task's data read, rendered and gold-checked, label sets checked
against the real mapping files, the shipped samples, and the generated docs/catalogue.md.

Data roots: local and sample tasks read `../shared/data` (skipped where absent); public and user-supplied tasks
read the hand-written fixtures in tests/fixtures/catalogue; generated tasks run their generator with small counts.
"""

from __future__ import annotations

import csv
import importlib.util
import io
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from typer.testing import CliRunner

from snsdata.catalogue_doc import catalogue_markdown, reward_summary
from snsdata.readers import data_found, default_data_root, read_task
from snsdata.render import render_messages, render_target
from snsdata.spec import CAPABILITIES, TaskSpec, load_catalogue
from snsdata.spec.models import GeneratedSource, TableSource

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
FIXTURES = REPO / "tests" / "fixtures" / "catalogue"
CATALOGUE = load_catalogue()
HAS_SELFCHECK = importlib.util.find_spec("snsdata.rewards.selfcheck") is not None
RENDER_SAMPLE = 5_000
"""Records rendered and gold-checked per local task; only tweet_emoji (100k tweets) has more, and is sampled."""
SANDBOX_LAYOUT_PENDING = {"code_stdio_sandbox"}
"""Tasks whose declared test layout the sandbox reward does not read yet (CodeContests' {input: [..], output: [..]})."""


def ids(availability: tuple[str, ...]) -> list[str]:
    return [task_id for task_id, spec in CATALOGUE.items() if spec.source.availability in availability]


def shared_data() -> Path:
    if not SHARED.is_dir():
        pytest.skip("../shared/data is not present on this machine")
    return SHARED


def check_records(spec: TaskSpec, frame: pl.DataFrame, sample: int | None = RENDER_SAMPLE) -> int:
    """Render every record (or a seeded sample of `sample`) and gold-check them; returns how many were checked."""
    pool_split = spec.prompt.few_shot.split
    pool = frame.filter(pl.col("split") == pool_split).to_dicts() if pool_split else None
    if sample is not None and frame.height > sample:
        frame = frame.sample(sample, seed=0)
    records = frame.to_dicts()
    for record in records:
        messages = render_messages(spec, record, pool)
        assert messages[-1]["role"] == "user" and messages[-1]["content"].strip(), (spec.id, record["record_id"])
        render_target(spec, record)
    if HAS_SELFCHECK:
        from snsdata.rewards.selfcheck import gold_check

        failures = gold_check(spec, records)
        assert not failures, f"{spec.id}: {[str(f) for f in failures[:3]]}"
    return len(records)


# --- coverage ---------------------------------------------------------------------------------------------


def test_catalogue_has_75_valid_specs_over_every_capability() -> None:
    assert len(CATALOGUE) >= 75
    per_capability = Counter(spec.capability for spec in CATALOGUE.values())
    assert set(per_capability) == set(CAPABILITIES), per_capability
    sns = sum(n for cap, n in per_capability.items() if cap != "general")
    assert sns >= 75


def test_every_spec_names_its_origin_and_non_local_specs_give_an_example() -> None:
    for spec in CATALOGUE.values():
        assert spec.source.origin, spec.id
        if spec.source.availability in ("public", "user"):
            assert spec.source.example, f"{spec.id}: a public or user spec documents its schema with `example`"


def example_record(spec: TaskSpec) -> dict[str, Any]:
    """The spec's `example` (written in the file's own column names) as a record, inline label maps applied."""
    source = spec.source
    assert isinstance(source, TableSource)
    example = source.example or {}
    record = {name: example[column] for name, column in source.field_columns.items() if column in example}
    missing = [name for name in source.field_columns if name not in record and name not in source.optional]
    assert not missing, f"{spec.id}: example lacks {missing}"
    for name, label_map in source.label_maps.items():
        assert label_map.values is not None, spec.id
        record[name] = label_map.values[str(record[name])]
    return {"record_id": "example", **record}


@pytest.mark.parametrize("task_id", ids(("public", "user")))
def test_the_documented_example_record_renders_and_earns_full_marks(task_id: str) -> None:
    spec = CATALOGUE[task_id]
    record = example_record(spec)
    render_messages(spec, record)
    render_target(spec, record)
    if HAS_SELFCHECK and task_id not in SANDBOX_LAYOUT_PENDING:
        from snsdata.rewards.selfcheck import gold_check

        assert not gold_check(spec, [record])


def test_vars_labels_and_output_labels_agree() -> None:
    for spec in CATALOGUE.values():
        shown = spec.vars.get("labels")
        if shown is not None and spec.output.labels is not None:
            assert list(shown) == list(spec.output.labels), spec.id


# --- local and sample data --------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ids(("local", "sample")))
def test_local_task_reads_renders_and_gold_checks_every_record(task_id: str) -> None:
    root = shared_data()
    spec = CATALOGUE[task_id]
    assert data_found(spec, root), f"{task_id}: data not under {root}"
    result = read_task(spec, root)
    assert result.rejects.height == 0, result.rejects.head(3).to_dicts()
    for split, counts in result.counts.items():
        assert counts["kept"] > 0, (task_id, split, counts)
    frame = result.frame.collect()
    checked = check_records(spec, frame)
    assert checked == min(frame.height, RENDER_SAMPLE)


@pytest.mark.parametrize("task_id", [t for t in ids(("local",)) if data_found(CATALOGUE[t], default_data_root())])
def test_shipped_samples_build_with_no_data_root(task_id: str) -> None:
    spec = CATALOGUE[task_id]
    result = read_task(spec)
    assert result.rejects.height == 0
    assert {s for s, c in result.counts.items() if c["kept"]} == set(spec.source.splits)
    check_records(spec, result.frame.collect(), sample=None)


def test_the_shipped_samples_cover_the_cold_and_wnut17_tasks() -> None:
    shipped = {t for t in ids(("local",)) if data_found(CATALOGUE[t], default_data_root())}
    assert {"cold_offensive_zh", "cold_topic_zh", "cold_offense_type_zh", "cold_offensive_explain_zh",
            "wnut17_ner_en", "wnut17_entity_surfaces_en"} <= shipped


# --- label sets against the real files ----------------------------------------------------------------------


def mapping_names(path: Path) -> dict[str, str]:
    """TweetEval mapping.txt read independently of the reader: id -> name (second column)."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            parts = line.split("\t")
            out[parts[0].strip()] = parts[1].strip()
    return out


@pytest.mark.parametrize("task_id", [t for t in CATALOGUE if CATALOGUE[t].source.reader == "tweeteval"])
def test_tweeteval_label_sets_match_mapping_files(task_id: str) -> None:
    root = shared_data()
    spec = CATALOGUE[task_id]
    label_map = spec.source.label_maps["label"]
    if label_map.file:
        mapping = mapping_names(root / label_map.file)
    else:  # tweet_emoji: inline because its mapping.txt has three columns
        folder = Path(next(iter(spec.source.splits.values()))).parent
        mapping = mapping_names(root / folder / "mapping.txt")
        assert label_map.values == mapping
    assert spec.output.labels == [mapping[str(i)] for i in range(len(mapping))]
    frame = read_task(spec, root).frame.collect()
    assert set(frame["label"].unique()) == set(spec.output.labels)


def test_cold_label_sets_match_the_csv_columns() -> None:
    root = shared_data()
    columns: dict[str, set[str]] = {"topic": set(), "label": set(), "fine-grained-label": set()}
    for name in ("train", "dev", "test"):
        with (root / f"COLDataset/COLDataset/{name}.csv").open(encoding="utf-8-sig", newline="") as handle:
            for row in csv.DictReader(handle):
                for column in columns:
                    if column in row:
                        columns[column].add(row[column])
    assert columns == {"topic": {"race", "region", "gender"}, "label": {"0", "1"},
                       "fine-grained-label": {"0", "1", "2", "3"}}
    offensive = CATALOGUE["cold_offensive_zh"].source.label_maps["label"].values
    topic = CATALOGUE["cold_topic_zh"].source.label_maps["topic"].values
    fine = CATALOGUE["cold_offense_type_zh"].source.label_maps["fine_label"].values
    assert set(offensive) == columns["label"] and set(topic) == columns["topic"]
    assert set(fine) == columns["fine-grained-label"]
    assert set(CATALOGUE["cold_offense_type_zh"].output.labels) == set(fine.values())
    assert set(CATALOGUE["cold_topic_zh"].output.labels) == set(topic.values())


def test_ner_types_in_the_data_are_the_documented_ones() -> None:
    root = shared_data()
    weibo = read_task(CATALOGUE["weibo_ner_zh"], root).frame.collect()
    types = {e["type"] for ents in weibo["entities"].to_list() for e in ents}
    assert types == {f"{t}.{k}" for t in ("PER", "ORG", "LOC", "GPE") for k in ("NAM", "NOM")}
    prompt = CATALOGUE["weibo_ner_zh"].prompt.system or ""
    assert all(t in prompt for t in types)
    prefixes = {CATALOGUE[f"weibo_ner_{p}_zh"].vars["type_prefix"] for p in ("per", "org", "loc", "gpe")}
    assert prefixes == {t.split(".")[0] for t in types}
    wnut = read_task(CATALOGUE["wnut17_ner_en"], root).frame.collect()
    wnut_types = {e["type"] for ents in wnut["entities"].to_list() for e in ents}
    assert wnut_types == {"person", "location", "corporation", "product", "creative-work", "group"}
    assert all(t in (CATALOGUE["wnut17_ner_en"].prompt.system or "") for t in wnut_types)


# --- public and user-supplied tasks: fixtures -------------------------------------------------------------


@pytest.mark.parametrize("task_id", ids(("public", "user")))
def test_fixture_reads_renders_and_gold_checks(task_id: str) -> None:
    spec = CATALOGUE[task_id]
    assert data_found(spec, FIXTURES), f"{task_id}: no fixture under {FIXTURES} for {spec.source.splits}"
    result = read_task(spec, FIXTURES)
    assert result.rejects.height == 0, result.rejects.to_dicts()
    for split, counts in result.counts.items():
        assert counts["kept"] > 0, (task_id, split, counts)
    frame = result.frame.collect()
    if task_id in SANDBOX_LAYOUT_PENDING:
        for record in frame.to_dicts():
            render_messages(spec, record)
            assert render_target(spec, record).startswith("```python\n")
        pytest.xfail("the sandbox reward does not read CodeContests' {input: [...], output: [...]} tests yet")
    check_records(spec, frame, sample=None)


def test_where_filters_are_exercised_by_the_fixtures() -> None:
    """Rows a spec's `where` drops are counted as excluded, not lost."""
    olid = read_task(CATALOGUE["offense_target_en"], FIXTURES).counts["train"]
    assert olid["excluded"] == 1 and olid["kept"] == 2
    contests = read_task(CATALOGUE["code_stdio_sandbox"], FIXTURES).counts["train"]
    assert contests["excluded"] == 1  # no Python 3 solution
    group = read_task(CATALOGUE["group_chat_roleplay_zh"], FIXTURES).counts["train"]
    assert group["excluded"] == 1  # the persona stays silent


# --- generated tasks --------------------------------------------------------------------------------------


@pytest.mark.parametrize("task_id", ids(("generated",)))
def test_generated_task_renders_and_gold_checks_a_few_records(task_id: str) -> None:
    spec = CATALOGUE[task_id]
    assert isinstance(spec.source, GeneratedSource)
    small = {split: min(count, 8) for split, count in spec.source.splits.items()}
    spec = spec.model_copy(update={"source": spec.source.model_copy(update={"splits": small})})
    frame = read_task(spec).frame.collect()
    assert frame.height == sum(small.values())
    check_records(spec, frame, sample=None)


# --- rewards an always-empty or always-majority answer cannot farm -----------------------------------------


@pytest.mark.skipif(not HAS_SELFCHECK, reason="snsdata.rewards is not installed")
@pytest.mark.parametrize("task_id", ["weibo_ner_org_zh", "weibo_ner_zh", "wnut17_ner_en"])
def test_an_always_empty_answer_earns_chance_on_balanced_rows(task_id: str) -> None:
    # It used to be held down by discounting right empty answers (`empty_match`), which also capped the gold
    # below 1; now every gold earns 1 and the mixtures' one balance rule keeps empty golds at about half.
    from snsdata.build.sampling import balance
    from snsdata.rewards.scorer import Scorer
    from snsdata.spec import load_mixture

    root = shared_data()
    spec = CATALOGUE[task_id]
    frame = read_task(spec, root).frame.collect().filter(pl.col("split") == "train")
    records = frame.to_dicts()
    golds = [render_target(spec, r) for r in records]
    assert set(Scorer(spec)(golds, records)) == {1.0}
    (rule,) = load_mixture("stage1").balance
    kept, _ = balance(frame.with_columns(_pinned=pl.lit(False)), rule.by, rule.ratio, 0, spec, rule.max_lead)
    rows = kept.to_dicts()
    empty = Scorer(spec)(["[]"] * len(rows), rows)
    assert sum(empty) / len(rows) <= 0.55
    assert sum(empty) < sum(Scorer(spec)([render_target(spec, r) for r in rows], rows))


# --- shipped samples --------------------------------------------------------------------------------------


def test_shipped_samples_are_small_licensed_and_documented() -> None:
    root = default_data_root()
    files = [p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
    assert sum(p.stat().st_size for p in files) < 2_000_000
    for folder, licence in (("COLDataset", "LICENSE"), ("emerging_entities_17", "LICENSE_from_README.txt")):
        assert (root / folder / licence).is_file() and (root / folder / "SOURCE.md").is_file()
    names = {p.relative_to(root).as_posix() for p in files}
    assert not any(n.startswith(("sns_bench", "redtrans", "tweeteval", "golden-horse")) for n in names)


def test_cold_sample_keeps_the_exact_format_and_class_balance() -> None:
    shared = shared_data()
    for name in ("train", "dev", "test"):
        relative = f"COLDataset/COLDataset/{name}.csv"
        sample = (default_data_root() / relative).read_bytes()
        full = (shared / relative).read_bytes()
        sample_lines, full_lines = sample.split(b"\n"), set(full.split(b"\n"))
        assert sample_lines[0] == full.split(b"\n")[0] and sample.startswith(b"\xef\xbb\xbf,split,")
        assert all(line in full_lines for line in sample_lines)
        assert 250 <= len(sample_lines) - 2 <= 350
        shares = []
        for data in (sample, full):
            rows = list(csv.DictReader(io.StringIO(data.decode("utf-8-sig"), newline="")))
            counts = Counter((r["topic"], r["label"]) for r in rows)
            shares.append({k: v / len(rows) for k, v in counts.items()})
        assert all(abs(shares[0][k] - shares[1][k]) < 0.01 for k in shares[1])


def test_wnut17_sample_sentences_come_from_the_full_files() -> None:
    shared = shared_data()
    for name in ("wnut17train.conll", "emerging.dev.conll", "emerging.test.annotated"):
        relative = f"emerging_entities_17/{name}"
        full = (shared / relative).read_text(encoding="utf-8")
        sample = (default_data_root() / relative).read_text(encoding="utf-8")
        sentences = [s for s in sample.replace("\n\t\n", "\n\n").split("\n\n") if s.strip()]
        assert len(sentences) == 200
        assert all(s.strip("\t\n") in full for s in random.Random(0).sample(sentences, 50))


def test_make_samples_is_deterministic(tmp_path: Path) -> None:
    shared = shared_data()
    subprocess.run([sys.executable, str(REPO / "tools" / "make_samples.py"), "--source", str(shared),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    for relative in ("COLDataset/COLDataset/test.csv", "emerging_entities_17/emerging.dev.conll"):
        assert (tmp_path / relative).read_bytes() == (default_data_root() / relative).read_bytes()


# --- the generated catalogue document ---------------------------------------------------------------------


def test_committed_catalogue_doc_is_current() -> None:
    committed = (REPO / "docs" / "catalogue.md").read_text(encoding="utf-8")
    assert committed == catalogue_markdown(CATALOGUE), "run: snsdata catalogue-doc --out docs/catalogue.md"


def test_catalogue_doc_lists_every_task_under_its_capability() -> None:
    text = catalogue_markdown(CATALOGUE)
    for spec in CATALOGUE.values():
        section = text.split(f"## {spec.capability} (")[1].split("\n## ")[0]
        assert f"| `{spec.id}` |" in section
    assert reward_summary(CATALOGUE["redtrans_zh2en"].reward) == (
        "metric:bleu + metric:chrf++, shaped by pattern and pattern")
    assert reward_summary(CATALOGUE["note_mrc_complex"].reward) == "metric:option_f1 × pattern"


def test_catalogue_doc_command_writes_the_file(tmp_path: Path) -> None:
    from snsdata.cli import app
    from snsdata.cli import catalogue as _registers  # noqa: F401  (registers the command)

    out = tmp_path / "catalogue.md"
    result = CliRunner().invoke(app, ["catalogue-doc", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8") == catalogue_markdown()
