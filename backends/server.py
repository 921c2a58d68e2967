"""A reward server for any trainer: snsdata's scorers behind HTTP, built to hold under load and abuse.

Endpoints:
- `POST /score`: `{"items": [{"task_id", "completion", "record" | "record_id"}]}` -> `{"rewards": [float | null]}`
  (null: the reward does not apply to that record).
- `POST /get_reward`: OpenRLHF's remote reward model (`--reward.remote_url http://HOST:PORT/get_reward`):
  `{"query", "prompts", "labels"}` -> `{"rewards", "scores", "extra_logs"}`, each label a JSON object
  `{"task_id", "record" | "record_id"}` (OpenRLHF passes one string per sample).
- `GET /health`: pools, queues, connections, memory, limits; never needs the token.

What keeps it standing (docs/backends.md has the numbers):
- Connections: `server_http` accepts everything at once, serves a bounded number, answers the rest 503 with
  `Retry-After`, and closes slow or idle ones (deadlines on the head, the body and keep-alive idleness).
- Memory: a body is refused from its Content-Length before it is read (chunked bodies are counted as they come),
  and before it is parsed a scan of its raw bytes finds its list lengths, nesting depth and how much memory the
  parsed form will take. Every request holds a reservation on one memory budget for what it buffers and parses;
  a request that does not fit now gets 503, one that could never fit gets 413.
- Work: tasks whose reward runs code go to a sandbox pool with its own workers, queue limit and an eighth of the
  cheap pool's CPU weight, so fork bombs, slow programs and pathological code fences cannot starve exact, metric
  and pattern rewards; a pool whose queue is full answers 503 for requests that need it only. A worker stuck on
  one chunk is killed and replaced alone.
- Access: an optional shared token (`Authorization: Bearer TOKEN`, or `?token=TOKEN` for clients such as
  OpenRLHF that cannot set headers), compared in constant time on every endpoint but `/health`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import functools
import hashlib
import hmac
import json
import logging
import multiprocessing
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from http import HTTPStatus
from pathlib import Path
from typing import Any

import numpy as np
import regex

from snsdata.backends.server_http import HttpServer, Request, RequestError, RequestHead, Response
from snsdata.backends.server_pools import (
    LOW_NICENESS,
    ChunkFailed,
    Item,
    Kind,
    Overloaded,
    PoolConfig,
    ScoreFn,
    WorkerCgroups,
    WorkerPool,
    reward_kind,
    score_in_worker,
    split_by_kind,
)

__all__ = ["Limits", "RequestError", "RewardServer", "RewardService", "TaskScorers", "create_server",
           "export_openrlhf", "response_text", "score_in_worker"]

log = logging.getLogger("snsdata.server")



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


@dataclass(frozen=True)
class Limits:
    """Every bound the server enforces. Sizes are checked before the bytes they limit are buffered or parsed."""

    max_body_bytes: int = 64 << 20
    max_items: int = 65_536
    """Most values in any one list of the body (`items`; each of `query`, `prompts`, `labels`)."""
    max_depth: int = 32
    """Deepest nesting of JSON arrays and objects."""
    max_completion_chars: int = 1 << 20
    memory_budget_bytes: int = 160 << 20
    """What all requests together may hold for their bodies and parsed forms (estimated before parsing). At least
    twice `max_body_bytes`, or the largest bodies (the bytes and their text at once) can never be parsed."""
    timeout_s: float = 60.0
    """From the body parsed to the last reward: 504 past it. A worker busy this long on one chunk is replaced."""
    queue_rows: int = 65_536
    """Rows the cheap pool admits at once (queued or being scored); more get 503."""
    sandbox_queue_rows: int = 2_048
    """The same for the sandbox pool."""
    max_connections: int = 256
    backlog: int = 1024
    header_timeout_s: float = 10.0
    body_timeout_s: float = 60.0
    idle_timeout_s: float = 30.0
    write_timeout_s: float = 60.0
    max_head_bytes: int = 64 << 10
    linger_s: float = 2.0

    def __post_init__(self) -> None:
        if self.memory_budget_bytes < 2 * self.max_body_bytes + 4096:
            raise ValueError("memory_budget_bytes must be more than twice max_body_bytes")
        if min(self.max_items, self.max_depth, self.max_connections, self.queue_rows, self.sandbox_queue_rows) < 1:
            raise ValueError(f"limits must be positive: {self}")


# --- the memory budget ------------------------------------------------------------------------------------------


class MemoryBudget:
    """Bytes that requests may hold at once; each request's reservation follows what it holds as it goes."""

    def __init__(self, total: int):
        self.total = total
        self.used = 0
        self._lock = threading.Lock()

    def reservation(self) -> Reservation:
        return Reservation(self)

    def _resize(self, old: int, new: int) -> None:
        if new > self.total:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"this request needs about {_mb(new)} MB to read and parse, more than the server's "
                               f"whole request memory budget ({_mb(self.total)} MB): send smaller batches (and "
                               "\\u-escaped JSON: one character outside the BMP makes Python store the whole body "
                               "in 4 bytes a character)", close=True)
        with self._lock:
            if new > old and self.used - old + new > self.total:
                raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE,
                                   f"the server holds {_mb(self.used)} MB of other requests (budget "
                                   f"{_mb(self.total)} MB); retry in 1 s", {"Retry-After": "1"}, close=True)
            self.used += new - old


