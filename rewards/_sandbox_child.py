"""Sandbox worker: a fork server that runs each untrusted program in fresh, locked-down child processes.

`snsdata.rewards.sandbox` starts one worker per parallel slot (inside new network, mount and PID namespaces
when it can) and talks to it in JSON lines over stdin/stdout. The worker is run as a script with `python -I`
and imports only the standard library and its sibling `_sandbox_wire.py`. It stays warm and forks for every
run, which is what makes the sandbox fast, and it never runs untrusted code itself.

Function mode forks two processes per run:
- the *program process* drops to the sandbox uid and installs the seccomp filter and the audit hook, then
  loads the model's program, reports the names it defines and from then on only answers calls
  (`_sandbox_wire`: a function name and plain-data arguments in, a plain-data value or exception out);
- the *test process* drops to a second uid of its own, defines the problem's prompt (its imports and helpers)
  itself and runs the tests against proxies of the program's functions. It alone holds the pipe on which
  verdicts reach the worker, and it never runs a line of the model's code.
The program can only answer calls: a wrong answer, a broken frame, a dead or hung program process all fail.
Stdio mode forks one process per stdin case; the host compares its output.
"""

from __future__ import annotations

import builtins
import contextlib
import fcntl
import gc
import json
import os
import platform
import resource
import secrets
import select
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import NoReturn

if __package__:
    from . import _sandbox_wire as wire
else:  # run as the worker script (`python -I` puts no script directory on sys.path): load the sibling file

    def _sibling(name: str) -> ModuleType:
        import importlib.util

        spec = importlib.util.spec_from_file_location(name, os.path.join(os.path.dirname(__file__), f"{name}.py"))
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    wire = _sibling("_sandbox_wire")

# Loaded once here so that forked children find them in sys.modules: these are the usual imports of
# model-written solutions, and a child would otherwise pay for (and, after dropping its uid, might not be
# allowed to read) the files.
_PRELOAD = (
    "array", "atexit", "bisect", "cmath", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator",
    "random", "re", "statistics", "string", "struct", "textwrap", "typing", "unicodedata", "_posixsubprocess",
)  # fmt: skip
# Standard-library modules the test process never imports for a program, and that a worker preloading the
# whole standard library (for a uid that cannot read the interpreter's files) leaves out: they have side
# effects on import (a browser, printing, GUI toolkits, writing grammar caches) or are CPython's own tests.
NOT_PRELOADED = frozenset({
    "__main__", "antigravity", "this", "idlelib", "lib2to3", "tkinter", "turtle", "turtledemo", "test",
})  # fmt: skip
_NOT_PRELOADED_PARTS = frozenset({"test", "tests", "idle_test", "__main__"})

SETUP_FAILED = 125
REPORT_FD = 3
_HIGH_FD = 10
_OPEN_FILES = 256
_READ_CHUNK = 1 << 16
_UNIT_CODES = {"pass": "passed", "fail": "failed", "mem": "memory"}
_MAX_EXPORTS = 10_000
_SETTLE_S = 0.2
"""How long a program process may take to be seen ending, once the test process stopped short because of it."""

# Audit events refused outright once untrusted code runs: process creation, signals to others, tracing,
# frame and object-graph introspection, and adding hooks. Creating code objects stays allowed: imports need
# marshal.loads, which creates them just as well, and asyncio's import needs code.replace (types.coroutine).
_DENIED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile",
    "subprocess.Popen", "pty.spawn", "webbrowser.open", "os.killpg", "os.link", "os.symlink",
    "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents",
})  # fmt: skip
_DENIED_PREFIXES = ("socket.", "ctypes.", "_ctypes.")
# Modules a program may not import while the audit hook is on: foreign-function interfaces (native code at
# will) and CPython's C test modules. The documented deny list (docs/sandbox.md).
DENIED_IMPORTS = frozenset({
    "ctypes", "_ctypes", "_cffi_backend", "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
})  # fmt: skip
# Preloaded by the worker and neutered before the program runs (its fork_exec spawns without audit events):
# importing it is served from sys.modules, importing it afresh is refused.
_FRESH_IMPORT_DENIED = frozenset({"_posixsubprocess"})
_FRAME_ATTRS = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
# Events that change the file system: (argument positions holding paths, positions holding dir_fd).
_PATH_EVENTS = {
    "os.remove": ((0,), (1,)),
    "os.rmdir": ((0,), (1,)),
    "os.mkdir": ((0,), (2,)),
    "os.rename": ((0, 1), (2, 3)),
    "os.truncate": ((0,), ()),
    "os.chmod": ((0,), (2,)),
    "os.chown": ((0,), (3,)),
    "os.utime": ((0,), (3,)),
    "os.setxattr": ((0,), ()),
    "os.removexattr": ((0,), ()),
    "os.chflags": ((0,), ()),
    "os.lchflags": ((0,), ()),
}
_SHARED_WRITABLE = ("/var/tmp", "/dev/shm", "/run/lock")


