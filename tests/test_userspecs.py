"""Your own tasks without touching the package: spec and mixture folders outside the install, on every command.

A user folder (`my_specs/`, data in `data/`, both in a temporary directory) is put on the search path by the global
`--specs`, by `SNSDATA_SPECS` or by `snsdata.toml`; builds made with it score through every consumer after the
folder is gone, from the build's frozen specs; `snsdata init` writes a project that builds as it is.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import polars as pl
import pytest
from typer.testing import CliRunner

from snsdata.cli import app
from snsdata.spec import SpecError, configure, load_catalogue, load_mixture, search_path, specs_root
from snsdata.spec.loader import spec_json_schema
from snsdata.spec.searchpath import ENV_VAR, mixture_files, resolve_specs
from snsdata.starter import starter_files

runner = CliRunner()
STARTER = starter_files()
TASK = "comment_sentiment_zh"
QA = "my_general_qa"

QA_SPEC = """\
# A general-capability task of the user's own: short factual questions, one exact answer.
id: my_general_qa
version: 1
capability: general
languages: [en]
description: "Short factual questions with one exact answer (user data)."
tags: [my_tag]
source:
  reader: jsonl
  availability: user
  splits: {train: my_qa/train.jsonl, test: my_qa/test.jsonl}
  fields: [question, answer]
prompt:
  user: "{{ question }}\\nAnswer with one word."
target:
  template: "{{ answer }}"
output:
  format: text
reward:
  type: exact_match
  normalize: [strip_think, strip_answer_prefix, punctuation, casefold, strip]
"""
QA_ROWS = [("What colour is a clear daytime sky?", "blue"), ("How many legs does a spider have?", "eight"),
           ("What is frozen water called?", "ice"), ("Which planet do we live on?", "earth"),
           ("What is the opposite of hot?", "cold"), ("What do bees make?", "honey"),
           ("What gas do plants take in?", "co2"), ("What is the capital of France?", "paris")]
USER_MIXTURE = """\
name: my_rl
description: "The user's tasks, selected by tag and by capability, plus shipped general arithmetic."
format: rl
steps: [exact_dedup]
components:
  - name: mine
    select: {tags: [user_data]}
  - name: my_general
    select: {capabilities: [general], tags: [my_tag]}
  - name: shipped_general
    select: {ids: [gen_math_basic_arithmetic]}
    count: 6
