"""The reward server under load and abuse on loopback, side by side with the in-process scorer, in one run.

Phases (each bounded in time; the server is `snsdata serve-rewards` in a child process, its memory the RSS of its
whole process tree: server, scoring workers, sandboxes):
1. In-process: `TaskScorers.score` on the cheap-reward batches the clients will send, one after another.
2. N concurrent clients (50, then 200), released together, each on its own keep-alive connection posting
   `--requests` batches of `--rows` cheap-reward rows: latency p50/p90/p99, answers by status, resets (a
   connection reset, refused or closed without an answer), peak server memory.
3. A stream of 60 MB requests for `--stream-seconds` from 3 clients: bodies of tiny items (1 M items; refused by
   the raw scan) alternating with valid 60 MB batches of long completions (parsed and scored): server memory
   growth (peak minus the level before the stream).
4. Cheap-reward latency from 4 clients, in `--bomb-rounds` pairs of `--bomb-seconds` phases: alone (once the
   sandbox pool is idle), then with 2 clients posting sandbox bombs on the code task (a fork bomb that spins
   when forking is refused, and a 200 k-character code fence that takes the fence regex quadratic time):
   cheap p99 with bombs over cheap p99 without, latencies pooled per side.

Run from the repository root: `python bench/bench_server_load.py [--build DIR] [--json]`; without `--build` it
builds `stage1` from the shipped samples into a temporary directory first. The issue's targets are checked at
the end: 0 resets with 200 clients (503 allowed), memory growth under the 60 MB stream at most 300 MB, cheap
p99 with bombs at most 1.5 x without.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil

from snsdata.backends.server import TaskScorers
from snsdata.backends.server_pools import reward_kind
from snsdata.backends.trl import read_specs, read_split
from snsdata.spec import TaskSpec

NOISE = ["", "I don't know.", "<think>hmm</think>", "???", "Answer: maybe", "[]", "{}"]
FORK_BOMB = "```python\nimport os\nwhile True:\n    try:\n        os.fork()\n    except Exception:\n        pass\n```"
FENCE_BOMB = "```" * 66_000
RESETS = (ConnectionResetError, BrokenPipeError, ConnectionRefusedError, ConnectionAbortedError,
          http.client.RemoteDisconnected, http.client.BadStatusLine)


def load_rows(build: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cheap-reward rows, code rows) of the build's train split, each with its gold completion."""
    specs = {task_id: TaskSpec.model_validate(spec) for task_id, spec in read_specs(build).items()}
    rows = read_split(build, "train").select("task_id", "record_id", "record").to_dicts()
    cheap, code = [], []
    for row in rows:
        spec = specs[row["task_id"]]
        row["record"] = {**json.loads(row["record"]), "record_id": row["record_id"]}
        row["gold"] = spec.render_target(row["record"])
        (code if reward_kind(spec) == "sandbox" else cheap).append(row)
    return cheap, code


def batches(rows: list[dict[str, Any]], count: int, size: int, seed: int) -> list[bytes]:
    """`count` request bodies of `size` items: gold answers, other rows' answers of the same task, and noise."""
    rng = random.Random(seed)
    by_task: dict[str, list[str]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row["gold"])
    out = []
    for _ in range(count):
        items = []
        for row in rng.sample(rows, size):
            kind = rng.random()
            completion = (row["gold"] if kind < 0.4 else rng.choice(by_task[row["task_id"]]) if kind < 0.8
                          else rng.choice(NOISE))
            items.append({"task_id": row["task_id"], "completion": completion, "record": row["record"]})
        out.append(json.dumps({"items": items}, ensure_ascii=False).encode())
    return out


def big_bodies(cheap: list[dict[str, Any]]) -> tuple[bytes, bytes]:
    """Two 60 MB bodies: tiny items (1 M of them) and 2,000 items with 30 kB completions (a valid batch)."""
    row = cheap[0]
    tiny = json.dumps({"task_id": row["task_id"], "completion": "", "record": {}}).encode() + b","
    hostile = b'{"items":[' + tiny * (60_000_000 // len(tiny)) + b'{"task_id":"' + row["task_id"].encode() + \
        b'","completion":"","record":{}}]}'
    items = [{"task_id": r["task_id"], "record": r["record"], "completion": "x" * 30_000}
             for r in (cheap[i % len(cheap)] for i in range(1_950))]
    return hostile, json.dumps({"items": items}).encode()


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"p50_ms": None, "p90_ms": None, "p99_ms": None}
    p50, p90, p99 = np.percentile(np.array(values) * 1000, [50, 90, 99])
    return {"p50_ms": round(float(p50), 1), "p90_ms": round(float(p90), 1), "p99_ms": round(float(p99), 1)}