def make_audit_hook(root: str, own_pid: int, native_roots: tuple[str, ...]):
    """Audit hook confining the program to `root` and to its own process, and native modules to `native_roots`.

    A tripwire, not a wall: it runs in the same interpreter as the code it watches. Everything it uses is
    bound here, so that rebinding names in builtins or os afterwards does not change what it checks.
    """
    fspath, getcwd, type_, isinstance_, str_, bytes_, int_ = (
        os.fspath,
        os.getcwd,
        type,
        isinstance,
        str,
        bytes,
        int,
    )
    startswith, split, join, decode = str.startswith, str.split, str.join, bytes.decode
    denied, prefixes, denied_imports, frame_attrs = (
        _DENIED_EVENTS,
        _DENIED_PREFIXES,
        DENIED_IMPORTS | _FRESH_IMPORT_DENIED,
        _FRAME_ATTRS,
    )
    path_events = dict(_PATH_EVENTS)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    inside, unreadable = root.rstrip("/") + "/", ("/proc/", "/sys/")
    natives = tuple(r.rstrip("/") + "/" for r in native_roots)
    perm, value_error, attr_error, import_error = PermissionError, ValueError, AttributeError, ImportError

    def resolve(path: object) -> str | None:
        """Absolute, normalised form of a path argument; None for file descriptors."""
        if type_(path) is int_:
            return None
        if type_(path) is not str_ and type_(path) is not bytes_:
            path = fspath(path)
        if isinstance_(path, bytes_):
            path = decode(path, "utf-8", "surrogateescape")
        if not startswith(path, "/"):
            path = getcwd() + "/" + path
        parts: list[str] = []
        for part in split(path, "/"):
            if part == ".." and parts:
                parts.pop()
            elif part not in ("", ".", ".."):
                parts.append(part)
        return "/" + join("/", parts) + "/"

    def confine(event: str, path: object) -> None:
        resolved = resolve(path)
        if resolved is not None and not startswith(resolved, inside):
            raise perm(f"sandbox: {event} outside the working directory is not allowed")

    def native(name: object, origin: object) -> None:
        """An extension module is loaded only from the installed interpreter's and venv's trees."""
        resolved = resolve(origin)
        if resolved is not None:
            for allowed in natives:
                if startswith(resolved, allowed):
                    return
        raise import_error(f"sandbox: native module {name} from outside the installed Python is not allowed")

    def hook(event: str, args: tuple) -> None:
        if event in denied or startswith(event, prefixes):
            raise perm(f"sandbox: {event} is not allowed")
        if event == "open":
            path, mode, flags = args
            writes = (flags or 0) & write_flags
            for letter in "wax+" if mode is not None else "":
                writes = writes or letter in mode
            if writes:
                confine(event, path)
            else:
                resolved = resolve(path)
                if resolved is not None and startswith(resolved, unreadable):
                    raise perm(f"sandbox: reading {resolved[:-1]} is not allowed")
        elif event in path_events:
            paths, dir_fds = path_events[event]
            for i in dir_fds:
                if args[i] is not None:
                    raise perm(f"sandbox: {event} with dir_fd is not allowed")
            for i in paths:
                confine(event, args[i])
        elif event == "os.kill":
            if args[0] != own_pid:
                raise perm("sandbox: signals to other processes are not allowed")
        elif event == "object.__getattr__":
            if args[1] in frame_attrs:
                raise attr_error(f"sandbox: {args[1]} is not available")
        elif event == "sys._getframe":
            raise value_error("sandbox: sys._getframe is not available")
        elif event == "import":
            if args[0] in denied_imports:
                raise import_error(f"sandbox: module {args[0]} is not available")
            if args[1] is not None:  # _imp.create_dynamic: a native module is about to be loaded from a file
                native(args[0], args[1])

    return hook


def _refuse_spawn(*args: object, **kwargs: object) -> NoReturn:
    raise PermissionError("sandbox: creating processes is not allowed")


# --- seccomp --------------------------------------------------------------------------------------------

# Per architecture: (AUDIT_ARCH_*, {syscall: number}). Denied at every level: exec memory from a writable
# file (memfd_create), reaching other processes (ptrace, process_vm_*, pidfd_getfd), new namespaces and
# mounts, and kernel attack surface no solution needs (bpf, io_uring, which would also bypass this filter,
# userfaultfd, perf_event_open, keyrings, modules, kexec). `socket` is denied only where there is no network
# namespace.
_SYSCALLS = {
    "x86_64": (0xC000003E, {
        "socket": 41, "ptrace": 101, "mount": 165, "umount2": 166, "init_module": 175, "kexec_load": 246,
        "add_key": 248, "request_key": 249, "keyctl": 250, "unshare": 272, "perf_event_open": 298,
        "open_by_handle_at": 304, "setns": 308, "process_vm_readv": 310, "process_vm_writev": 311,
        "finit_module": 313, "memfd_create": 319, "kexec_file_load": 320, "bpf": 321, "userfaultfd": 323,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsmount": 432, "pidfd_getfd": 438, "mount_setattr": 442,
    }),
    "aarch64": (0xC00000B7, {
        "socket": 198, "ptrace": 117, "mount": 40, "umount2": 39, "init_module": 105, "kexec_load": 104,
        "add_key": 217, "request_key": 218, "keyctl": 219, "unshare": 97, "perf_event_open": 241,
        "open_by_handle_at": 265, "setns": 268, "process_vm_readv": 270, "process_vm_writev": 271,
        "finit_module": 273, "memfd_create": 279, "kexec_file_load": 294, "bpf": 280, "userfaultfd": 282,
        "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427, "open_tree": 428,
        "move_mount": 429, "fsopen": 430, "fsmount": 432, "pidfd_getfd": 438, "mount_setattr": 442,
    }),
}  # fmt: skip
_X32_SYSCALL_BIT = 0x40000000
_PR_SET_DUMPABLE, _PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS, _SECCOMP_MODE_FILTER = 4, 22, 38, 2
_RET_KILL_PROCESS, _RET_ERRNO, _RET_ALLOW = 0x80000000, 0x00050000, 0x7FFF0000
_EPERM, _EACCES, _ENOSYS = 1, 13, 38


