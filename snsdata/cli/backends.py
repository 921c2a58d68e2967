"""`snsdata export` (a build for verl, LLaMA-Factory or OpenRLHF) and `snsdata serve-rewards` (the reward server)."""

from __future__ import annotations

import contextlib
import logging
import os
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from snsdata.cli.app import app

TOKEN_ENV = "SNSDATA_REWARD_TOKEN"

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
    verl_version: Annotated[str | None, typer.Option(
        help="verl version to print overrides for (default: the installed verl; without one, verl >= 0.7's).")]
    = None,
) -> None:
    """Write a build in a trainer's own format: verl RL Parquet, LLaMA-Factory JSONL + dataset_info.json, or
    OpenRLHF prompts with JSON labels for `serve-rewards`."""
    from snsdata.spec.errors import InvalidInput

    try:
        if to is Target.verl:
            from snsdata.backends.verl import export_verl

            result = export_verl(build, out, verl_version)
            for split, path in result["files"].items():
                console.print(f"{split}: {path}", highlight=False)
            version = result["verl_version"]
            which = (f"verl {version}" + (" (installed)" if verl_version is None else "") if version
                     else "verl >= 0.7 (no verl installed here; --verl-version picks another)")
            console.print(f"overrides for {which}:\n  " + " \\\n  ".join(result["overrides"]), highlight=False,
                          soft_wrap=True)
        elif to is Target.llamafactory:
            from snsdata.backends.llamafactory import export_llamafactory

            entries = export_llamafactory(build, out, name)
            console.print(f"{out / 'dataset_info.json'}: datasets {', '.join(entries)}", highlight=False)
            args_file = out / f"{name or build.resolve().name}_args.yaml"
            console.print(f"put these data arguments ({args_file}) in the LLaMA-Factory config:\n"
                          + args_file.read_text(encoding="utf-8"), highlight=False, soft_wrap=True, markup=False)
        else:
            from snsdata.backends.server import export_openrlhf

            for split, path in export_openrlhf(build, out).items():
                console.print(f"{split}: {path}", highlight=False)
            console.print("OpenRLHF: --data.input_key input --data.label_key label --data.apply_chat_template "
                          "--reward.remote_url http://127.0.0.1:PORT/get_reward", highlight=False, soft_wrap=True)
    except InvalidInput as exc:  # a build that does not fit the trainer, a malformed --verl-version
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


@app.command("serve-rewards")
def serve_rewards(
    build: BuildDir,
    host: Annotated[str, typer.Option(help="Address to bind; keep loopback unless the network is trusted.")]
    = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8000,
    workers: Annotated[int, typer.Option(help="Processes scoring exact, metric and pattern rewards.")]
    = max(1, os.cpu_count() or 1),
    sandbox_workers: Annotated[int, typer.Option(help="Processes running sandboxed code rewards (their own pool).")]
    = 1,
    chunk_size: Annotated[int, typer.Option(help="Rows per scoring task; a batch's chunks run in parallel.")] = 256,
    timeout: Annotated[float, typer.Option(help="Seconds a request may take before it gets 504.")] = 60.0,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body in MiB (413 above).")] = 64.0,
    max_items: Annotated[int, typer.Option(help="Most samples per request (413 above).")] = 65_536,
    max_completion_chars: Annotated[int, typer.Option(help="Longest completion (413 above).")] = 1 << 20,
    memory_mb: Annotated[float, typer.Option(help="Memory all requests together may hold for their bodies and "
                                                  "parsed forms (503 above; more than twice "
                                                  "--max-body-mb).")] = 160.0,
    max_connections: Annotated[int, typer.Option(help="Connections served at once (more get 503).")] = 256,
    sandbox_queue: Annotated[int, typer.Option(help="Sandbox rows queued or running at once (503 above).")] = 2_048,
    sandbox_cpu_weight: Annotated[float, typer.Option(help="CPU weight of the sandbox pool relative to the cheap "
                                                           "pool's, where the host allows cpu cgroups: low keeps "
                                                           "sandboxed code from slowing cheap rewards.")] = 0.125,
    token: Annotated[str | None, typer.Option(envvar=TOKEN_ENV, show_envvar=True,
                                              help="Shared secret every request but GET /health must carry "
                                                   "(`Authorization: Bearer TOKEN` or `?token=TOKEN`); prefer "
                                                   "the environment variable, which `ps` does not show.")] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every request.")] = False,
) -> None:
    """Serve the build's rewards over HTTP: POST /score, POST /get_reward (OpenRLHF), GET /health."""
    from snsdata.backends.server import Limits, create_server
    from snsdata.backends.trl import BuildError

    logging.basicConfig(level=logging.DEBUG if verbose else logging.INFO, format="%(asctime)s %(message)s")
    try:
        limits = Limits(max_body_bytes=int(max_body_mb * 2**20), max_items=max_items, timeout_s=timeout,
                        max_completion_chars=max_completion_chars, memory_budget_bytes=int(memory_mb * 2**20),
                        max_connections=max_connections, sandbox_queue_rows=sandbox_queue)
        server = create_server(build, host, port, workers=workers, chunk_size=chunk_size, limits=limits,
                               sandbox_workers=sandbox_workers, sandbox_cpu_weight=sandbox_cpu_weight,
                               token=token or None)
    except (BuildError, OSError, ValueError, RuntimeError) as exc:
        err_console.print(f"[red]error[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None
    pools = ", ".join(f"{kind} {pool.config.workers}" for kind, pool in server.service.pools.items())
    console.print(f"serving {len(server.service.specs)} tasks of {build} at {server.url} (workers: {pools}; "
                  f"{'token required' if token else 'no token'}); POST /score, POST /get_reward, GET /health",
                  highlight=False, soft_wrap=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()  # returns on SIGINT or SIGTERM, after stopping the workers and their sandboxes
    console.print("stopped")
