"""The reward server over real HTTP on 127.0.0.1: rewards, OpenRLHF's shapes, bad input, limits checked before
allocation, connection budget and deadlines, per-kind pools, the token, and a fuzz of the request parser."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import httpx
import psutil
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_backends import samples, write_build

from snsdata.backends import server as server_module
from snsdata.backends.server import (
    Limits,
    RequestError,
    create_server,
    export_openrlhf,
    parse_body,
    response_text,
    scan_json,
    score_in_worker,
)
from snsdata.backends.server_http import parse_head
from snsdata.rewards.sandbox import isolation_level
from snsdata.rewards.scorer import Scorer
from snsdata.spec import load_catalogue

SLOW, SLUGGISH, NAP = "SLOW", "SLUGGISH", "NAP"


def slow_score(items: list) -> list:
    """The default scorer, except that a completion reading SLOW hangs (a degenerate sample), one reading
    SLUGGISH takes half a second (an overloaded server, not a stuck one) and one reading NAP three seconds."""
    completions = {completion for _, completion, _ in items}
    if SLOW in completions:
        time.sleep(600)
    if SLUGGISH in completions:
        time.sleep(0.5)
    if NAP in completions:
        time.sleep(3)
    return score_in_worker(items)


@functools.cache
def scorer(task_id: str) -> Scorer:
    return Scorer(load_catalogue()[task_id])


def expected(items: list[dict]) -> list[float | None]:
    """In-process scores, the reference every server answer must equal."""
    return [scorer(i["task_id"])([i["completion"]], [i["record"]])[0] for i in items]


def batch(n: int, offset: int = 0) -> list[dict]:
    pool = samples()
    out = []
    for k in range(n):
        item = pool[(k + offset) % len(pool)]
        completion = item["gold"] if (k + offset) % 3 else item["wrong"]
        out.append({"task_id": item["task_id"], "completion": completion, "record": item["record"]})
    return out


@pytest.fixture(scope="module")
def build(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_build(tmp_path_factory.mktemp("server") / "rl", "rl")


MAIN_LIMITS = Limits(max_body_bytes=256 * 1024, max_items=2_000, timeout_s=30.0, max_completion_chars=50_000,
                     memory_budget_bytes=1 << 20)


@pytest.fixture(scope="module")
def server(build: Path):
    with create_server(build, workers=2, chunk_size=16, limits=MAIN_LIMITS) as running:
        yield running


@pytest.fixture()
def client(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def _raw(address: tuple[str, int], payload: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are; read the answer until the server closes the connection."""
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def _post(path: str, body: bytes, extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            f"Connection: close\r\n{extra}\r\n").encode() + body


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


def _json(answer: bytes) -> dict:
    return json.loads(answer.split(b"\r\n\r\n", 1)[1])


# --- rewards ------------------------------------------------------------------------------------------------------


def test_binds_to_loopback_and_reports_health(server, client: httpx.Client) -> None:
    assert server.address[0] == "127.0.0.1"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tasks"] == 2
    assert health["sandbox_isolation"] == isolation_level()
    cheap = health["pools"]["cheap"]
    assert cheap["workers"] == cheap["ready_workers"] == 2 and cheap["tasks"] == 2
    assert {"queued_rows", "running_rows", "in_flight_chunks", "queue_limit_rows", "restarted_workers"} <= set(cheap)
    assert "sandbox" not in health["pools"]  # no code tasks in this build: no sandbox workers
    assert health["connections"]["open"] >= 1 and health["connections"]["max"] == MAIN_LIMITS.max_connections
    assert health["memory"] == {"budget_mb": 1.0, "held_mb": 0.0} and health["auth"] == "none"