"""


@pytest.fixture(autouse=True)
def _no_leftover_folders():
    """The CLI's `--specs` is process state: never let one test's folders reach the next (or other modules)."""
    yield
    configure([])


def make_project(root: Path, mixture: bool = True) -> tuple[Path, Path]:
    """`root/my_specs` (two tasks, a mixture) and `root/data`, outside the package; returns (specs, data)."""
    specs, data = root / "my_specs", root / "data"
    (specs / "mixtures").mkdir(parents=True)
    (specs / f"{TASK}.yaml").write_bytes(STARTER[Path("specs") / f"{TASK}.yaml"])
    (specs / f"{QA}.yaml").write_text(QA_SPEC, encoding="utf-8")
    if mixture:
        (specs / "mixtures" / "my_rl.yaml").write_text(USER_MIXTURE, encoding="utf-8")
    for name in ("train", "test"):
        target = data / "comment_sentiment" / f"{name}.jsonl"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(STARTER[Path("data") / "comment_sentiment" / f"{name}.jsonl"])
    (data / "my_qa").mkdir()
    rows = {"train": QA_ROWS[:6], "test": QA_ROWS[6:]}
    for name, items in rows.items():
        (data / "my_qa" / f"{name}.jsonl").write_text(
            "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in items), encoding="utf-8")
    return specs, data


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args])


# --- the search path ------------------------------------------------------------------------------------------


def test_without_the_folder_the_task_is_unknown_with_it_every_spec_command_finds_it(tmp_path: Path) -> None:
    specs, data = make_project(tmp_path)
    assert invoke("render", TASK, "--data-root", data).exit_code == 1
    shown = invoke("--specs", specs, "tasks", "show", TASK)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout)["output"]["labels"] == ["正面", "负面", "中性"]
    rendered = invoke("--specs", specs, "render", TASK, "--data-root", data, "-n", "2", "--json")
    assert rendered.exit_code == 0, rendered.output
    items = json.loads(rendered.stdout)
    assert [i["target"] for i in items] == ["正面", "负面"]
    assert "评论：这家店的拿铁太好喝了" in items[0]["messages"][-1]["content"]
    validated = invoke("validate", specs, "--data-root", data)  # exactly these files, data checked
    assert validated.exit_code == 0, validated.output
    assert f"{TASK}: 33 records read, rendered and gold-checked" in validated.output
    assert f"{QA}: 8 records read" in validated.output and "2 task specs valid" in validated.output
    everything = invoke("--specs", specs, "validate")  # the whole search path
    shipped = len(load_catalogue([specs_root()]))
    assert everything.exit_code == 0 and f"{shipped + 2} task specs valid" in everything.output
    listed = invoke("--specs", specs, "tasks", "list", "--json")
    rows = {row["id"]: row for row in json.loads(listed.stdout)}
    assert rows[TASK]["origin"] == str((specs / f"{TASK}.yaml").resolve())
    assert rows["note_gender"]["origin"] == "shipped"


def test_environment_variable_takes_several_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    specs, _ = make_project(tmp_path)
    other = tmp_path / "more_specs"
    other.mkdir()
    (specs / f"{QA}.yaml").rename(other / f"{QA}.yaml")
    monkeypatch.setenv(ENV_VAR, os.pathsep.join([str(specs), str(other)]))
    catalogue = load_catalogue()
    assert {TASK, QA, "note_gender"} <= set(catalogue)
    assert [f.given_by for f in search_path().folders] == [ENV_VAR, ENV_VAR]


def test_project_file_gives_folders_and_the_default_data_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    make_project(tmp_path)
    (tmp_path / "snsdata.toml").write_text('specs = ["my_specs"]\ndata_root = "data"\n', encoding="utf-8")
    elsewhere = tmp_path / "sub"
    elsewhere.mkdir()
    monkeypatch.chdir(tmp_path)
    rendered = invoke("render", TASK, "-n", "1", "--json")  # no --specs, no --data-root
    assert rendered.exit_code == 0, rendered.output
    assert json.loads(rendered.stdout)[0]["target"] == "正面"
    monkeypatch.chdir(elsewhere)  # the project file is the working directory's
    assert invoke("tasks", "show", TASK).exit_code == 1


@pytest.mark.parametrize(("text", "message"), [
    ('specs = ["my_specs"]\ndata_rot = "data"\n', "data_rot: unknown key"),
    ("specs = [my_specs]\n", "invalid TOML"),
    ("specs = [1]\n", "specs: a list of folder paths"),
    ('specs = ["nowhere"]\n', "nowhere: <root>: spec folder not found (given by"),
])
def test_a_bad_project_file_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str,
                                                  message: str) -> None:
    make_project(tmp_path)
    (tmp_path / "snsdata.toml").write_text(text, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("tasks", "list")
    assert result.exit_code == 1
    assert message in result.output and ("snsdata.toml" in result.output)


def test_a_missing_specs_folder_names_the_option(tmp_path: Path) -> None:
    result = invoke("--specs", tmp_path / "typo", "tasks", "list")
    assert result.exit_code == 1
    assert f"{tmp_path / 'typo'}: <root>: spec folder not found (given by --specs)" in result.output


def test_a_user_spec_overrides_the_shipped_one_with_one_notice(tmp_path: Path) -> None:
    folder = tmp_path / "overrides"
    folder.mkdir()
    shipped = specs_root() / "content_understanding" / "note_gender.yaml"
    text = shipped.read_text(encoding="utf-8").replace("extends: ../_sns_bench.yaml",
                                                       f"extends: {specs_root() / '_sns_bench.yaml'}")
    text = re.sub(r"(?m)^description: .*$", 'description: "My own gender task."', text)
    (folder / "note_gender.yaml").write_text(text, encoding="utf-8")
    first = invoke("--specs", folder, "tasks", "show", "note_gender")
    assert first.exit_code == 0, first.output
    assert json.loads(first.stdout)["description"] == "My own gender task."
    notice = f"task 'note_gender' from {(folder / 'note_gender.yaml').resolve()} overrides the shipped {shipped}"
    assert first.stderr.count(notice) == 1 and len(first.stderr.strip().splitlines()) == 1
    again = invoke("--specs", folder, "tasks", "show", "note_gender")
    assert notice not in again.stderr  # once per process


def test_a_user_spec_extends_a_shipped_base_by_its_catalogue_path(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    _write(folder / "stance_remote_work.yaml", """\
extends: content_understanding/tweet_stance/_tweet_stance.yaml   # not beside this file: the shipped one
id: tweet_stance_remote_work
description: "Stance of a tweet toward remote work."
vars:
  target: "Remote work should stay"
