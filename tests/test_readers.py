"""Readers: every format of the shared data, canonical frames, stable ids, and no row lost."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from snsdata.readers import DataNotFound, SourceError, read_task
from snsdata.readers.formats import PARSERS
from snsdata.render import render_messages, render_target
from snsdata.spec import load_catalogue, load_spec
from snsdata.spec.models import GeneratedSource


def raw_count(reader: str, path: Path) -> int:
    """Records in a file, counted independently of the readers."""
    if reader == "json":
        return len(json.loads(path.read_text(encoding="utf-8-sig")))
    if reader == "jsonl":
        return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    if reader == "csv":
        return pl.read_csv(path, infer_schema=False).height
    if reader == "parquet":
        return pl.read_parquet(path).height
    if reader == "conll":
        blocks = path.read_text(encoding="utf-8").split("\n")
        count, inside = 0, False
        for line in blocks:
            if line.strip():
                count += not inside
                inside = True
            else:
                inside = False
        return count
    if reader == "tweeteval":
        return len((path.parent / f"{path.name}_text.txt").read_text(encoding="utf-8").rstrip("\n").split("\n"))
    raise AssertionError(reader)


def local_specs(shared_data: Path):
    from snsdata.readers import data_found

    return [s for s in load_catalogue().values()
            if not isinstance(s.source, GeneratedSource) and data_found(s, shared_data)]


def test_every_shared_file_a_spec_uses_is_read_rendered_and_counted(shared_data: Path) -> None:
    specs = local_specs(shared_data)
    assert len(specs) >= 14
    for spec in specs:
        result = read_task(spec, shared_data)
        frame = result.frame.collect()
        for split, paths in spec.source.splits.items():
            paths = [paths] if isinstance(paths, str) else paths
            expected = sum(raw_count(spec.source.reader, shared_data / p) for p in paths)
            counts = result.counts[split]
            assert counts["read"] == expected, (spec.id, split, counts, expected)
            assert counts["read"] == counts["kept"] + counts["rejected"] + counts["excluded"], (spec.id, counts)
            assert frame.filter(pl.col("split") == split).height == counts["kept"]
        assert frame.columns[:3] == ["task_id", "record_id", "split"]
        assert frame["record_id"].n_unique() == frame.height, spec.id
        for record in frame.to_dicts():
            assert render_messages(spec, record)[-1]["role"] == "user"
            render_target(spec, record)


def test_record_ids_are_stable_and_content_based(shared_data: Path) -> None:
    spec = load_catalogue()["note_gender"]
    first = read_task(spec, shared_data).frame.collect()
    again = read_task(spec, shared_data).frame.collect()
    assert first["record_id"].to_list() == again["record_id"].to_list()
    assert first["record_id"][0] == "9be131b3595f8e88"  # the same on every machine and run


SPEC = """\
id: {id}
capability: content_understanding
languages: [en]
description: reader test
source:
{source}
prompt: {{user: "{{{{ text }}}}"}}
target: {{template: "{{{{ label }}}}"}}
output: {{format: label}}
reward: {{type: exact_match}}
"""


def spec_for(tmp_path: Path, source: str, task_id: str = "reader_test"):
    path = tmp_path / f"{task_id}.yaml"
    path.write_text(SPEC.format(id=task_id, source=source), encoding="utf-8")
    return load_spec(path)


def test_jsonl_bad_lines_and_missing_fields_go_to_rejects(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text(
        '{"text": "a", "label": "x"}\n{not json}\n[1, 2]\n{"text": "b"}\n\n{"text": "c", "label": "y"}\n',
        encoding="utf-8")
    spec = spec_for(tmp_path, "  reader: jsonl\n  splits: {train: d.jsonl}\n  fields: [text, label]")
    result = read_task(spec, tmp_path)
    assert result.frame.collect()["text"].to_list() == ["a", "c"]
    rejects = result.rejects.sort("source")
    assert rejects.height == 3
    assert rejects["source"].to_list() == [f"{tmp_path}/d.jsonl:{n}" for n in (2, 3, 4)]
    assert "not valid JSON" in rejects["reason"][0] and "not a JSON object" in rejects["reason"][1]
    assert rejects["reason"][2] == "missing or null field(s): label"
    assert json.loads(rejects["row"][2]) == {"text": "b", "label": None}
    assert result.counts["train"] == {"read": 5, "rejected": 3, "excluded": 0, "kept": 2}


def test_optional_fields_may_be_missing(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n{"text": "b", "label": "y", "why": "w"}\n')
    spec = spec_for(tmp_path, "  reader: jsonl\n  splits: {train: d.jsonl}\n  fields: [text, label, why]\n"
                              "  optional: [why]")
    assert read_task(spec, tmp_path).frame.collect()["why"].to_list() == [None, "w"]


def test_csv_with_bom_and_unnamed_index(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_bytes("\ufeff,split,label,TEXT\n7,train,1,你好\n9,train,0,\"a, b\"\n".encode())
    spec = spec_for(tmp_path, "  reader: csv\n  splits: {train: d.csv}\n  fields: {text: TEXT, label: label}\n"
                              "  label_maps: {label: {values: {'0': safe, '1': offensive}}}")
    frame = read_task(spec, tmp_path).frame.collect()
    assert frame.select("text", "label").rows() == [("你好", "offensive"), ("a, b", "safe")]


def test_missing_column_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("a,b\n1,2\n")
    spec = spec_for(tmp_path, "  reader: csv\n  splits: {train: d.csv}\n  fields: {text: TEXT, label: b}")
    with pytest.raises(SourceError, match=r"d.csv: column\(s\) \['TEXT'\] not found"):
        read_task(spec, tmp_path)


def test_missing_file_says_how_to_point_at_it(tmp_path: Path) -> None:
    spec = spec_for(tmp_path, "  reader: json\n  splits: {test: nowhere/x.json}\n  fields: [text, label]")
    with pytest.raises(DataNotFound, match="--data-root"):
        read_task(spec, tmp_path)


def test_unmapped_label_is_rejected_not_nulled(tmp_path: Path) -> None:
    (tmp_path / "t_text.txt").write_text("one\ntwo\nthree\n")
    (tmp_path / "t_labels.txt").write_text("0\n5\nx\n")
    (tmp_path / "mapping.txt").write_text("0\tneg\n1\tpos")
    spec = spec_for(tmp_path, "  reader: tweeteval\n  splits: {train: t}\n"
                              "  label_maps: {label: {file: mapping.txt}}")
    result = read_task(spec, tmp_path)
    assert result.frame.collect().select("text", "label").rows() == [("one", "neg")]
    assert sorted(result.rejects["reason"].to_list()) == ["label 'x' is not an id",
                                                          "label value 5 is not in the label map"]
    assert result.counts["train"]["read"] == 3


def test_conll_segmentation_digits_and_spans(tmp_path: Path) -> None:
    (tmp_path / "w.conll").write_text(
        "我0\tO\n爱0\tO\n北0\tB-GPE.NAM\n京1\tI-GPE.NAM\n\n张0\tB-PER.NAM\n三1\tI-PER.NAM\n好\tO\n\n李0\tB-PER.NAM\n")
    source = ("  reader: conll\n  joiner: ''\n  strip_segmentation_digit: true\n  splits: {train: w.conll}")
    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(id="t", source=source).replace("{{ label }}", "{{ entities | json }}")
                    .replace("{{ text }}", "{{ text }}"), encoding="utf-8")
    spec = load_spec(path)
    result = read_task(spec, tmp_path)
    frame = result.frame.collect()
    assert frame["text"].to_list() == ["我爱北京", "李"]
    assert frame["entities"][0].to_list() == [{"text": "北京", "type": "GPE.NAM", "start": 2, "end": 4}]
    assert result.rejects.height == 1 and "segmentation digit" in result.rejects["reason"][0]
    assert result.rejects["source"][0].endswith("w.conll:6")


def test_conll_token_tab_bio_with_whitespace_separators(tmp_path: Path) -> None:
    (tmp_path / "e.conll").write_text("Go\tO\nto\tO\nNew\tB-location\nYork\tI-location\n\t\n@bob\tB-person\n")
    source = "  reader: conll\n  splits: {train: e.conll}"
    path = tmp_path / "t.yaml"
    path.write_text(SPEC.format(id="t", source=source).replace("{{ label }}", "{{ entities | json }}"))
    frame = read_task(load_spec(path), tmp_path).frame.collect()
    assert frame["text"].to_list() == ["Go to New York", "@bob"]
    assert frame["entities"][0].to_list() == [{"text": "New York", "type": "location", "start": 6, "end": 14}]


def test_parquet_and_where(tmp_path: Path) -> None:
    pl.DataFrame({"text": ["a", "b", "c"], "label": ["x", "y", "x"], "lang": ["zh", "en", "zh"]}).write_parquet(
        tmp_path / "d.parquet")
    spec = spec_for(tmp_path, "  reader: parquet\n  splits: {train: d.parquet}\n  fields: [text, label, lang]\n"
                              "  where: \"lang = 'zh'\"")
    result = read_task(spec, tmp_path)
    assert result.frame.collect()["text"].to_list() == ["a", "c"]
    assert result.counts["train"] == {"read": 3, "rejected": 0, "excluded": 1, "kept": 2}


def test_duplicate_records_get_distinct_ids(tmp_path: Path) -> None:
    (tmp_path / "d.jsonl").write_text('{"text": "a", "label": "x"}\n' * 3)
    spec = spec_for(tmp_path, "  reader: jsonl\n  splits: {train: d.jsonl}\n  fields: [text, label]")
    ids = read_task(spec, tmp_path).frame.collect()["record_id"].to_list()
    assert len(set(ids)) == 3 and ids[1] == f"{ids[0]}-1" and ids[2] == f"{ids[0]}-2"


def test_every_reader_kind_has_a_parser() -> None:
    assert set(PARSERS) == {"json", "jsonl", "parquet", "csv", "conll", "tweeteval"}


def test_invalid_json_list_names_line(tmp_path: Path) -> None:
    (tmp_path / "d.json").write_text('[\n{"text": "a", "label": "x"},\n{"text": }\n]')
    spec = spec_for(tmp_path, "  reader: json\n  splits: {train: d.json}\n  fields: [text, label]")
    with pytest.raises(SourceError, match=r"d.json:3: not valid JSON"):
        read_task(spec, tmp_path)


def test_label_map_file_with_extra_columns(tmp_path: Path) -> None:
    (tmp_path / "t_text.txt").write_text("love it\nso funny\n")
    (tmp_path / "t_labels.txt").write_text("0\n1\n")
    (tmp_path / "mapping.txt").write_text("0\t❤\t_red_heart_\n1\t😂\t_face_with_tears_of_joy_\n")
    spec = spec_for(tmp_path, "  reader: tweeteval\n  splits: {train: t}\n  label_maps: {label: {file: mapping.txt}}")
    assert read_task(spec, tmp_path).frame.collect()["label"].to_list() == ["❤", "😂"]


@pytest.mark.parametrize(("name", "reader", "body"), [
    ("d.jsonl", "jsonl", "\ufeff" + "".join(f'{{"text": "t{i % 7}", "label": "x"}}\n' for i in range(50))),
    ("d.json", "json", json.dumps([{"text": f"t{i % 7}", "label": "x"} for i in range(50)], indent=1)),
    ("d.csv", "csv", "text,label\n" + "".join(f"t{i % 7},x\n" for i in range(50))),
])
def test_streamed_batches_equal_the_whole_read_and_report_progress(tmp_path: Path, name: str, reader: str,
                                                                   body: str) -> None:
    from snsdata.readers import iter_task, read_work

    (tmp_path / name).write_text(body, encoding="utf-8")
    spec = spec_for(tmp_path, f"  reader: {reader}\n  splits: {{train: {name}}}\n  fields: [text, label]")
    reported: list[int] = []
    batches = list(iter_task(spec, tmp_path, batch_rows=8, progress=reported.append))
    assert len(batches) == 7
    whole = read_task(spec, tmp_path).frame.collect()
    assert pl.concat([b.frame for b in batches]).equals(whole)
    assert whole["record_id"].n_unique() == 50 and whole["record_id"][7] == f"{whole['record_id'][0]}-1"
    assert sum(reported) == read_work(spec, tmp_path)


def test_parquet_progress_adds_up_to_the_file_size(tmp_path: Path) -> None:
    from snsdata.readers import iter_task, read_work

    pl.DataFrame({"text": [f"t{i}" for i in range(30)], "label": ["x"] * 30}).write_parquet(
        tmp_path / "d.parquet", row_group_size=7)
    spec = spec_for(tmp_path, "  reader: parquet\n  splits: {train: d.parquet}\n  fields: [text, label]")
    reported: list[int] = []
    rows = sum(b.frame.height for b in iter_task(spec, tmp_path, batch_rows=4, progress=reported.append))
    assert rows == 30 and sum(reported) == read_work(spec, tmp_path)
