"""`snsdata catalogue-doc`: write the generated task catalogue (docs/catalogue.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from snsdata.catalogue_doc import catalogue_markdown
from snsdata.cli.app import app


@app.command("catalogue-doc")
def catalogue_doc(
    out: Annotated[Path | None, typer.Option(help="Write to this file (e.g. docs/catalogue.md) instead of stdout.")]
    = None,
) -> None:
    """The task catalogue as Markdown, one table per capability, generated from the specs."""
    text = catalogue_markdown()
    if out:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {out}")
    else:
        typer.echo(text, nl=False)