source:
  splits: {train: stance/remote_work/train, test: stance/remote_work/test}
""")
    _write(folder / ".github" / "workflows" / "ci.yaml", "on: push\n")  # hidden folders are not specs
    _write(folder / "bad_base.yaml", "extends: nowhere/_base.yaml\nid: x\n")
    configure([folder])
    with pytest.raises(SpecError) as info:
        load_catalogue()
    assert [i.file for i in info.value.issues] == [str(folder / "bad_base.yaml")]
    assert "nor at" in info.value.issues[0].message and "shipped catalogue" in info.value.issues[0].message
    (folder / "bad_base.yaml").unlink()
    spec = load_catalogue()["tweet_stance_remote_work"]
    assert spec.output.labels == ["none", "against", "favor"] and spec.reward.aliases["against"] == ["oppose"]
    assert spec.vars["target"] == "Remote work should stay"


def test_two_user_folders_defining_one_id_is_an_error_naming_both(tmp_path: Path) -> None:
    specs, _ = make_project(tmp_path)
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copy(specs / f"{TASK}.yaml", twin / f"{TASK}.yaml")
    result = invoke("--specs", specs, "--specs", twin, "tasks", "show", TASK)
    assert result.exit_code == 1
    assert str((specs / f"{TASK}.yaml").resolve()) in result.output
    assert str((twin / f"{TASK}.yaml").resolve()) in result.output
    with pytest.raises(SpecError, match="defined in two spec folders"):
        configure([specs, twin])
        resolve_specs()


def test_a_mixture_among_the_specs_says_where_mixtures_go(tmp_path: Path) -> None:
    specs, _ = make_project(tmp_path)
    (specs / "mixtures" / "my_rl.yaml").rename(specs / "my_rl.yaml")
    result = invoke("--specs", specs, "tasks", "list")
    assert result.exit_code == 1 and "looks like a mixture" in result.output and "mixtures/" in result.output


def test_eval_specs_is_an_alias_of_the_global_option(tmp_path: Path) -> None:
    specs, data = make_project(tmp_path)
    predictions = tmp_path / "predictions.jsonl"
    answers = ["正面", "负面", "中性", "负面", "负面", "中性", "正面", "负面", "中性"]  # one wrong of 9
    predictions.write_text("".join(json.dumps({"prediction": a}, ensure_ascii=False) + "\n" for a in answers),
                           encoding="utf-8")
    args = ["eval", "--task", TASK, "--predictions", predictions, "--data-root", data, "--split", "test", "--json"]
    for result in (invoke(*args, "--specs", specs), invoke("--specs", specs, *args)):
        assert result.exit_code == 0, result.output
        metrics = json.loads(result.stdout)
        assert metrics["n"] == 9 and metrics["mean_reward"] == pytest.approx(8 / 9)


def test_python_apis_use_the_search_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from snsdata.backends.trl_rewards import reward_funcs
    from snsdata.backends.verl import compute_score
    from snsdata.rewards import evaluate, get_scorer, score

    specs, _ = make_project(tmp_path)
    monkeypatch.setenv(ENV_VAR, str(specs))
    record = {"text": "排队一小时", "label": "负面", "title": None}
    assert score(TASK, "负面", record) == 1.0 and score(TASK, "正面", record) == 0.0
    assert get_scorer(TASK)(["消极"], [record]) == [1.0]  # the spec's alias
    assert evaluate(TASK, [record, record], ["负面", "正面"])["mean_reward"] == 0.5
    reward = reward_funcs([TASK])[0]
    assert reward(prompts=["p"], completions=["负面"], task_id=[TASK], record=[json.dumps(record)]) == [1.0]
    info = {"task_id": TASK, "record": json.dumps(record, ensure_ascii=False)}
    assert compute_score("snsdata/" + TASK, "负面", "负面", info)["score"] == 1.0


# --- mixtures ---------------------------------------------------------------------------------------------------


def test_user_mixtures_are_listed_with_their_origin(tmp_path: Path) -> None:
    specs, _ = make_project(tmp_path)
    configure([specs])
    found = mixture_files()
    assert found["my_rl"].origin == str((specs / "mixtures" / "my_rl.yaml").resolve())
    assert found["stage1"].origin == "shipped"
    result = invoke("--specs", specs, "mixtures")
    assert result.exit_code == 0, result.output
    assert f"* my_rl: {(specs / 'mixtures' / 'my_rl.yaml').resolve()}" in result.output
    listed = {row["name"]: row for row in json.loads(invoke("--specs", specs, "mixtures", "--json").stdout)}
    assert listed["my_rl"]["format"] == "rl" and listed["stage2"]["origin"] == "shipped"


def test_a_user_mixture_selects_user_tasks_by_id_tag_and_capability_and_builds(tmp_path: Path) -> None:
    specs, data = make_project(tmp_path)
    out = tmp_path / "build"
    built = invoke("--specs", specs, "build", "--mixture", "my_rl", "--data-root", data, "--out", out)
    assert built.exit_code == 0, built.output
    train = pl.read_parquet(out / "data" / "train.parquet")
    counts = dict(train.group_by("task_id").len().rows())
    assert counts == {TASK: 24, QA: 6, "gen_math_basic_arithmetic": 6}
    frozen = json.loads((out / "specs.json").read_text(encoding="utf-8"))
    assert set(frozen) == {TASK, QA, "gen_math_basic_arithmetic"}
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["inputs"]["mixture"]["path"] == str((specs / "mixtures" / "my_rl.yaml").resolve())


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_extends_a_shipped_mixture_by_name_patching_components_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "mine"
    _write(folder / "mixtures" / "my_stage1.yaml", """\