def seccomp_program(machine: str, deny_sockets: bool) -> bytes:
    """Classic-BPF seccomp filter (struct sock_filter[]) for this architecture; KeyError if unsupported."""
    arch, numbers = _SYSCALLS[machine]

    def op(code: int, k: int, jt: int = 0, jf: int = 0) -> bytes:
        return struct.pack("=HBBI", code, jt, jf, k)

    load, jeq, jge, ret = 0x20, 0x15, 0x35, 0x06
    prog = [op(load, 4), op(jeq, arch, 1, 0), op(ret, _RET_KILL_PROCESS), op(load, 0)]  # wrong ABI: killed
    if machine == "x86_64":  # the x32 ABI numbers syscalls differently: refuse it
        prog += [op(jge, _X32_SYSCALL_BIT, 0, 1), op(ret, _RET_ERRNO | _ENOSYS)]
    for name, number in sorted(numbers.items()):
        if name != "socket" or deny_sockets:
            errno = _EACCES if name == "socket" else _EPERM
            prog += [op(jeq, number, 0, 1), op(ret, _RET_ERRNO | errno)]
    return b"".join([*prog, op(ret, _RET_ALLOW)])


class Prctl:
    """prctl(2) for trusted code: the seccomp filter of program processes; no ptrace of the worker and its
    children. Python has no prctl, so this needs ctypes, which is imported here and then dropped from
    sys.modules: a program still has to import it, and the audit hook refuses that."""

    def __init__(self, deny_sockets: bool) -> None:
        import ctypes

        self.prctl = ctypes.CDLL(None, use_errno=True).prctl
        self.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]
        self.get_errno = ctypes.get_errno
        try:
            code = seccomp_program(platform.machine(), deny_sockets)
        except KeyError:
            self.filter = None
        else:

            class Program(ctypes.Structure):
                _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]

            self._code = ctypes.create_string_buffer(code, len(code))
            self.filter = Program(len(code) // 8, ctypes.cast(self._code, ctypes.c_char_p))
            self._filter_ref = ctypes.addressof(self.filter)
        for name in [n for n in sys.modules if n == "ctypes" or n.startswith(("ctypes.", "_ctypes"))]:
            del sys.modules[name]

    def call(self, option: int, value: int) -> None:
        if self.prctl(option, value, 0, 0, 0) != 0:
            raise OSError(self.get_errno(), f"prctl({option}) failed")

    def forbid_ptrace(self) -> None:
        """Not dumpable: no ptrace and no /proc/<pid>/fd or mem by processes of the same uid (inherited)."""
        self.call(_PR_SET_DUMPABLE, 0)

    def install_seccomp(self) -> None:
        if self.filter is None:
            raise OSError(f"sandbox: no seccomp filter for {platform.machine()}")
        self.call(_PR_SET_NO_NEW_PRIVS, 1)
        if self.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._filter_ref, 0, 0) != 0:
            raise OSError(self.get_errno(), "sandbox: installing the seccomp filter failed")


# --- processes of a uid (levels without a PID namespace) ------------------------------------------------


def count_user_threads(uid: int) -> int:
    """Threads of all processes whose real uid is `uid`: what RLIMIT_NPROC counts for an ordinary user."""
    return sum(threads for _, threads in _processes_of(uid))


def sweep_uid(uid: int, rounds: int = 50) -> None:
    """SIGKILL every live process running as `uid` until none is left (used without a PID namespace)."""
    for _ in range(rounds):
        pids = [pid for pid, _ in _processes_of(uid)]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def remove_owned(uid: int, directories: tuple[str, ...]) -> None:
    """Delete what `uid` left directly in shared writable directories (needed without a mount namespace)."""
    for directory in directories:
        try:
            entries = list(os.scandir(directory))
        except OSError:
            continue
        for entry in entries:
            with contextlib.suppress(OSError):
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)


