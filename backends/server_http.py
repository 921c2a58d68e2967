"""HTTP/1.1 for the reward server, on asyncio: every read has a deadline, connections are budgeted, and a client
beyond the budget gets a quick 503 instead of a reset.

Why not `http.server`: it gives each connection a thread with no upper bound, listens with a backlog of 5 (the
kernel resets connections beyond it), and its socket timeout applies per `recv`, so a client trickling one byte
a minute holds a thread forever. Here one event loop accepts everything at once (a real listen backlog), serves
up to `max_connections` connections, and answers the rest with 503 and `Retry-After` after reading their request
head; a request head must arrive within `header_timeout_s` of its first byte, a body within `body_timeout_s`, and
a keep-alive connection idle for `idle_timeout_s` is closed. When the budget is full, a new connection takes the
place of the longest-idle keep-alive one rather than being refused.

A response sent before the request body was read (413, 401, 503, ...) is followed by a lingering close: the
server half-closes and reads what the client still sends for up to `linger_s`, so that the kernel does not answer
unread data with a reset that would destroy the response before the client reads it.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import json
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol
from urllib.parse import parse_qs

log = logging.getLogger("snsdata.server")

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_MAX_HEADERS = 100
_MAX_CHUNK_LINE = 4096
_RECLAIM_IDLE_AFTER_S = 1.0
"""A keep-alive connection idle this long after a request may be closed to admit a new one."""
_MAX_REFUSING = 1024
"""Connections being answered 503 at once; beyond that a new one is closed at once (a flood, not clients)."""


class RequestError(Exception):
    """A request the server refuses: an HTTP status, a reason the client can act on, extra headers, and whether
    the connection must close (the request's framing can no longer be trusted, or its body was not read)."""

    def __init__(self, status: HTTPStatus, reason: str, headers: dict[str, str] | None = None, close: bool = False):
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.headers = headers or {}
        self.close = close


class _ClientGone(Exception):
    """The client closed its side (or reset) before the request was complete."""


class HttpLimits(Protocol):
    """The connection and time limits the HTTP layer reads (the server's `Limits` has them all)."""

    max_connections: int
    backlog: int
    header_timeout_s: float
    body_timeout_s: float
    idle_timeout_s: float
    write_timeout_s: float
    max_head_bytes: int
    linger_s: float


@dataclass(frozen=True)
class RequestHead:
    method: str
    path: str
    query: dict[str, list[str]]
    version: str
    headers: dict[str, str]
    """Lower-case names; repeated headers joined with ", "."""
    keep_alive: bool
    content_length: int | None
    chunked: bool
    expect_continue: bool


def parse_head(data: bytes) -> RequestHead:
    """The request line and headers (without the blank line that ends them), or RequestError (4xx/5xx, close)."""
    text = data.decode("latin-1")
    lines = text.split("\n")
    lines = [line[:-1] if line.endswith("\r") else line for line in lines]
    while lines and not lines[0]:
        lines.pop(0)  # RFC 9112: a server should ignore empty lines before the request line
    if not lines:
        raise RequestError(HTTPStatus.BAD_REQUEST, "empty request", close=True)
    parts = lines[0].split(" ")
    if len(parts) != 3:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"bad request line {lines[0][:80]!r}", close=True)
    method, target, version = parts
    if not method or not set(method) <= _TOKEN_CHARS:
        raise RequestError(HTTPStatus.BAD_REQUEST, f"bad method {method[:20]!r}", close=True)
    if version not in ("HTTP/1.1", "HTTP/1.0"):
        if version.startswith("HTTP/") and len(version) == 8 and version[5].isdigit() and version[7].isdigit():
            raise RequestError(HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, f"{version} is not served; use HTTP/1.1",
                               close=True)
        raise RequestError(HTTPStatus.BAD_REQUEST, f"bad HTTP version {version[:20]!r}", close=True)
    if target.startswith(("http://", "https://")):  # absolute form: keep the path
        target = "/" + target.split("://", 1)[1].partition("/")[2]
    if not target.startswith("/") or any(c in target for c in "\x00\r\n\t"):
        raise RequestError(HTTPStatus.BAD_REQUEST, f"bad request target {target[:80]!r}", close=True)
    path, _, query = target.partition("?")
    headers: dict[str, str] = {}
    lengths: set[str] = set()
    if len(lines) - 1 > _MAX_HEADERS:
        raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, f"more than {_MAX_HEADERS} headers",
                           close=True)
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN_CHARS:
            raise RequestError(HTTPStatus.BAD_REQUEST, f"bad header line {line[:80]!r}", close=True)
        name, value = name.lower(), value.strip(" \t")
        if name == "content-length":
            lengths.add(value)
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    keep_alive_tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
    keep_alive = "close" not in keep_alive_tokens if version == "HTTP/1.1" else "keep-alive" in keep_alive_tokens
    if version == "HTTP/1.1" and "host" not in headers:
        raise RequestError(HTTPStatus.BAD_REQUEST, "HTTP/1.1 requires a Host header", close=True)
    chunked = False
    if "transfer-encoding" in headers:
        codings = [c.strip().lower() for c in headers["transfer-encoding"].split(",")]
        if codings != ["chunked"]:
            raise RequestError(HTTPStatus.NOT_IMPLEMENTED, f"Transfer-Encoding {headers['transfer-encoding'][:40]!r}"
                                                           " is not supported (only chunked)", close=True)
        if lengths or version == "HTTP/1.0":
            raise RequestError(HTTPStatus.BAD_REQUEST, "Transfer-Encoding with Content-Length (or on HTTP/1.0) "
                                                       "is ambiguous", close=True)
        chunked = True
    content_length = None
    if lengths:
        value = lengths.pop()
        if lengths or not value.isdigit() or not value.isascii() or len(value) > 18:
            raise RequestError(HTTPStatus.BAD_REQUEST, "bad or conflicting Content-Length", close=True)
        content_length = int(value)
    expect = headers.get("expect", "").lower()
    if expect and expect != "100-continue":
        raise RequestError(HTTPStatus.EXPECTATION_FAILED, f"cannot meet Expect: {expect[:40]}", close=True)
    return RequestHead(method, path, parse_qs(query, max_num_fields=16), version, headers, keep_alive,
                       content_length, chunked, expect == "100-continue")