extends: stage1
description: "Stage 1 with more general data and the user's task."
total: 1000
components:
  sns: {share: 0.4}
  general: {share: 0.5}
  mine: {select: {ids: [comment_sentiment_zh]}, share: 0.1}
""")
    (folder / f"{TASK}.yaml").write_bytes(STARTER[Path("specs") / f"{TASK}.yaml"])
    configure([folder])
    mixture = load_mixture("my_stage1")
    stage1 = load_mixture("stage1")
    assert mixture.name == "my_stage1" and mixture.total == 1000 and mixture.format == "rl"
    assert [(c.name, c.share) for c in mixture.components] == [("sns", 0.4), ("general", 0.5), ("mine", 0.1)]
    assert mixture.components[0].select == stage1.components[0].select  # only the share changed
    assert mixture.steps == stage1.steps and mixture.balance == stage1.balance and mixture.splits == stage1.splits
    assert mixture.bases == (str(load_mixture("stage1").source),)
    file, line = mixture.where("components", 2, "share")
    assert file == str((folder / "mixtures" / "my_stage1.yaml").resolve()) and line == 7
    assert mixture.where("steps", 0)[0] == stage1.source  # inherited keys point at the base file


def test_extends_rules_list_replaces_null_removes_and_a_same_named_file_extends_the_shipped_one(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mine"
    _write(folder / "mixtures" / "stage2.yaml", """\
extends: stage2   # this file replaces the shipped stage2, and starts from it
components:
  general_soft: null
  weak: {share: 1.0}
""")
    _write(folder / "mixtures" / "only_general.yaml", """\
extends: stage2.yaml    # a file beside this one: the user's stage2 above
components:
  - {name: general, select: {origin: general}}
