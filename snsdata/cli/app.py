"""The typer application every command module registers on."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="snsdata",
    help="SNS data into training data and rewards for RedOne / RedOne 2.0 post-training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