def test_plain_batch_endpoint_returns_the_scorers_rewards(client: httpx.Client) -> None:
    items = batch(40)
    items[1]["record"] = json.dumps(items[1]["record"])  # a record may come as its JSON
    by_id = {"task_id": "note_gender", "record_id": "g2", "completion": "Yes"}  # or by id, from the build
    no_gold = {"task_id": "note_gender", "completion": "Yes", "record": {"content": "no answer field"}}
    response = client.post("/score", json={"items": [*items, by_id, no_gold]})
    assert response.status_code == 200
    rewards = response.json()["rewards"]
    reference = expected([*batch(40), {**by_id, "record": samples()[2]["record"]}])
    assert rewards[:-1] == reference
    assert rewards[-1] is None  # the reward does not apply: JSON null, not a false 0
    assert 0.0 in rewards and 1.0 in rewards


def test_openrlhf_endpoint(client: httpx.Client) -> None:
    items = batch(6)
    prompts = [f"<|im_start|>user\nq{k}<|im_end|>\n<|im_start|>assistant\n" for k in range(len(items))]
    queries = [f"<|endoftext|>{p}{i['completion']}<|im_end|><|endoftext|>" for p, i in zip(prompts, items,
                                                                                             strict=True)]
    labels = [json.dumps({"task_id": i["task_id"], "record": i["record"]}) for i in items]
    body = client.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": labels}).json()
    assert body["rewards"] == expected(items) == body["scores"]
    assert body["extra_logs"]["reward_applies"] == [1.0] * len(items)


def test_openrlhf_response_follows_the_prompt_despite_spacing_and_special_tokens() -> None:
    prompt = "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nIs it  Yes?<|im_end|>\n<|im_start|>assistant\n"
    assert response_text(prompt + "Yes<|im_end|><|endoftext|>", prompt) == "Yes"
    # the same prompt decoded with other spacing around special tokens, and left padding
    spaced = "<|endoftext|><|endoftext|><|im_start|> system\nBe brief. <|im_end|> <|im_start|> user\nIs it Yes?" \
             "<|im_end|>\n<|im_start|> assistant\n"
    assert response_text(spaced + "No<|im_end|>\n<|im_start|>user\nmore", prompt) == "No"
    # decoded without special tokens at all
    assert response_text("system\nBe brief.\nuser\nIs it Yes?\nassistant\nYes", prompt) == "Yes"
    # code keeps its indentation
    assert response_text(spaced + "    return x\n<|im_end|>", prompt) == "    return x"
    assert response_text("<s>[INST] hi [/INST] yes</s>", "<s>[INST] hi [/INST]") == " yes"
    # not a prefix: no response rather than the prompt scored as if it were one
    assert response_text("<|im_start|>user\nIs it No?<|im_end|>\n<|im_start|>assistant\nYes", prompt) is None
    assert response_text("Yes", prompt) is None


def test_openrlhf_query_without_the_prompt_is_400_naming_the_sample(client: httpx.Client) -> None:
    items = batch(3)
    prompts = [f"<|im_start|>user\nquestion {k}<|im_end|>\n<|im_start|>assistant\n" for k in range(3)]
    queries = [p + i["completion"] for p, i in zip(prompts, items, strict=True)]
    queries[2] = "<|im_start|>user\nquestion 9<|im_end|>\n<|im_start|>assistant\nYes"
    labels = [json.dumps({"task_id": i["task_id"], "record_id": f"r{k}", "record": i["record"]})
              for k, i in enumerate(items)]
    response = client.post("/get_reward", json={"query": queries, "prompts": prompts, "labels": labels})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error.startswith(f"sample 2 ({items[2]['task_id']}, record 'r2')")
    assert "does not start with the prompt" in error
    assert "'2assistant'" in error and "'9assistant" in error  # where they part


def test_openrlhf_export_rows_carry_the_task_as_datasource(build: Path, tmp_path: Path) -> None:
    files = export_openrlhf(build, tmp_path / "orl")
    rows = [json.loads(line) for path in files.values() for line in path.read_text().splitlines()]
    assert rows and all(row["datasource"] == json.loads(row["label"])["task_id"] for row in rows)
    assert {row["datasource"] for row in rows} == {"note_gender", "redtrans_en2zh"}