class Reservation:
    def __init__(self, budget: MemoryBudget):
        self._budget = budget
        self.held = 0
        self.peak = 0

    def hold(self, size: int) -> None:
        """Hold `size` bytes from now on (more or less than before); RequestError 503/413 when it cannot."""
        self._budget._resize(self.held, size)
        self.held = size
        self.peak = max(self.peak, size)

    def release(self) -> None:
        self.hold(0)


def _mb(size: int) -> float:
    return round(size / 2**20, 1)


# --- the body: limits checked on the raw text, then JSON -----------------------------------------------------------

BYTES_PER_VALUE = 72
"""An upper estimate of Python's memory per parsed JSON value beyond its characters: the list slot or dict entry
holding it and the small object itself (an empty string, a short key, a number)."""
_SLICE = 1 << 18
"""Bytes scanned at once: numpy temporaries stay a few MB whatever the body."""
_QUOTE, _SLASH, _OPEN, _CLOSE, _COMMA, _COLON = 1, 2, 3, 4, 5, 6
_CLASSES = {ord('"'): _QUOTE, ord("\\"): _SLASH, ord("["): _OPEN, ord("{"): _OPEN, ord("]"): _CLOSE,
            ord("}"): _CLOSE, ord(","): _COMMA, ord(":"): _COLON}
_CLASS = bytes(_CLASSES.get(byte, 0) for byte in range(256))
"""A `bytes.translate` table: each byte to its class, 0 for the bytes that cannot change the shape."""


@dataclass(frozen=True)
class JsonShape:
    depth: int
    longest_list: int
    """Values in the longest list (or members of the largest object) of the body itself or of its members."""
    values: int
    """An upper bound on the values (members count twice: key and value) the body parses into."""


def scan_json(raw: bytes | bytearray) -> JsonShape:
    """The shape of a JSON text from its raw UTF-8 bytes, without parsing it: which brackets, commas and colons
    lie outside strings (quote parity, leaving out quotes escaped by an odd run of backslashes), then depth and
    counts from those. Vectorised with numpy over slices, on the few bytes that can matter (quotes, backslashes,
    structure), carrying the state across slices; for text that is not JSON the figures mean nothing, but the
    scan still ends, in time linear in the bytes."""
    in_string = slashes_before = depth_before = deepest = top_commas = longest_inner = run = values = 0
    for start in range(0, len(raw), _SLICE):
        piece = raw[start:start + _SLICE]
        classes = np.frombuffer(piece.translate(_CLASS), np.uint8)
        where = np.flatnonzero(classes)
        if not where.size:
            slashes_before = 0
            continue
        kinds = classes[where]
        quotes = kinds == _QUOTE
        slashes_before = _unescape_quotes(where, kinds, quotes, slashes_before, len(piece))
        inside = (np.cumsum(quotes, dtype=np.int32) + in_string) & 1
        in_string = int(inside[-1])
        outside = (inside == 0) & ~quotes
        step = ((kinds == _OPEN).astype(np.int8) - (kinds == _CLOSE)) * outside
        values += int(np.count_nonzero(outside & ((kinds == _OPEN) | (kinds == _COMMA) | (kinds == _COLON))))
        depth = np.cumsum(step, dtype=np.int32) + np.int32(depth_before)
        depth_before = int(depth[-1])
        deepest = max(deepest, int(depth.max()))
        commas = (kinds == _COMMA) & outside
        top_commas += int(np.count_nonzero(commas & (depth == 1)))
        owner = np.cumsum((step == 1) & (depth == 2), dtype=np.int32)  # 0: the list carried from the last slice
        last = int(owner[-1])
        counts = np.bincount(owner[commas & (depth == 2)], minlength=last + 1)
        counts[0] += run
        longest_inner = max(longest_inner, int(counts.max()))
        run = int(counts[last])
    return JsonShape(deepest, max(top_commas, longest_inner) + 1, values + 1)


