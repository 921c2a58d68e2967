"""The reward server over real HTTP on 127.0.0.1: rewards, OpenRLHF's shapes, bad input, limits, timeouts, load."""

from __future__ import annotations

import functools
import json
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from test_backends import samples, write_build

from snsdata.backends.server import Limits, create_server, response_text, score_in_worker
from snsdata.rewards.scorer import Scorer
from snsdata.spec import load_catalogue

SLOW, SLUGGISH = "SLOW", "SLUGGISH"


def slow_score(items: list) -> list:
    """The default scorer, except that a completion reading SLOW hangs (a degenerate sample) and one reading
    SLUGGISH takes half a second (an overloaded server, not a stuck one)."""
    completions = {completion for _, completion, _ in items}
    if SLOW in completions:
        time.sleep(60)
    if SLUGGISH in completions:
        time.sleep(0.5)
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


@pytest.fixture(scope="module")
def server(build: Path):
    limits = Limits(max_body_bytes=256 * 1024, max_items=2_000, timeout_s=30.0)
    with create_server(build, workers=2, chunk_size=16, limits=limits) as running:
        yield running


@pytest.fixture()
def client(server) -> httpx.Client:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def test_binds_to_loopback_and_reports_health(server, client: httpx.Client) -> None:
    assert server.address[0] == "127.0.0.1"
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["tasks"] == 2 and health["workers"] == 2


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
    assert response_text("PROMPT answer </s>", "PROMPT") == " answer"


@pytest.mark.parametrize(("body", "reason"), [
    (b"{not json", "not valid JSON"),
    (b"[1, 2]", "JSON object"),
    (b'{"items": 3}', "`items` must be a list"),
    (b'{"items": [5]}', "items[0]: must be an object"),
    (b'{"items": [{"task_id": "note_gender", "record": {}}]}', "completion must be"),
    (b'{"items": [{"task_id": "nope", "completion": "x", "record": {}}]}', "unknown task_id 'nope'"),
    (b'{"items": [{"task_id": "note_gender", "completion": "x", "record": "{bad"}]}', "record is not valid JSON"),
    (b'{"items": [{"task_id": "note_gender", "completion": "x", "record_id": "zz"}]}', "no record 'zz'"),
    (b"\xff\xfe", "not valid JSON"),
    (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
])
def test_malformed_plain_requests_get_400_with_a_reason(client: httpx.Client, body: bytes, reason: str) -> None:
    response = client.post("/score", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 400
    assert reason in response.json()["error"]


def test_malformed_openrlhf_requests_and_wrong_routes(client: httpx.Client) -> None:
    mismatch = client.post("/get_reward", json={"query": ["a"], "prompts": [], "labels": []})
    assert mismatch.status_code == 400 and "differ in length" in mismatch.json()["error"]
    bad_label = client.post("/get_reward", json={"query": ["a"], "prompts": ["a"], "labels": ["not json"]})
    assert bad_label.status_code == 400 and "label must be JSON" in bad_label.json()["error"]
    assert client.post("/nowhere", json={}).status_code == 404
    assert client.get("/nowhere").status_code == 404
    assert client.put("/score", content=b"{}").status_code == 405
    assert client.get("/health").status_code == 200  # still serving


def _raw(server, payload: bytes) -> bytes:
    """Send bytes as they are; read the answer until the server closes the connection (it does after errors)."""
    with socket.create_connection(server.address, timeout=10) as sock:
        sock.sendall(payload)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        return answer


def test_protocol_errors_do_not_take_the_server_down(server, client: httpx.Client) -> None:
    garbled = _raw(server, b"GARBAGE\r\n\r\n")
    assert garbled.startswith(b"HTTP/1.1 400") and b'"error": "Bad request syntax' in garbled
    assert _raw(server, b"POST /score HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.1 411")
    chunked = b"POST /score HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"
    assert _raw(server, chunked).startswith(b"HTTP/1.1 411")
    with socket.create_connection(server.address, timeout=10) as sock:  # a client that vanishes mid-body
        sock.sendall(b"POST /score HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"items\":")
    assert client.get("/health").json()["status"] == "ok"


def test_oversized_requests_get_413(client: httpx.Client) -> None:
    huge = {"items": [{"task_id": "note_gender", "completion": "x" * 300_000, "record": {}}]}
    response = client.post("/score", json=huge)
    assert response.status_code == 413 and "at most 262144" in response.json()["error"]
    many = {"items": [{"task_id": "note_gender", "completion": "", "record": {}}] * 2_001}
    response = client.post("/score", json=many)
    assert response.status_code == 413 and "at most 2000" in response.json()["error"]
    assert client.post("/score", json={"items": batch(4)}).status_code == 200


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


def test_a_hanging_scorer_hits_the_time_limit_and_the_pool_is_replaced(build: Path) -> None:
    limits = Limits(timeout_s=1.5)
    record = samples()[0]["record"]
    with create_server(build, workers=1, chunk_size=2, limits=limits, score_fn=slow_score) as running, \
            httpx.Client(base_url=running.url, timeout=30.0) as http:
        assert http.post("/score", json={"items": batch(4)}).status_code == 200  # pool warm
        hung = [*batch(4), {"task_id": "note_gender", "completion": SLOW, "record": record}]
        started = time.monotonic()
        response = http.post("/score", json={"items": hung})
        assert response.status_code == 504 and "longer than 1.5 s" in response.json()["error"]
        assert time.monotonic() - started < 5
        # The only worker is hung: without a new pool every later request would wait for it and time out too.
        while (health := http.get("/health").json())["recycled_pools"] == 0 or health["status"] == "starting":
            assert time.monotonic() - started < 30
            time.sleep(0.1)
        items = batch(20)
        assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)

        # Four half-second chunks overrun the limit too, but the pool keeps finishing them: it is kept.
        sluggish = [{"task_id": "note_gender", "completion": SLUGGISH, "record": record}] * 8
        assert http.post("/score", json={"items": sluggish}).status_code == 504
        assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
        assert http.get("/health").json()["recycled_pools"] == 1


def test_serve_rewards_command(build: Path) -> None:
    command = [sys.executable, "-m", "snsdata", "serve-rewards", "--build", str(build), "--port", "0", "--workers", "1"]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        url = next(m.group(0) for line in child.stdout if (m := re.search(r"http://127\.0\.0\.1:\d+", line)))
        with httpx.Client(base_url=url, timeout=30.0) as http:
            assert http.get("/health").json()["tasks"] == 2
            items = batch(10)
            assert http.post("/score", json={"items": items}).json()["rewards"] == expected(items)
    finally:
        child.send_signal(signal.SIGINT)
        assert child.wait(timeout=30) == 0
