"""Command line: each module registers its commands on `app`; they parse, call one function, print."""

from snsdata.cli import tasks  # noqa: F401  (registers commands)
from snsdata.cli.app import app

__all__ = ["app"]
