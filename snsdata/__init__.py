"""snsdata: SNS data into training data and rewards for RedOne / RedOne 2.0 post-training."""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"


def evaluate(task_id: str, records: list[dict], predictions: list[str], compat: str = "fixed", **kwargs: Any) -> dict:
    """Corpus evaluation of predictions against records (see `snsdata.rewards.evaluate`).

    Imported lazily so that `import snsdata` stays light inside a trainer process.
    """
    from snsdata.rewards import evaluate as _evaluate

    return _evaluate(task_id, records, predictions, compat=compat, **kwargs)