def _unescape_quotes(where: np.ndarray, kinds: np.ndarray, quotes: np.ndarray, carried: int, size: int) -> int:
    """Clear in `quotes` those escaped by an odd run of backslashes (`carried` of them ended the previous slice);
    return the run that ends this slice. `where`: positions of the slice's bytes of interest, `kinds` theirs."""
    slashes = where[kinds == _SLASH]
    if carried % 2 and where[0] == 0 and quotes[0]:
        quotes[0] = False
    if not slashes.size:
        return 0
    breaks = np.flatnonzero(np.diff(slashes) != 1)
    firsts = np.concatenate(([0], breaks + 1))
    lasts = np.concatenate((breaks, [slashes.size - 1]))
    lengths = lasts - firsts + 1
    if slashes[0] == 0:
        lengths[0] += carried
    run_ends = slashes[lasts]
    marks = np.flatnonzero(quotes)
    at = np.minimum(np.searchsorted(run_ends, where[marks] - 1), run_ends.size - 1)
    escaped = (run_ends[at] == where[marks] - 1) & (lengths[at] % 2 == 1)
    quotes[marks[escaped]] = False
    return int(lengths[-1]) if run_ends[-1] == size - 1 else 0


def parse_body(holder: list[bytearray], limits: Limits, hold: Callable[[int], None] = lambda size: None) -> Any:
    """The JSON value of a body (taken out of `holder`, so that its bytes are freed once decoded), after checking
    on the raw bytes what parsing would cost: too deep nesting and too long lists are refused without parsing,
    and `hold` is told each memory peak before it happens (it may refuse). RequestError 400/413 on a bad body."""
    raw = holder.pop()
    shape = scan_json(raw)
    if shape.depth > limits.max_depth:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body nests {shape.depth} levels deep; at most "
                                                   f"{limits.max_depth}")
    if shape.longest_list > limits.max_items:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"a list of {shape.longest_list} items; at most {limits.max_items} per request")
    chars, width = _utf8_size(raw)
    decoded = 64 + chars * width
    parsed = decoded + shape.values * BYTES_PER_VALUE
    hold(len(raw) + decoded)  # the bytes and their text, while decoding
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: not UTF-8 at byte {exc.start}") \
            from None
    del raw
    hold(decoded + parsed)  # the text and what it parses into
    try:
        value = json.loads(text.removeprefix("\ufeff"))
    except json.JSONDecodeError as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc.msg} (line {exc.lineno}, "
                                                   f"column {exc.colno})") from None
    except (ValueError, RecursionError) as exc:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"the body is not valid JSON: {exc}"[:300]) from None
    del text
    hold(parsed)
    return value


def _utf8_size(raw: bytearray | bytes) -> tuple[int, int]:
    """Characters of the UTF-8 text in `raw`, and the bytes per character Python will store it in (1, 2 or 4)."""
    if raw.isascii():
        return len(raw), 1
    view = np.frombuffer(raw, np.uint8)
    continuation, top = 0, 0
    for start in range(0, len(view), _SLICE):
        part = view[start:start + _SLICE]
        continuation += int(np.count_nonzero((part & 0xC0) == 0x80))
        top = max(top, int(part.max()))
    return len(raw) - continuation, 4 if top >= 0xF0 else 2 if top >= 0xC4 else 1


# --- OpenRLHF queries -------------------------------------------------------------------------------------------