total: null
""")
    configure([folder])
    stage2 = load_mixture("stage2")
    assert [(c.name, c.share) for c in stage2.components] == [("weak", 1.0)]
    assert stage2.targeted is not None and stage2.source == str((folder / "mixtures" / "stage2.yaml").resolve())
    assert "mixture 'stage2' from" in capsys.readouterr().err
    only = load_mixture("only_general")
    assert [c.name for c in only.components] == ["general"] and only.total is None
    assert len(only.bases) == 2  # the user's stage2, then the shipped one


@pytest.mark.parametrize(("text", "key", "line", "message"), [
    ("extends: no_such_mixture\n", "extends", 1, "no mixture named 'no_such_mixture'"),
    ("extends: stage2\ncomponents:\n  nope: null\n", "components.nope", 3, "the base has no component 'nope'"),
    ("extends: stage2\ncomponents:\n  weak: {share: 0.5}\n", "", 1, "shares sum to 0.65"),  # a whole-mixture rule
    ("extends: stage2\ncomponents:\n  weak: {shar: 0.85}\n", "components.0.shar", 3, "unknown key"),
    ("extends: stage2\ncomponents: 3\n", "components", 2, "a list (replaces"),
    ("extends: stage2\nname: other\n", "name", 2, "carries its file's name"),
])
def test_extends_errors_name_file_line_and_key(tmp_path: Path, text: str, key: str, line: int, message: str
                                               ) -> None:
    path = _write(tmp_path / "mine" / "mixtures" / "broken.yaml", text)
    configure([tmp_path / "mine"])
    with pytest.raises(SpecError) as info:
        load_mixture("broken")
    issue = info.value.issues[0]
    assert message in issue.message and issue.key_path.startswith(key)
    if line:
        assert (issue.file, issue.line) == (str(path.resolve()), line)


def test_circular_extends_is_an_error(tmp_path: Path) -> None:
    _write(tmp_path / "a.yaml", "extends: b.yaml\n")
    _write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(SpecError, match="circular extends"):
        load_mixture(tmp_path / "a.yaml")


def test_one_mixture_name_in_two_user_folders_is_an_error(tmp_path: Path) -> None:
    for name in ("one", "two"):
        _write(tmp_path / name / "mixtures" / "mine.yaml", USER_MIXTURE.replace("my_rl", "mine"))
    configure([tmp_path / "one", tmp_path / "two"])
    with pytest.raises(SpecError, match="defined twice") as info:
        mixture_files()
    assert str(tmp_path / "one") in str(info.value) and str(tmp_path / "two") in str(info.value)


def test_an_extended_mixture_build_records_its_base_files(tmp_path: Path) -> None:
    specs, data = make_project(tmp_path)
    _write(specs / "mixtures" / "my_rl_small.yaml", "extends: my_rl\ncomponents:\n  shipped_general: {count: 2}\n")
    out = tmp_path / "small"
    built = invoke("--specs", specs, "build", "--mixture", "my_rl_small", "--data-root", data, "--out", out)
    assert built.exit_code == 0, built.output
    manifest = json.loads((out / "manifest.json").read_text(encoding="utf-8"))
    base = manifest["inputs"]["mixture"]["extends"]
    assert [b["path"] for b in base] == [str((specs / "mixtures" / "my_rl.yaml").resolve())]
    assert manifest["mixture"]["name"] == "my_rl_small"
    train = pl.read_parquet(out / "data" / "train.parquet")
    assert (train["task_id"] == "gen_math_basic_arithmetic").sum() == 2


# --- builds carry their specs -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def hidden(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """An rl build made with a user spec folder, whose folder is then moved away (as on another machine)."""
    root = tmp_path_factory.mktemp("hidden")
    specs, data = make_project(root)
    out = root / "build"
    built = invoke("--specs", specs, "build", "--mixture", "my_rl", "--data-root", data, "--out", out)
    assert built.exit_code == 0, built.output
    configure([])
    specs.rename(root / "moved_away")
    assert TASK not in load_catalogue()
    return {"build": out, "data": data, "root": root}


def _rows(build: Path, task_id: str) -> list[dict]:
    return pl.read_parquet(build / "data" / "train.parquet").filter(pl.col("task_id") == task_id).to_dicts()


def _gold(row: dict) -> str:
    return json.loads(row["record"])["label"] if row["task_id"] == TASK else json.loads(row["record"])["answer"]


def test_trl_reward_callable_scores_from_the_frozen_specs(hidden: dict[str, Path]) -> None:
    from snsdata.backends.trl import grpo_dataset
    from snsdata.backends.trl_rewards import reward_funcs

    rows = _rows(hidden["build"], TASK)[:4] + _rows(hidden["build"], QA)[:2]
    reward = reward_funcs(hidden["build"])[0]
    completions = [_gold(r) if i % 2 == 0 else "不知道" for i, r in enumerate(rows)]
    scores = reward(prompts=[r["prompt"] for r in rows], completions=completions,
                    task_id=[r["task_id"] for r in rows], record=[r["record"] for r in rows])
    assert scores == [1.0, 0.0, 1.0, 0.0, 1.0, 0.0]
    assert len(grpo_dataset(hidden["build"])) == 36


def test_verl_compute_score_scores_from_the_exported_specs(hidden: dict[str, Path], tmp_path: Path) -> None:
    from snsdata.backends.verl import compute_score, export_verl

    exported = export_verl(hidden["build"], tmp_path / "verl")
    frame = pl.read_parquet(exported["files"]["train"]).filter(pl.col("data_source") == f"snsdata/{TASK}").head(2)
    specs = str(exported["specs"])
    assert any(o.endswith(f"reward_kwargs.specs={specs}") for o in exported["overrides"])
    for row in frame.to_dicts():
        gold = row["reward_model"]["ground_truth"]
        assert compute_score(row["data_source"], gold, gold, row["extra_info"], specs=specs)["score"] == 1.0
        assert compute_score(row["data_source"], "不知道", gold, row["extra_info"], specs=specs)["score"] == 0.0
    with pytest.raises(KeyError, match=r"reward_kwargs\.specs"):  # not on the search path any more
        compute_score(frame["data_source"][0], "正面", "正面", frame["extra_info"][0])


def test_reward_server_scores_from_the_build(hidden: dict[str, Path]) -> None:
    from snsdata.backends.server import create_server

    rows = _rows(hidden["build"], TASK)[:3]
    items = [{"task_id": TASK, "record_id": r["record_id"], "completion": _gold(r) if i else "不知道"}
             for i, r in enumerate(rows)]
    with create_server(hidden["build"], workers=1) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        assert http.post("/score", json={"items": items}).json()["rewards"] == [0.0, 1.0, 1.0]


def test_diagnose_scores_unscored_rows_from_the_build(hidden: dict[str, Path], tmp_path: Path) -> None:
    rows = _rows(hidden["build"], TASK)
    log = tmp_path / "rollouts.jsonl"
    log.write_text("".join(json.dumps({"task_id": r["task_id"], "record_id": r["record_id"],
                                       "completion": _gold(r) if i % 4 else "不知道"}, ensure_ascii=False) + "\n"
                           for i, r in enumerate(rows)), encoding="utf-8")
    result = invoke("diagnose", log, "--build", hidden["build"], "--out", tmp_path / "d.json", "--json")
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)["tasks"][TASK]
    assert figures["capability"] == "content_understanding" and figures["mean_reward"] == pytest.approx(0.75)


def test_pairs_with_build_read_and_score_the_frozen_specs(hidden: dict[str, Path], tmp_path: Path) -> None:
    rows = _rows(hidden["build"], TASK)[:5]
    wrong = {"正面": "负面", "负面": "中性", "中性": "正面"}
    predictions = tmp_path / "predictions.jsonl"
    predictions.write_text("".join(json.dumps({"task_id": TASK, "record_id": r["record_id"],
                                               "completion": wrong[_gold(r)]}, ensure_ascii=False) + "\n"
                                   for r in rows), encoding="utf-8")
    out = tmp_path / "pairs.jsonl"
    args = ["pairs", "--out", out, "--mixture", "dpo", "--predictions", predictions, "--data-root", hidden["data"]]
    with_build = invoke(*args, "--build", hidden["build"])
    assert with_build.exit_code == 0, with_build.output
    pairs = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert len(pairs) == 5 and {p["task_id"] for p in pairs} == {TASK}
    assert all(p["chosen"][0]["content"] != p["rejected"][0]["content"] for p in pairs)
    without = invoke(*args)  # the folder is gone: the task is not on the search path
    assert without.exit_code == 0 and "0 pairs" in without.output


from test_loop_softlabel import tiny_model  # noqa: E402,F401  (the session fixture: a random 2-layer model)


def test_soft_label_with_build_renders_prompts_from_the_frozen_specs(hidden: dict[str, Path], tmp_path: Path,
                                                                     tiny_model: Path) -> None:  # noqa: F811
    from snsdata.loop.softlabel import soft_label_rows

    mixture = _write(tmp_path / "soft.yaml", f"""\
