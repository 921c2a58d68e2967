"""The reward server on loopback versus calling the scorer in-process, side by side in one run.

Both sides score the same 1,024-row batches of a stage-1 build (gold answers, other rows' answers of the same task,
and noise, drawn with a seed). In-process: `TaskScorers.score` called batch after batch in this process, as a
trainer calling its reward inline would. Server: `snsdata.backends.server` in a child process with N scoring
workers (and one sandbox worker for the code task), posted to over keep-alive HTTP by 1 and by C concurrent clients;
twice: with the sandbox pool at its default CPU weight (an eighth of an ordinary group's) and at a full one
(`--sandbox-cpu-weight 1`), which shows what the sandbox's low priority costs when other processes keep the CPUs
busy. One warm-up batch per server is left out (it starts the sandboxes). Reports requests/s, rows/s and p50/p99
latency per request.

Run from the repository root: `python bench/bench_server.py [--build DIR] [--requests N] [--workers N] [--json]`;
without `--build` it builds `stage1` from the shipped samples into a temporary directory first.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from snsdata.backends.server import TaskScorers
from snsdata.backends.trl import read_specs, read_split
from snsdata.spec import TaskSpec

BATCH = 1024
NOISE = ["", "I don't know.", "<think>hmm</think>", "???", "Answer: maybe", "[]", "{}"]


def batches(build: Path, count: int, seed: int = 0) -> list[list[dict[str, Any]]]:
    """`count` distinct batches of BATCH items `{task_id, completion, record}`."""
    specs = {task_id: TaskSpec.model_validate(spec) for task_id, spec in read_specs(build).items()}
    rows = read_split(build, "train").select("task_id", "record_id", "record").to_dicts()
    for row in rows:
        row["record"] = {**json.loads(row["record"]), "record_id": row["record_id"]}
        row["gold"] = specs[row["task_id"]].render_target(row["record"])
    by_task: dict[str, list[str]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row["gold"])
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        items = []
        for row in rng.sample(rows, min(BATCH, len(rows))):
            kind = rng.random()
            completion = (row["gold"] if kind < 0.4 else rng.choice(by_task[row["task_id"]]) if kind < 0.8
                          else rng.choice(NOISE))
            items.append({"task_id": row["task_id"], "completion": completion, "record": row["record"]})
        out.append(items)
    return out


def summary(latencies: list[float], wall: float, rows: int) -> dict[str, float]:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return {"requests": len(latencies), "requests_per_s": round(len(latencies) / wall, 2),
            "rows_per_s": round(rows / wall), "p50_ms": round(statistics.median(ordered) * 1000, 1),
            "p99_ms": round(p99 * 1000, 1)}


def in_process(build: Path, work: list[list[dict[str, Any]]]) -> dict[str, float]:
    scorers = TaskScorers(read_specs(build))
    as_items = [[(i["task_id"], i["completion"], i["record"]) for i in batch] for batch in work]
    scorers.score(as_items[0])  # warm-up
    latencies = []
    started = time.perf_counter()
    for items in as_items[1:]:
        t0 = time.perf_counter()
        scorers.score(items)
        latencies.append(time.perf_counter() - t0)
    return summary(latencies, time.perf_counter() - started, BATCH * len(latencies))


def start_server(build: Path, workers: int, sandbox_weight: float) -> tuple[subprocess.Popen, str, int]:
    """`snsdata serve-rewards` on a free loopback port, read from the line it prints once it is ready."""
    command = [sys.executable, "-m", "snsdata", "serve-rewards", "--build", str(build), "--port", "0", "--workers",
               str(workers), "--sandbox-cpu-weight", str(sandbox_weight)]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        found = re.search(r"http://([\d.]+):(\d+)", line)
        if found:
            return child, found.group(1), int(found.group(2))
    raise RuntimeError(f"serve-rewards exited with {child.wait()} before serving")


def post(connection: http.client.HTTPConnection, body: bytes) -> float:
    t0 = time.perf_counter()
    connection.request("POST", "/score", body, {"Content-Type": "application/json"})
    response = connection.getresponse()
    payload = response.read()
    if response.status != 200:
        raise RuntimeError(f"server answered {response.status}: {payload[:200]!r}")
    return time.perf_counter() - t0


def over_http(host: str, port: int, bodies: list[bytes], clients: int) -> dict[str, float]:
    """Each client posts every body once, on its own keep-alive connection; all start together."""
    latencies: list[float] = []
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1)

    def client() -> None:
        connection = http.client.HTTPConnection(host, port, timeout=600)
        gate.wait()
        mine = [post(connection, body) for body in bodies]
        connection.close()
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    return summary(latencies, time.perf_counter() - started, BATCH * len(latencies))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, help="An rl build (default: stage1 from the shipped samples).")
    parser.add_argument("--requests", type=int, default=12, help="Batches per measurement (after warm-up).")
    parser.add_argument("--workers", type=int, default=2, help="Server scoring processes.")
    parser.add_argument("--clients", type=int, default=4, help="Concurrent clients of the second server run.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON only.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        build = args.build
        if build is None:
            build = Path(tmp) / "stage1"
            subprocess.run([sys.executable, "-m", "snsdata", "build", "--mixture", "stage1", "--out", str(build)],
                           check=True, capture_output=True)
        work = batches(build, args.requests + 1)
        bodies = [json.dumps({"items": batch}, ensure_ascii=False).encode() for batch in work]
        result: dict[str, Any] = {"build": str(args.build or "stage1 (shipped samples)"), "batch_rows": BATCH,
                                  "request_mb": round(statistics.mean(len(b) for b in bodies) / 2**20, 2),
                                  "tasks": len(read_specs(build)), "in_process": in_process(build, work)}
        for weight in (0.125, 1.0):
            child, host, port = start_server(build, args.workers, weight)
            try:
                connection = http.client.HTTPConnection(host, port, timeout=600)
                post(connection, bodies[0])  # warm-up
                connection.close()
                name = f"server_{args.workers}w_sandbox{weight:g}"
                result[f"{name}_1client"] = over_http(host, port, bodies[1:], 1)
                result[f"{name}_{args.clients}clients"] = over_http(host, port, bodies[1:], args.clients)
            finally:
                child.send_signal(signal.SIGINT)  # the CLI stops its pools cleanly
                child.wait()

    if args.json:
        print(json.dumps(result, indent=1))
        return
    print(f"{result['build']}: {result['tasks']} tasks, {BATCH}-row batches, {result['request_mb']} MB per request")
    print(f"{'':36} {'req/s':>7} {'rows/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for name, figures in result.items():
        if isinstance(figures, dict):
            print(f"{name:36} {figures['requests_per_s']:>7} {figures['rows_per_s']:>8} {figures['p50_ms']:>8} "
                  f"{figures['p99_ms']:>8}")


if __name__ == "__main__":
    main()