def _processes_of(uid: int) -> list[tuple[int, int]]:
    """(pid, thread count) of the live (not zombie) processes whose real uid is `uid`."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/status", "rb") as fh:
                fields = dict(line.split(b":", 1) for line in fh.read().splitlines() if b":" in line)
        except OSError:
            continue
        if int(fields[b"Uid"].split()[0]) == uid and not fields[b"State"].strip().startswith(b"Z"):
            found.append((int(name), int(fields[b"Threads"])))
    return found


# --- the fork server ------------------------------------------------------------------------------------


class Worker:
    """The fork server: one request in, forked children per run, one reply out."""

    def __init__(self, config: dict) -> None:
        self.uid: int | None = config["uid"]
        self.test_uid: int | None = config["test_uid"]
        self.job_root: str = config["job_root"]
        self.limits: dict = config["limits"]
        self.audit: bool = config["audit"]
        self.pid_one = config["pid_namespace"] and os.getpid() == 1
        self.native_roots = native_roots(self.job_root)
        self.prctl: Prctl | None = None
        self.seccomp = False
        try:
            self.prctl = Prctl(deny_sockets=not config["pid_namespace"])
            self.prctl.forbid_ptrace()
        except (OSError, AttributeError, ImportError):
            self.prctl = None
        self.seccomp = bool(config["seccomp"] and self.prctl is not None and self.prctl.filter is not None)

    def handle(self, request: dict) -> dict:
        if request["mode"] == "function":
            return {"runs": [self.run_function(request)]}
        runs: list[dict] = []
        for data in request["stdin"]:
            if runs and runs[-1]["status"] == "timeout":
                runs.append({"status": "skipped", "stdout": "", "stderr": "", "duration": 0.0})
            else:
                runs.append(self.run_stdio(request, data))
        return {"runs": runs}

    def run_function(self, request: dict) -> dict:
        """The program process answers calls; the test process runs the tests and reports the verdicts."""
        workdir = self._directory(self.uid)
        testdir = self._directory(self.test_uid)
        fds: list[int] = []

        def pipe() -> tuple[int, int]:
            ends = os.pipe()
            fds.extend(ends)
            return ends

        try:
            path = self._write_program(workdir, request["program"])
            devnull = os.open(os.devnull, os.O_RDONLY)
            fds.append(devnull)
            (p_out, p_out_w), (p_err, p_err_w), (t_out, t_out_w), (t_err, t_err_w) = (pipe() for _ in range(4))
            (calls_r, calls_w), (replies_r, replies_w), (verdict_r, verdict_w) = (pipe() for _ in range(3))
            nproc_base = 0 if self.uid is not None else count_user_threads(os.getuid())
            started = time.monotonic()
            program = self._spawn(
                (devnull, p_out_w, p_err_w, calls_r, replies_w), workdir, self.uid, nproc_base,
                lambda: _program_process(request, path, self._hook(workdir)),
                sandboxed=True,
            )  # fmt: skip
            tests = self._spawn(
                (devnull, t_out_w, t_err_w, replies_r, calls_w, verdict_w), testdir, self.test_uid, nproc_base,
                lambda: _test_process(request),
                sandboxed=False,
            )  # fmt: skip
            for fd in (p_out_w, p_err_w, t_out_w, t_err_w, calls_r, calls_w, replies_r, replies_w, verdict_w):
                os.close(fd)
                fds.remove(fd)
            streams = {fd: self.limits["max_output_bytes"] for fd in (p_out, p_err, t_out, t_err)}
            streams[verdict_r] = 1 << 20
            def stopped_short(bufs: dict[int, bytearray]) -> bool:
                while self._read(verdict_r, bufs[verdict_r], streams[verdict_r], None):
                    pass
                return b"D\n" not in bufs[verdict_r].splitlines(keepends=True)

            verdict, bufs, exits, program_first, ended = self._supervise(
                started, tests, program, streams, stopped_short
            )
            # A test process that died says how (the program's exit then follows from it); one that stopped
            # because the channel broke leaves the story to the program process, if that ended first.
            program_fate = self._fate(*exits[program]) if program_first else None
            test_code = os.waitstatus_to_exitcode(exits[tests][0])
            test_fate = self._fate(*exits[tests]) if test_code != 0 else None
            records = [line.split() for line in bytes(bufs[verdict_r]).decode("ascii", "replace").splitlines()]
            return {
                "stdout": _text(bufs[p_out]) + _text(bufs[t_out]),
                "stderr": _text(bufs[p_err]) + _text(bufs[t_err]),
                "duration": ended - started,
                "units": _unit_statuses(records, len(request["tests"]), verdict, test_fate or program_fate),
                "status": verdict or "ok",
            }
        finally:
            for fd in fds:
                os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)
            shutil.rmtree(testdir, ignore_errors=True)

    def run_stdio(self, request: dict, stdin: str) -> dict:
        """One execution of the program as __main__ on one stdin case; never raises for what it does."""
        nonce = secrets.token_hex(16)
        workdir = self._directory(self.uid)
        fds: list[int] = []
        try:
            path = self._write_program(workdir, request["program"])
            stdin_fd = os.memfd_create("stdin")
            fds.append(stdin_fd)
            os.write(stdin_fd, stdin.encode("utf-8", "surrogateescape"))
            os.lseek(stdin_fd, 0, os.SEEK_SET)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            rep_r, rep_w = os.pipe()
            fds += [out_r, out_w, err_r, err_w, rep_r, rep_w]
            nproc_base = 0 if self.uid is not None else count_user_threads(os.getuid())
            started = time.monotonic()
            pid = self._spawn(
                (stdin_fd, out_w, err_w, rep_w), workdir, self.uid, nproc_base,
                lambda: _stdio_harness(request["program"], path, nonce, self._hook(workdir)),
                sandboxed=True,
            )  # fmt: skip
            for fd in (stdin_fd, out_w, err_w, rep_w):
                os.close(fd)
                fds.remove(fd)
            caps = {out_r: self.limits["max_output_bytes"], err_r: self.limits["max_output_bytes"], rep_r: 1 << 20}
            verdict, bufs, exits, _, ended = self._supervise(started, pid, None, caps, None)
            wait_status, usage = exits[pid]
            code = os.waitstatus_to_exitcode(wait_status)
            if verdict is None and code < 0:
                verdict = self._fate(wait_status, usage)
            run = {"stdout": _text(bufs[out_r]), "stderr": _text(bufs[err_r]), "duration": ended - started}
            records = _records(bytes(bufs[rep_r]), nonce)
            if verdict is not None:
                run["status"] = verdict
            elif code != 0:
                run["status"] = "memory" if ["M"] in records else "error"
            else:
                run["status"] = "ok"
            return run
        finally:
            for fd in fds:
                os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)

    def _directory(self, uid: int | None) -> str:
        """A fresh directory (mode 0700) owned by `uid`: a process's working directory for one run."""
        path = tempfile.mkdtemp(prefix="job-", dir=self.job_root)
        if uid is not None:
            os.chown(path, uid, uid)
        return path

    @staticmethod
    def _write_program(workdir: str, program: str) -> str:
        path = os.path.join(workdir, "main.py")
        with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
            fh.write(program)
        return path

    def _hook(self, workdir: str):
        """The audit hook for a run's process (called in that process: it confines signals to its own pid)."""
        return make_audit_hook(workdir, os.getpid(), self.native_roots) if self.audit or self.uid is None else None

    def _spawn(
        self,
        fds: tuple[int, ...],
        workdir: str,
        uid: int | None,
        nproc_base: int,
        then: Callable[[], None],
        sandboxed: bool,
    ) -> int:
        """Fork a child that locks itself down (fds, directory, environment, rlimits, uid) and then calls
        `then`; `sandboxed` children (those that run the model's code) also get the seccomp filter."""
        pid = os.fork()
        if pid:
            return pid
        try:
            _lock_down(fds, workdir, uid, self.limits, nproc_base)
            if sandboxed and self.seccomp:
                assert self.prctl is not None
                self.prctl.install_seccomp()
            then()
        except BaseException as exc:
            os.write(2, f"sandbox: setting up the run failed: {exc!r}\n".encode())
        finally:
            os._exit(SETUP_FAILED)

    def _supervise(
        self,
        started: float,
        main: int,
        other: int | None,
        caps: dict[int, int],
        settle: Callable[[dict[int, bytearray]], bool] | None,
    ) -> tuple[str | None, dict[int, bytearray], dict[int, tuple[int, resource.struct_rusage]], bool, float]:
        """Wait until `main` exits, the wall clock runs out or a stream passes its cap; then kill and reap
        everything. Returns (verdict, output by fd, {pid: (wait status, rusage)}, whether `other` had exited
        on its own, end time). When `settle(output)` says so, `other` gets _SETTLE_S to be seen exiting: a
        process's pipes close before its exit is reported, so the test process can notice a dead program
        process first."""
        bufs = {fd: bytearray() for fd in caps}
        pidfds = {pid: os.pidfd_open(pid) for pid in (main, other) if pid is not None}
        poller = select.poll()
        for fd in (*bufs, *pidfds.values()):
            poller.register(fd, select.POLLIN)
        deadline = started + self.limits["timeout_s"]
        verdict, exited, other_first = None, False, False
        try:
            while not exited and verdict is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    verdict = "timeout"
                    break
                for fd, _ in poller.poll(remaining * 1000):
                    if fd == pidfds[main]:
                        exited = True
                    elif other is not None and fd == pidfds[other]:
                        poller.unregister(fd)
                    elif not self._read(fd, bufs[fd], caps[fd], poller):
                        verdict = "output_limit"
            if other is not None:
                wait = _SETTLE_S if exited and settle is not None and settle(bufs) else 0.0
                other_first = bool(select.select([pidfds[other]], [], [], wait)[0])
        finally:
            for fd in pidfds.values():
                os.close(fd)
        ended = time.monotonic()
        exits = self._reap([pid for pid in (main, other) if pid is not None])
        for fd, buf in bufs.items():
            while self._read(fd, buf, caps[fd], None):
                pass
        return verdict, bufs, exits, other_first, ended

    @staticmethod
    def _read(fd: int, buf: bytearray, cap: int, poller: select.poll | None) -> bool:
        """Read what is there; False once the stream is over its cap. Unregisters fd at end of file."""
        try:
            chunk = os.read(fd, _READ_CHUNK) if poller is not None else _read_nonblocking(fd)
        except BlockingIOError:
            return False
        if not chunk:
            if poller is not None:
                poller.unregister(fd)
            return poller is not None
        room = cap - len(buf)
        buf += chunk[: max(room, 0)]
        return len(chunk) <= room

    def _reap(self, pids: list[int]) -> dict[int, tuple[int, resource.struct_rusage]]:
        """Kill whatever the run left behind and collect the exit status of each of our children."""
        exits = {}
        if not self.pid_one:
            for pid in pids:
                for send in (os.kill, os.killpg):  # the child too, in case it never reached setsid()
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        send(pid, signal.SIGKILL)
            for pid in pids:
                _, wait_status, usage = os.wait4(pid, 0)
                exits[pid] = (wait_status, usage)
            for uid in (self.uid, self.test_uid):
                if uid is not None:
                    sweep_uid(uid)
                    remove_owned(uid, (self.job_root, *_SHARED_WRITABLE))
            return exits
        # As init of our own PID namespace, kill(-1) reaches exactly the processes of this run (a fork in
        # flight fails once its parent has SIGKILL pending), and every orphan becomes our child to reap.
        _kill_namespace()
        for pid in pids:
            _, wait_status, usage = os.wait4(pid, 0)
            exits[pid] = (wait_status, usage)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                if not _kill_namespace():
                    return exits

    def _fate(self, wait_status: int, usage: resource.struct_rusage) -> str:
        """How a process that ended on its own ended: out of CPU time, killed by a signal, or exited."""
        code = os.waitstatus_to_exitcode(wait_status)
        if code >= 0:
            return "error"
        cpu = usage.ru_utime + usage.ru_stime
        out_of_cpu = -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu >= int(self.limits["cpu_s"]))
        return "timeout" if out_of_cpu else "killed"


