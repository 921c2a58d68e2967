"""`snsdata init DIR`: a starter spec folder, data and project file outside the package."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from snsdata.cli.app import app

console = Console()
err_console = Console(stderr=True)


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to write the starter project into (created if needed).")],
    force: Annotated[bool, typer.Option("--force", help="Overwrite files that already exist.")] = False,
) -> None:
    """Write a starter project: snsdata.toml, a task spec (with its JSON Schema), a mixture and data, ready to build."""
    from snsdata.starter import StarterExists, write_starter

    try:
        written = write_starter(directory, force=force)
    except StarterExists as exc:
        err_console.print(f"[red]error[/red] {len(exc.paths)} file(s) already exist; nothing written (--force "
                          "overwrites):", highlight=False)
        for path in exc.paths:
            err_console.print(f"  {path}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for path in written:
        console.print(f"wrote {path}", highlight=False, soft_wrap=True)
    console.print(f"\nNext, in {directory} (snsdata.toml there points every command at specs/ and data/):\n"
                  "  snsdata validate specs --data-root data\n"
                  "  snsdata render comment_sentiment_zh -n 2\n"
                  "  snsdata build --mixture comment_sentiment_rl --out builds/comment_sentiment_rl\n"
                  "Guide: docs/writing_a_task.md", highlight=False, soft_wrap=True)