_SPECIAL_TOKEN = (r"<\|[^<>|\s]{1,64}\|>|<｜[^<>｜]{1,64}｜>|</?s>|<pad>|<unk>|<eos>|<bos>"
                  r"|<(?:start|end)_of_turn>|\[/?INST\]")
_SPECIAL = regex.compile(_SPECIAL_TOKEN)
_END = regex.compile(r"<\|(?:im_end|endoftext|eot_id|end_of_text|end)\|>|<｜end▁of▁sentence｜>|</s>|<eos>"
                     r"|<end_of_turn>|<pad>")
_LEADING = regex.compile(rf"(?:{_SPECIAL_TOKEN})*+")
_LEADING_NOISE = regex.compile(rf"(?:\s++|{_SPECIAL_TOKEN})*+")


_IS_SPACE = np.array([chr(c).isspace() for c in range(0x3001)])
"""What `str.isspace` (and so `str.split`) calls whitespace; none lies above U+3000."""


def _visible(text: str) -> str:
    """The text without special tokens and whitespace: what a prompt and its query must agree on."""
    return "".join(_SPECIAL.sub("", text).split())


def _visible_end(text: str, count: int) -> int:
    """The index just past the `count`-th character of `text` that is neither whitespace nor in a special token:
    counted run by run between special tokens, then found in its run with numpy."""
    start = 0
    for token in [*_SPECIAL.finditer(text), None]:
        end = token.start() if token else len(text)
        run = text[start:end]
        visible = sum(map(len, run.split()))
        if count <= visible:
            if not count:
                return start
            codes = np.frombuffer(run.encode("utf-32-le"), np.uint32)
            space = _IS_SPACE[np.minimum(codes, 0x3000)] & (codes <= 0x3000)
            return start + int(np.flatnonzero(~space)[count - 1]) + 1
        count -= visible
        start = token.end() if token else end
    return len(text)


def response_text(query: str, prompt: str) -> str | None:
    """The response inside an OpenRLHF query (the prompt and the response, decoded with special tokens): what
    follows the prompt, up to the first end-of-turn token, without special tokens or trailing whitespace.

    The prompt is looked for as a prefix of the query with special tokens removed and whitespace ignored in both
    (tokenizers decode the same prompt with other spacing around special tokens, and OpenRLHF left-pads); None
    when it is not one, so that the caller never scores the prompt as if it were the response."""
    query_from, prompt_from = _LEADING_NOISE.match(query).end(), _LEADING_NOISE.match(prompt).end()
    if query.startswith(prompt):
        rest = query[len(prompt):]
    elif query.startswith(prompt[prompt_from:], query_from):  # left padding, another start-of-text token
        rest = query[query_from + len(prompt) - prompt_from:]
    else:
        visible_prompt = _visible(prompt)
        if not _visible(query).startswith(visible_prompt):
            return None
        rest = query[_visible_end(query, len(visible_prompt)):]
        rest = rest[_LEADING.match(rest).end():]
        plain_prompt = _SPECIAL.sub("", prompt)
        tail = plain_prompt[len(plain_prompt.rstrip()):]  # the newline after "assistant" is not the response
        rest = rest.removeprefix(tail)
    cut = _END.search(rest)
    if cut:
        rest = rest[:cut.start()]
    return _SPECIAL.sub("", rest).rstrip()


def _prefix_mismatch(query: str, prompt: str) -> str:
    """Where a prompt stops being a prefix of its query, for the 400 that names the sample."""
    visible_prompt, visible_query = _visible(prompt), _visible(query)
    at = next((i for i, (a, b) in enumerate(zip(visible_prompt, visible_query, strict=False)) if a != b),
              min(len(visible_prompt), len(visible_query)))
    return (f"they part at visible character {at} of the prompt: prompt {visible_prompt[at:at + 24]!r}, query "
            f"{visible_query[at:at + 24]!r}")


# --- the service --------------------------------------------------------------------------------------------------


class Scoring:
    """The chunks of one request on their pools; `rewards` puts their answers back in item order."""

    def __init__(self, size: int):
        self.size = size
        self.parts: list[tuple[concurrent.futures.Future, list[int]]] = []

    def cancel(self) -> None:
        for future, _ in self.parts:
            future.cancel()

    def rewards(self, answers: Sequence[list[float | None]]) -> list[float | None]:
        out: list[float | None] = [None] * self.size
        for (_, rows), values in zip(self.parts, answers, strict=True):
            for row, value in zip(rows, values, strict=True):
                out[row] = value
        return out