@dataclass
class Response:
    status: HTTPStatus
    payload: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False

    @classmethod
    def error(cls, exc: RequestError) -> Response:
        payload: dict[str, Any] = {"error": exc.reason, "status": int(exc.status)}
        if "Retry-After" in exc.headers:
            payload["retry_after_s"] = int(exc.headers["Retry-After"])
        return cls(exc.status, payload, exc.headers, exc.close)

    def encode(self) -> bytes:
        body = json.dumps(self.payload, ensure_ascii=False).encode("utf-8")
        lines = [f"HTTP/1.1 {int(self.status)} {self.status.phrase}", "Server: snsdata-rewards",
                 f"Date: {email.utils.formatdate(usegmt=True)}", "Content-Type: application/json",
                 f"Content-Length: {len(body)}", f"Connection: {'close' if self.close else 'keep-alive'}",
                 *(f"{name}: {value}" for name, value in self.headers.items())]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


class App(Protocol):
    async def handle(self, request: Request) -> Response: ...

    def busy(self, head: RequestHead | None) -> Response:
        """The answer for a connection beyond the connection budget (503, or health)."""
        ...


class _Connection:
    """One client connection: the stream, the bytes read but not yet consumed, and when it went idle."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        self.idle_since: float | None = None
        self.served = 0

    async def fill(self) -> None:
        data = await self.reader.read(65536)
        if not data:
            raise _ClientGone
        self.buf += data

    async def read_head(self, idle_s: float, header_s: float, max_bytes: int) -> bytes | None:
        """The next request head, or None when the client closes (or stays idle past `idle_s`) between requests.
        A new connection must start its first request within `header_s`."""
        while self.buf[:2] == b"\r\n":
            del self.buf[:2]
        if not self.buf:
            self.idle_since = time.monotonic()
            try:
                async with asyncio.timeout(idle_s if self.served else header_s):
                    await self.fill()
            except (TimeoutError, _ClientGone, ConnectionError):
                return None
            finally:
                self.idle_since = None
        try:
            async with asyncio.timeout(header_s):
                while True:
                    end, sep = _head_end(self.buf)
                    if end >= 0:
                        head = bytes(self.buf[:end])
                        del self.buf[:end + sep]
                        return head
                    if len(self.buf) > max_bytes:
                        raise RequestError(HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
                                           f"request head over {max_bytes} bytes", close=True)
                    await self.fill()
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the request head did not arrive within {header_s:g} s",
                               close=True) from None
        except (_ClientGone, ConnectionError):
            return None

    async def read_into(self, body: bytearray) -> None:
        view = memoryview(body)
        taken = min(len(self.buf), len(body))
        view[:taken] = self.buf[:taken]
        del self.buf[:taken]
        while taken < len(body):
            data = await self.reader.read(min(len(body) - taken, 1 << 20))
            if not data:
                raise _ClientGone
            view[taken:taken + len(data)] = data
            taken += len(data)

    async def read_line(self, max_bytes: int) -> bytes:
        while (end := self.buf.find(b"\n")) < 0:
            if len(self.buf) > max_bytes:
                raise RequestError(HTTPStatus.BAD_REQUEST, "chunk line too long", close=True)
            await self.fill()
        line = bytes(self.buf[:end]).rstrip(b"\r")
        del self.buf[:end + 1]
        return line

    async def read_exact(self, size: int) -> bytes:
        while len(self.buf) < size:
            await self.fill()
        data = bytes(self.buf[:size])
        del self.buf[:size]
        return data

    async def send(self, data: bytes, timeout_s: float) -> None:
        self.writer.write(data)
        async with asyncio.timeout(timeout_s):
            await self.writer.drain()

    async def linger_close(self, seconds: float, max_bytes: int) -> None:
        """Half-close, read and drop what the client still sends (bounded), then close: no reset."""
        self.buf.clear()
        with contextlib.suppress(OSError, RuntimeError):
            if self.writer.can_write_eof():
                self.writer.write_eof()
        drained = 0
        with contextlib.suppress(TimeoutError, OSError, ConnectionError):
            async with asyncio.timeout(seconds):
                while drained < max_bytes:
                    data = await self.reader.read(65536)
                    if not data:
                        break
                    drained += len(data)
        await self.close()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.writer.wait_closed()


def _head_end(buf: bytearray) -> tuple[int, int]:
    """Where the head ends and the length of its terminator (CRLF CRLF, or bare LF LF as RFC 9112 allows)."""
    crlf, lf = buf.find(b"\r\n\r\n"), buf.find(b"\n\n")
    if crlf >= 0 and (lf < 0 or crlf <= lf):
        return crlf, 4
    return (lf, 2) if lf >= 0 else (-1, 0)


class Request:
    """A parsed request head on its connection; the body is read only when the endpoint asks for it, so that
    authentication and size checks happen before a byte of it is buffered."""

    def __init__(self, connection: _Connection, head: RequestHead, limits: HttpLimits):
        self.head = head
        self._connection = connection
        self._limits = limits
        self.body_pending = bool(head.content_length) or head.chunked

    async def read_body(self, max_bytes: int, reserve: Callable[[int], None]) -> bytearray:
        """The whole body, at most `max_bytes`; `reserve(n)` is told the bytes about to be held (it raises to
        refuse), before they are read."""
        head = self.head
        if not head.chunked and head.content_length is None:
            raise RequestError(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header (or a chunked body) is required",
                               close=True)
        if head.content_length is not None and head.content_length > max_bytes:
            raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                               f"body of {head.content_length} bytes; at most {max_bytes}", close=True)
        if head.content_length is not None:
            reserve(head.content_length)
        if head.expect_continue:
            await self._connection.send(b"HTTP/1.1 100 Continue\r\n\r\n", self._limits.write_timeout_s)
        timeout = self._limits.body_timeout_s
        try:
            async with asyncio.timeout(timeout):
                if head.chunked:
                    body = await self._read_chunked(max_bytes, reserve)
                else:
                    body = bytearray(head.content_length or 0)
                    await self._connection.read_into(body)
        except TimeoutError:
            raise RequestError(HTTPStatus.REQUEST_TIMEOUT, f"the body did not arrive within {timeout:g} s",
                               close=True) from None
        self.body_pending = False
        return body

    async def _read_chunked(self, max_bytes: int, reserve: Callable[[int], None]) -> bytearray:
        body = bytearray()
        connection = self._connection
        while True:
            line = (await connection.read_line(_MAX_CHUNK_LINE)).split(b";", 1)[0].strip()
            if not line or len(line) > 16 or any(c not in b"0123456789abcdefABCDEF" for c in line):
                raise RequestError(HTTPStatus.BAD_REQUEST, f"bad chunk size line {line[:40]!r}", close=True)
            size = int(line, 16)
            if size == 0:
                for _ in range(_MAX_HEADERS + 1):  # trailer fields, then the blank line
                    if not await connection.read_line(_MAX_CHUNK_LINE):
                        return body
                raise RequestError(HTTPStatus.BAD_REQUEST, "too many trailer fields", close=True)
            if len(body) + size > max_bytes:
                raise RequestError(HTTPStatus.REQUEST_ENTITY_TOO_LARGE,
                                   f"chunked body over {max_bytes} bytes", close=True)
            reserve(len(body) + size)
            body += await connection.read_exact(size)
            if await connection.read_line(_MAX_CHUNK_LINE):
                raise RequestError(HTTPStatus.BAD_REQUEST, "chunk data longer than its size", close=True)


class HttpServer:
    """Serves an App on a listening socket from an event loop (in a thread of its own, or the caller's)."""

    def __init__(self, app: App, limits: HttpLimits, host: str, port: int):
        self.app = app
        self.limits = limits
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.socket = socket.create_server((host, port), family=family, backlog=limits.backlog)
        self.loop = asyncio.new_event_loop()
        self._connections: dict[_Connection, None] = {}
        self._refusing = 0
        self.refused = 0
        self.reclaimed = 0
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.socket.getsockname()[:2]
        return str(host), int(port)

    def stats(self) -> dict[str, int]:
        return {"open": len(self._connections), "max": self.limits.max_connections, "refused_503": self.refused,
                "closed_idle_for_new": self.reclaimed}

    def start(self) -> None:
        self._thread = threading.Thread(target=self.serve_forever, name="snsdata-http", daemon=True)
        self._thread.start()
        self._ready.wait()

    def serve_forever(self) -> None:
        """Serve until `close()`, or (in the main thread) SIGINT or SIGTERM, which stop it cleanly."""
        asyncio.set_event_loop(self.loop)
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self.loop.add_signal_handler(signum, self.loop.stop)
        try:
            self._server = self.loop.run_until_complete(asyncio.start_server(
                self._on_connect, sock=self.socket, backlog=self.limits.backlog))
            self._ready.set()
            self.loop.run_forever()
        finally:
            self._ready.set()
            self._shutdown()

    def close(self) -> None:
        if self._thread is not None:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join()
            self._thread = None
        elif not self.loop.is_closed() and not self.loop.is_running():
            self._shutdown()

    def _shutdown(self) -> None:
        if self.loop.is_closed():
            return
        if self._server is not None:
            self._server.close()
        tasks = asyncio.all_tasks(self.loop)
        for task in tasks:
            task.cancel()
        if tasks:
            with contextlib.suppress(Exception):
                self.loop.run_until_complete(asyncio.wait(tasks, timeout=5))
        self.socket.close()
        self.loop.close()

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection = _Connection(reader, writer)
        refuse = len(self._connections) >= self.limits.max_connections and not self._reclaim_idle()
        if not refuse:
            self._connections[connection] = None
        try:
            await (self._refuse(connection) if refuse else self._serve(connection))
        except (_ClientGone, ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:  # shutting down; ending normally spares asyncio's stream callback
            pass
        except Exception:
            log.exception("connection handler failed")
        finally:
            self._connections.pop(connection, None)
            await connection.close()

    def _reclaim_idle(self) -> bool:
        """Close the longest-idle keep-alive connection (idle for a while, so no request is on its way)."""
        now = time.monotonic()
        idle = [(c.idle_since, c) for c in self._connections
                if c.served and c.idle_since is not None and now - c.idle_since >= _RECLAIM_IDLE_AFTER_S]
        if not idle:
            return False
        _, oldest = min(idle, key=lambda pair: pair[0])
        self._connections.pop(oldest, None)
        oldest.writer.close()
        self.reclaimed += 1
        return True

    async def _refuse(self, connection: _Connection) -> None:
        """503 with Retry-After for a connection beyond the budget, after reading its head (health is answered)."""
        if self._refusing >= _MAX_REFUSING:
            await connection.close()
            return
        self._refusing += 1
        self.refused += 1
        try:
            short = min(2.0, self.limits.header_timeout_s)
            head = None
            with contextlib.suppress(RequestError):
                data = await connection.read_head(short, short, self.limits.max_head_bytes)
                if data is None:
                    return
                head = parse_head(data)
            response = self.app.busy(head)
            response.close = True
            with contextlib.suppress(OSError, TimeoutError, ConnectionError):
                await connection.send(response.encode(), self.limits.write_timeout_s)
            await connection.linger_close(self.limits.linger_s, 1 << 30)
        finally:
            self._refusing -= 1

    async def _serve(self, connection: _Connection) -> None:
        limits = self.limits
        while True:
            try:
                data = await connection.read_head(limits.idle_timeout_s, limits.header_timeout_s,
                                                  limits.max_head_bytes)
                if data is None:
                    return
                request = Request(connection, parse_head(data), limits)
            except RequestError as exc:
                await self._respond(connection, Response.error(exc), None)
                return
            started = time.perf_counter()
            response = await self._handle(request)
            connection.served += 1
            log.debug("%s %s %d %.1f ms", request.head.method, request.head.path[:80], response.status,
                      (time.perf_counter() - started) * 1000)  # the path only: a query may carry the token
            if not await self._respond(connection, response, request):
                return

    async def _handle(self, request: Request) -> Response:
        try:
            return await self.app.handle(request)
        except RequestError as exc:
            return Response.error(exc)
        except (_ClientGone, ConnectionError):
            raise
        except Exception as exc:
            log.exception("request %s %s failed", request.head.method, request.head.path)
            return Response(HTTPStatus.INTERNAL_SERVER_ERROR,
                            {"error": f"internal error ({type(exc).__name__}); see the server log", "status": 500},
                            close=True)

    async def _respond(self, connection: _Connection, response: Response, request: Request | None) -> bool:
        """Send; then keep the connection (True) or close it, lingering when the body was never read."""
        unread = request is None or request.body_pending
        if request is None or unread or not request.head.keep_alive:
            response.close = True
        await connection.send(response.encode(), self.limits.write_timeout_s)
        if not response.close:
            return True
        if unread:
            await connection.linger_close(self.limits.linger_s, 1 << 30)
        else:
            await connection.close()
        return False