name: soft
description: "Soft labels for the user's own general task."
format: sft
components:
  - {{name: general_soft, select: {{ids: [{QA}]}}, target: soft_label}}
""")
    out = tmp_path / "soft.jsonl"
    args = ["soft-label", "--model", tiny_model, "--mixture", mixture, "--data-root", hidden["data"], "--out", out,
            "--max-new-tokens", "4"]
    assert invoke(*args).exit_code == 1  # without the build, my_general_qa is unknown
    result = invoke(*args, "--build", hidden["build"])
    assert result.exit_code == 0, result.output
    labels = soft_label_rows(out)
    assert len(labels) == 6 and {r["task_id"] for r in labels} == {QA}


def test_serve_rewards_command_serves_a_build_of_user_specs(hidden: dict[str, Path]) -> None:
    rows = _rows(hidden["build"], QA)[:2]
    env = {k: v for k, v in os.environ.items() if k != ENV_VAR}
    command = [sys.executable, "-m", "snsdata", "serve-rewards", "--build", str(hidden["build"]), "--port", "0",
               "--workers", "1"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=hidden["root"], env=env)
    try:
        assert child.stdout is not None
        url = next(m.group(0) for line in child.stdout if (m := re.search(r"http://127\.0\.0\.1:\d+", line)))
        with httpx.Client(base_url=url, timeout=60.0) as http:
            assert http.get("/health").json()["tasks"] == 3
            items = [{"task_id": QA, "record_id": r["record_id"], "completion": c}
                     for r, c in zip(rows, [_gold(rows[0]), "wrong"], strict=True)]
            assert http.post("/score", json={"items": items}).json()["rewards"] == [1.0, 0.0]
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0


# --- snsdata init -----------------------------------------------------------------------------------------------


def test_init_writes_a_project_that_validates_renders_and_builds_unedited(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    project = tmp_path / "proj"
    result = invoke("init", project)
    assert result.exit_code == 0, result.output
    spec = project / "specs" / f"{TASK}.yaml"
    assert spec.read_text(encoding="utf-8").startswith("# yaml-language-server: $schema=task_spec.schema.json\n")
    assert json.loads((project / "specs" / "task_spec.schema.json").read_text()) == spec_json_schema()
    monkeypatch.chdir(project)
    validated = invoke("validate", "specs", "--data-root", "data")
    assert validated.exit_code == 0, validated.output
    assert "33 records read, rendered and gold-checked" in validated.output
    rendered = invoke("render", TASK, "-n", "1", "--json")
    assert rendered.exit_code == 0, rendered.output
    listed = invoke("mixtures")
    assert "comment_sentiment_rl" in listed.output
    built = invoke("build", "--mixture", "comment_sentiment_rl", "--out", "builds/starter")
    assert built.exit_code == 0, built.output
    train = pl.read_parquet(project / "builds" / "starter" / "data" / "train.parquet")
    assert dict(train.group_by("task_id").len().rows()) == {TASK: 24, "gen_math_basic_arithmetic": 24}
    eval_rows = pl.read_parquet(project / "builds" / "starter" / "data" / "eval.parquet")
    assert (eval_rows["task_id"] == TASK).sum() == 9


def test_init_refuses_to_overwrite_unless_forced(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "snsdata.toml").write_text("# mine\n", encoding="utf-8")
    refused = invoke("init", project)
    assert refused.exit_code == 1 and "already exist" in refused.output and "snsdata.toml" in refused.output
    assert sorted(p.name for p in project.rglob("*")) == ["snsdata.toml"]  # nothing written
    assert (project / "snsdata.toml").read_text() == "# mine\n"
    forced = invoke("init", project, "--force")
    assert forced.exit_code == 0, forced.output
    assert "specs = [\"specs\"]" in (project / "snsdata.toml").read_text()
