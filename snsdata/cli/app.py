"""The typer application every command module registers on, and its global options (the spec search path)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from snsdata.spec import SpecError, configure, search_path

app = typer.Typer(
    name="snsdata",
    help="SNS data into training data and rewards for RedOne / RedOne 2.0 post-training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

SPEC_FREE_COMMANDS = frozenset({"init", "schema"})
"""Commands that read no specs: a broken search path does not stop them."""


@app.callback()
def main(
    ctx: typer.Context,
    specs: Annotated[list[Path] | None, typer.Option(
        "--specs", metavar="DIR",
        help="A folder of your own task specs (and mixtures/); repeatable. Added to the shipped catalogue, with "
             "SNSDATA_SPECS and snsdata.toml's `specs` (docs/writing_a_task.md).")] = None,
) -> None:
    """SNS data into training data and rewards for RedOne / RedOne 2.0 post-training."""
    configure(specs or [])
    if ctx.invoked_subcommand in SPEC_FREE_COMMANDS:
        return
    try:
        search_path()
    except SpecError as exc:
        err = Console(stderr=True)
        for issue in exc.issues:
            err.print(f"[red]error[/red] {issue}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