def native_roots(job_root: str) -> tuple[str, ...]:
    """Trees native modules may come from: the interpreter's, the venv's and sys.path, but none that holds the
    run directories."""
    candidates = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, *sys.path}
    job = os.path.realpath(job_root) + "/"
    roots = set()
    for path in candidates:
        if path and os.path.isdir(path):
            real = os.path.realpath(path)
            if real != "/" and not job.startswith(real + "/"):
                roots.add(real)
    return tuple(sorted(roots))


def _keep_niceness_in_autogroup() -> None:
    """`setsid()` starts a new autogroup, whose CPU share ignores the process's nice value; carry a niced
    worker's niceness over (allowed unprivileged), so a niced sandbox pool stays behind cheap rewards on hosts
    without cgroups."""
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice > 0:
        try:
            with open("/proc/self/autogroup", "w", encoding="ascii") as autogroup:
                autogroup.write(str(min(nice, 19)))
        except OSError:
            pass  # no autogroups on this kernel


def _lock_down(fds: tuple[int, ...], workdir: str, uid: int | None, limits: dict, nproc_base: int) -> None:
    """In a forked child: own session, only `fds` (as 0, 1, 2, ...), a scrubbed environment in `workdir`,
    rlimits, and `uid` (when the worker is root), checked to be irrevocable."""
    os.setsid()
    _keep_niceness_in_autogroup()
    high = [_dup_high(fd) for fd in fds]
    for target, fd in enumerate(high):
        os.dup2(fd, target)
    os.closerange(len(fds), resource.getrlimit(resource.RLIMIT_NOFILE)[0])
    os.chdir(workdir)
    os.environ.clear()
    os.environ.update({
        "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
        "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
    })  # fmt: skip
    sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = [os.path.join(workdir, "main.py")]
    memory = limits["memory_mb"] << 20
    cpu = int(limits["cpu_s"])
    files = limits["disk_mb"] << 20
    nproc = nproc_base + limits["max_processes"]
    for kind, soft, hard in (
        (resource.RLIMIT_AS, memory, memory),
        (resource.RLIMIT_CPU, cpu, cpu + 1),
        (resource.RLIMIT_FSIZE, files, files),
        (resource.RLIMIT_NOFILE, _OPEN_FILES, _OPEN_FILES),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        resource.setrlimit(kind, (soft, hard))
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        try:
            os.setuid(0)
        except PermissionError:
            pass
        else:
            raise RuntimeError("sandbox: could not drop root")


# --- the program process (function mode) ----------------------------------------------------------------


def _program_process(request: dict, path: str, hook) -> NoReturn:
    """Load the program, report the names it defines, then answer calls until the test process is done.

    Nothing here is trusted by anyone: the program may rewrite any of it. It only decides what the program's
    answers are, which are the program's to give anyway.
    """
    channel = wire.Channel(3, 4)
    strict = request["strict_returns"]
    try:
        code = compile(request["program"], path, "exec", dont_inherit=True)
    except BaseException:
        channel.send(["failed", 0, _explain()])
        _finish()
    namespace: dict = {"__name__": "solution", "__builtins__": builtins}
    if hook is not None:
        import _posixsubprocess

        _posixsubprocess.fork_exec = _refuse_spawn  # subprocess imports fine; spawning does not
        sys.addaudithook(hook)
    try:
        exec(code, namespace)
    except BaseException:
        channel.send(["failed", 0, _explain()])
        _finish()
    exports = []
    for name, value in list(namespace.items()):
        if type(name) is not str or name.startswith("__"):
            continue
        if type(value) is ModuleType:
            exports.append([name, "module", str(getattr(value, "__name__", ""))])
        elif callable(value):
            exports.append([name, "function"])
    _flush()
    channel.send(["loaded", 0, exports])
    peer: wire.Peer

    def stub(index: int) -> Callable:
        def callback(*args: object, **kwargs: object) -> object:
            reply = peer.request("callback", index, wire.encode(args), wire.encode(kwargs))
            if reply[0] == "raise":
                raise wire.decode_exception(*reply[2:5])
            return wire.decode(reply[2], stub)

        return callback

    def answer(frame: list) -> list:
        ident = frame[1]
        try:
            if len(frame) != 5 or type(frame[2]) is not str:
                raise ValueError("sandbox: malformed call")
            args, kwargs = wire.decode(frame[3], stub), wire.decode(frame[4], stub)
            function = namespace.get(frame[2])
            if function is None:
                raise NameError(f"name {frame[2]!r} is not defined")
            result = function(*args, **kwargs)
            changed = wire.changed_arguments(args, kwargs, frame[3], frame[4])
            return ["return", ident, wire.encode(result, strict), *changed]
        except wire.WireError:
            raise
        except BaseException as error:
            return ["raise", ident, *wire.encode_exception(error)]
        finally:  # the process is killed once the tests are done: what it printed must be out by then
            _flush()

    peer = wire.Peer(channel, answer, frozenset({"call"}))
    with contextlib.suppress(wire.WireError):
        peer.serve()
    _finish()


def _explain() -> str:
    """Print the current exception without the harness's own frame (natively: no frame attributes read from
    Python, which the audit hook refuses) and classify it."""
    kind, error, trace = sys.exc_info()
    with contextlib.suppress(BaseException):
        if error is not None and trace is not None:
            error.__traceback__ = trace.tb_next
        sys.__excepthook__(kind, error, error.__traceback__ if error is not None else None)
    return "mem" if isinstance(error, MemoryError) else "err"


def _flush() -> None:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BaseException):
            stream.flush()


