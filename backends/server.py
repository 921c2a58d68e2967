"""A reward server for any trainer: snsdata's scorers behind HTTP on loopback.

Endpoints:
- `POST /score`: `{"items": [{"task_id", "completion", "record" | "record_id"}]}` -> `{"rewards": [float | null]}`
  (null: the reward does not apply to that record).
- `POST /get_reward`: OpenRLHF's remote reward model (`--reward.remote_url http://HOST:PORT/get_reward`):
  `{"query", "prompts", "labels"}` -> `{"rewards", "scores", "extra_logs"}`, each label a JSON object
  `{"task_id", "record" | "record_id"}` (OpenRLHF passes one string per sample).
- `GET /health`.

Batches are cut into chunks scored in parallel by a pool of worker processes (the scorers are CPU-bound Python,
so threads would serialise on the GIL). Each request has a size limit, an item limit and a time limit; a request
past its time limit gets 504. When the pool has then finished nothing for a whole time limit (every worker hung on
a degenerate completion), it is replaced so that the hung workers cannot starve later requests, and the chunks of
other requests that were on it are resubmitted; a pool that is merely overloaded is left alone. Malformed requests
get a 4xx naming the problem; nothing a client sends can stop the server. There is no authentication: the server
binds to 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

log = logging.getLogger("snsdata.server")

Item = tuple[str, Any, dict[str, Any]]
"""(task_id, completion, record) of one sample."""
ScoreFn = Callable[[list[Item]], list[float | None]]

END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "</s>", "<｜end▁of▁sentence｜>",
              "<pad>")
"""Special tokens that OpenRLHF leaves in its decoded queries and that are not part of the answer."""


class TaskScorers:
    """One `snsdata.rewards` Scorer per task, built on first use, scoring mixed-task batches task by task."""

    def __init__(self, specs: Mapping[str, Any] | None = None, compat: str = "fixed"):
        from snsdata.spec import TaskSpec

        if specs is None:
            from snsdata.rewards.api import catalogue

            specs = catalogue()
        self.specs = {task_id: spec if isinstance(spec, TaskSpec) else TaskSpec.model_validate(spec)
                      for task_id, spec in specs.items()}
        self.compat = compat
        self._scorers: dict[str, Any] = {}
        self._lock = threading.Lock()

    def scorer(self, task_id: str) -> Any:
        from snsdata.rewards.scorer import Scorer

        with self._lock:
            if task_id not in self._scorers:
                if task_id not in self.specs:
                    raise KeyError(f"unknown task {task_id!r}")
                self._scorers[task_id] = Scorer(self.specs[task_id], self.compat)  # type: ignore[arg-type]
            return self._scorers[task_id]

    def score(self, items: Sequence[Item]) -> list[float | None]:
        """Rewards in item order; each task's rows go to its scorer as one batch."""
        by_task: dict[str, list[int]] = {}
        for index, (task_id, _, _) in enumerate(items):
            by_task.setdefault(task_id, []).append(index)
        out: list[float | None] = [None] * len(items)
        for task_id, rows in by_task.items():
            scores = self.scorer(task_id)([items[i][1] for i in rows], [items[i][2] for i in rows])
            for row, value in zip(rows, scores, strict=True):
                out[row] = value
        return out


# --- worker processes -------------------------------------------------------------------------------------------

_WORKER: TaskScorers | None = None


def _init_worker(specs: dict[str, Any], compat: str, started: Any, score_fn: ScoreFn) -> None:
    """Build every task's scorer before the first chunk arrives, then say so. `score_fn` is passed only so that
    unpickling it imports its module now rather than inside the first request's time limit."""
    global _WORKER
    _WORKER = TaskScorers(specs, compat)
    for task_id in _WORKER.specs:
        _WORKER.scorer(task_id)
    started.release()


def score_in_worker(items: list[Item]) -> list[float | None]:
    """The default chunk scorer: the worker's own TaskScorers (built once per worker by the pool initializer)."""
    assert _WORKER is not None, "score_in_worker runs only in a pool started by RewardService"
    return _WORKER.score(items)