class RewardService:
    """Specs, records and the worker pools per reward kind; the HTTP layer is a shell around it."""

    def __init__(self, specs: Mapping[str, Any], workers: int = 2, chunk_size: int = 256, compat: str = "fixed",
                 limits: Limits | None = None, score_fn: ScoreFn = score_in_worker,
                 records: Mapping[tuple[str, str], dict[str, Any]] | None = None, startup_timeout_s: float = 300.0,
                 sandbox_workers: int = 1, sandbox_chunk_size: int = 4, sandbox_cpu_weight: float = 0.125):
        from snsdata.rewards.sandbox import isolation_level

        if workers < 1 or sandbox_workers < 1:
            raise ValueError("workers and sandbox_workers must be at least 1")
        if not 0 < sandbox_cpu_weight <= 100:
            raise ValueError("sandbox_cpu_weight (relative to the cheap pool) must be in (0, 100]")
        self.specs = {task_id: spec if isinstance(spec, dict) else spec.model_dump(mode="json")
                      for task_id, spec in specs.items()}
        self.limits = limits or Limits()
        self.records = records or {}
        self.budget = MemoryBudget(self.limits.memory_budget_bytes)
        check = TaskScorers(self.specs, compat)  # a bad spec fails here, not as workers dying at start-up
        for task_id in check.specs:
            check.scorer(task_id)
        self.kinds: dict[str, Kind] = {task_id: reward_kind(spec) for task_id, spec in check.specs.items()}
        self.isolation = isolation_level()
        context = multiprocessing.get_context("forkserver")  # forking a threaded server is unsafe
        context.set_forkserver_preload(["snsdata.backends.server", "snsdata.rewards.scorer"])
        kinds = {kind: {t: s for t, s in self.specs.items() if self.kinds[t] == kind} for kind in ("cheap", "sandbox")}
        kinds = {kind: kind_specs for kind, kind_specs in kinds.items() if kind_specs}
        weights = {"cheap": 1.0, "sandbox": sandbox_cpu_weight}
        self.cgroups = WorkerCgroups.make({kind: weights[kind] for kind in kinds}) if "sandbox" in kinds else None
        cgroup = self.cgroups.children.get if self.cgroups else lambda kind: None
        configs = {"cheap": PoolConfig(workers, chunk_size, self.limits.queue_rows, cgroup=cgroup("cheap")),
                   "sandbox": PoolConfig(sandbox_workers, sandbox_chunk_size, self.limits.sandbox_queue_rows,
                                         cgroup=cgroup("sandbox"),
                                         niceness=LOW_NICENESS if sandbox_cpu_weight < 1 else 0)}
        self.pools: dict[Kind, WorkerPool] = {}
        try:
            for kind, kind_specs in kinds.items():
                self.pools[kind] = WorkerPool(kind, context, kind_specs, compat, score_fn, configs[kind],
                                              self.limits.timeout_s, startup_timeout_s)
            for pool in self.pools.values():
                pool.wait_ready()
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for pool in self.pools.values():
            pool.close()
        if self.cgroups is not None:
            self.cgroups.remove()

    @property
    def ready(self) -> bool:
        return all(pool.ready for pool in self.pools.values())

    def resolve(self, task_id: Any, record: Any, record_id: Any, where: str) -> dict[str, Any]:
        """The record of one item, from the request (object or JSON string) or from the build by `record_id`."""
        if not isinstance(task_id, str) or task_id not in self.specs:
            known = ", ".join(sorted(self.specs)[:8])
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: unknown task_id {str(task_id)[:80]!r} (known: "
                                                       f"{known}, ...)")
        if record is None and isinstance(record_id, str):
            found = self.records.get((task_id, record_id))
            if found is None:
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: no record {record_id[:80]!r} of {task_id} in "
                                                           "the build; send the record itself")
            return found
        if isinstance(record, str):
            try:
                record = json.loads(record)
            except (ValueError, RecursionError):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: record is not valid JSON") from None
        if not isinstance(record, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: record must be an object (or its JSON), or give "
                                                       "a record_id of the build")
        if isinstance(record_id, str) and "record_id" not in record:
            record = {**record, "record_id": record_id}  # lets a scorer share per-record work across a group
        return record

    def submit(self, items: list[Item]) -> Scoring:
        """Queue the items on their kinds' pools, or RequestError 503 (with Retry-After) when one is full."""
        by_kind = split_by_kind(items, self.kinds)
        admitted: list[tuple[WorkerPool, int]] = []
        try:
            for kind, rows in by_kind.items():
                self.pools[kind].admit(len(rows))
                admitted.append((self.pools[kind], len(rows)))
        except Overloaded as exc:
            for pool, rows in admitted:
                pool.release(rows)
            raise RequestError(HTTPStatus.SERVICE_UNAVAILABLE, f"{exc.reason}; retry in {exc.retry_after_s} s",
                               {"Retry-After": str(exc.retry_after_s)}) from None
        scoring = Scoring(len(items))
        for kind, rows in by_kind.items():
            pool = self.pools[kind]
            start = 0
            for chunk in pool.chunks([items[i] for i in rows]):
                scoring.parts.append((pool.enqueue(chunk), rows[start:start + len(chunk)]))
                start += len(chunk)
        return scoring

    async def collect(self, scoring: Scoring) -> list[float | None]:
        """The rewards of submitted items, or RequestError 504 (past the time limit) or 500."""
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                answers = await asyncio.gather(*(asyncio.wrap_future(f) for f, _ in scoring.parts))
        except TimeoutError:
            scoring.cancel()
            raise RequestError(HTTPStatus.GATEWAY_TIMEOUT, f"scoring took longer than {self.limits.timeout_s:g} s;"
                                                           " the batch was abandoned") from None
        except ChunkFailed as exc:
            scoring.cancel()
            status = HTTPStatus.GATEWAY_TIMEOUT if exc.hung else HTTPStatus.INTERNAL_SERVER_ERROR
            raise RequestError(status, exc.reason) from None
        return scoring.rewards(answers)

    def health(self) -> dict[str, Any]:
        return {"status": "ok" if self.ready else "starting", "tasks": len(self.specs),
                "tasks_by_kind": {kind: sum(k == kind for k in self.kinds.values()) for kind in ("cheap", "sandbox")},
                "sandbox_isolation": self.isolation,
                "pools": {kind: pool.stats() for kind, pool in self.pools.items()},
                "memory": {"budget_mb": _mb(self.budget.total), "held_mb": _mb(self.budget.used)},
                "limits": asdict(self.limits)}


