"""A non-editable wheel installed into a fresh virtual environment finds its specs and templates, and runs a user's
own spec folder and data outside the package through every command that takes specs."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import sysconfig
import urllib.request
import venv
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    site: Path

    def run(self, *args: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SNSDATA_SPECS"}}
        return subprocess.run([str(self.python), *map(str, args)], check=check, capture_output=True, text=True,
                              cwd=cwd, env=env)


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    tmp_path = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("snsdata-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:  # what `pip install --no-deps` lays out for a pure wheel
        archive.extractall(site)
    # Dependencies come from this environment, appended after the new site-packages so the wheel wins.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    return Installed(wheel, python, site)


@pytest.mark.slow
def test_wheel_installs_and_lists_tasks(installed: Installed, tmp_path: Path) -> None:
    names = zipfile.ZipFile(installed.wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"snsdata"}  # no generic top-level `rewards` or `backends` in site-packages
    assert "snsdata/task_specs/content_understanding/note_taxonomy_single.yaml" in names
    assert "snsdata/templates/sns_bench/note_taxonomy_single.system.txt" in names
    assert "snsdata/rewards/__init__.py" in names and "snsdata/backends/__init__.py" in names
    assert "snsdata/starter/files/specs/comment_sentiment_zh.yaml" in names
    script = ("import json, snsdata, snsdata.rewards, snsdata.spec as s; from snsdata.cli.app import app; "
              "import snsdata.cli; print(json.dumps([snsdata.__file__, sorted(s.load_catalogue())]))")
    out = installed.run("-c", script, cwd=tmp_path)
    location, task_ids = json.loads(out.stdout)
    assert location.startswith(str(installed.site))
    assert {"note_taxonomy_single", "redtrans_en2zh"} <= set(task_ids)


@pytest.mark.slow
def test_wheel_runs_a_spec_folder_and_data_outside_the_package(installed: Installed, tmp_path: Path) -> None:
    """`snsdata init` output (spec folder, mixture, data, snsdata.toml) through validate, render, tasks show, build,
    eval; then, with the spec folder gone, the TRL reward callable and serve-rewards score from the build."""
    project, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    elsewhere.mkdir()
    snsdata = ("-m", "snsdata")
    installed.run(*snsdata, "init", project, cwd=tmp_path)
    task = "comment_sentiment_zh"

    validated = installed.run(*snsdata, "validate", "specs", "--data-root", "data", cwd=project)
    assert "33 records read, rendered and gold-checked" in validated.stdout
    rendered = json.loads(installed.run(*snsdata, "render", task, "-n", "1", "--json", cwd=project).stdout)
    assert rendered[0]["target"] == "正面" and rendered[0]["messages"][0]["role"] == "system"
    # The global option from a directory without a project file.
    shown = installed.run(*snsdata, "--specs", project / "specs", "tasks", "show", task, cwd=elsewhere)
    assert json.loads(shown.stdout)["id"] == task
    assert installed.run(*snsdata, "tasks", "show", task, cwd=elsewhere, check=False).returncode == 1

    build = project / "builds" / "rl"
    installed.run(*snsdata, "build", "--mixture", "comment_sentiment_rl", "--out", build, cwd=project)
    manifest = json.loads((build / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["tasks"][task]["capability"] == "content_understanding"

    predictions = tmp_path / "predictions.jsonl"
    test_rows = [json.loads(line) for line in (project / "data" / "comment_sentiment" / "test.jsonl").open()]
    answers = [row["sentiment"] for row in test_rows]
    answers[0] = "负面" if answers[0] != "负面" else "正面"
    predictions.write_text("".join(json.dumps({"prediction": a}, ensure_ascii=False) + "\n" for a in answers),
                           encoding="utf-8")
    evaluated = installed.run(*snsdata, "eval", "--task", task, "--predictions", predictions, "--split", "test",
                              "--json", cwd=project)
    assert json.loads(evaluated.stdout)["mean_reward"] == pytest.approx(8 / 9)

    (project / "specs").rename(tmp_path / "gone")
    (project / "snsdata.toml").unlink()
    script = f"""
import json, polars as pl
from snsdata.backends.trl_rewards import reward_funcs
rows = pl.read_parquet({str(build / "data" / "train.parquet")!r}).filter(pl.col("task_id") == {task!r}).head(4)
golds = [json.loads(r)["label"] for r in rows["record"]]
reward = reward_funcs({str(build)!r})[0]
print(json.dumps(reward(prompts=rows["prompt"].to_list(), completions=[golds[0], "不知道", golds[2], golds[3]],
                        task_id=rows["task_id"].to_list(), record=rows["record"].to_list())))
"""
    assert json.loads(installed.run("-c", script, cwd=elsewhere).stdout) == [1.0, 0.0, 1.0, 1.0]

    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "SNSDATA_SPECS"}}
    child = subprocess.Popen([str(installed.python), *snsdata, "serve-rewards", "--build", str(build), "--port", "0",
                              "--workers", "1"], stdout=subprocess.PIPE, text=True, cwd=elsewhere, env=env)
    try:
        assert child.stdout is not None
        url = next(m.group(0) for line in child.stdout if (m := re.search(r"http://127\.0\.0\.1:\d+", line)))
        record = {"text": "排队一小时", "label": "负面", "title": None}
        items = [{"task_id": task, "completion": c, "record": record} for c in ("负面", "正面")]
        request = urllib.request.Request(url + "/score", data=json.dumps({"items": items}).encode(),
                                         headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            assert json.loads(response.read())["rewards"] == [1.0, 0.0]
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
