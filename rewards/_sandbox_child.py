"""Sandbox worker: a fork server that runs each untrusted program in a fresh, locked-down child process.

`snsdata.rewards.sandbox` starts one worker per parallel slot (inside new network, mount and PID namespaces
when it can) and talks to it in JSON lines over stdin/stdout. The worker is run as a script with `python -I`
and imports only the standard library: it stays warm and forks once per run, which is what makes the
sandbox fast, and it never runs untrusted code itself, which is what keeps runs from leaking state into
each other.

Per run the forked child: starts a new session, gets its own pipes and an empty working directory, a
scrubbed environment, CPU/memory/file/process rlimits, drops to an unprivileged uid that no other process
uses (when the worker is root), installs an audit hook, and only then compiles and runs the program. The
harness reports each verdict on a separate pipe, prefixed with a nonce the program never sees, so exit codes
and printed text cannot fake a pass.
"""

from __future__ import annotations

import builtins
import contextlib
import gc
import json
import os
import resource
import secrets
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from typing import NoReturn

# Loaded once here so that forked children find them in sys.modules: these are the usual imports of
# model-written solutions, and a child would otherwise pay for (and, after dropping its uid, might not be
# allowed to read) the files.
_PRELOAD = (
    "array", "atexit", "bisect", "cmath", "collections", "copy", "dataclasses", "datetime", "decimal", "enum",
    "fractions", "functools", "hashlib", "heapq", "io", "itertools", "json", "math", "numbers", "operator",
    "random", "re", "statistics", "string", "struct", "textwrap", "typing", "unicodedata",
)  # fmt: skip

SETUP_FAILED = 125
REPORT_FD = 3
_HIGH_FD = 10
_OPEN_FILES = 256
_READ_CHUNK = 1 << 16
_UNIT_CODES = {"pass": "passed", "fail": "failed", "mem": "memory"}

# Audit events refused outright once untrusted code runs: process creation, signals to others, tracing,
# frame and object-graph introspection (the way to the harness's nonce), and adding hooks.
_DENIED_EVENTS = frozenset({
    "os.fork", "os.forkpty", "os.system", "os.exec", "os.posix_spawn", "os.spawn", "os.startfile",
    "subprocess.Popen", "pty.spawn", "webbrowser.open", "os.killpg", "os.link", "os.symlink",
    "sys.addaudithook", "sys.settrace", "sys.setprofile", "sys._current_frames", "sys._current_exceptions",
    "gc.get_objects", "gc.get_referrers", "gc.get_referents", "code.__new__", "code.replace",
})  # fmt: skip
_DENIED_PREFIXES = ("socket.", "ctypes.", "_ctypes.")
_DENIED_IMPORTS = frozenset({
    "ctypes", "_ctypes", "_posixsubprocess", "_testcapi", "_testinternalcapi", "_xxsubinterpreters",
})  # fmt: skip
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
_PLAIN_TYPES = (type(None), bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset)
_CONTAINERS = (list, tuple, set, frozenset)


