"""Command line: each module registers its commands on `app`; they parse, call one function, print."""

from snsdata.cli import (  # noqa: F401  (register commands)
    backends,
    build,
    catalogue,
    decontaminate,
    init,
    loop,
    pipeline,
    rewards,
    tasks,
)
from snsdata.cli.app import app

__all__ = ["app"]
