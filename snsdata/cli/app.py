"""The typer application every command module registers on, its global options (the spec search path), and the
one place errors become exit codes.

Exit codes, for every command: 0 ok, 1 invalid input (a spec, a data or prediction file, an option value; the
message names the file and the line, record or key), 2 usage (an unknown option, a missing argument), 3 an
internal error (a bug: one line on the terminal, the traceback in a log file under `SNSDATA_LOG_DIR`, default
`~/.cache/snsdata/logs`).
"""

from __future__ import annotations

import datetime
import os
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from typer.core import TyperGroup

from snsdata.spec import SpecError, configure, search_path
from snsdata.spec.errors import InvalidInput

EXIT_OK, EXIT_INVALID_INPUT, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 3


def log_dir() -> Path:
    """Where internal-error logs go: `$SNSDATA_LOG_DIR`, else the user's cache folder."""
    if os.environ.get("SNSDATA_LOG_DIR"):
        return Path(os.environ["SNSDATA_LOG_DIR"])
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "snsdata" / "logs"


def write_crash_log(exc: BaseException) -> Path:
    """The traceback of an unexpected error, with the command line and versions, in a fresh log file."""
    import snsdata

    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    text = (f"snsdata {snsdata.__version__}, Python {sys.version.split()[0]}\n"
            f"command: {' '.join(sys.argv)}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    for folder in (log_dir(), Path(tempfile.gettempdir()) / "snsdata-logs"):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            path = folder / f"snsdata-{stamp}-{os.getpid()}.log"
            path.write_text(text, encoding="utf-8")
            return path
        except OSError:
            continue
    raise OSError("no writable folder for the crash log")


def _input_error_types() -> tuple[type[BaseException], ...]:
    """Input errors that predate `InvalidInput` or come from libraries, named here so they exit 1 too."""
    from pydantic import ValidationError
    from yaml import YAMLError

    return (InvalidInput, ValidationError, YAMLError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError)


class SnsdataGroup(TyperGroup):
    """The root command: runs a command and turns whatever escapes it into one line and an exit code."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        standalone = kwargs.get("standalone_mode", True)
        try:
            return super().main(*args, **kwargs)
        except Exception as exc:
            if not standalone:
                raise
            code = report(exc)
        sys.exit(code)


def report(exc: BaseException) -> int:
    """Print an escaped exception for a user and return the exit code it deserves."""
    err = Console(stderr=True)
    if isinstance(exc, _input_error_types()):
        for line in str(exc).splitlines() or [type(exc).__name__]:
            err.print(f"[red]error[/red] {escape(line)}", highlight=False, soft_wrap=True)
        return EXIT_INVALID_INPUT
    first = (str(exc).splitlines() or [""])[0][:300]
    try:
        where = f"the traceback is in {write_crash_log(exc)}"
    except OSError:
        where = "no log could be written"
    err.print(f"[red]internal error[/red] {type(exc).__name__}: {escape(first)} (a bug in snsdata; {escape(where)})",
              highlight=False, soft_wrap=True)
    return EXIT_INTERNAL


app = typer.Typer(
    name="snsdata",
    help="SNS data into training data and rewards for RedOne / RedOne 2.0 post-training.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=SnsdataGroup,
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