def make_audit_hook(root: str, own_pid: int):
    """Audit hook confining the program to `root` and to its own process.

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
        _DENIED_IMPORTS,
        _FRAME_ATTRS,
    )
    path_events = dict(_PATH_EVENTS)
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    inside, unreadable = root.rstrip("/") + "/", ("/proc/", "/sys/")
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
        elif event == "import" and args[0] in denied_imports:
            raise import_error(f"sandbox: module {args[0]} is not available")

    return hook


def make_return_guard():
    """Wrapper factory rejecting entry-point results that are not plain built-in values.

    Blocks the classic reward hack of returning an object whose __eq__ always says True. Checking uses
    only ids of exact types, so no method of the returned object runs. Built before the program runs.
    """
    type_, id_, type_error = type, id, TypeError
    allowed, containers = frozenset(map(id, _PLAIN_TYPES)), frozenset(map(id, _CONTAINERS))
    dict_id, keys, values, extend, set_ = id(dict), dict.keys, dict.values, list.extend, set

    def wrap(fn):
        def candidate(*args, **kwargs):
            result = fn(*args, **kwargs)
            pending, seen = [result], set_()
            while pending:
                value = pending.pop()
                kind = id_(type_(value))
                if kind not in allowed:
                    raise type_error("sandbox: the entry point must return plain built-in values")
                if (kind == dict_id or kind in containers) and id_(value) not in seen:
                    seen.add(id_(value))
                    if kind == dict_id:
                        extend(pending, keys(value))
                        extend(pending, values(value))
                    else:
                        extend(pending, value)
            return result

        return candidate

    return wrap


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


class Worker:
    """The fork server: one request in, one forked child per run, one reply out."""

    def __init__(self, config: dict) -> None:
        self.uid: int | None = config["uid"]
        self.job_root: str = config["job_root"]
        self.limits: dict = config["limits"]
        self.audit: bool = config["audit"]
        self.pid_one = config["pid_namespace"] and os.getpid() == 1

    def handle(self, request: dict) -> dict:
        if request["mode"] == "function":
            return {"runs": [self.run(request, None)]}
        runs: list[dict] = []
        for data in request["stdin"]:
            if runs and runs[-1]["status"] == "timeout":
                runs.append({"status": "skipped", "stdout": "", "stderr": "", "duration": 0.0})
            else:
                runs.append(self.run(request, data))
        return {"runs": runs}

    def run(self, request: dict, stdin: str | None) -> dict:
        """One program execution in a fresh child; never raises for anything the program does."""
        nonce = secrets.token_hex(16)
        workdir = tempfile.mkdtemp(prefix="job-", dir=self.job_root)
        fds: list[int] = []
        try:
            path = os.path.join(workdir, "main.py")
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as fh:
                fh.write(request["program"])
            if self.uid is not None:
                os.chown(workdir, self.uid, self.uid)
            if stdin is None:
                stdin_fd = os.open(os.devnull, os.O_RDONLY)
            else:
                stdin_fd = os.memfd_create("stdin")
                os.write(stdin_fd, stdin.encode("utf-8", "surrogateescape"))
                os.lseek(stdin_fd, 0, os.SEEK_SET)
            out_r, out_w = os.pipe()
            err_r, err_w = os.pipe()
            rep_r, rep_w = os.pipe()
            fds += [stdin_fd, out_r, out_w, err_r, err_w, rep_r, rep_w]
            nproc_base = 0 if self.uid is not None else count_user_threads(os.getuid())
            started = time.monotonic()
            pid = os.fork()
            if pid == 0:
                try:
                    self._child(request, path, nonce, (stdin_fd, out_w, err_w, rep_w), nproc_base)
                except BaseException as exc:
                    os.write(2, f"sandbox: setting up the run failed: {exc!r}\n".encode())
                finally:
                    os._exit(SETUP_FAILED)
            for fd in (stdin_fd, out_w, err_w, rep_w):
                os.close(fd)
                fds.remove(fd)
            return self._supervise(pid, started, nonce, out_r, err_r, rep_r, request)
        finally:
            for fd in fds:
                os.close(fd)
            shutil.rmtree(workdir, ignore_errors=True)

    def _supervise(
        self, pid: int, started: float, nonce: str, out_r: int, err_r: int, rep_r: int, request: dict
    ) -> dict:
        limits = self.limits
        caps = {out_r: limits["max_output_bytes"], err_r: limits["max_output_bytes"], rep_r: 1 << 20}
        bufs = {out_r: bytearray(), err_r: bytearray(), rep_r: bytearray()}
        pidfd = os.pidfd_open(pid)
        poller = select.poll()
        for fd in (*bufs, pidfd):
            poller.register(fd, select.POLLIN)
        deadline = started + limits["timeout_s"]
        verdict, exited = None, False
        try:
            while not exited and verdict is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    verdict = "timeout"
                    break
                for fd, _ in poller.poll(remaining * 1000):
                    if fd == pidfd:
                        exited = True
                    elif not self._read(fd, bufs[fd], caps[fd], poller):
                        verdict = "output_limit"
        finally:
            os.close(pidfd)
        ended = time.monotonic()
        wait_status, usage = self._reap(pid)
        for fd, buf in bufs.items():
            while self._read(fd, buf, caps[fd], None):
                pass
        code = os.waitstatus_to_exitcode(wait_status)
        if verdict is None and code < 0:
            cpu = usage.ru_utime + usage.ru_stime
            out_of_cpu = -code == signal.SIGXCPU or (-code == signal.SIGKILL and cpu >= self._cpu_limit())
            verdict = "timeout" if out_of_cpu else "killed"
        run = {
            "stdout": bufs[out_r].decode("utf-8", "replace"),
            "stderr": bufs[err_r].decode("utf-8", "replace"),
            "duration": ended - started,
        }
        records = _records(bytes(bufs[rep_r]), nonce)
        if code == SETUP_FAILED and not records:
            verdict = verdict or "error"
        if request["mode"] == "function":
            run["units"] = _unit_statuses(records, len(request["tests"]), verdict)
            run["status"] = verdict or "ok"
        elif verdict is not None:
            run["status"] = verdict
        elif code != 0:
            run["status"] = "memory" if ["M"] in records else "error"
        else:
            run["status"] = "ok"
        return run

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

    def _reap(self, pid: int) -> tuple[int, resource.struct_rusage]:
        """Kill whatever the run left behind and collect the child's exit status."""
        if not self.pid_one:
            for send in (os.kill, os.killpg):  # the child itself too, in case it never reached setsid()
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    send(pid, signal.SIGKILL)
            _, wait_status, usage = os.wait4(pid, 0)
            if self.uid is not None:
                sweep_uid(self.uid)
                remove_owned(self.uid, (self.job_root, *_SHARED_WRITABLE))
            return wait_status, usage
        # As init of our own PID namespace, kill(-1) reaches exactly the processes of this run (a fork in
        # flight fails once its parent has SIGKILL pending), and every orphan becomes our child to reap.
        _kill_namespace()
        _, wait_status, usage = os.wait4(pid, 0)
        while True:
            try:
                os.waitpid(-1, 0)
            except ChildProcessError:
                if not _kill_namespace():
                    return wait_status, usage

    def _cpu_limit(self) -> int:
        return int(self.limits["cpu_s"])

    def _child(
        self, request: dict, path: str, nonce: str, fds: tuple[int, int, int, int], nproc_base: int
    ) -> None:
        """In the forked child: lock the process down, then hand over to the harness. Never returns."""
        os.setsid()
        high = [_dup_high(fd) for fd in fds]
        for target, fd in enumerate(high):
            os.dup2(fd, target)
        os.closerange(REPORT_FD + 1, resource.getrlimit(resource.RLIMIT_NOFILE)[0])
        workdir = os.path.dirname(path)
        os.chdir(workdir)
        os.environ.clear()
        os.environ.update({
            "PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": workdir, "TMPDIR": workdir, "LANG": "C.UTF-8",
            "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        })  # fmt: skip
        sys.stdin = sys.__stdin__ = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
        sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="backslashreplace", closefd=False)  # noqa: SIM115
        sys.argv = [path]
        limits = self.limits
        memory = limits["memory_mb"] << 20
        cpu = self._cpu_limit()
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
        if self.uid is not None:
            os.setgroups([])
            os.setgid(self.uid)
            os.setuid(self.uid)
            try:
                os.setuid(0)
            except PermissionError:
                pass
            else:
                raise RuntimeError("sandbox: could not drop root")
        # Without a uid of its own the program could reach the caller's files: the hook is then not optional.
        hook = make_audit_hook(workdir, os.getpid()) if self.audit or self.uid is None else None
        if request["mode"] == "function":
            _function_harness(request, path, nonce, hook)
        else:
            _stdio_harness(request["program"], path, nonce, hook)


def _function_harness(request: dict, path: str, nonce: str, hook) -> None:
    """Run the program, then each test unit; report every verdict with the nonce. Never returns.

    Every name used after the program has started is a local bound here first: the program may rebind
    anything in builtins, os, sys or this module without changing what the harness does.
    """
    write, exit_, compile_, exec_, enumerate_ = os.write, os._exit, compile, exec, enumerate
    excepthook, exc_info, base_exception, memory_error = (
        sys.__excepthook__,
        sys.exc_info,
        BaseException,
        MemoryError,
    )
    issubclass_, type_, get, dict_ = issubclass, type, dict.get, dict
    out, err, report_fd = sys.stdout, sys.stderr, REPORT_FD
    wrap = make_return_guard()
    pristine = dict(builtins.__dict__)
    entry_point, strict = request["entry_point"], request["strict_returns"]

    def report(line: str) -> None:
        write(report_fd, f"{nonce} {line}\n".encode())

    def explain() -> str:
        """Print the current exception (natively: no frame attributes from Python) and classify it."""
        _, error, trace = exc_info()
        kind = "mem" if issubclass_(type_(error), memory_error) else "fail"
        try:  # noqa: SIM105 - contextlib.suppress would look up builtins the program may have replaced
            excepthook(type_(error), error, trace.tb_next)
        except base_exception:
            pass
        return kind

    def finish() -> NoReturn:
        for stream in (out, err):
            try:  # noqa: SIM105 - see explain()
                stream.flush()
            except base_exception:
                pass
        exit_(0)

    try:
        tests = [
            compile_(unit, f"<tests[{i}]>", "exec", dont_inherit=True)
            for i, unit in enumerate_(request["tests"])
        ]
    except base_exception:
        explain()
        report("T err")
        finish()
    try:
        code = compile_(request["program"], path, "exec", dont_inherit=True)
    except base_exception:
        report(f"L {'err' if explain() == 'fail' else 'mem'}")
        finish()
    namespace = {"__name__": "solution", "__builtins__": builtins}
    if hook is not None:
        sys.addaudithook(hook)
    try:
        exec_(code, namespace)
        candidate = None if entry_point is None else get(namespace, entry_point)
        if entry_point is not None and candidate is None:
            raise NameError(f"entry point {entry_point!r} is not defined")
    except base_exception:
        report(f"L {'err' if explain() == 'fail' else 'mem'}")
        finish()
    report("L ok")
    tests_ns = dict_(namespace)
    tests_ns["__builtins__"] = pristine
    if entry_point is not None:
        candidate = wrap(candidate) if strict else candidate
        tests_ns[entry_point] = candidate
    for i, unit in enumerate_(tests):
        before = get(tests_ns, "check")
        try:
            exec_(unit, tests_ns)
            check = get(tests_ns, "check")
            if entry_point is not None and check is not None and check is not before:
                check(candidate)
        except base_exception:
            report(f"U {i} {explain()}")
        else:
            report(f"U {i} pass")
    report("D")
    finish()


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
    """Report lines written by the harness: only text that follows the nonce counts."""
    return [
        chunk.split(b"\n", 1)[0].decode("ascii", "replace").split()
        for chunk in report.split(nonce.encode())[1:]
    ]


def _unit_statuses(records: list[list[str]], total: int, verdict: str | None) -> list[str]:
    """Status of every test unit from the harness records; units it never reported share the run's fate."""
    loaded, done, units = None, False, {}
    for record in records:
        if record[:1] == ["L"] and len(record) == 2:
            loaded = record[1]
        elif record[:1] == ["T"]:
            return ["error"] * total
        elif record[:1] == ["U"] and len(record) == 3 and record[1].isdigit() and record[2] in _UNIT_CODES:
            units.setdefault(int(record[1]), _UNIT_CODES[record[2]])
        elif record == ["D"]:
            done = True
    if loaded in ("err", "mem"):
        return ["error" if loaded == "err" else "memory"] * total
    missing = verdict or ("error" if not done else "failed")
    return [units.get(i, missing) for i in range(total)]


def _kill_namespace() -> bool:
    """SIGKILL every other process of our PID namespace; False when there was none."""
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True


def _dup_high(fd: int) -> int:
    import fcntl

    return fcntl.fcntl(fd, fcntl.F_DUPFD, _HIGH_FD)


def _read_nonblocking(fd: int) -> bytes:
    os.set_blocking(fd, False)
    return os.read(fd, _READ_CHUNK)


def _send(fd: int, message: dict) -> None:
    data = (json.dumps(message) + "\n").encode()
    while data:
        data = data[os.write(fd, data) :]


def main() -> None:
    """Serve requests until the host closes our stdin."""
    requests = os.fdopen(_dup_high(0), "rb")
    replies = _dup_high(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    worker = Worker(json.loads(requests.readline()))
    for name in _PRELOAD:
        __import__(name)
    gc.freeze()  # children then never touch (copy) these objects when they collect garbage
    _send(replies, {"ready": True, "pid_one": worker.pid_one, "uid": worker.uid})
    for line in requests:
        try:
            reply = worker.handle(json.loads(line))
        except Exception as exc:  # a bug here must cost one job, not the worker
            reply = {"error": f"sandbox worker: {type(exc).__name__}: {exc}"}
        _send(replies, reply)


if __name__ == "__main__":
    main()
