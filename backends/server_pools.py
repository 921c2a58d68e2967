"""Worker pools of the reward server: one per reward kind, so that sandboxed code cannot starve cheap rewards.

Each pool owns its worker processes and its own bounded queue. A dispatcher thread per worker hands it one chunk
at a time, so the pool always knows what is queued and what is running, and a worker that has spent a whole time
limit on one chunk (a degenerate completion) is killed with everything it started and replaced alone: only the
request that chunk belonged to fails. A pool whose queue is full refuses new work with `Overloaded` (the server
answers 503 for requests needing that kind only).

Where the host lets the server make cpu cgroups (root on cgroup v1, or a cgroup v2 that delegates `cpu`), the
workers of all pools share one cgroup beside the server's own, so that against other processes they weigh what
any one process group does, and each pool has a child group in it: the sandbox pool's weighs an eighth of the
cheap pool's by default. Every sandbox inherits its pool's group, so when the CPU is contended the cheap pool gets
about 90% of the workers' share whatever the sandboxes do (fork bombs included), and when cheap rewards leave CPU
idle the sandboxes get the whole share. Without cgroups the sandbox pool is only niced, which does not hold on
hosts with scheduler autogroups (every sandboxed run starts a session, so an autogroup, of its own); `health`
says which is in force.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

log = logging.getLogger("snsdata.server")

Kind = Literal["cheap", "sandbox"]
Item = tuple[str, Any, dict[str, Any]]
"""(task_id, completion, record) of one sample."""
ScoreFn = Callable[[list[Item]], list[float | None]]

LOW_NICENESS = 10
"""Of a pool that weighs less than the cheap pool."""
_CGROUP_PREFIX = "snsdata-workers-"


def reward_kind(spec: Any) -> Kind:
    """"sandbox" when any part of the task's reward runs code, else "cheap" (exact, metric and pattern rewards)."""
    from snsdata.spec.reward import CompositeReward, SandboxReward

    def runs_code(reward: Any) -> bool:
        if isinstance(reward, SandboxReward):
            return True
        if isinstance(reward, CompositeReward):
            return any(runs_code(part.reward) for part in reward.parts) or (
                reward.gate is not None and runs_code(reward.gate))
        return False

    return "sandbox" if runs_code(spec.reward) else "cheap"


class Overloaded(Exception):
    """A pool's queue has no room for the rows; retry after `retry_after_s`."""

    def __init__(self, kind: str, reason: str, retry_after_s: int):
        super().__init__(reason)
        self.kind = kind
        self.reason = reason
        self.retry_after_s = retry_after_s


