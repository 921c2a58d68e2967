"""Plain data across the sandbox boundary: a typed literal encoding, and framed calls between two processes.

In function mode the model's program runs in one process and the tests in another (see `_sandbox_child.py`).
The tests call the program's functions through this module: a call, its arguments, its return value or its
exception cross a pipe as data, never as objects. Standard library only: the worker imports it as a script
sibling.

The encoding is JSON in which None, booleans, strings, floats (NaN and infinities included) and ints of up to
63 bits stand for themselves, and every other value is a list headed by a tag: `["l", ...]` list,
`["t", ...]` tuple, `["s", ...]` set, `["fs", ...]` frozenset, `["d", k, v, ...]` dict, `["b", hex]` bytes,
`["ba", hex]` bytearray, `["c", re, im]` complex, `["i", hex]` a larger int, and `["fn", k]` the k-th callable
the caller passed (so that a test can pass a key function). Decoding builds only these built-in types, runs
no code of any object, and refuses frames over `MAX_FRAME_BYTES`, values nested deeper than `MAX_DEPTH` or
made of more than `MAX_NODES` parts. A frame is a 4-byte big-endian length and a JSON list `[kind, id, ...]`.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Callable
from typing import Any

MAX_FRAME_BYTES = 16 << 20
MAX_DEPTH = 100
MAX_NODES = 2_000_000
MAX_TEXT = 2000
_SMALL_INT = 1 << 63
_MUTABLE = (list, dict, set, bytearray)
_EXCEPTION_NAMES = 32


class WireError(BaseException):
    """The other process broke the protocol or went away.

    A BaseException on purpose: a test's `except Exception:` must not take a dead or lying program for a
    function that raised.
    """


class ChannelClosed(WireError):
    """The other end of the channel is closed: its process exited or was killed."""


def encode(value: Any, strict: bool = True, callables: list[Callable] | None = None) -> Any:
    """`value` as a JSON-ready tree. `strict`: exact built-in types only (subclasses, numpy scalars and the like
    are refused); otherwise such values are converted to their built-in equivalent first. `callables`, when
    given, collects callables found in `value`, which become `["fn", index]`."""

    def tree(item: Any, depth: int) -> Any:
        if depth > MAX_DEPTH:
            raise ValueError("sandbox: value nested too deeply to cross the sandbox boundary")
        kind = type(item)
        if item is None or kind is str or kind is bool or kind is float:
            return item
        if kind is int:
            return item if -_SMALL_INT < item < _SMALL_INT else ["i", hex(item)]
        down = depth + 1
        if kind is list:
            return ["l", *[tree(x, down) for x in item]]
        if kind is tuple:
            return ["t", *[tree(x, down) for x in item]]
        if kind is dict:
            out = ["d"]
            for key, x in item.items():
                out.append(tree(key, down))
                out.append(tree(x, down))
            return out
        if kind is set or kind is frozenset:
            return ["s" if kind is set else "fs", *[tree(x, down) for x in item]]
        if kind is bytes or kind is bytearray:
            return ["b" if kind is bytes else "ba", item.hex()]
        if kind is complex:
            return ["c", item.real, item.imag]
        if callables is not None and callable(item):
            callables.append(item)
            return ["fn", len(callables) - 1]
        if not strict:
            plain = _as_plain(item)
            if plain is not _MISSING:
                return tree(plain, depth)
        raise TypeError(f"sandbox: {kind.__name__} is not a plain built-in value")

    return tree(value, 0)


_MISSING = object()
_CONVERTIBLE = (bool, int, float, complex, str, bytes, bytearray, list, tuple, dict, set, frozenset)


def _as_plain(item: Any) -> Any:
    """The built-in equivalent of a subclass instance or of an array-like (numpy's `tolist`), if any."""
    tolist = getattr(item, "tolist", None)
    if callable(tolist):
        return tolist()
    for base in _CONVERTIBLE:
        if isinstance(item, base):
            return base(item)
    return _MISSING


def decode(tree: Any, stub: Callable[[int], Any] | None = None) -> Any:
    """The value a tree from `encode` stands for; WireError for anything else. `stub(k)` stands in for
    `["fn", k]`; without it such references are refused."""
    nodes = 0

    def value(item: Any, depth: int) -> Any:
        nonlocal nodes
        kind = type(item)
        if item is None or kind is str or kind is bool or kind is int or kind is float:
            return item
        if kind is not list or not item or type(item[0]) is not str:
            raise WireError(f"sandbox: {kind.__name__} is not an encoded value")
        nodes += len(item)
        if depth >= MAX_DEPTH or nodes > MAX_NODES:
            raise WireError("sandbox: encoded value too large or nested too deeply")
        tag, rest, down = item[0], item[1:], depth + 1
        if tag == "l":
            return [value(x, down) for x in rest]
        if tag == "t":
            return tuple([value(x, down) for x in rest])
        if tag == "s" or tag == "fs":
            members = [value(x, down) for x in rest]
            return set(members) if tag == "s" else frozenset(members)
        if tag == "d":
            if len(rest) % 2:
                raise WireError("sandbox: dict with a key but no value")
            out = {}
            for i in range(0, len(rest), 2):
                key = value(rest[i], down)
                out[key] = value(rest[i + 1], down)
            return out
        if len(rest) == 1 and type(rest[0]) is str and tag in ("b", "ba", "i"):
            text = rest[0]
            return bytes.fromhex(text) if tag == "b" else bytearray.fromhex(text) if tag == "ba" else int(text, 16)
        if tag == "c" and len(rest) == 2 and type(rest[0]) is float and type(rest[1]) is float:
            return complex(rest[0], rest[1])
        if tag == "fn" and stub is not None and len(rest) == 1 and type(rest[0]) is int:
            return stub(rest[0])
        raise WireError(f"sandbox: malformed encoded value with tag {tag[:20]!r}")

    try:
        return value(tree, 0)
    except WireError:
        raise
    except (TypeError, ValueError, RecursionError, MemoryError) as error:  # unhashable key, bad hex, ...
        raise WireError(f"sandbox: undecodable value: {type(error).__name__}") from None


def encode_exception(error: BaseException) -> list:
    """[names of the built-in exception classes it derives from, most derived first; its args, encoded (None
    when they are not plain); its text]."""
    names = [cls.__name__ for cls in type(error).__mro__ if getattr(builtins, cls.__name__, None) is cls]
    try:
        args = encode(error.args)
    except (TypeError, ValueError):
        args = None
    try:
        text = str(error)[:MAX_TEXT]
    except Exception:
        text = ""
    return [names[:_EXCEPTION_NAMES], args, text]


def decode_exception(names: Any, args: Any, text: Any) -> BaseException:
    """An instance of the most derived built-in class named that accepts the args (or the text), else Exception."""
    if type(names) is not list or type(text) is not str:
        raise WireError("sandbox: malformed exception")
    arguments = decode(args) if args is not None else None
    if arguments is not None and type(arguments) is not tuple:
        raise WireError("sandbox: malformed exception arguments")
    for name in names[:_EXCEPTION_NAMES]:
        cls = getattr(builtins, name, None) if type(name) is str else None
        if isinstance(cls, type) and issubclass(cls, BaseException):
            for attempt in ((arguments,) if arguments is not None else ()) + ((text[:MAX_TEXT],),):
                try:
                    return cls(*attempt)
                except Exception:
                    continue
    return Exception(text[:MAX_TEXT])


def changed_arguments(args: tuple, kwargs: dict, args_tree: list, kwargs_tree: list) -> tuple[list, list]:
    """([[index, tree], ...], [[name, tree], ...]) of the mutable arguments a call changed, re-encoded."""
    positional = []
    for i, arg in enumerate(args):
        if type(arg) in _MUTABLE:
            tree = _try_encode(arg)
            if tree is not None and tree != args_tree[i + 1]:
                positional.append([i, tree])
    keywords = []
    for name, arg in kwargs.items():
        if type(arg) in _MUTABLE:
            tree = _try_encode(arg)
            if tree is not None and tree != encode_lookup(kwargs_tree, name):
                keywords.append([name, tree])
    return positional, keywords


def _try_encode(value: Any) -> Any:
    try:
        return encode(value)
    except (TypeError, ValueError):
        return None


def encode_lookup(dict_tree: list, key: str) -> Any:
    """The encoded value of `key` in an encoded dict of string keys."""
    for i in range(1, len(dict_tree) - 1, 2):
        if dict_tree[i] == key:
            return dict_tree[i + 1]
    return None


def apply_changes(args: tuple, kwargs: dict, positional: Any, keywords: Any) -> None:
    """Mirror, in place, the changes the callee made to the caller's mutable arguments (list.sort() and the like)."""
    if type(positional) is not list or type(keywords) is not list:
        raise WireError("sandbox: malformed argument changes")
    targets = [(args, entry) for entry in positional] + [(kwargs, entry) for entry in keywords]
    for container, entry in targets:
        if type(entry) is not list or len(entry) != 2:
            raise WireError("sandbox: malformed argument change")
        where, tree = entry
        valid = type(where) is int and 0 <= where < len(args) if container is args else type(where) is str
        if not valid or (container is kwargs and where not in kwargs):
            raise WireError("sandbox: change to an argument that was not passed")
        target, new = container[where], decode(tree)
        if type(new) is not type(target) or type(target) not in _MUTABLE:
            raise WireError("sandbox: an argument changed type")
        if type(target) is list or type(target) is bytearray:
            target[:] = new
        else:
            target.clear()
            target.update(new)


class Channel:
    """Length-prefixed JSON frames over a pair of pipe ends."""

    def __init__(self, read_fd: int, write_fd: int) -> None:
        self.read_fd, self.write_fd = read_fd, write_fd

    def send(self, frame: list) -> None:
        data = json.dumps(frame, separators=(",", ":")).encode()
        if len(data) > MAX_FRAME_BYTES:
            raise ValueError("sandbox: value too large to cross the sandbox boundary")
        view = memoryview(len(data).to_bytes(4, "big") + data)
        try:
            while view:
                view = view[os.write(self.write_fd, view) :]
        except OSError as error:  # EPIPE: the other process is gone
            raise ChannelClosed(f"sandbox: channel write failed: {error}") from None

    def receive(self) -> list:
        size = int.from_bytes(self._read(4), "big")
        if size > MAX_FRAME_BYTES:
            raise WireError("sandbox: frame too large")
        try:
            frame = json.loads(self._read(size))
        except (ValueError, RecursionError, MemoryError):
            raise WireError("sandbox: frame is not JSON") from None
        if type(frame) is not list or len(frame) < 2 or type(frame[0]) is not str or type(frame[1]) is not int:
            raise WireError("sandbox: malformed frame")
        return frame

    def _read(self, size: int) -> bytes:
        chunks, missing = [], size
        while missing:
            try:
                chunk = os.read(self.read_fd, min(missing, 1 << 20))
            except OSError as error:
                raise ChannelClosed(f"sandbox: channel read failed: {error}") from None
            if not chunk:
                raise ChannelClosed("sandbox: the other process closed the channel")
            chunks.append(chunk)
            missing -= len(chunk)
        return b"".join(chunks)


class Peer:
    """One side of the call protocol: sends requests and waits for their replies, meanwhile answering the
    requests of kinds in `accepts` that the other side sends (a callback called during a call)."""

    def __init__(self, channel: Channel, answer: Callable[[list], list], accepts: frozenset[str]) -> None:
        self.channel, self.answer, self.accepts = channel, answer, accepts
        self._last_id = 0

    def request(self, kind: str, *payload: Any) -> list:
        """Send `[kind, id, *payload]`; return the `["return" | "raise", id, ...]` frame answering it."""
        self._last_id += 1
        ident = self._last_id
        self.channel.send([kind, ident, *payload])
        while True:
            frame = self.channel.receive()
            if frame[0] in ("return", "raise"):
                if frame[1] != ident:
                    raise WireError("sandbox: reply to a call that was not made")
                return frame
            self._answer(frame)

    def serve(self) -> None:
        """Answer requests until the other side closes the channel."""
        while True:
            self._answer(self.channel.receive())

    def _answer(self, frame: list) -> None:
        if frame[0] not in self.accepts:
            raise WireError(f"sandbox: unexpected {frame[0][:20]!r} frame")
        reply = self.answer(frame)
        try:
            self.channel.send(reply)
        except ValueError as error:  # a value too large to send is the callee's error, reported as such
            self.channel.send(["raise", frame[1], *encode_exception(error)])