# --- bad input ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("body", "status", "reason"), [
    (b"{not json", 400, "not valid JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (b'{"items": 3}', 400, "`items` must be a list"),
    (b'{"items": [5]}', 400, "items[0]: must be an object"),
    (b'{"items": [{"task_id": "note_gender", "record": {}}]}', 400, "completion must be"),
    (b'{"items": [{"task_id": "nope", "completion": "x", "record": {}}]}', 400, "unknown task_id 'nope'"),
    (b'{"items": [{"task_id": "note_gender", "completion": "x", "record": "{bad"}]}', 400, "record is not valid JSON"),
    (b'{"items": [{"task_id": "note_gender", "completion": "x", "record_id": "zz"}]}', 400, "no record 'zz'"),
    (b"\xff\xfe", 400, "not valid JSON: not UTF-8 at byte 0"),
    (b"[" * 100_000 + b"]" * 100_000, 400, "nests 100000 levels deep; at most 32"),
    (b'{"items": [' + b"[" * 40 + b"]" * 40 + b"]}", 400, "nests 42 levels deep"),
    (b'{"items": [{"task_id": "note_gender", "record": {}, "completion": "' + b"y" * 50_001 + b'"}]}', 413,
     "items[0]: completion of 50001 characters; at most 50000"),
])
def test_malformed_plain_requests_get_4xx_with_a_reason(client: httpx.Client, body: bytes, status: int,
                                                         reason: str) -> None:
    response = client.post("/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == status
    assert reason in response.json()["error"]


def test_malformed_openrlhf_requests_and_wrong_routes(client: httpx.Client) -> None:
    mismatch = client.post("/get_reward", json={"query": ["a"], "prompts": [], "labels": []})
    assert mismatch.status_code == 400 and "differ in length" in mismatch.json()["error"]
    bad_label = client.post("/get_reward", json={"query": ["a"], "prompts": ["a"], "labels": ["not json"]})
    assert bad_label.status_code == 400 and "label must be JSON" in bad_label.json()["error"]
    assert client.post("/nowhere", json={}).status_code == 404
    assert client.get("/nowhere").status_code == 404
    put = client.put("/score", content=b"{}")
    assert put.status_code == 405 and put.headers["allow"] == "POST"
    assert client.get("/health").status_code == 200  # still serving


def test_protocol_errors_do_not_take_the_server_down(server, client: httpx.Client) -> None:
    garbled = _raw(server.address, b"GARBAGE\r\n\r\n")
    assert garbled.startswith(b"HTTP/1.1 400") and b'"error": "bad request line' in garbled
    assert _raw(server.address, b"POST /score HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 411")
    assert _raw(server.address, b"GET /health HTTP/1.1\r\n\r\n").startswith(b"HTTP/1.1 400")  # no Host
    smuggle = b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert _raw(server.address, smuggle).startswith(b"HTTP/1.1 400")
    chunked = (b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
               b"5\r\nhello\r\n0\r\n\r\n")
    assert _status(_raw(server.address, chunked)) == 400  # read (chunked is allowed), then refused as not JSON
    with socket.create_connection(server.address, timeout=10) as sock:  # a client that vanishes mid-body
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"items\":")
    assert client.get("/health").json()["status"] == "ok"


# --- limits checked before allocation ---------------------------------------------------------------------------


def test_oversized_content_length_is_refused_before_the_body_is_sent(server) -> None:
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 60000000000\r\n\r\n")
        answer = sock.recv(65536)  # arrives although not one byte of the body was sent
        assert answer.startswith(b"HTTP/1.1 413") and b"at most 262144" in answer
        sock.sendall(b"x" * 100_000)  # a client that sends its body anyway is drained, then sees a clean close
        sock.shutdown(socket.SHUT_WR)
        rest = b""
        while chunk := sock.recv(65536):
            rest += chunk
        assert rest == b""