class RequestError(Exception):
    """A request the server refuses: an HTTP status and a reason the client can act on."""

    def __init__(self, status: HTTPStatus, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Limits:
    max_body_bytes: int = 64 * 1024 * 1024
    max_items: int = 65_536
    timeout_s: float = 60.0
    """Per request, from the time its body is parsed to the last chunk scored."""
    max_pending: int = 64
    """Scoring requests admitted at once (running or queued for the pool); more get 503."""


class _Pool:
    """A process pool, whether every worker has started (imported snsdata, built its scorers), and when it last
    made progress: a pool that is starting, or that keeps finishing chunks, is slow rather than hung."""

    def __init__(self, context: Any, workers: int, specs: dict[str, Any], compat: str, score_fn: ScoreFn):
        self.workers = workers
        self.score_fn = score_fn
        self._started = context.Semaphore(0)
        self.pool = context.Pool(workers, _init_worker, (specs, compat, self._started, score_fn))
        self.ready = threading.Event()
        self._lock = threading.Lock()
        self._outstanding = 0
        self._progress = time.monotonic()

    def wait_ready(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        for _ in range(self.workers):
            if not self._started.acquire(timeout=max(0.0, deadline - time.monotonic())):
                return False
        self.ready.set()
        return True

    def submit(self, chunk: list[Item]) -> Any:
        with self._lock:
            if self._outstanding == 0:
                self._progress = time.monotonic()  # idle until now: the clock starts with this chunk
            self._outstanding += 1
        return self.pool.apply_async(self.score_fn, (chunk,), callback=self._done, error_callback=self._done)

    def _done(self, _: object) -> None:
        with self._lock:
            self._outstanding -= 1
            self._progress = time.monotonic()

    def hung(self, after_s: float) -> bool:
        """Started and holding chunks, yet not one finished for `after_s`: every worker is stuck."""
        with self._lock:
            return self.ready.is_set() and self._outstanding > 0 and time.monotonic() - self._progress >= after_s

    def close(self) -> None:
        self.pool.terminate()
        self.pool.join()


class RewardService:
    """Scores item lists on a process pool with a per-call deadline; the HTTP layer is only a shell around it."""

    def __init__(self, specs: Mapping[str, Any], workers: int = 2, chunk_size: int = 256, compat: str = "fixed",
                 limits: Limits | None = None, score_fn: ScoreFn = score_in_worker,
                 records: Mapping[tuple[str, str], dict[str, Any]] | None = None, startup_timeout_s: float = 300.0):
        if workers < 1:
            raise ValueError("workers must be at least 1")
        self.specs = {task_id: spec if isinstance(spec, dict) else spec.model_dump(mode="json")
                      for task_id, spec in specs.items()}
        self.workers = workers
        self.chunk_size = chunk_size
        self.compat = compat
        self.limits = limits or Limits()
        self.score_fn = score_fn
        self.records = records or {}
        self._context = multiprocessing.get_context("forkserver")  # forking a threaded server is unsafe
        self._lock = threading.Lock()
        self._admitted = threading.BoundedSemaphore(self.limits.max_pending)
        self._pending = 0
        self.recycled = 0
        check = TaskScorers(self.specs, compat)  # a bad spec fails here, not as workers dying at start-up
        for task_id in check.specs:
            check.scorer(task_id)
        self._pool = _Pool(self._context, workers, self.specs, compat, score_fn)
        if not self._pool.wait_ready(startup_timeout_s):
            self._pool.close()
            raise RuntimeError(f"the scoring workers did not start within {startup_timeout_s:g} s")
        self._closed = threading.Event()
        threading.Thread(target=self._watch, name="snsdata-pool-watchdog", daemon=True).start()

    def close(self) -> None:
        self._closed.set()
        with self._lock:
            pool = self._pool
        pool.close()

    @property
    def pending(self) -> int:
        return self._pending

    @property
    def ready(self) -> bool:
        """False while a replacement pool is starting (requests queue for it meanwhile)."""
        return self._pool.ready.is_set()

    def resolve(self, task_id: Any, record: Any, record_id: Any, where: str) -> dict[str, Any]:
        """The record of one item, from the request (object or JSON string) or from the build by `record_id`."""
        if not isinstance(task_id, str) or task_id not in self.specs:
            known = ", ".join(sorted(self.specs)[:8])
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: unknown task_id {task_id!r} (known: {known}, ...)")
        if record is None and isinstance(record_id, str):
            found = self.records.get((task_id, record_id))
            if found is None:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: no record {record_id!r} of {task_id} in the "
                                                           "build; send the record itself")
            return found
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except ValueError:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: record is not valid JSON") from None
        if not isinstance(record, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: record must be an object (or its JSON), or give "
                                                       "a record_id of the build")
        if isinstance(record_id, str) and "record_id" not in record:
            record = {**record, "record_id": record_id}  # lets a scorer share per-record work across a group
        return record

    def score(self, items: list[Item]) -> list[float | None]:
        """Rewards for the items, or RequestError 503 (too busy) / 504 (past the time limit)."""
        if not self._admitted.acquire(blocking=False):
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"{self.limits.max_pending} requests already "
                                                               "pending; retry later")
        with self._lock:
            self._pending += 1
        try:
            deadline = time.monotonic() + self.limits.timeout_s
            chunks = [items[i:i + self.chunk_size] for i in range(0, len(items), self.chunk_size)]
            results = self._run(chunks, deadline)
        finally:
            with self._lock:
                self._pending -= 1
            self._admitted.release()
        return [score for chunk in results for score in chunk]

    def _submit(self, chunk: list[Item]) -> tuple[_Pool, Any]:
        with self._lock:
            pool = self._pool
        return pool, pool.submit(chunk)

    def _run(self, chunks: list[list[Item]], deadline: float) -> list[list[float | None]]:
        results: list[list[float | None]] = [[] for _ in chunks]
        pending = {index: self._submit(chunk) for index, chunk in enumerate(chunks)}
        while pending:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise RequestError(HTTPStatus.GATEWAY_TIMEOUT, f"scoring took longer than {self.limits.timeout_s:g}"
                                                               " s; the batch was abandoned")
            for index, (pool, result) in list(pending.items()):
                if result.ready():
                    try:
                        results[index] = result.get()
                    except Exception as exc:
                        raise RequestError(HTTPStatus.INTERNAL_SERVER_ERROR,
                                           f"scoring failed: {type(exc).__name__}: {exc}") from None
                    del pending[index]
                elif pool is not self._pool:  # the watchdog replaced the hung pool this chunk was on
                    pending[index] = self._submit(chunks[index])
            if pending:
                next(iter(pending.values()))[1].wait(min(remaining, 0.05))
        return results

    def _watch(self) -> None:
        """Replace the pool when it has held chunks for a whole time limit without finishing one. A pool that still
        finishes chunks is only overloaded; replacing it would throw away every request's work in progress."""
        interval = min(1.0, self.limits.timeout_s / 10)
        while not self._closed.wait(interval):
            with self._lock:
                if not self._pool.hung(self.limits.timeout_s):
                    continue
                old = self._pool
                new = self._pool = _Pool(self._context, self.workers, self.specs, self.compat, self.score_fn)
                self.recycled += 1
            log.warning("no chunk finished for %g s; worker pool replaced", self.limits.timeout_s)
            threading.Thread(target=old.close, daemon=True).start()
            new.wait_ready(max(60.0, self.limits.timeout_s * 10))