# --- request bodies into items --------------------------------------------------------------------------------------


def _list_field(body: dict[str, Any], name: str) -> list[Any]:
    value = body.get(name)
    if not isinstance(value, list):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"`{name}` must be a list")
    return value


def _completion_chars(completion: Any) -> int:
    if isinstance(completion, str):
        return len(completion)
    return sum(len(m["content"]) for m in completion if isinstance(m, dict) and isinstance(m.get("content"), str))


def _check_completion(service: RewardService, completion: Any, where: str) -> None:
    size = _completion_chars(completion)
    if size > service.limits.max_completion_chars:
        raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                           f"{where}: completion of {size} characters; at most {service.limits.max_completion_chars}")


def plain_items(service: RewardService, body: Any) -> list[Item]:
    """`{"items": [{"task_id", "completion", "record" | "record_id"}]}` into scorer items."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"items": [...]}')
    raw = _list_field(body, "items")
    items = []
    for index, item in enumerate(raw):
        where = f"items[{index}]"
        if not isinstance(item, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: must be an object")
        completion = item.get("completion")
        if not isinstance(completion, str | list):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: completion must be a string or a message list")
        _check_completion(service, completion, where)
        record = service.resolve(item.get("task_id"), item.get("record"), item.get("record_id"), where)
        items.append((item["task_id"], completion, record))
    return items


def openrlhf_items(service: RewardService, body: Any) -> list[Item]:
    """OpenRLHF's `{"query", "prompts", "labels"}`; each label is JSON `{"task_id", "record" | "record_id"}`."""
    if not isinstance(body, dict):
        raise RequestError(HTTPStatus.BAD_REQUEST, 'the body must be a JSON object {"query", "prompts", "labels"}')
    queries, prompts, labels = (_list_field(body, name) for name in ("query", "prompts", "labels"))
    if not len(queries) == len(prompts) == len(labels):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"query, prompts and labels differ in length "
                                                   f"({len(queries)}, {len(prompts)}, {len(labels)})")
    items = []
    for index, (query, prompt, label) in enumerate(zip(queries, prompts, labels, strict=True)):
        where = f"sample {index}"
        if not isinstance(query, str) or not isinstance(prompt, str):
            raise RequestError(HTTPStatus.BAD_REQUEST, f"{where}: query and prompt must be strings")
        try:
            meta = json.loads(label) if isinstance(label, str) else label
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            raise RequestError(HTTPStatus.BAD_REQUEST, f'{where}: label must be JSON {{"task_id", "record"}}')
        record = service.resolve(meta.get("task_id"), meta.get("record"), meta.get("record_id"), where)
        response = response_text(query, prompt)
        if response is None:
            record_id = meta.get("record_id")
            named = f"{where} ({meta['task_id']}" + (f", record {str(record_id)[:80]!r})" if record_id else ")")
            raise RequestError(HTTPStatus.BAD_REQUEST,
                               f"{named}: the query does not start with the prompt, even with special tokens "
                               f"removed and whitespace ignored ({_prefix_mismatch(query, prompt)}); the response "
                               "cannot be told apart from the prompt")
        _check_completion(service, response, where)
        items.append((meta["task_id"], response, record))
    return items