def test_too_many_items_are_refused_before_the_body_is_parsed(server) -> None:
    item = b'{"task_id":"note_gender","completion":"","record":{}},'
    answer = _raw(server.address, _post("/score", b'{"items":[' + item * 4_000 + item[:-1] + b"]}"))
    assert _status(answer) == 413 and _json(answer)["error"] == "a list of 4001 items; at most 2000 per request"
    body = bytearray(b'{"items":[' + item * 300_000 + item[:-1] + b"]}")  # 16 MB of tiny items
    tracemalloc.start()
    try:
        with pytest.raises(RequestError, match="a list of 300001 items; at most 65536"):
            parse_body([body], Limits())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < len(body) // 2  # a scan in slices; parsing it would have taken 7 times the body


def test_oversized_and_chunked_bodies(server, client: httpx.Client) -> None:
    huge = {"items": [{"task_id": "note_gender", "completion": "x" * 300_000, "record": {}}]}
    response = client.post("/score", json=huge)
    assert response.status_code == 413 and "at most 262144" in response.json()["error"]
    items = batch(4)
    payload = json.dumps({"items": items}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(payload[i:i + 100]), payload[i:i + 100])
                      for i in range(0, len(payload), 100))
    head = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    answer = _raw(server.address, head + chunks + b"0\r\n\r\n")
    assert _status(answer) == 200 and _json(answer)["rewards"] == expected(items)
    with socket.create_connection(server.address, timeout=10) as sock:  # chunks are counted as they come
        sock.sendall(head)
        refused = b""
        for _ in range(400):
            try:
                sock.sendall(b"1000\r\n" + b"x" * 4096 + b"\r\n")
            except OSError:
                break
            sock.settimeout(0.01)
            with contextlib.suppress(TimeoutError):
                refused += sock.recv(65536)
            sock.settimeout(10)
            if refused:
                break
        assert refused.startswith(b"HTTP/1.1 413") and b"chunked body over 262144 bytes" in refused


