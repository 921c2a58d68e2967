"""The TRL reward callable: dispatch by task, record rebuilding, None for other tasks, logging, deadlines."""

from __future__ import annotations

import asyncio
import inspect
import json
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from snsdata.backends.trl_rewards import AsyncSnsdataReward, SnsdataReward, reward_funcs, run_with_deadline
from snsdata.readers import read_task
from snsdata.rewards.scorer import Scorer
from snsdata.spec import TaskSpec, load_catalogue

FIXTURES = Path(__file__).parent / "fixtures" / "reward_specs"


@cache
def specs() -> dict[str, TaskSpec]:
    return load_catalogue([FIXTURES])


def rows(task_id: str) -> list[dict[str, Any]]:
    return read_task(specs()[task_id], FIXTURES / "data").frame.collect().to_dicts()


def columns(records: list[dict[str, Any]], packed: bool = True) -> dict[str, list[Any]]:
    """Dataset columns as TRL hands them over: task_id/record_id plus a `record` JSON column (or the fields)."""
    out: dict[str, list[Any]] = {"task_id": [r["task_id"] for r in records],
                                 "record_id": [r["record_id"] for r in records]}
    if packed:
        fields = [{k: v for k, v in r.items() if k not in ("task_id", "record_id", "split")} for r in records]
        out["record"] = [json.dumps(f, ensure_ascii=False) for f in fields]
    else:
        for key in sorted({k for r in records for k in r} - {"task_id", "record_id", "split"}):
            out[key] = [r.get(key) for r in records]
    return out


def trl_call(func: Any, completions: list[Any], cols: dict[str, list[Any]], **extra: Any) -> list[float | None]:
    """Call the way GRPOTrainer._calculate_rewards does."""
    return func(prompts=["p"] * len(completions), completions=completions,
                completion_ids=extra.pop("completion_ids", [[1, 2, 3]] * len(completions)),
                trainer_state=object(), log_extra=extra.pop("log_extra", lambda column, values: None), **cols,
                **extra)


def test_mixed_batch_dispatch_strings_and_messages() -> None:
    (func,) = reward_funcs({t: specs()[t] for t in ("fx_label", "fx_labels", "fx_number")})
    label, tags, number = rows("fx_label")[0], rows("fx_labels")[0], rows("fx_number")[0]
    other = {**rows("fx_path")[0]}  # a task this callable does not cover
    records = [label, label, tags, number, other, label]
    completions = [
        "Food",
        [{"role": "assistant", "content": "<think>Travel?</think>**Food**"}],
        '["Hangzhou Travel", "Tea"]',
        [{"role": "assistant", "content": "5"}],
        "Fitness & Weight Loss | Weight Loss | Weight Loss Tutorials",
        "Travel",
    ]
    logged: list[tuple[str, float]] = []
    rewards = trl_call(func, completions, columns(records), log_metric=lambda n, v: logged.append((n, v)))
    assert rewards == [1.0, 1.0, pytest.approx(0.8), 0.75, None, 0.0]
    logged_map = dict(logged)
    assert logged_map["snsdata/fx_label/reward"] == pytest.approx(2 / 3)
    assert logged_map["snsdata/fx_labels/reward"] == pytest.approx(0.8)
    assert logged_map["snsdata/fx_number/parse_rate"] == 1.0
    assert not any("fx_path" in name for name in logged_map)
    direct = Scorer(specs()["fx_label"])(["Food", "Travel"], [label, label])
    assert direct == [rewards[0], rewards[5]]


def test_records_rebuilt_from_individual_columns() -> None:
    (func,) = reward_funcs({"fx_label": specs()["fx_label"]})
    records = rows("fx_label")
    assert trl_call(func, [r["answer"] for r in records], columns(records, packed=False)) == [1.0] * len(records)


def test_rows_without_task_or_record_get_none_or_no_reward() -> None:
    (func,) = reward_funcs({"fx_label": specs()["fx_label"]})
    assert func(prompts=["p"], completions=["Food"]) == [None]  # no task_id column at all
    cols = {"task_id": ["fx_label", None], "record": ["not json", "{}"]}
    assert trl_call(func, ["Food", "Food"], cols) == [None, None]


def test_completion_ids_feed_the_overlong_penalty() -> None:
    (func,) = reward_funcs({"fx_translate": specs()["fx_translate"]})
    record = rows("fx_translate")[1]
    rewards = trl_call(func, [record["en"]] * 2, columns([record, record]),
                       completion_ids=[[0] * 10, [0] * 56])
    assert rewards == [1.0, 0.5]


def test_picklable_and_named() -> None:
    (func,) = reward_funcs({"fx_label": specs()["fx_label"]})
    clone = pickle.loads(pickle.dumps(func))
    assert clone.__name__ == "snsdata"
    record = rows("fx_label")[0]
    assert trl_call(clone, ["Food"], columns([record])) == [1.0]


def test_build_directory_specs_json(tmp_path: Path) -> None:
    frozen = {t: specs()[t].model_dump(mode="json") for t in ("fx_label", "fx_extract")}
    (tmp_path / "specs.json").write_text(json.dumps(frozen), encoding="utf-8")
    (func,) = reward_funcs(tmp_path)
    assert sorted(func.specs) == ["fx_extract", "fx_label"]
    with pytest.raises(FileNotFoundError):
        reward_funcs(tmp_path / "missing")


