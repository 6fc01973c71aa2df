"""Small GETs to an engine behind SSH, on one channel to its socket, without docker-py's HTTP stack.

A fleet's survey (``ping``, ``images``, a plan's look at every target) is a
few small JSON answers per host: ``/version``, ``/_ping``, ``/info``,
``/images/json``, ``/images/NAME/json``. Through docker-py each one crossed
requests, urllib3, http.client (headers parsed by the email package) and a
paramiko file wrapper read line by line: 0.7 ms of CPU for ``/_ping`` and
1.6 ms for ``/info``, where the bytes themselves cost 0.15 and 0.4 ms. At
hundreds of hosts that was a core's worth of a GIL-bound process. Here one
HTTP/1.1 keep-alive connection per engine (a ``direct-streamlocal`` channel)
carries them: the request is one write, the answer is read in large pieces
and parsed once.

Everything else (transfers, streams, containers, anything with a body) stays
with docker-py. The engine's answer is not trusted: the status line and
headers are bounded (64 KiB), so is the body (64 MiB), every read has the
connection's timeout, and the whole answer must come within ``ANSWER_TIME``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

HEADER_LIMIT = 64 << 10
BODY_LIMIT = 64 << 20
READ_SIZE = 256 << 10
INTERIM_LIMIT = 8  # 1xx answers before the real one
PIPELINE = 64  # requests written at once at most
ANSWER_TIME = 120.0  # seconds a whole answer may take: each read has the timeout, and a trickle must end too


class Channel(Protocol):
    def sendall(self, data: bytes) -> None: ...
    def recv(self, size: int) -> bytes: ...
    def settimeout(self, timeout: float | None) -> None: ...
    def close(self) -> None: ...


class BadAnswer(OSError):
    """The engine's answer is not HTTP shipper can read (or exceeds the bounds): the connection is dropped."""


class EngineRefused(Exception):
    """An error status on the quick channel, with the engine's words (as docker-py's ``APIError`` carries them)."""

    def __init__(self, message: str, explanation: str = "") -> None:
        super().__init__(message)
        self.said = explanation or message


def overdue(deadline: float) -> None:
    """A ``BadAnswer`` once ``deadline`` (monotonic seconds) has passed: an answer trickled out."""
    if time.monotonic() > deadline:
        raise BadAnswer(f"the engine's answer took more than {ANSWER_TIME:g} s: an engine sends its answers at once")


def _request(method: str, path: str) -> bytes:
    length = "" if method == "GET" else "Content-Length: 0\r\n"  # a POST says it has no body
    return f"{method} {path} HTTP/1.1\r\nHost: docker\r\nUser-Agent: shipper\r\n{length}\r\n".encode("ascii")


class _Partial(Exception):
    """The connection failed after ``answers`` (maybe none) of a batch."""

    def __init__(self, answers: list[Answer], cause: OSError) -> None:
        super().__init__(str(cause))
        self.answers, self.cause = answers, cause