class ChunkFailed(Exception):
    """A chunk was not scored: its worker hung (and was replaced), died, or the scorer raised."""

    def __init__(self, reason: str, hung: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.hung = hung


@dataclass(frozen=True)
class PoolConfig:
    workers: int
    chunk_rows: int
    queue_rows: int
    """Rows admitted (queued or running) at once; a request that would pass it gets 503."""
    chunk_chars: int = 4 << 20
    """A chunk also ends once its completions hold this many characters (bounds what one pickle carries)."""
    cgroup: Path | None = None
    """The pool's cpu cgroup (see WorkerCgroups), which its workers join; None: they stay in the server's."""
    niceness: int = 0


# --- the worker process -----------------------------------------------------------------------------------------

_SCORERS: Any = None


def score_in_worker(items: list[Item]) -> list[float | None]:
    """The default chunk scorer: the worker's own TaskScorers (built once when the worker starts)."""
    assert _SCORERS is not None, "score_in_worker runs only in a worker process of a WorkerPool"
    return _SCORERS.score(items)


def _worker_main(conn: Any, specs: dict[str, Any], compat: str, score_fn: ScoreFn, cgroup: Path | None,
                 niceness: int) -> None:
    """Build the scorers, say ready, then score one chunk per message until the server hangs up."""
    global _SCORERS
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the server's to handle; it stops the workers
    priority = _take_priority(cgroup, niceness)
    try:
        from snsdata.backends.server import TaskScorers

        _SCORERS = TaskScorers(specs, compat)
        for task_id in _SCORERS.specs:
            _SCORERS.scorer(task_id)
    except Exception as exc:
        conn.send(("error", f"{type(exc).__name__}: {exc}"))
        return
    conn.send(("ready", priority))
    while True:
        try:
            chunk = conn.recv()
        except (EOFError, OSError):
            return
        try:
            conn.send(("ok", score_fn(chunk)))
        except Exception as exc:
            conn.send(("error", f"{type(exc).__name__}: {exc}"[:500]))


def _take_priority(cgroup: Path | None, niceness: int) -> str:
    """Join the pool's cgroup (inherited by every sandbox this process starts) and take its niceness."""
    mode = []
    if cgroup is not None:
        try:
            (cgroup / "cgroup.procs").write_text(str(os.getpid()))
            mode.append(f"cgroup {cgroup.parent.name}/{cgroup.name} ({_weight(cgroup)})")
        except OSError:
            pass
    if niceness:
        with contextlib.suppress(OSError):
            os.nice(niceness)
            mode.append(f"nice {niceness}")
    return " + ".join(mode) or "normal"


def _weight(cgroup: Path) -> str:
    for name in ("cpu.shares", "cpu.weight"):
        with contextlib.suppress(OSError):
            return f"{name} {(cgroup / name).read_text().strip()}"
    return "default weight"


# --- cpu cgroups for the workers ----------------------------------------------------------------------------------

_cgroup_ids = itertools.count()


class WorkerCgroups:
    """One cpu cgroup for the workers beside the server's own, with a child per pool weighted relative to the
    others (`weights`: 1.0 for the cheap pool, 0.125 for the sandbox pool by default)."""

    def __init__(self, root: Path, children: dict[str, Path]):
        self.root = root
        self.children = children

    @classmethod
    def make(cls, weights: Mapping[str, float]) -> WorkerCgroups | None:
        """None where the host does not let this process make them (not root, no cpu controller, an undelegated
        cgroup v2)."""
        try:
            own = Path("/proc/self/cgroup").read_text().splitlines()
            mounts = Path("/proc/self/mountinfo").read_text().splitlines()
        except OSError:
            return None
        name = f"{_CGROUP_PREFIX}{os.getpid()}-{next(_cgroup_ids)}"
        for line in own:
            hierarchy, _, rest = line.partition(":")
            controllers, _, path = rest.partition(":")
            version = 2 if hierarchy == "0" and not controllers else 1 if "cpu" in controllers.split(",") else 0
            base = _cgroup_dir(mounts, version, path) if version else None
            if base is None:
                continue
            _remove_stale(base)
            made = cls(base / name, {kind: base / name / kind for kind in weights})
            try:
                made._create(base, version, weights)
                return made
            except OSError:
                made.remove()
        return None

    def _create(self, base: Path, version: int, weights: Mapping[str, float]) -> None:
        if version == 2:
            if "cpu" not in (base / "cgroup.controllers").read_text().split():
                raise OSError("no cpu controller")
            if "cpu" not in (base / "cgroup.subtree_control").read_text().split():
                (base / "cgroup.subtree_control").write_text("+cpu")
        self.root.mkdir()
        if version == 2:
            (self.root / "cgroup.subtree_control").write_text("+cpu")
        for kind, path in self.children.items():
            path.mkdir()
            if version == 2:
                (path / "cpu.weight").write_text(str(min(10_000, max(1, round(100 * weights[kind])))))
            else:
                (path / "cpu.shares").write_text(str(max(2, round(1024 * weights[kind]))))

    def remove(self) -> None:
        """Kill what is left in the groups (only the workers' own processes are there), then remove them."""
        for path in [*self.children.values(), self.root]:
            with contextlib.suppress(OSError):
                for pid in (path / "cgroup.procs").read_text().split():
                    with contextlib.suppress(OSError):
                        os.kill(int(pid), signal.SIGKILL)
            for _ in range(50):  # killed processes leave the group a moment after the kill
                try:
                    path.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                log.warning("could not remove cgroup %s (still in use)", path)


def _cgroup_dir(mounts: list[str], version: int, path: str) -> Path | None:
    """Where this process's cgroup of one hierarchy is mounted, from /proc/self/mountinfo."""
    for mount in mounts:
        left, _, right = mount.partition(" - ")
        fields, fs = left.split(), right.split()
        if len(fields) < 5 or len(fs) < 3:
            continue
        if not (fs[0] == "cgroup2" if version == 2 else fs[0] == "cgroup" and "cpu" in fs[2].split(",")):
            continue
        root, point = fields[3], fields[4]
        relative = path[len(root):] if root != "/" and path.startswith(root) else path if root == "/" else None
        if relative is not None:
            return Path(point) / relative.lstrip("/")
    return None


def _remove_stale(base: Path) -> None:
    """Empty cgroups left by servers that died without cleaning up (rmdir fails on any still in use)."""
    with contextlib.suppress(OSError):
        for stale in base.glob(f"{_CGROUP_PREFIX}*"):
            pid = stale.name[len(_CGROUP_PREFIX):].split("-")[0]
            if pid.isdigit() and not _alive(int(pid)):
                for path in [*(p for p in stale.iterdir() if p.is_dir()), stale]:
                    with contextlib.suppress(OSError):
                        path.rmdir()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_tree(pid: int) -> None:
    """SIGKILL a worker and everything it started (sandbox servers, and programs running in them)."""
    import psutil

    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return
    for process in processes:
        with contextlib.suppress(psutil.Error):
            process.kill()


# --- the pool -----------------------------------------------------------------------------------------------------


@dataclass
class _Task:
    items: list[Item]
    future: Future


class _Worker:
    def __init__(self, process: Any, conn: Any, priority: str):
        self.process = process
        self.conn = conn
        self.priority = priority

    def kill(self) -> None:
        if self.process.pid is not None:
            _kill_tree(self.process.pid)
        self.process.join(5)
        with contextlib.suppress(OSError):
            self.conn.close()


class WorkerPool:
    """Worker processes scoring the tasks of one reward kind, each fed one chunk at a time from this pool's queue."""

    def __init__(self, kind: Kind, context: Any, specs: dict[str, Any], compat: str, score_fn: ScoreFn,
                 config: PoolConfig, hang_after_s: float, startup_timeout_s: float):
        self.kind = kind
        self.specs = specs
        self.config = config
        self.hang_after_s = hang_after_s
        self.startup_timeout_s = startup_timeout_s
        self._context = context
        self._compat = compat
        self._score_fn = score_fn
        self._cond = threading.Condition()
        self._queue: deque[_Task] = deque()
        self._admitted_rows = 0
        self._queued_rows = 0
        self._running_rows = 0
        self._running_chunks = 0
        self._ready = 0
        self._seconds_per_row = 0.001
        self.restarted = 0
        self.refused = 0
        self.priority = "normal"
        self._closed = False
        self._workers: list[_Worker | None] = [None] * config.workers
        self._threads = [threading.Thread(target=self._dispatch, args=(slot,), daemon=True,
                                          name=f"snsdata-{kind}-{slot}") for slot in range(config.workers)]
        self._started = threading.Semaphore(0)
        self._startup_errors: list[str] = []
        for thread in self._threads:
            thread.start()

    def wait_ready(self) -> None:
        """Block until every worker has started once; RuntimeError if one cannot start."""
        deadline = time.monotonic() + self.startup_timeout_s
        for _ in self._threads:
            if not self._started.acquire(timeout=max(0.0, deadline - time.monotonic())):
                raise RuntimeError(f"the {self.kind} workers did not start within {self.startup_timeout_s:g} s")
        if self._startup_errors:
            raise RuntimeError(f"a {self.kind} worker failed to start: {self._startup_errors[0]}")

    # admission and work ------------------------------------------------------------------------------------------

    def admit(self, rows: int) -> None:
        """Reserve queue room for `rows`, or Overloaded."""
        with self._cond:
            if self._admitted_rows + rows > self.config.queue_rows and self._admitted_rows > 0:
                self.refused += 1
                wait = self._admitted_rows * self._seconds_per_row / max(1, self._ready)
                raise Overloaded(self.kind, f"the {self.kind} pool is full ({self._admitted_rows} rows queued or "
                                            f"running, at most {self.config.queue_rows})",
                                 min(300, max(1, math.ceil(wait))))
            self._admitted_rows += rows

    def release(self, rows: int) -> None:
        """Give back admitted rows that will not be enqueued."""
        with self._cond:
            self._admitted_rows -= rows

    def enqueue(self, items: list[Item]) -> Future:
        """Score one chunk of admitted rows; the future holds its rewards (or ChunkFailed)."""
        task = _Task(items, Future())
        with self._cond:
            self._queue.append(task)
            self._queued_rows += len(items)
            self._cond.notify()
        return task.future

    def chunks(self, items: list[Item]) -> list[list[Item]]:
        """`items` cut into chunks of at most `chunk_rows` rows and about `chunk_chars` characters."""
        out: list[list[Item]] = []
        current: list[Item] = []
        chars = 0
        for item in items:
            size = len(item[1]) if isinstance(item[1], str) else 0
            if current and (len(current) >= self.config.chunk_rows or chars + size > self.config.chunk_chars):
                out.append(current)
                current, chars = [], 0
            current.append(item)
            chars += size
        if current:
            out.append(current)
        return out

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {"tasks": len(self.specs), "workers": self.config.workers, "ready_workers": self._ready,
                    "queued_rows": self._queued_rows, "running_rows": self._running_rows,
                    "in_flight_chunks": self._running_chunks, "queue_limit_rows": self.config.queue_rows,
                    "restarted_workers": self.restarted, "refused_requests": self.refused,
                    "cpu_priority": self.priority}

    @property
    def ready(self) -> bool:
        return self._ready > 0

    def close(self) -> None:
        with self._cond:
            self._closed = True
            pending = list(self._queue)
            self._queue.clear()
            self._cond.notify_all()
        for task in pending:
            task.future.cancel()
        for worker in list(self._workers):
            if worker is not None:
                worker.kill()
        for thread in self._threads:
            thread.join(10)
        for worker in list(self._workers):  # replaced while closing
            if worker is not None:
                worker.kill()

    # the dispatcher of one worker slot ---------------------------------------------------------------------------

    def _dispatch(self, slot: int) -> None:
        try:
            self._workers[slot] = self._start_worker()
        except Exception as exc:
            self._startup_errors.append(str(exc))
        finally:
            self._started.release()
        while True:
            task = self._next()
            if task is None:
                return
            rows = len(task.items)
            try:
                if not task.future.set_running_or_notify_cancel():
                    continue  # its request gave up (past its deadline) while the chunk waited
                worker = self._workers[slot]
                if worker is None:
                    worker = self._workers[slot] = self._start_worker()
                self._run(slot, worker, task, rows)
            except Exception as exc:  # a worker that cannot start fails the chunk, not the dispatcher
                if not task.future.done():
                    task.future.set_exception(ChunkFailed(f"no {self.kind} worker: {exc}"))
            finally:
                with self._cond:
                    self._running_rows -= rows
                    self._admitted_rows -= rows
                    self._running_chunks -= 1

    def _next(self) -> _Task | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            task = self._queue.popleft()
            self._queued_rows -= len(task.items)
            self._running_rows += len(task.items)
            self._running_chunks += 1
            return task

    def _run(self, slot: int, worker: _Worker, task: _Task, rows: int) -> None:
        started = time.monotonic()
        try:
            worker.conn.send(task.items)
            task.items = []  # the worker has its copy: the server need not hold the completions any longer
            answered = worker.conn.poll(self.hang_after_s)
            status, value = worker.conn.recv() if answered else ("hung", None)
        except (EOFError, OSError) as exc:
            status, value = "died", f"{type(exc).__name__}"
        if status == "ok":
            with self._cond:
                per_row = (time.monotonic() - started) / max(1, rows)
                self._seconds_per_row = 0.8 * self._seconds_per_row + 0.2 * per_row
            task.future.set_result(value)
            return
        if status == "error":  # the scorer raised: the worker itself is fine
            task.future.set_exception(ChunkFailed(f"scoring failed: {value}"))
            return
        if self._closed:
            task.future.set_exception(ChunkFailed("the server is shutting down"))
            return
        self._replace(slot, worker)
        if status == "hung":
            task.future.set_exception(ChunkFailed(f"a {self.kind} worker spent {self.hang_after_s:g} s on one chunk "
                                                  "and was replaced", hung=True))
        else:
            code = worker.process.exitcode
            task.future.set_exception(ChunkFailed(f"a {self.kind} worker died (exit code {code}) while scoring; "
                                                  "it was replaced"))

    def _replace(self, slot: int, worker: _Worker) -> None:
        with self._cond:
            self._ready -= 1
            self.restarted += 1
        self._workers[slot] = None
        worker.kill()
        log.warning("%s worker replaced (hung or died on a chunk)", self.kind)
        try:
            self._workers[slot] = self._start_worker()
        except Exception as exc:  # tried again on the next chunk
            log.error("could not restart a %s worker: %s", self.kind, exc)

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=_worker_main, name=f"snsdata-{self.kind}-worker",
            args=(child, self.specs, self._compat, self._score_fn, self.config.cgroup, self.config.niceness))
        process.start()
        child.close()
        worker = _Worker(process, parent, "normal")
        if not parent.poll(self.startup_timeout_s):
            worker.kill()
            raise RuntimeError(f"a {self.kind} worker did not start within {self.startup_timeout_s:g} s")
        try:
            status, value = parent.recv()
        except (EOFError, OSError):
            worker.kill()
            raise RuntimeError(f"a {self.kind} worker exited while starting (code {process.exitcode})") from None
        if status != "ready":
            worker.kill()
            raise RuntimeError(str(value))
        worker.priority = value
        with self._cond:
            if self._closed:  # closed while this one was starting: it must not outlive the pool
                worker.kill()
                raise RuntimeError("the pool is closed")
            self._ready += 1
            self.priority = value
        return worker


def split_by_kind(items: list[Item], kinds: Mapping[str, Kind]) -> dict[Kind, list[int]]:
    """Row indices of the items per reward kind, in item order."""
    out: dict[Kind, list[int]] = {}
    for index, (task_id, _, _) in enumerate(items):
        out.setdefault(kinds[task_id], []).append(index)
    return out
