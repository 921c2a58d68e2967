"""The TRL reward callable: dispatch by task, record rebuilding, None for other tasks, logging, deadlines."""

from __future__ import annotations

import json
import pickle
import threading
import time
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from snsdata.backends.trl_rewards import SnsdataReward, reward_funcs, run_with_deadline
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
                trainer_state=object(), log_extra=lambda column, values: None, **cols, **extra)


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


class _SlowScorer:
    def details(self, completions: list[Any], records: list[Any], lengths: Any = None) -> list[Any]:
        time.sleep(2)
        raise AssertionError("should have been abandoned")


def test_deadline_scores_zero_and_counts_timeouts_off_the_main_thread() -> None:
    func = SnsdataReward({t: specs()[t] for t in ("fx_label", "fx_number")}, timeout_s=0.5, workers=2)
    func._scorers["fx_number"] = _SlowScorer()  # type: ignore[assignment]
    label, number = rows("fx_label")[0], rows("fx_number")[0]
    logged: dict[str, float] = {}
    result: list[Any] = []

    def run() -> None:  # a trainer's async loop calls rewards off the main thread: no signals allowed
        result.extend(trl_call(func, ["Food", "4"], columns([label, number]),
                               log_metric=lambda n, v: logged.__setitem__(n, v)))

    started = time.monotonic()
    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    assert time.monotonic() - started < 1.5
    assert result == [1.0, 0.0]
    assert func.stats["fx_number"].timeouts == 1
    assert logged["snsdata/fx_number/timeouts"] == 1.0


def test_run_with_deadline() -> None:
    def boom() -> None:
        raise ValueError("x")

    out = run_with_deadline([lambda: 1, boom, lambda: time.sleep(1)], workers=3, timeout_s=0.3)
    assert out[0] == 1 and isinstance(out[1], ValueError) and out[2] is None
    assert run_with_deadline([], 2, 1.0) == []