class Answer:
    """A status, the headers (names in lower case) and a body read in full."""

    def __init__(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.status, self.body, self.headers = status, body, headers or {}


class QuickGet:
    """GETs on one keep-alive connection, one at a time (a lock: a plan may ask from several threads)."""

    def __init__(self, open_channel: Callable[[], Channel], timeout: float | None) -> None:
        self._open = open_channel
        self._timeout = timeout
        self._channel: Channel | None = None
        self._reader: _Reader | None = None
        self._lock = threading.Lock()

    def get(self, path: str) -> Answer:
        """``GET path`` (already quoted, with its query). Raises OSError (BadAnswer, TimeoutError, ConnectionError)
        or what opening the channel raises."""
        (answer,) = self.exchange([("GET", path)])
        return answer

    def exchange(self, requests: Sequence[tuple[str, str]]) -> list[Answer]:
        """Several requests without a body (``(method, path)``: GETs, and POSTs whose query says it all, such as a
        tag), written at once and answered in order: HTTP/1.1 pipelining, one round trip for all of them where
        ``get`` takes one each (the engine serves a connection's requests one after another, so a GET after a
        POST sees what the POST did). An answer that closes the connection leaves the rest to a fresh one.
        Raises as ``get`` does; a request is sent again only where no answer to the batch had come."""
        answers: list[Answer] = []
        with self._lock:
            while len(answers) < len(requests):
                batch = requests[len(answers) : len(answers) + PIPELINE]
                for attempt in (1, 2):
                    reused = self._channel is not None
                    try:
                        answers += self._exchange_many(batch)
                        break
                    except BadAnswer:
                        self._drop()
                        raise
                    except TimeoutError:
                        self._drop()
                        within = f" within {self._timeout:g} s" if self._timeout is not None else ""
                        raise TimeoutError(f"Read timed out: no answer to {batch[0][0]} {batch[0][1].split('?')[0]}{within}") from None
                    except (_Partial, OSError) as failed:  # the connection went (maybe after some answers)
                        self._drop()
                        partial = failed if isinstance(failed, _Partial) else _Partial([], failed)  # OSError: opening it
                        answers += partial.answers
                        if partial.answers:
                            break  # the rest on a new one
                        if not reused or attempt == 2:
                            raise partial.cause from None
                        # A kept-alive connection the engine closed meanwhile: once more on a fresh one.
        return answers

    def _exchange_many(self, batch: Sequence[tuple[str, str]]) -> list[Answer]:
        if self._channel is None:
            self._channel = self._open()
            self._channel.settimeout(self._timeout)
            self._reader = _Reader(self._channel)
        assert self._reader is not None
        self._reader.deadline = time.monotonic() + ANSWER_TIME
        answers: list[Answer] = []
        try:
            self._channel.sendall(b"".join(_request(method, path) for method, path in batch))
            for _ in batch:
                status, headers = self._reader.head()
                answers.append(Answer(status, self._reader.body(headers), headers))
                if headers.get("connection", "").lower() == "close":
                    self._drop()
                    break
        except (BadAnswer, TimeoutError):
            raise
        except OSError as exc:
            raise _Partial(answers, exc) from None
        return answers

    def _drop(self) -> None:
        if self._channel is not None:
            try:
                self._channel.close()
            except Exception:  # closing a broken channel: nothing more to lose
                pass
        self._channel, self._reader = None, None

    def close(self) -> None:
        with self._lock:
            self._drop()


class _Reader:
    """Buffered reads of HTTP/1.1 answers from a channel."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.buffer = bytearray()
        self.deadline = float("inf")

    def _fill(self) -> None:
        piece = self.channel.recv(READ_SIZE)
        if not piece:
            raise ConnectionError("the engine closed the connection without a whole answer")
        self.buffer += piece
        overdue(self.deadline)

    def _take(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        taken = bytes(self.buffer[:count])
        del self.buffer[:count]
        return taken

    def _line(self, limit: int) -> bytes:
        while True:
            end = self.buffer.find(b"\r\n")
            if end >= 0:
                line = bytes(self.buffer[:end])
                del self.buffer[: end + 2]
                return line
            if len(self.buffer) > limit:
                raise BadAnswer(f"the engine sent a line longer than {limit} bytes")
            self._fill()

    def head(self) -> tuple[int, dict[str, str]]:
        for _ in range(INTERIM_LIMIT):
            status, headers = self._one_head()
            if not 100 <= status < 200:
                return status, headers
            # An interim answer (none is expected for a GET): the real one follows.
        raise BadAnswer(f"the engine sent more than {INTERIM_LIMIT} interim answers")

    def _one_head(self) -> tuple[int, dict[str, str]]:
        while True:
            end = self.buffer.find(b"\r\n\r\n", 0, HEADER_LIMIT + 4)
            if end >= 0:
                break
            if len(self.buffer) > HEADER_LIMIT:
                raise BadAnswer(f"the engine's answer has more than {HEADER_LIMIT} bytes of headers")
            self._fill()
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not (parts[1].isdigit() and len(parts[1]) == 3):
            raise BadAnswer(f"the engine's answer is not HTTP: {lines[0][:80]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(":")
            if not colon:
                raise BadAnswer(f"the engine sent a malformed header: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        return int(parts[1]), headers

    def body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._chunked()
        length = headers.get("content-length")
        if length is None:
            raise BadAnswer("the engine's answer has neither a length nor chunks")
        if not length.isdigit() or int(length) > BODY_LIMIT:
            raise BadAnswer(f"the engine's answer is {length[:20]} bytes long: more than shipper reads ({BODY_LIMIT >> 20} MiB)")
        return self._take(int(length))

    def _chunked(self) -> bytes:
        body = bytearray()
        while True:
            size_text = self._line(1024).split(b";", 1)[0].strip()
            if not size_text or len(size_text) > 16 or size_text.strip(b"0123456789abcdefABCDEF"):
                raise BadAnswer(f"the engine sent a malformed chunk size: {size_text[:20]!r}")  # int() takes 0x, _ and -
            size = int(size_text, 16)
            if size == 0:
                while self._line(HEADER_LIMIT):  # trailers, up to the empty line
                    pass
                return bytes(body)
            if len(body) + size > BODY_LIMIT:
                raise BadAnswer(f"the engine's answer is longer than shipper reads ({BODY_LIMIT >> 20} MiB)")
            body += self._take(size)
            if self._take(2) != b"\r\n":
                raise BadAnswer("the engine sent a chunk without its end")
