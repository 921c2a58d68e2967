"""`snsdata export` (a build for verl, LLaMA-Factory or OpenRLHF) and `snsdata serve-rewards` (the reward server)."""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from snsdata.cli.app import app

console = Console()
err_console = Console(stderr=True)

BuildDir = Annotated[Path, typer.Option("--build", help="A build directory (`snsdata build --out DIR`).",
                                        exists=True, file_okay=False)]


class Target(StrEnum):
    verl = "verl"
    llamafactory = "llamafactory"
    openrlhf = "openrlhf"


@app.command()
def export(
    build: BuildDir,
    to: Annotated[Target, typer.Option("--to", help="The trainer to export for.")],
    out: Annotated[Path, typer.Option("--out", help="Output directory.")],
    name: Annotated[str | None, typer.Option(help="Dataset name for LLaMA-Factory (default: the build's name).")]
    = None,
) -> None:
    """Write a build in a trainer's own format: verl RL Parquet, LLaMA-Factory JSONL + dataset_info.json, or
    OpenRLHF prompts with JSON labels for `serve-rewards`."""
    from snsdata.backends.trl import BuildError

    try:
        if to is Target.verl:
            from snsdata.backends.verl import export_verl

            result = export_verl(build, out)
            for split, path in result["files"].items():
                console.print(f"{split}: {path}", highlight=False)
            console.print("verl overrides:\n  " + " \\\n  ".join(result["overrides"]), highlight=False, soft_wrap=True)
        elif to is Target.llamafactory:
            from snsdata.backends.llamafactory import export_llamafactory

            entries = export_llamafactory(build, out, name)
            console.print(f"{out / 'dataset_info.json'}: datasets {', '.join(entries)}", highlight=False)
        else:
            from snsdata.backends.server import export_openrlhf

            for split, path in export_openrlhf(build, out).items():
                console.print(f"{split}: {path}", highlight=False)
            console.print("OpenRLHF: --data.input_key input --data.label_key label --data.apply_chat_template "
                          "--reward.remote_url http://127.0.0.1:PORT/get_reward", highlight=False, soft_wrap=True)
    except BuildError as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("serve-rewards")
def serve_rewards(
    build: BuildDir,
    host: Annotated[str, typer.Option(help="Address to bind; keep loopback unless the network is trusted.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(help="Scoring processes.")] = max(1, os.cpu_count() or 1),
    chunk_size: Annotated[int, typer.Option(help="Rows per scoring task; a batch's chunks run in parallel.")] = 256,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it gets 504.")] = 60.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413 above).")] = 64.0,
    max_items: Annotated[int, typer.Option(help="Most samples per request (413 above).")] = 65_536,
    max_pending: Annotated[int, typer.Option(help="Requests scored or queued at once (503 above).")] = 64,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request.")] = False,
) -> None:
    """Serve the build's rewards over HTTP: POST /score, POST /get_reward (OpenRLHF), GET /health."""
    from snsdata.backends.server import Limits, create_server
    from snsdata.backends.trl import BuildError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s")
    limits = Limits(max_body_bytes=int(max_body_mb * 1024 * 1024), max_items=max_items, timeout_s=timeout,
                    max_pending=max_pending)
    try:
        server = create_server(build, host, port, workers=workers, chunk_size=chunk_size, limits=limits)
    except (BuildError, OSError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    console.print(f"serving {len(server.service.specs)} tasks of {build} at {server.url} "
                  f"({workers} workers); POST /score, POST /get_reward, GET /health", highlight=False, soft_wrap=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        console.print("stopped")