# --- request parsing ----------------------------------------------------------------------------------------------


def _list_field(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"`{name}` must be a list")
    return value


def plain_items(service: RewardService, body: Any) -> list[Item]:
    """`{"items": [{"task_id", "completion", "record" | "record_id"}]}` into scorer items."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"items": [...]}')
    raw = _list_field(body, "items")
    _check_count(service, len(raw))
    items = []
    for index, item in enumerate(raw):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: must be an object")
        completion = item.get("completion")
        if not isinstance(completion, str | list):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: completion must be a string or a message list")
        record = service.resolve(item.get("task_id"), item.get("record"), item.get("record_id"), where)
        items.append((item["task_id"], completion, record))
    return items


def response_text(query: str, prompt: str) -> str:
    """The response inside an OpenRLHF query (prompt + response, special tokens kept): what follows the prompt,
    without end-of-turn and padding tokens."""
    at = query.find(prompt) if prompt else -1
    text = query[at + len(prompt):] if at >= 0 else query
    stripped = True
    while stripped:
        stripped = False
        text = text.rstrip()
        for token in END_TOKENS:
            if text.endswith(token):
                text, stripped = text[: -len(token)], True
    return text


def openrlhf_items(service: RewardService, body: Any) -> list[Item]:
    """OpenRLHF's `{"query", "prompts", "labels"}`; each label is JSON `{"task_id", "record" | "record_id"}`."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"query", "prompts", "labels"}')
    queries, prompts, labels = (_list_field(body, name) for name in ("query", "prompts", "labels"))
    if not len(queries) == len(prompts) == len(labels):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"query, prompts and labels differ in length "
                                                   f"({len(queries)}, {len(prompts)}, {len(labels)})")
    _check_count(service, len(queries))
    items = []
    for index, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        where = f"sample {index}"
        if not isinstance(query, str) or not isinstance(prompt, str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: query and prompt must be strings")
        try:
            meta = json.loads(label) if isinstance(label, str) else label
        except ValueError:
            meta = None
        if not isinstance(meta, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f'{where}: label must be JSON {{"task_id", "record"}}')
        record = service.resolve(meta.get("task_id"), meta.get("record"), meta.get("record_id"), where)
        items.append((meta["task_id"], response_text(query, prompt), record))
    return items


def _check_count(service: RewardService, count: int) -> None:
    if count > service.limits.max_items:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"{count} items; at most {service.limits.max_items} per request")