def _finish(status: int = 0) -> NoReturn:
    _flush()
    os._exit(status)


# --- the test process (function mode) -------------------------------------------------------------------


class _Program:
    """The test process's view of the program process: proxies whose calls cross the channel as data."""

    def __init__(self, channel: wire.Channel) -> None:
        self.peer = wire.Peer(channel, self._callback, frozenset({"callback"}))
        self.callables: list[Callable] = []
        self.broken: wire.WireError | None = None

    def proxy(self, name: str) -> Callable:
        def remote(*args: object, **kwargs: object) -> object:
            return self.call(name, args, kwargs)

        remote.__name__ = remote.__qualname__ = name
        return remote

    def call(self, name: str, args: tuple, kwargs: dict) -> object:
        if self.broken is not None:
            raise wire.WireError(f"sandbox: the program process is gone ({self.broken})")
        mark = len(self.callables)
        try:
            args_tree = wire.encode(args, callables=self.callables)
            kwargs_tree = wire.encode(kwargs, callables=self.callables)
            try:
                reply = self.peer.request("call", name, args_tree, kwargs_tree)
                if len(reply) != 5 or reply[0] not in ("return", "raise"):
                    raise wire.WireError("sandbox: malformed reply")
                if reply[0] == "return":
                    value = wire.decode(reply[2])
                    wire.apply_changes(args, kwargs, reply[3], reply[4])
                    return value
                error = wire.decode_exception(*reply[2:5])
            except wire.WireError as broken:
                self.broken = broken
                raise
        finally:
            del self.callables[mark:]
        error.add_note(f"(raised by the program's {name}())")
        raise error

    def _callback(self, frame: list) -> list:
        """A callable the tests passed, called by the program: run it here, on decoded arguments."""
        index = frame[2] if len(frame) == 5 else None
        if type(index) is not int or not 0 <= index < len(self.callables):
            raise wire.WireError("sandbox: callback to a callable that was not passed")
        args, kwargs = wire.decode(frame[3]), wire.decode(frame[4])
        if type(args) is not tuple or type(kwargs) is not dict or any(type(k) is not str for k in kwargs):
            raise wire.WireError("sandbox: malformed callback arguments")
        try:
            value = self.callables[index](*args, **kwargs)
            return ["return", frame[1], wire.encode(value, callables=self.callables), [], []]
        except Exception as error:
            return ["raise", frame[1], *wire.encode_exception(error)]