def test_the_memory_budget_answers_503_then_413_for_a_request_that_can_never_fit(server) -> None:
    holders = []
    try:
        for _ in range(2):  # two bodies on their way hold twice 250 kB each (bytes, then text) of the 1 MiB budget
            sock = socket.create_connection(server.address, timeout=10)
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 250000\r\n\r\n{")
            holders.append(sock)
        deadline = time.monotonic() + 10
        while httpx.get(f"{server.url}/health").json()["memory"]["held_mb"] < 0.9 and time.monotonic() < deadline:
            time.sleep(0.02)
        with socket.create_connection(server.address, timeout=10) as sock:  # told before it sends its body
            sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n")
            answer = sock.recv(65536)
        assert _status(answer) == 503 and b"Retry-After: 1" in answer and "budget" in _json(answer)["error"]
    finally:
        for sock in holders:
            sock.close()
    time.sleep(0.2)
    emoji = json.dumps({"items": [{"task_id": "note_gender", "record": {}, "completion": "x" * 250_000 + "😀"}]},
                       ensure_ascii=False).encode()
    answer = _raw(server.address, _post("/score", emoji))  # 250 k characters of 4 bytes each, twice over
    assert _status(answer) == 413 and "whole request memory budget" in _json(answer)["error"]


# --- connections and deadlines ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tight(build: Path):
    limits = Limits(max_connections=8, header_timeout_s=1.0, body_timeout_s=1.0, idle_timeout_s=3.0, linger_s=1.0)
    with create_server(build, workers=1, limits=limits) as running:
        yield running


def test_many_concurrent_connections_get_answers_never_resets(tight) -> None:
    """300 clients at once against a budget of 8 connections: every one gets 200 or a 503 with Retry-After."""
    body = json.dumps({"items": batch(3)}).encode()
    request = (f"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    sockets = []
    for _ in range(300):  # each sends at once: a connection silent past the head timeout would rightly be closed
        sock = socket.create_connection(tight.address, timeout=30)
        sock.sendall(request)
        sockets.append(sock)
    answers: dict[socket.socket, bytes] = {s: b"" for s in sockets}
    errors: list[str] = []
    try:
        for sock in sockets:
            sock.setblocking(False)
        selector = selectors.DefaultSelector()
        for sock in sockets:
            selector.register(sock, selectors.EVENT_READ)
        done: set[socket.socket] = set()
        deadline = time.monotonic() + 60
        while len(done) < len(sockets) and time.monotonic() < deadline:
            for key, _ in selector.select(timeout=1):
                sock = key.fileobj
                try:
                    chunk = sock.recv(65536)
                except ConnectionResetError:
                    errors.append("reset")
                    chunk = b""
                answers[sock] += chunk
                head, _, rest = answers[sock].partition(b"\r\n\r\n")
                length = re.search(rb"Content-Length: (\d+)", head)
                if not chunk or (length and len(rest) >= int(length.group(1))):
                    done.add(sock)
                    selector.unregister(sock)
    finally:
        for sock in sockets:
            sock.close()
    statuses = [_status(a) if a else 0 for a in answers.values()]
    assert not errors and statuses.count(0) == 0
    assert set(statuses) == {200, 503} and statuses.count(200) >= 8
    refused = [a for a in answers.values() if _status(a) == 503]
    assert all(b"Retry-After: 1" in a and b"connections already open" in a for a in refused)
    assert httpx.get(f"{tight.url}/health").json()["connections"]["refused_503"] >= len(refused)


def test_slow_loris_head_and_body_are_cut_off(tight) -> None:
    with socket.create_connection(tight.address, timeout=10) as sock:
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\n")
        answer, sent = b"", 0
        while sent < 40:  # one header byte every 0.1 s would take 4 s; the head has 1 s
            try:
                sock.sendall(b"X")
            except OSError:
                break
            sent += 1
            sock.settimeout(0.1)
            with contextlib.suppress(TimeoutError):
                answer += sock.recv(65536)
            if answer:
                break
        assert answer.startswith(b"HTTP/1.1 408") and b"request head did not arrive within 1 s" in answer
        assert sent < 40
    stalled = _raw(tight.address, b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{")
    assert stalled.startswith(b"HTTP/1.1 408") and b"body did not arrive within 1 s" in stalled


def test_idle_keep_alive_connections_are_closed(tight) -> None:
    with socket.create_connection(tight.address, timeout=10) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200") and b"Connection: keep-alive" in first
        started = time.monotonic()
        while sock.recv(65536):  # nothing more: the server closes it after its idle timeout
            pass
        assert time.monotonic() - started < 9  # closed by the server, not by this socket's 10 s timeout


def test_a_new_connection_takes_the_place_of_an_idle_one(tight) -> None:
    idle = [socket.create_connection(tight.address, timeout=10) for _ in range(8)]
    try:
        time.sleep(0.3)
        for sock in idle:  # each one served once, then idle on keep-alive
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            sock.recv(65536)
        time.sleep(1.3)  # idle past the 1 s after which a new connection may take the place, within the 3 s timeout
        answer = _raw(tight.address, _post("/score", json.dumps({"items": batch(2)}).encode()))
        assert _status(answer) == 200
    finally:
        for sock in idle:
            sock.close()


# --- the token --------------------------------------------------------------------------------------------------


def test_token_is_required_on_every_endpoint_but_health_and_compared_in_constant_time(build: Path,
                                                                                      monkeypatch) -> None:
    compared = []
    real = server_module.hmac.compare_digest
    digest = server_module.hashlib.sha256(b"s3cret-token").digest()

    def spy(a: bytes, b: bytes) -> bool:
        if b == digest:  # multiprocessing authenticates its pipes with compare_digest too
            compared.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(server_module.hmac, "compare_digest", spy)
    items = batch(2)
    with create_server(build, workers=1, token="s3cret-token") as running, \
            httpx.Client(base_url=running.url, timeout=30) as http:
        assert http.get("/health").json()["auth"] == "token"  # probes need no secret
        missing = http.post("/score", json={"items": items})
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert http.post("/score", json={"items": items}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.post("/get_reward", json={}, headers={"Authorization": "Bearer s3cret"}).status_code == 401
        ok = http.post("/score", json={"items": items}, headers={"Authorization": "Bearer s3cret-token"})
        assert ok.status_code == 200 and ok.json()["rewards"] == expected(items)
        assert http.post("/score?token=s3cret-token", json={"items": items}).status_code == 200  # OpenRLHF's URL
    assert compared and all(sizes == (32, 32) for sizes in compared)  # digests: the length is not compared either


# --- pools per reward kind --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def pooled():
    catalogue = load_catalogue()
    specs = {task_id: catalogue[task_id] for task_id in ("note_gender", "gen_code_humaneval")}
    limits = Limits(timeout_s=30.0, sandbox_queue_rows=2)
    with create_server(specs=specs, workers=1, sandbox_workers=1, sandbox_chunk_size=1, limits=limits,
                       score_fn=slow_score) as running:
        yield running


def _code_item(completion: str) -> dict:
    record = {"prompt": 'def f(x):\n    """Return x."""\n', "entry_point": "f",
              "test": "def check(f):\n    assert f(1) == 1\n"}
    return {"task_id": "gen_code_humaneval", "completion": completion, "record": record}


def test_a_sandbox_flood_does_not_block_cheap_requests_and_a_full_sandbox_queue_answers_503(pooled) -> None:
    results: dict[int, int] = {}

    def post_code(key: int) -> None:
        with httpx.Client(base_url=pooled.url, timeout=60) as http:
            results[key] = http.post("/score", json={"items": [_code_item(NAP)]}).status_code

    items = batch(6)
    reference = expected(items)
    flood = [threading.Thread(target=post_code, args=(k,)) for k in range(2)]
    for thread in flood:
        thread.start()
    with httpx.Client(base_url=pooled.url, timeout=60) as http:
        deadline = time.monotonic() + 30
        while http.get("/health").json()["pools"]["sandbox"]["queued_rows"] < 1:  # one running, one queued
            assert time.monotonic() < deadline
            time.sleep(0.02)
        cheap = http.post("/score", json={"items": items})
        health = http.get("/health").json()
        assert cheap.status_code == 200 and cheap.json()["rewards"] == reference
        assert health["pools"]["sandbox"]["running_rows"] == 1 and any(t.is_alive() for t in flood)
        full = http.post("/score", json={"items": [_code_item("def f(x):\n    return x\n")]})
        assert full.status_code == 503 and int(full.headers["retry-after"]) >= 1
        assert "the sandbox pool is full" in full.json()["error"]
        mixed = http.post("/score", json={"items": [*items, _code_item("x")]})
        assert mixed.status_code == 503  # needs the full pool too
        assert http.post("/score", json={"items": items}).status_code == 200  # the cheap pool is unaffected
    for thread in flood:
        thread.join()
    assert results == {0: 200, 1: 200}


def test_a_hung_sandbox_chunk_replaces_its_worker_only() -> None:
    catalogue = load_catalogue()
    specs = {task_id: catalogue[task_id] for task_id in ("note_gender", "gen_code_humaneval")}
    with create_server(specs=specs, workers=1, limits=Limits(timeout_s=8.0), score_fn=slow_score) as running, \
            httpx.Client(base_url=running.url, timeout=60) as http:
        hung = http.post("/score", json={"items": [_code_item(SLOW)]})
        assert hung.status_code == 504
        deadline = time.monotonic() + 30
        while (pools := http.get("/health").json()["pools"])["sandbox"]["restarted_workers"] == 0 or \
                pools["sandbox"]["ready_workers"] < 1:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert pools["cheap"]["restarted_workers"] == 0 and pools["cheap"]["ready_workers"] == 1
        items = batch(4)
        assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
        good = _code_item("def f(x):\n    return x\n")
        assert http.post("/score", json={"items": [good]}).json()["rewards"] == expected([good]) == [1.0]


def test_sandbox_workers_run_with_a_small_cpu_weight(pooled) -> None:
    pools = httpx.get(f"{pooled.url}/health").json()["pools"]
    assert "nice 10" in pools["sandbox"]["cpu_priority"] and "nice" not in pools["cheap"]["cpu_priority"]
    # os.nice adds to the niceness the tests started with (CI: 0; under `nice -n 10 pytest`: 10).
    sandbox_niceness = min(19, psutil.Process().nice() + 10)
    niced = [p for p in psutil.Process().children(recursive=True) if p.nice() == sandbox_niceness]
    assert niced  # the sandbox worker and what it started; the cheap ones stay at the tests' own niceness
    if os.geteuid() == 0 and Path("/sys/fs/cgroup/cpu/cpu.shares").exists():  # root on cgroup v1
        assert "/sandbox (cpu.shares 128)" in pools["sandbox"]["cpu_priority"]
        assert "/cheap (cpu.shares 1024)" in pools["cheap"]["cpu_priority"]
        cgroup = next(line for line in Path(f"/proc/{niced[0].pid}/cgroup").read_text().splitlines()
                      if ":cpu:" in line or ":cpu," in line)
        assert "/snsdata-workers-" in cgroup and cgroup.endswith("/sandbox")


def test_a_hanging_scorer_hits_the_time_limit_and_its_worker_is_replaced(build: Path) -> None:
    limits = Limits(timeout_s=1.5)
    record = samples()[0]["record"]
    with create_server(build, workers=1, chunk_size=2, limits=limits, score_fn=slow_score) as running, \
            httpx.Client(base_url=running.url, timeout=30.0) as http:
        assert http.post("/score", json={"items": batch(4)}).status_code == 200
        hung = [*batch(4), {"task_id": "note_gender", "completion": SLOW, "record": record}]
        started = time.monotonic()
        response = http.post("/score", json={"items": hung})
        assert response.status_code == 504 and "1.5 s" in response.json()["error"]
        assert time.monotonic() - started < 5
        # The only worker is hung: without a new one every later request would wait for it and time out too.
        while (cheap := http.get("/health").json()["pools"]["cheap"])["restarted_workers"] == 0 or \
                cheap["ready_workers"] == 0:
            assert time.monotonic() - started < 30
            time.sleep(0.1)
        assert cheap["restarted_workers"] == 1
        items = batch(20)
        assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
        # Four half-second chunks overrun the limit too, but each finishes: the worker is kept.
        sluggish = [{"task_id": "note_gender", "completion": SLUGGISH, "record": record}] * 8
        assert http.post("/score", json={"items": sluggish}).status_code == 504
        assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
        assert http.get("/health").json()["pools"]["cheap"]["restarted_workers"] == 1


def test_concurrent_clients_each_get_their_own_rewards(server) -> None:
    failures: list[str] = []

    def run(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=60.0) as http:
            for round_ in range(4):
                items = batch(50 + worker, offset=worker * 7 + round_)
                got = http.post("/score", json={"items": items}).json()["rewards"]
                if got != expected(items):
                    failures.append(f"client {worker} round {round_}")

    threads = [threading.Thread(target=run, args=(k,)) for k in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not failures


def test_serve_rewards_command(build: Path) -> None:
    command = [sys.executable, "-m", "snsdata", "serve-rewards", "--build", str(build), "--port", "0", "--workers", "1"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env={**os.environ,
                                                                               "SNSDATA_REWARD_TOKEN": "tok"})
    try:
        line = next(line for line in child.stdout if "http://" in line)
        url = re.search(r"http://127\.0\.0\.1:\d+", line).group(0)
        assert "token required" in line
        with httpx.Client(base_url=url, timeout=30.0, headers={"Authorization": "Bearer tok"}) as http:
            assert http.get("/health").json()["tasks"] == 2
            items = batch(10)
            assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0


# --- fuzz: arbitrary bytes and JSON shapes never crash the parser or the server ---------------------------------

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner,
                                                                                max_size=5), max_leaves=25)
TASKS = st.sampled_from(["note_gender", "redtrans_en2zh", "nope", ""]) | JSON
ITEM = st.fixed_dictionaries({}, optional={
    "task_id": TASKS, "completion": st.text(max_size=40) | JSON,
    "record": st.fixed_dictionaries({}, optional={"answer": st.sampled_from(["Yes", "No"]) | JSON,
                                                  "en": st.text(max_size=20), "zh": st.text(max_size=20)})
    | st.text(max_size=30) | JSON,
    "record_id": st.sampled_from(["g1", "t0", "zz"]) | JSON})
PLAIN = st.fixed_dictionaries({"items": st.lists(ITEM, max_size=6) | JSON}) | JSON
LABEL = st.builds(lambda t, r: json.dumps({"task_id": t, "record": r}), TASKS, JSON) | st.text(max_size=30) | JSON
OPENRLHF = st.fixed_dictionaries({"query": st.lists(st.text(max_size=40) | JSON, max_size=4),
                                  "prompts": st.lists(st.text(max_size=20) | JSON, max_size=4),
                                  "labels": st.lists(LABEL, max_size=4)}) | JSON


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | st.builds(lambda lines: "\r\n".join(lines).encode("utf-8", "surrogatepass"),
                                           st.lists(st.text(max_size=40), max_size=8)))
def test_fuzz_request_heads_parse_or_refuse_cleanly(data: bytes) -> None:
    try:
        head = parse_head(data)
    except RequestError as exc:
        assert 400 <= exc.status < 600 and exc.status != 500 and exc.reason
    else:
        assert head.method and head.path.startswith("/")


def _depth(value) -> int:
    if isinstance(value, list | dict):
        members = value.values() if isinstance(value, dict) else value
        return 1 + max((_depth(m) for m in members), default=0)
    return 0


def _values(value) -> int:
    """JSON values of a document, an object's keys included."""
    if isinstance(value, dict):
        return 1 + sum(1 + _values(v) for v in value.values())
    return 1 + sum(_values(v) for v in value) if isinstance(value, list) else 1


@settings(max_examples=300, deadline=None)
@given(JSON | PLAIN, st.sampled_from([{}, {"ensure_ascii": False}, {"indent": 1}]))
def test_fuzz_the_raw_scan_finds_the_depth_and_longest_list_json_loads_would(value, options: dict) -> None:
    shape = scan_json(json.dumps(value, **options).encode())
    lists = [value, *(value.values() if isinstance(value, dict) else value if isinstance(value, list) else [])]
    assert shape.depth == _depth(value)
    assert shape.longest_list == max([len(v) for v in lists if isinstance(v, list | dict)] + [1])
    assert shape.values >= _values(value)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300) | (JSON | PLAIN).map(lambda v: json.dumps(v).encode()))
def test_fuzz_bodies_parse_or_refuse_cleanly(data: bytes) -> None:
    limits = Limits(max_depth=4, max_items=3, max_body_bytes=1 << 20, memory_budget_bytes=64 << 20)
    try:
        value = parse_body([bytearray(data)], limits)
    except RequestError as exc:
        assert exc.status in (400, 413) and exc.reason
    else:
        assert value == json.loads(data)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(endpoint=st.sampled_from(["/score", "/get_reward"]), body=PLAIN | OPENRLHF,
       raw=st.none() | st.binary(max_size=200))
def test_fuzz_the_server_answers_every_request_with_2xx_or_4xx_json(server, endpoint: str, body, raw) -> None:
    payload = raw if raw is not None else json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")
    answer = _raw(server.address, _post(endpoint, payload))
    status = _status(answer)
    assert 200 <= status < 300 or 400 <= status < 500, answer[:300]
    document = _json(answer)
    assert b"Traceback" not in answer
    if status == 200:
        sent = json.loads(payload)
        assert len(document["rewards"]) == len(sent["items"] if endpoint == "/score" else sent["query"])
    else:
        assert document["error"] and document["status"] == status