class Memory:
    """Samples the RSS of a process tree every 50 ms: `peak` since the last `reset`."""

    def __init__(self, pid: int):
        self.root = psutil.Process(pid)
        self.peak = self.current = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def rss(self) -> int:
        total = 0
        for process in [self.root, *self.root.children(recursive=True)]:
            with contextlib.suppress(psutil.Error):
                total += process.memory_info().rss
        return total

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.current = self.rss()
            self.peak = max(self.peak, self.current)

    def reset(self) -> int:
        self.current = self.peak = self.rss()
        return self.current

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


class Tally:
    """Answers by status, resets, other failures and latencies of 200 answers, from many client threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.statuses: dict[int, int] = {}
        self.resets = 0
        self.failures: dict[str, int] = {}

    def post(self, connection: http.client.HTTPConnection, body: bytes) -> int:
        started = time.perf_counter()
        try:
            connection.request("POST", "/score", body, {"Content-Type": "application/json"})
            response = connection.getresponse()
            response.read()
        except RESETS:
            connection.close()
            with self.lock:
                self.resets += 1
            return 0
        except OSError as exc:
            connection.close()
            with self.lock:
                self.failures[type(exc).__name__] = self.failures.get(type(exc).__name__, 0) + 1
            return 0
        elapsed = time.perf_counter() - started
        with self.lock:
            self.statuses[response.status] = self.statuses.get(response.status, 0) + 1
            if response.status == 200:
                self.latencies.append(elapsed)
        if response.will_close:
            connection.close()
        return response.status

    def summary(self) -> dict[str, Any]:
        return {"requests": sum(self.statuses.values()) + self.resets + sum(self.failures.values()),
                "by_status": dict(sorted(self.statuses.items())), "resets": self.resets,
                "other_failures": self.failures, **percentiles(self.latencies)}


def in_process(build: Path, bodies: list[bytes]) -> dict[str, Any]:
    scorers = TaskScorers(read_specs(build))
    work = [[(i["task_id"], i["completion"], i["record"]) for i in json.loads(b)["items"]] for b in bodies]
    scorers.score(work[0])  # warm-up
    latencies = []
    for items in work:
        started = time.perf_counter()
        scorers.score(items)
        latencies.append(time.perf_counter() - started)
    return {"requests": len(work), **percentiles(latencies)}


def concurrent_clients(host: str, port: int, clients: int, bodies: list[bytes], per_client: int,
                       memory: Memory) -> dict[str, Any]:
    tally = Tally()
    gate = threading.Barrier(clients + 1)

    def client(index: int) -> None:
        gate.wait()
        connection = http.client.HTTPConnection(host, port, timeout=300)
        for k in range(per_client):
            tally.post(connection, bodies[(index * per_client + k) % len(bodies)])
        connection.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    before = memory.reset()
    started = time.perf_counter()
    gate.wait()
    for thread in threads:
        thread.join()
    return {"clients": clients, **tally.summary(), "wall_s": round(time.perf_counter() - started, 1),
            "server_rss_mb": round(before / 2**20), "server_rss_peak_mb": round(memory.peak / 2**20)}


def stream_big(host: str, port: int, seconds: float, memory: Memory, hostile: bytes, valid: bytes) -> dict[str, Any]:
    tally = {"hostile": Tally(), "valid": Tally()}
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=300)
        turn = index
        while time.monotonic() < stop:
            name = "hostile" if turn % 2 == 0 else "valid"
            if tally[name].post(connection, hostile if name == "hostile" else valid) == 503:
                time.sleep(0.5)  # the memory budget is held by another 60 MB request: as Retry-After asks
            turn += 1
        connection.close()

    time.sleep(2)
    before = memory.reset()
    threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    peak = memory.peak
    time.sleep(2)
    return {"seconds": seconds, "body_mb": round(len(valid) / 2**20), "hostile": tally["hostile"].summary(),
            "valid": tally["valid"].summary(), "server_rss_before_mb": round(before / 2**20),
            "server_rss_peak_mb": round(peak / 2**20), "growth_mb": round((peak - before) / 2**20),
            "server_rss_after_mb": round(memory.rss() / 2**20)}


def cheap_under_bombs(host: str, port: int, seconds: float, bodies: list[bytes], code: list[dict[str, Any]],
                      bombs: bool, cheap: Tally, bomb: Tally) -> None:
    """4 clients posting cheap batches back to back for `seconds` (into `cheap`), with 2 more posting bombs on
    the code task (into `bomb`) when `bombs`; bomb requests still running at the end are left to the server."""
    stop = time.monotonic() + seconds
    record = code[0]["record"]

    def cheap_client(index: int) -> None:
        connection = http.client.HTTPConnection(host, port, timeout=300)
        k = index
        while time.monotonic() < stop:
            cheap.post(connection, bodies[k % len(bodies)])
            k += 1
        connection.close()

    def bomb_client(completion: str) -> None:
        body = json.dumps({"items": [{"task_id": code[0]["task_id"], "completion": completion,
                                      "record": record}]}).encode()
        connection = http.client.HTTPConnection(host, port, timeout=300)
        while time.monotonic() < stop:
            if bomb.post(connection, body) == 503:
                time.sleep(0.2)
        connection.close()

    threads = [threading.Thread(target=cheap_client, args=(k,)) for k in range(4)]
    if bombs:
        threads += [threading.Thread(target=bomb_client, args=(c,), daemon=True) for c in (FORK_BOMB, FENCE_BOMB)]
    for thread in threads:
        thread.start()
    for thread in threads[:4]:
        thread.join()


def sandbox_state(host: str, port: int) -> dict[str, Any]:
    connection = http.client.HTTPConnection(host, port, timeout=60)
    connection.request("GET", "/health")
    state = json.loads(connection.getresponse().read())["pools"]["sandbox"]
    connection.close()
    return state


def bomb_rounds(host: str, port: int, seconds: float, rounds: int, bodies: list[bytes],
                code: list[dict[str, Any]]) -> dict[str, Any]:
    """Alternate phases without and with bombs, each "without" phase starting once the sandbox pool is idle (the
    last bombs ended or were killed); latencies pooled per side, so that the load of a shared machine, which
    drifts, weighs on both sides alike."""
    alone, bombed, bomb = Tally(), Tally(), Tally()
    busy_during_bombs = []
    for _ in range(rounds):
        deadline = time.monotonic() + 120
        while (state := sandbox_state(host, port))["running_rows"] + state["queued_rows"] and \
                time.monotonic() < deadline:
            time.sleep(0.5)
        cheap_under_bombs(host, port, seconds, bodies, code, False, alone, bomb)
        cheap_under_bombs(host, port, seconds, bodies, code, True, bombed, bomb)
        busy_during_bombs.append(sandbox_state(host, port)["running_rows"])
    return {"rounds": rounds, "seconds_per_phase": seconds, "alone": alone.summary(), "bombs": bombed.summary(),
            "bomb_requests": bomb.summary(), "sandbox_rows_running_at_phase_end": busy_during_bombs,
            "sandbox_workers_replaced": sandbox_state(host, port)["restarted_workers"]}


def start_server(build: Path, extra: list[str]) -> tuple[subprocess.Popen, str, int]:
    """`snsdata serve-rewards` on a free loopback port, read from the line it prints once it is ready."""
    command = [sys.executable, "-m", "snsdata", "serve-rewards", "--build", str(build), "--port", "0", *extra]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    for line in child.stdout:
        found = re.search(r"http://([\d.]+):(\d+)", line)
        if found:
            return child, found.group(1), int(found.group(2))
    raise RuntimeError(f"serve-rewards exited with {child.wait()} before serving")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build", type=Path, help="An rl build (default: stage1 from the shipped samples).")
    parser.add_argument("--rows", type=int, default=16, help="Cheap rows per request.")
    parser.add_argument("--requests", type=int, default=3, help="Requests per client in the concurrency phases.")
    parser.add_argument("--stream-seconds", type=float, default=30.0)
    parser.add_argument("--bomb-seconds", type=float, default=15.0, help="Length of each phase with or without bombs.")
    parser.add_argument("--bomb-rounds", type=int, default=2, help="Pairs of phases without and with bombs.")
    parser.add_argument("--timeout", type=float, default=30.0, help="The server's --timeout (a hung bomb's life).")
    parser.add_argument("--workers", type=int, default=2, help="Cheap-reward processes of the server.")
    parser.add_argument("--sandbox-workers", type=int, default=2, help="Sandbox processes of the server.")
    parser.add_argument("--json", action="store_true", help="Print the result as JSON only.")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        build = args.build
        if build is None:
            build = Path(tmp) / "stage1"
            subprocess.run([sys.executable, "-m", "snsdata", "build", "--mixture", "stage1", "--out", str(build)],
                           check=True, capture_output=True)
        cheap, code = load_rows(build)
        bodies = batches(cheap, 64, args.rows, seed=0)
        bomb_bodies = batches(cheap, 64, 64, seed=1)
        result: dict[str, Any] = {"build": str(args.build or "stage1 (shipped samples)"), "rows": args.rows,
                                  "cpus": psutil.cpu_count(), "load_average": [round(x, 1) for x in
                                                                               psutil.getloadavg()]}
        result["in_process"] = in_process(build, bodies)
        result["in_process_64_rows"] = in_process(build, bomb_bodies[:16])
        child, host, port = start_server(build, ["--workers", str(args.workers), "--sandbox-workers",
                                                 str(args.sandbox_workers), "--timeout", str(args.timeout)])
        memory = Memory(child.pid)
        try:
            warm = http.client.HTTPConnection(host, port, timeout=300)
            Tally().post(warm, bodies[0])
            warm.close()
            for clients in (50, 200):
                result[f"clients_{clients}"] = concurrent_clients(host, port, clients, bodies, args.requests, memory)
            hostile, valid = big_bodies(cheap)
            result["stream_60mb"] = stream_big(host, port, args.stream_seconds, memory, hostile, valid)
            del hostile, valid
            result["bombs"] = bomb_rounds(host, port, args.bomb_seconds, args.bomb_rounds, bomb_bodies, code)
        finally:
            memory.stop()
            child.send_signal(signal.SIGINT)  # the CLI stops its pools (and their sandboxes) on Ctrl-C
            try:
                child.wait(60)
            except subprocess.TimeoutExpired:
                child.kill()

    alone = result["bombs"]["alone"]["p99_ms"]
    bombed = result["bombs"]["bombs"]["p99_ms"]
    result["targets"] = {
        "resets_200_clients": result["clients_200"]["resets"],
        "stream_growth_mb": result["stream_60mb"]["growth_mb"],
        "cheap_p99_ratio_with_bombs": round(bombed / alone, 2) if alone and bombed else None,
    }
    result["targets_met"] = {"resets == 0": result["targets"]["resets_200_clients"] == 0,
                             "growth <= 300 MB": result["targets"]["stream_growth_mb"] <= 300,
                             "p99 ratio <= 1.5": (result["targets"]["cheap_p99_ratio_with_bombs"] or 99) <= 1.5}
    if args.json:
        print(json.dumps(result, indent=1))
        return
    report(result)


def report(result: dict[str, Any]) -> None:
    print(f"{result['build']}: {result['cpus']} CPUs, load average {result['load_average']}")
    print(f"{'':34} {'requests':>8} {'200':>6} {'503':>5} {'resets':>6} {'p50 ms':>8} {'p90 ms':>8} {'p99 ms':>8}"
          f" {'RSS MB':>7} {'peak MB':>8}")

    def line(name: str, figures: dict[str, Any], rss: Any = "", peak: Any = "") -> None:
        statuses = figures.get("by_status", {})
        print(f"{name:34} {figures['requests']:>8} {statuses.get(200, '-') if statuses else '-':>6} "
              f"{statuses.get(503, 0) if statuses else '-':>5} {figures.get('resets', '-'):>6} "
              f"{figures['p50_ms']!s:>8} {figures['p90_ms']!s:>8} {figures['p99_ms']!s:>8} {rss!s:>7} {peak!s:>8}")

    line(f"in-process, {result['rows']}-row batches", result["in_process"])
    for clients in (50, 200):
        figures = result[f"clients_{clients}"]
        line(f"server, {clients} clients, {result['rows']} rows", figures, figures["server_rss_mb"],
             figures["server_rss_peak_mb"])
    stream = result["stream_60mb"]
    line(f"60 MB stream: tiny items ({stream['seconds']:g} s)", stream["hostile"], stream["server_rss_before_mb"],
         stream["server_rss_peak_mb"])
    line("60 MB stream: valid long batches", stream["valid"])
    line("in-process, 64-row batches", result["in_process_64_rows"])
    bombs = result["bombs"]
    line("server, 4 clients, 64 rows, alone", bombs["alone"])
    line("server, 4 clients, 64 rows, bombs", bombs["bombs"])
    line("  (the bomb requests themselves)", bombs["bomb_requests"])
    other = {k: v for k, v in (("50", result["clients_50"]), ("200", result["clients_200"])) if v["other_failures"]}
    if other:
        print("other client failures:", {k: v["other_failures"] for k, v in other.items()})
    print(f"60 MB stream: server memory {stream['server_rss_before_mb']} MB before, peak "
          f"{stream['server_rss_peak_mb']} MB (growth {stream['growth_mb']} MB), {stream['server_rss_after_mb']} MB "
          f"after; statuses tiny {stream['hostile']['by_status']}, valid {stream['valid']['by_status']}")
    print(f"bombs: {bombs['rounds']} rounds of {bombs['seconds_per_phase']:g} s without and with; sandbox rows "
          f"running at the end of each bomb phase {bombs['sandbox_rows_running_at_phase_end']}, sandbox workers "
          f"replaced {bombs['sandbox_workers_replaced']}")
    print("targets:", ", ".join(f"{name} {'met' if met else 'NOT MET'}" for name, met in
                                result["targets_met"].items()), result["targets"])


if __name__ == "__main__":
    main()