def _parse_request(service: RewardService, parse: Callable[[RewardService, Any], list[Item]],
                   holder: list[bytearray], reservation: Reservation) -> list[Item]:
    """Body bytes to scorer items, in a parser thread (the raw-text scan releases the GIL)."""
    return parse(service, parse_body(holder, service.limits, reservation.hold))


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


def _trim_memory() -> None:
    """Hand freed heap pages back to the system after a large request (glibc keeps them otherwise)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


# --- HTTP endpoints ---------------------------------------------------------------------------------------------


class _Endpoints:
    """The HTTP application: routing, the token, reading and parsing bodies, answering."""

    def __init__(self, service: RewardService, token: str | None):
        self.service = service
        self._token = hashlib.sha256(token.encode()).digest() if token else None
        self._parsers = concurrent.futures.ThreadPoolExecutor(2, thread_name_prefix="snsdata-parse")
        self.connections: Callable[[], dict[str, int]] = dict

    def health(self) -> dict[str, Any]:
        return {**self.service.health(), "auth": "token" if self._token else "none",
                "connections": self.connections()}

    def busy(self, head: RequestHead | None) -> Response:
        if head is not None and head.method == "GET" and head.path.rstrip("/") in ("", "/health"):
            return Response(HTTPStatus.OK, self.health())
        return Response.error(RequestError(HTTPStatus.SERVICE_UNAVAILABLE,
                                           f"{self.service.limits.max_connections} connections already open; retry "
                                           "in 1 s", {"Retry-After": "1"}, close=True))

    def _authorize(self, head: RequestHead) -> None:
        if self._token is None:
            return
        supplied = head.headers.get("authorization", "")
        supplied = supplied[7:] if supplied[:7].lower() == "bearer " else head.query.get("token", [""])[0]
        if not hmac.compare_digest(hashlib.sha256(supplied.encode()).digest(), self._token):
            raise RequestError(HTTPStatus.UNAUTHORIZED, "a valid token is required: `Authorization: Bearer TOKEN` "
                                                        "or `?token=TOKEN`", {"WWW-Authenticate": 'Bearer realm='
                                                                              '"snsdata-rewards"'})

    async def handle(self, request: Request) -> Response:
        head = request.head
        path = head.path.rstrip("/") or "/"
        if path in ("/", "/health"):
            if head.method != "GET":
                raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{head.method} {path}: use GET", {"Allow": "GET"})
            return Response(HTTPStatus.OK, self.health())
        parse = {"/score": plain_items, "/get_reward": openrlhf_items}.get(path)
        if parse is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f"no {head.method} {path[:80]}; endpoints: POST /score, POST "
                                                     "/get_reward, GET /health")
        if head.method != "POST":
            raise RequestError(HTTPStatus.METHOD_NOT_ALLOWED, f"{head.method} {path}: use POST", {"Allow": "POST"})
        self._authorize(head)
        reservation = self.service.budget.reservation()
        loop = asyncio.get_running_loop()
        try:
            # held from the Content-Length, before a byte is read: the bytes and then their text (twice the bytes
            # for ASCII, less for CJK; the scan corrects it): a request that cannot fit is told before it sends
            holder = [await request.read_body(self.service.limits.max_body_bytes,
                                              lambda size: reservation.hold(2 * size))]
            items = await loop.run_in_executor(self._parsers, _parse_request, self.service, parse, holder,
                                               reservation)
            scoring = self.service.submit(items)
            del items  # the chunks hold the items now, each only until its worker has it
            rewards = await self.service.collect(scoring)
        finally:
            reservation.release()
            if reservation.peak > 16 << 20:
                loop.run_in_executor(self._parsers, _trim_memory)
        if parse is plain_items:
            return Response(HTTPStatus.OK, {"rewards": rewards})
        filled = [0.0 if r is None else float(r) for r in rewards]
        return Response(HTTPStatus.OK, {"rewards": filled, "scores": filled,
                                        "extra_logs": {"reward_applies": [float(r is not None) for r in rewards]}})

    def close(self) -> None:
        self._parsers.shutdown(wait=False, cancel_futures=True)


class RewardServer:
    """The HTTP server around a RewardService; `start()` serves from a background thread (tests, notebooks),
    `serve_forever()` blocks (the CLI)."""

    def __init__(self, service: RewardService, host: str = "127.0.0.1", port: int = 0, token: str | None = None):
        self.service = service
        self._endpoints = _Endpoints(service, token)
        self.http = HttpServer(self._endpoints, service.limits, host, port)
        self._endpoints.connections = self.http.stats

    @property
    def address(self) -> tuple[str, int]:
        return self.http.address

    @property
    def url(self) -> str:
        host, port = self.address
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> RewardServer:
        self.http.start()
        return self

    def serve_forever(self) -> None:
        try:
            self.http.serve_forever()
        finally:
            self.close()

    def close(self) -> None:
        self.http.close()
        self._endpoints.close()
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
                  score_fn: ScoreFn = score_in_worker, sandbox_workers: int = 1, sandbox_chunk_size: int = 4,
                  sandbox_cpu_weight: float = 0.125, token: str | None = None,
                  specs: Mapping[str, Any] | None = None) -> RewardServer:
    """A server for a build's frozen specs and records (`specs`, or the shipped catalogue, when `build` is None)."""
    from snsdata.backends.trl import read_specs

    records: dict[tuple[str, str], dict[str, Any]] = {}
    if build is not None:
        specs = read_specs(build)
        records = build_records(build)
    elif specs is None:
        from snsdata.rewards.api import catalogue

        specs = catalogue()
    if host not in ("127.0.0.1", "localhost", "::1") and not token:
        log.warning("binding to %s without a token: anyone who can reach it can use the reward server", host)
    service = RewardService(specs, workers=workers, chunk_size=chunk_size, compat=compat, limits=limits,
                            score_fn=score_fn, records=records, sandbox_workers=sandbox_workers,
                            sandbox_chunk_size=sandbox_chunk_size, sandbox_cpu_weight=sandbox_cpu_weight)
    try:
        return RewardServer(service, host, port, token)
    except OSError:
        service.close()
        raise


def export_openrlhf(build: str | Path, out: str | Path) -> dict[str, Path]:
    """`<split>.jsonl` for OpenRLHF: `datasource` (the task id: OpenRLHF splits its eval metrics by it), `input`
    (chat messages, for `--data.apply_chat_template`) and `label`, the JSON `{"task_id", "record_id", "record"}`
    that `/get_reward` scores against."""
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
                line = {"datasource": row["task_id"],
                        "input": [{"role": m["role"], "content": m["content"]} for m in row["prompt"]],
                        "label": json.dumps(label, ensure_ascii=False)}
                handle.write(json.dumps(line, ensure_ascii=False) + "\n")
        files[split] = path.resolve()
    return files