def test_catalogue_ids() -> None:
    (func,) = reward_funcs(["note_gender"])
    assert list(func.specs) == ["note_gender"]
    with pytest.raises(KeyError):
        reward_funcs(["no_such_task"])


class _BlockedScorer:
    """A scorer stuck until released (a parser that hangs): only the deadline gets its rows back."""

    def __init__(self, release: threading.Event):
        self.release = release

    def details(self, completions: list[Any], records: list[Any], lengths: Any = None) -> list[Any]:
        self.release.wait(30)
        raise AssertionError("should have been abandoned")


@pytest.mark.parametrize("asynchronous", [False, True])
def test_deadline_gives_none_and_counts_timeouts_off_the_main_thread(asynchronous: bool) -> None:
    kind = AsyncSnsdataReward if asynchronous else SnsdataReward
    func = kind({t: specs()[t] for t in ("fx_label", "fx_number")}, timeout_s=0.3, workers=2)
    release = threading.Event()
    func._scorers["fx_number"] = _BlockedScorer(release)  # type: ignore[assignment]
    label, number = rows("fx_label")[0], rows("fx_number")[0]
    logged: dict[str, float] = {}
    extra: dict[str, list[Any]] = {}

    def run() -> list[float | None]:  # TRL calls rewards off the main thread (its async loop): no signals there
        call = trl_call(func, ["Food", "4"], columns([label, number]), log_metric=logged.__setitem__,
                        log_extra=extra.__setitem__)
        return asyncio.run(call) if asynchronous else call

    try:
        with ThreadPoolExecutor(1) as pool:
            result = pool.submit(run).result()
    finally:
        release.set()
    assert result == [1.0, None]  # TRL reads None as "does not apply": no verdict is made up for the row
    assert func.stats["fx_number"].timeouts == 1 and func.stats["fx_number"].scored == 0
    assert logged["snsdata/fx_number/timeouts"] == 1.0 and "snsdata/fx_number/reward" not in logged
    assert extra["snsdata/task_score"] == [1.0, None]


def test_async_callable_equals_the_sync_one_and_trl_awaits_it() -> None:
    chosen = {t: specs()[t] for t in ("fx_label", "fx_labels", "fx_number", "fx_translate")}
    (sync,) = reward_funcs(chosen)
    (coro,) = reward_funcs(chosen, asynchronous=True)
    assert isinstance(coro, AsyncSnsdataReward) and inspect.iscoroutinefunction(type(coro).__call__)
    trl_utils = pytest.importorskip("trl.trainer.utils")
    assert trl_utils.is_async_callable(coro) and not trl_utils.is_async_callable(sync)
    records = [rows("fx_label")[0], rows("fx_label")[0], rows("fx_labels")[0], rows("fx_number")[0],
               rows("fx_path")[0], rows("fx_translate")[1], rows("fx_translate")[1]]
    completions = ["Food", "Travel", '["Hangzhou Travel", "Tea"]', "5", "x", records[5]["en"], records[6]["en"]]
    ids = [[0] * 10] * 6 + [[0] * 56]
    logs: list[dict[str, Any]] = []
    outputs = []
    for func in (sync, coro):
        metrics: dict[str, float] = {}
        extra: dict[str, list[Any]] = {}
        call = trl_call(func, completions, columns(records), completion_ids=ids, log_metric=metrics.__setitem__,
                        log_extra=extra.__setitem__)
        outputs.append(asyncio.run(call) if func is coro else call)
        logs.append({"metrics": metrics, "extra": extra})
    assert outputs[0] == outputs[1] == [1.0, 0.0, pytest.approx(0.8), 0.75, None, 1.0, 0.5]
    assert logs[0] == logs[1]
    assert pickle.loads(pickle.dumps(coro)).__class__ is AsyncSnsdataReward


def test_shaped_reward_and_task_metric_are_logged_apart() -> None:
    (func,) = reward_funcs({"fx_translate": specs()["fx_translate"]})
    record = rows("fx_translate")[1]
    metrics: dict[str, float] = {}
    extra: dict[str, list[Any]] = {}
    rewards = trl_call(func, [record["en"]] * 2, columns([record, record]), completion_ids=[[0] * 10, [0] * 56],
                       log_metric=metrics.__setitem__, log_extra=extra.__setitem__)
    assert rewards == [1.0, 0.5]  # the overlong penalty shapes the second
    assert metrics["snsdata/fx_translate/reward"] == 0.75
    assert metrics["snsdata/fx_translate/task_score"] == 1.0  # both translations are right
    assert extra["snsdata/task_score"] == [1.0, 1.0]


def test_run_with_deadline() -> None:
    def boom() -> None:
        raise ValueError("x")

    out = run_with_deadline([lambda: 1, boom, lambda: time.sleep(1)], workers=3, timeout_s=0.3)
    assert out[0] == 1 and isinstance(out[1], ValueError) and out[2] is None
    assert run_with_deadline([], 2, 1.0) == []