# --- HTTP -----------------------------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: trainers post batch after batch on one connection
    default_request_version = "HTTP/1.1"  # answer even a garbled request line with a status line
    server_version = "snsdata-rewards"
    timeout = 60  # a client that stops sending mid-request releases its thread
    service: RewardService

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def _send(self, status: HTTPStatus, payload: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status: HTTPStatus, reason: str, close: bool = False) -> None:
        self._send(status, {"error": reason, "status": int(status)}, close)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Protocol errors (a garbled request line, oversized headers) in JSON, like every other error."""
        status = HTTPStatus(code)
        self._error(status, message or status.phrase, close=True)

    def do_GET(self) -> None:
        if self.path.rstrip("/") in ("/health", ""):
            service = self.service
            self._send(HTTPStatus.OK, {
                "status": "ok" if service.ready else "starting", "tasks": len(service.specs),
                "workers": service.workers,
                "pending": service.pending, "recycled_pools": service.recycled,
                "limits": {"max_body_bytes": service.limits.max_body_bytes, "max_items": service.limits.max_items,
                           "timeout_s": service.limits.timeout_s},
            })
        else:
            self._error(HTTPStatus.NOT_FOUND, f"no GET {self.path}; try /health")

    def do_POST(self) -> None:
        parsers = {"/score": plain_items, "/get_reward": openrlhf_items}
        parse = parsers.get(self.path.rstrip("/"))
        try:
            body = self._body()  # read before answering, so the connection stays usable
            if parse is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f"no POST {self.path}; endpoints: {', '.join(parsers)}")
            items = parse(self.service, body)
            rewards = self.service.score(items)
        except RequestError as exc:
            close = exc.status in (HTTPStatus.REQUEST_ENTITY_TOO_LARGE, HTTPStatus.LENGTH_REQUIRED,
                                   HTTPStatus.REQUEST_TIMEOUT)
            self._error(exc.status, exc.reason, close=close)
            return
        if parse is plain_items:
            self._send(HTTPStatus.OK, {"rewards": rewards})
            return
        filled = [0.0 if r is None else float(r) for r in rewards]
        self._send(HTTPStatus.OK, {"rewards": filled, "scores": filled,
                                   "extra_logs": {"reward_applies": [float(r is not None) for r in rewards]}})

    def _method_not_allowed(self) -> None:
        self._error(HTTPStatus.METHOD_NOT_ALLOWED, f"{self.command} is not served; GET /health, POST /score or "
                                                   "/get_reward", close=True)

    do_PUT = do_DELETE = do_PATCH = _method_not_allowed

    def _body(self) -> Any:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "chunked bodies are not accepted; send Content-Length")
        try:
            length = int(self.headers.get("Content-Length", ""))
        except ValueError:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is required") from None
        if length < 0 or length > self.service.limits.max_body_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {length} bytes; at most {self.service.limits.max_body_bytes}")
        try:
            raw = self.rfile.read(length)
        except (TimeoutError, ConnectionError):
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, "the body did not arrive in time") from None
        try:
            return json.loads(raw)
        except (ValueError, RecursionError):
            raise RequestError(HTTPStatus.BAD_REQUEST, "the body is not valid JSON (UTF-8)") from None


class RewardServer:
    """The HTTP server around a RewardService; `start()` serves from a background thread (tests, notebooks),
    `serve_forever()` blocks (the CLI)."""

    def __init__(self, service: RewardService, host: str = "127.0.0.1", port: int = 0):
        handler = type("Handler", (_Handler,), {"service": service})
        self.service = service
        self.httpd = ThreadingHTTPServer((host, port), handler)
        self.httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.httpd.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://{host}:{port}"

    def start(self) -> RewardServer:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.httpd.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
            self._thread = None
        self.httpd.server_close()
        self.service.close()

    def __enter__(self) -> RewardServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()


def build_records(build: str | Path) -> dict[tuple[str, str], dict[str, Any]]:
    """(task_id, record_id) -> record of every row of an `rl` build, so clients may send record ids only."""
    from snsdata.backends.trl import build_format, read_split, splits

    if build_format(build) != "rl":
        return {}
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for split in splits(build):
        frame = read_split(build, split).select("task_id", "record_id", "record")
        for task_id, record_id, record in frame.iter_rows():
            out[(task_id, record_id)] = {**json.loads(record), "record_id": record_id}
    return out


def create_server(build: str | Path | None = None, host: str = "127.0.0.1", port: int = 0, workers: int = 2,
                  chunk_size: int = 256, limits: Limits | None = None, compat: str = "fixed",
                  score_fn: ScoreFn = score_in_worker) -> RewardServer:
    """A server for a build's frozen specs and records (the shipped catalogue when `build` is None)."""
    from snsdata.backends.trl import read_specs

    if build is not None:
        specs: Mapping[str, Any] = read_specs(build)
        records = build_records(build)
    else:
        from snsdata.rewards.api import catalogue

        specs, records = catalogue(), {}
    if host not in ("127.0.0.1", "localhost", "::1"):
        log.warning("binding to %s: the reward server has no authentication", host)
    service = RewardService(specs, workers=workers, chunk_size=chunk_size, compat=compat, limits=limits,
                            score_fn=score_fn, records=records)
    try:
        return RewardServer(service, host, port)
    except OSError:
        service.close()
        raise


def export_openrlhf(build: str | Path, out: str | Path) -> dict[str, Path]:
    """`<split>.jsonl` for OpenRLHF: `input` (chat messages, for `--data.apply_chat_template`) and `label`, the JSON
    `{"task_id", "record_id", "record"}` that `/get_reward` scores against."""
    from snsdata.backends.trl import BuildError, build_format, read_split, splits

    if build_format(build) != "rl":
        raise BuildError(f"{build} is not an `rl` build; OpenRLHF's PPO needs prompts with records to score")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {}
    for split in splits(build):
        path = out / f"{split}.jsonl"
        with path.open("w", encoding="utf-8") as handle:
            for row in read_split(build, split).iter_rows(named=True):
                label = {"task_id": row["task_id"], "record_id": row["record_id"], "record": json.loads(row["record"])}
                line = {"input": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
                        "label": json.dumps(label, ensure_ascii=False)}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        files[split] = path.resolve()
    return files
