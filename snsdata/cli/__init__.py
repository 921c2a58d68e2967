"""Command line: each module registers its commands on `app`; they parse, call one function, print."""

from snsdata.cli import backends, build, catalogue, init, loop, pipeline, rewards, tasks  # noqa: F401  (register commands)
from snsdata.cli.app import app

__all__ = ["app"]
