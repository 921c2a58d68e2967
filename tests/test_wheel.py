"""A non-editable wheel installed into a fresh virtual environment finds its specs and templates."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installs_and_lists_tasks(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "-w", str(tmp_path / "dist"), str(REPO)], check=True, capture_output=True)
    wheel = next((tmp_path / "dist").glob("snsdata-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    top_level = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top_level == {"snsdata"}  # no generic top-level `rewards` or `backends` in site-packages
    assert "snsdata/task_specs/content_understanding/note_taxonomy_single.yaml" in names
    assert "snsdata/templates/sns_bench/note_taxonomy_single.system.txt" in names
    assert "snsdata/rewards/__init__.py" in names and "snsdata/backends/__init__.py" in names

    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    with zipfile.ZipFile(wheel) as archive:  # what `pip install --no-deps` lays out for a pure wheel
        archive.extractall(site)
    # Dependencies come from this environment, appended after the new site-packages so the wheel wins.
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = ("import json, snsdata, snsdata.rewards, snsdata.spec as s; from snsdata.cli.app import app; "
              "import snsdata.cli; print(json.dumps([snsdata.__file__, sorted(s.load_catalogue())]))")
    out = subprocess.run([str(python), "-c", script], check=True, capture_output=True, text=True, cwd=tmp_path,
                         env={k: v for k, v in os.environ.items() if k not in {"PYTHONPATH"}})
    location, task_ids = json.loads(out.stdout)
    assert location.startswith(str(site))
    assert {"note_taxonomy_single", "redtrans_en2zh"} <= set(task_ids)
