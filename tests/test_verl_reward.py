"""verl's reward loop: `compute_score_async` batches concurrent rows by task, every form is bounded in time on any
thread, every row's reward_extra_info carries the same keys, and the export prints each verl version's overrides."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_backend_exports import VERL_FILE
from test_backends import samples, write_build
from typer.testing import CliRunner

import snsdata.backends.verl as verl_module
import snsdata.cli.backends  # noqa: F401  (registers export)
from snsdata.backends.verl import export_verl, uses_reward_loop, verl_overrides
from snsdata.cli.app import app
from snsdata.rewards.scorer import Scorer
from snsdata.spec import load_catalogue
from snsdata.spec.errors import InvalidInput

EXTRA_KEYS = {"score", "task_score", "reward_applies", "timed_out"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("verl_reward")
    result = export_verl(write_build(root / "rl", "rl"), root / "out")
    rows = pq.read_table(result["files"]["train"]).to_pylist() + pq.read_table(result["files"]["eval"]).to_pylist()
    return {"rows": rows, "specs": str(result["specs"])}


def verl_module_file() -> ModuleType:
    """The module as verl's `load_extern_object` imports it: standalone, from its path (own caches, batchers)."""
    spec = importlib.util.spec_from_file_location("custom_module", VERL_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def solutions(rows: list[dict]) -> list[str]:
    gold = {s["record_id"]: s for s in samples()}
    return [gold[r["extra_info"]["record_id"]]["gold" if i % 3 else "wrong"] for i, r in enumerate(rows)]


def reward_loop(fn: Callable[..., Any], rows: list[dict], texts: list[str], **reward_kwargs: Any) -> list[dict]:
    """What verl's RewardLoopWorker.compute_score_batch does with a coroutine reward: one call per row, all
    started at once on the worker's event loop, `reward_kwargs` merged into each call."""

    async def main() -> list[dict]:
        return await asyncio.gather(*[
            fn(data_source=row["data_source"], solution_str=text, ground_truth=row["reward_model"]["ground_truth"],
               extra_info=dict(row["extra_info"]), **reward_kwargs)
            for row, text in zip(rows, texts, strict=True)])

    return asyncio.run(main())


class CountingScorer:
    """Records the size of every batch a real scorer is asked for."""

    def __init__(self, scorer: Scorer, sizes: list[tuple[str, int]]):
        self.scorer, self.sizes = scorer, sizes

    def details(self, completions: list[Any], records: list[Any], lengths: Any = None) -> list[Any]:
        self.sizes.append((self.scorer.task_id, len(completions)))
        return self.scorer.details(completions, records, lengths)


class BlockedScorer:
    """A scorer stuck until released (a parser that hangs): only a deadline gets its rows back."""

    def __init__(self, release: threading.Event):
        self.release = release

    def details(self, completions: list[Any], records: list[Any], lengths: Any = None) -> list[Any]:
        self.release.wait(30)
        from snsdata.rewards.types import ScoreDetail

        return [ScoreDetail(1.0)] * len(completions)


def test_concurrent_rows_are_scored_as_one_batch_per_task_with_per_row_scores(
        exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rows, specs = exported["rows"], exported["specs"]
    texts = solutions(rows)
    module = verl_module_file()
    per_row = [module.compute_score(r["data_source"], t, r["reward_model"]["ground_truth"], r["extra_info"],
                                    specs=specs) for r, t in zip(rows, texts, strict=True)]
    sizes: list[tuple[str, int]] = []
    real = module._scorer
    monkeypatch.setattr(module, "_scorer", lambda *args: CountingScorer(real(*args), sizes))
    assert reward_loop(module.compute_score_async, rows, texts, specs=specs) == per_row
    tasks = {r["extra_info"]["task_id"] for r in rows}
    assert sorted(sizes) == sorted((t, sum(r["extra_info"]["task_id"] == t for r in rows)) for t in tasks)
    assert len({r["score"] for r in per_row}) > 1

    gender = [r for r in rows if r["extra_info"]["task_id"] == "note_gender"]
    expected = [module.compute_score(r["data_source"], "Yes", "", r["extra_info"], specs=specs) for r in gender]
    sizes.clear()  # a task's held rows go as soon as batch_rows of them have arrived
    got = reward_loop(module.compute_score_async, gender, ["Yes"] * len(gender), specs=specs, batch_rows=3)
    assert got == expected and [n for _, n in sizes] == [3, 3, 2]


def test_every_row_carries_the_same_extra_keys_and_the_raw_metric_apart(exported: dict[str, Any]) -> None:
    rows, specs = exported["rows"], exported["specs"]
    translation = next(r for r in rows if r["extra_info"]["task_id"] == "redtrans_en2zh")
    record = json.loads(translation["extra_info"]["record"])
    echo = f"{record['zh']} {record['en']}"  # the right translation with the English source echoed after it
    texts = [*solutions(rows), echo]
    results = reward_loop(verl_module.compute_score_async, [*rows, translation], texts, specs=specs)
    # verl's naive and dapo managers copy the result dict into reward_extra_info and stack each key over rows
    assert all(set(r) == EXTRA_KEYS and all(isinstance(v, float) for v in r.values()) for r in results)
    detail = Scorer(load_catalogue()["redtrans_en2zh"]).details([echo], [record])[0]
    shaped = results[-1]
    assert shaped["score"] == pytest.approx(detail.score) and shaped["task_score"] == pytest.approx(detail.task_score)
    assert shaped["task_score"] > shaped["score"]  # the echo penalty is shaping: not part of the task's metric
    assert (shaped["reward_applies"], shaped["timed_out"]) == (1.0, 0.0)
    assert verl_module.compute_score("snsdata/note_gender", "Yes", "Yes", None) == {
        "score": 0.0, "task_score": 0.0, "reward_applies": 0.0, "timed_out": 0.0}


TIMED_OUT = {"score": 0.0, "task_score": 0.0, "reward_applies": 0.0, "timed_out": 1.0}


def test_a_hung_task_times_out_in_a_worker_thread_and_the_others_score(
        exported: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    rows, specs = exported["rows"], exported["specs"]
    texts = solutions(rows)
    expected = [verl_module.compute_score(r["data_source"], t, "", r["extra_info"], specs=specs)
                for r, t in zip(rows, texts, strict=True)]
    release = threading.Event()
    real = verl_module._scorer
    monkeypatch.setattr(verl_module, "_scorer", lambda task_id, *rest: (
        BlockedScorer(release) if task_id == "note_gender" else real(task_id, *rest)))
    hung = [r["extra_info"]["task_id"] == "note_gender" for r in rows]
    want = [TIMED_OUT if h else e for h, e in zip(hung, expected, strict=True)]
    try:
        # the reward loop's event loop runs in a Ray actor's thread, never the main thread: no SIGALRM there
        with ThreadPoolExecutor(1) as pool:
            got = pool.submit(reward_loop, verl_module.compute_score_async, rows, texts, specs=specs,
                              timeout_s=0.3).result()
            assert got == want
            # the synchronous forms, from the threads verl's managers call them in
            batch = pool.submit(verl_module.compute_score, data_sources=[r["data_source"] for r in rows],
                                solution_strs=texts, ground_truths=[""] * len(rows),
                                extra_infos=[r["extra_info"] for r in rows], specs=specs, timeout_s=0.3).result()
            assert batch == want
            single = pool.submit(verl_module.compute_score, rows[0]["data_source"], texts[0], "",
                                 rows[0]["extra_info"], specs=specs, timeout_s=0.3).result()
            assert single == want[0]
    finally:
        release.set()


def test_async_unknown_task_fails_loudly(exported: dict[str, Any]) -> None:
    rows = exported["rows"][:1]
    row = {**rows[0], "data_source": "snsdata/no_such_task",
           "extra_info": {**rows[0]["extra_info"], "task_id": "no_such_task"}}
    with pytest.raises(KeyError, match=r"reward_kwargs\.specs"):
        reward_loop(verl_module.compute_score_async, [row], ["x"], specs=exported["specs"])


# --- overrides per verl version -------------------------------------------------------------------------------------


def test_overrides_follow_the_verl_version(tmp_path: Path) -> None:
    specs = tmp_path / "specs.json"
    for version in ("0.9.1", "0.8.0", "0.7.1", "0.10.0"):
        overrides = verl_overrides(specs, version, "t.parquet", "e.parquet")
        assert f"reward.custom_reward_function.path={VERL_FILE}" in overrides
        assert "reward.custom_reward_function.name=compute_score_async" in overrides
        assert f"+reward.custom_reward_function.reward_kwargs.specs={specs.resolve()}" in overrides
        assert not any("reward_manager" in o or o.startswith("custom_reward_function") for o in overrides)
    legacy = verl_overrides(specs, "0.6.1")
    assert legacy[:4] == [f"custom_reward_function.path={VERL_FILE}", "custom_reward_function.name=compute_score",
                          f"+custom_reward_function.reward_kwargs.specs={specs.resolve()}",
                          "reward_model.reward_manager=batch"]
    assert not any(o.startswith("reward.") or o.startswith("data.train_files") for o in legacy)
    assert uses_reward_loop(None)
    with pytest.raises(InvalidInput, match=r"MAJOR\.MINOR"):
        uses_reward_loop("latest")


def test_cli_prints_the_installed_versions_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    rl = write_build(tmp_path / "rl", "rl")
    monkeypatch.setattr(verl_module, "installed_verl_version", lambda: "0.6.1")
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "verl", "--out", str(tmp_path / "a")])
    assert result.exit_code == 0, result.output
    assert "overrides for verl 0.6.1 (installed)" in result.output
    assert "reward_model.reward_manager=batch" in result.output
    monkeypatch.setattr(verl_module, "installed_verl_version", lambda: None)
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "verl", "--out", str(tmp_path / "b")])
    assert "verl >= 0.7" in result.output and "name=compute_score_async" in result.output
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "verl", "--out", str(tmp_path / "c"),
                                 "--verl-version", "0.8.0"])
    assert "overrides for verl 0.8.0:" in result.output and "reward.custom_reward_function.name" in result.output
    result = runner.invoke(app, ["export", "--build", str(rl), "--to", "verl", "--out", str(tmp_path / "d"),
                                 "--verl-version", "main"])
    assert result.exit_code == 1 and "MAJOR.MINOR" in result.output