def _test_process(request: dict) -> NoReturn:
    """Define the prompt, bind the program's functions as proxies, run each test unit, report verdicts on fd 5.

    Runs trusted code only (the job's prompt and tests); what comes from the program is decoded data.
    """

    def report(line: str) -> None:
        os.write(5, f"{line}\n".encode())

    try:
        tests = [
            compile(unit, f"<tests[{i}]>", "exec", dont_inherit=True) for i, unit in enumerate(request["tests"])
        ]
        prompt = compile(request.get("prompt") or "", "<prompt>", "exec", dont_inherit=True)
        namespace: dict = {"__name__": "solution", "__builtins__": builtins}
        exec(prompt, namespace)
    except BaseException:
        print("sandbox: the job's tests or prompt do not run on their own:", file=sys.stderr)
        _explain()
        report("T err")
        _finish()
    program = _Program(wire.Channel(3, 4))
    try:
        first = program.peer.channel.receive()
        if first[0] == "failed" and len(first) == 3:
            report(f"L {'mem' if first[2] == 'mem' else 'err'}")
            _finish()
        if first[0] != "loaded" or len(first) != 3 or type(first[2]) is not list:
            raise wire.WireError("sandbox: the program process did not report its names")
        functions = _bind_exports(namespace, first[2], program)
    except wire.WireError as broken:
        print(f"{broken}", file=sys.stderr)
        report("X")
        _finish()
    entry_point = request["entry_point"]
    if entry_point is not None:
        if entry_point not in functions:
            print(f"NameError: entry point {entry_point!r} is not defined", file=sys.stderr)
            report("L err")
            _finish()
        namespace[entry_point] = candidate = program.proxy(entry_point)
    report("L ok")
    for i, unit in enumerate(tests):
        before = namespace.get("check")
        try:
            exec(unit, namespace)
            check = namespace.get("check")
            if entry_point is not None and check is not None and check is not before:
                check(candidate)
        except BaseException as error:
            outcome = "mem" if isinstance(error, MemoryError) else "fail"
            _explain()
        else:
            outcome = "pass"
        if program.broken is not None:  # whatever the test made of it: a program that is gone fails
            report("X")
            _finish()
        report(f"U {i} {outcome}")
    report("D")
    _finish()


def _bind_exports(namespace: dict, exports: list, program: _Program) -> set[str]:
    """Give the tests the program's functions (as proxies) and the standard-library modules it imported, under
    the names the program used, unless the prompt or the builtins already define the name. Returns the names
    the program reported as functions."""
    functions = set()
    for entry in exports[:_MAX_EXPORTS]:
        if type(entry) is not list or len(entry) not in (2, 3) or type(entry[0]) is not str:
            raise wire.WireError("sandbox: malformed name report")
        name, kind = entry[0], entry[1]
        if not name.isidentifier() or name.startswith("__"):
            continue
        if kind == "function":
            functions.add(name)
        if name in namespace or hasattr(builtins, name):
            continue
        if kind == "function":
            namespace[name] = program.proxy(name)
        elif kind == "module" and len(entry) == 3 and type(entry[2]) is str:
            module = entry[2]
            top = module.partition(".")[0]
            if top in sys.stdlib_module_names and top not in NOT_PRELOADED | DENIED_IMPORTS:
                with contextlib.suppress(Exception):
                    namespace[name] = __import__("importlib").import_module(module)
    return functions


# --- stdio mode -----------------------------------------------------------------------------------------


def _stdio_harness(program: str, path: str, nonce: str, hook) -> None:
    """Run the program as __main__ and finish like the interpreter would. Never returns.

    Exit status is the verdict here (the output is compared by the host), so no nonce is needed except to
    flag a MemoryError.
    """
    write, exit_ = os.write, os._exit
    status = 0
    try:
        code = compile(program, path, "exec", dont_inherit=True)
        if hook is not None:
            import _posixsubprocess

            _posixsubprocess.fork_exec = _refuse_spawn
            sys.addaudithook(hook)
        exec(code, {"__name__": "__main__", "__file__": path, "__builtins__": builtins})
    except SystemExit as stop:
        status = _exit_status(stop.code)
    except BaseException as error:
        if isinstance(error, MemoryError):
            write(REPORT_FD, f"{nonce} M\n".encode())
        sys.__excepthook__(type(error), error, error.__traceback__)
        status = 1
    try:
        current = threading.current_thread()
        for thread in threading.enumerate():
            if thread is not current and not thread.daemon:
                thread.join()
        import atexit

        atexit._run_exitfuncs()
    except SystemExit as stop:
        status = status or _exit_status(stop.code)
    except BaseException:
        status = status or 1
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            stream.flush()
        except BaseException:
            status = status or 1
    exit_(status)


def _exit_status(code: object) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    print(code, file=sys.stderr)
    return 1


def _records(report: bytes, nonce: str) -> list[list[str]]:
    """Report lines written by the stdio harness: only text that follows the nonce counts."""
    return [
        chunk.split(b"\n", 1)[0].decode("ascii", "replace").split()
        for chunk in report.split(nonce.encode())[1:]
    ]


def _unit_statuses(records: list[list[str]], total: int, verdict: str | None, fate: str | None) -> list[str]:
    """Status of every test unit from the test process's records. Units it did not report share the run's
    fate: the worker's verdict (timeout, output limit), else how the program or test process ended."""
    loaded, done, units = None, False, {}
    for record in records:
        if record == ["T", "err"]:
            return ["error"] * total
        if record[:1] == ["L"] and len(record) == 2:
            loaded = record[1]
        elif record[:1] == ["U"] and len(record) == 3 and record[1].isdigit() and record[2] in _UNIT_CODES:
            units.setdefault(int(record[1]), _UNIT_CODES[record[2]])
        elif record == ["D"]:
            done = True
    if loaded in ("err", "mem"):
        return ["error" if loaded == "err" else "memory"] * total
    missing = verdict or fate or ("failed" if done else "error")
    return [units.get(i, missing) for i in range(total)]


def _text(buf: bytearray) -> str:
    return buf.decode("utf-8", "replace")


def _kill_namespace() -> bool:
    """SIGKILL every other process of our PID namespace; False when there was none."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _dup_high(fd: int) -> int:
    return fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD)


def _read_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    return os.read(fd, _READ_CHUNK)


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


# --- start-up -------------------------------------------------------------------------------------------


def preload_standard_library() -> None:
    """Import the whole standard library but NOT_PRELOADED and DENIED_IMPORTS (and anything that pulls those in).

    For a sandbox uid that cannot read the interpreter's files (the uid level, interpreter under /root):
    what the children find in sys.modules is then all they can import.
    """
    import importlib
    import pkgutil
    import warnings

    def load(name: str) -> ModuleType | None:
        before = set(sys.modules)
        try:
            module = importlib.import_module(name)
        except BaseException:
            module = None
        if any(denied in sys.modules for denied in DENIED_IMPORTS):
            for added in set(sys.modules) - before:
                del sys.modules[added]
            return None
        return module

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for top in sorted(sys.stdlib_module_names - NOT_PRELOADED - DENIED_IMPORTS):
            module = load(top)
            if module is None or not hasattr(module, "__path__"):
                continue
            for info in pkgutil.walk_packages(module.__path__, top + ".", onerror=lambda name: None):
                if not _NOT_PRELOADED_PARTS.intersection(info.name.split(".")):
                    load(info.name)


def probe(uid: int | None) -> dict:
    """What a sandboxed child could do here: switch to `uid`, read the standard library, install seccomp."""
    facts: dict = {"switched": False, "stdlib_readable": False, "seccomp": False}
    if uid is not None:
        os.setgroups([])
        os.setgid(uid)
        os.setuid(uid)
        facts["switched"] = True
    try:
        with open(os.__file__, "rb"):
            pass
        dynload = os.path.join(os.path.dirname(os.__file__), "lib-dynload")
        if os.path.isdir(dynload):
            os.listdir(dynload)
        facts["stdlib_readable"] = True
    except OSError as error:
        facts["stdlib_error"] = str(error)
    try:
        Prctl(deny_sockets=True).install_seccomp()
        facts["seccomp"] = True
    except (OSError, AttributeError, ImportError) as error:
        facts["seccomp_error"] = str(error)
    return facts


def main() -> None:
    """Serve requests until the host closes our stdin (or, with --probe [UID], print what works here)."""
    if sys.argv[1:2] == ["--probe"]:
        print(json.dumps(probe(int(sys.argv[2]) if len(sys.argv) > 2 else None)))
        return
    requests = os.fdopen(_dup_high(0), "rb")
    replies = _dup_high(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    config = json.loads(requests.readline())
    worker = Worker(config)
    for name in _PRELOAD:
        __import__(name)
    if config["preload_stdlib"]:
        preload_standard_library()
    gc.freeze()  # children then never touch (copy) these objects when they collect garbage
    _send(replies, {"ready": True, "pid_one": worker.pid_one, "uid": worker.uid, "seccomp": worker.seccomp})
    for line in requests:
        try:
            reply = worker.handle(json.loads(line))
        except Exception as exc:  # a bug here must cost one job, not the worker
            reply = {"error": f"sandbox worker: {type(exc).__name__}: {exc}"}
        _send(replies, reply)


if __name__ == "__main__":
    main()
