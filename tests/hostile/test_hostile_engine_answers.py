"""Small GETs to an engine (quickget.py) read answers an engine could get wrong or a hostile one could craft:
bounded, timed, and never taken for more than they are."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

import pytest

from shipper.engine.quickget import BODY_LIMIT, BadAnswer, QuickGet


class ScriptedEngine:
    """A socket pair: shipper's end is the channel, this end answers each request with the next scripted reply."""

    def __init__(self, replies: list[bytes | Callable[[socket.socket], None]]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []
        self.opened = 0

    def open(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.opened += 1
        threading.Thread(target=self._serve, args=(theirs,), daemon=True).start()
        return ours

    def _serve(self, sock: socket.socket) -> None:
        with sock:
            while self.replies:
                request = b""
                while b"\r\n\r\n" not in request:
                    piece = sock.recv(4096)
                    if not piece:
                        return
                    request += piece
                self.requests.append(request)
                reply = self.replies.pop(0)
                if callable(reply):
                    reply(sock)
                    return
                sock.sendall(reply)


def ok(body: bytes, extra: str = "") -> bytes:
    return f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


def test_answers_with_a_length_and_in_chunks_are_read_on_one_kept_alive_connection() -> None:
    chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n4;ext=1\r\n: 1}\r\n0\r\nX-Trailer: t\r\n\r\n"
    engine = ScriptedEngine([ok(b"OK"), chunked])
    quick = QuickGet(engine.open, timeout=5)

    assert quick.get("/_ping").body == b"OK"
    assert quick.get("/v1.41/info").body == b'{"a": 1}'
    assert engine.opened == 1
    assert engine.requests[1].startswith(b"GET /v1.41/info HTTP/1.1\r\n")


def test_an_error_status_comes_back_with_its_body() -> None:
    answer = QuickGet(ScriptedEngine([b'HTTP/1.1 404 Not Found\r\nContent-Length: 32\r\n\r\n{"message":"No such image: x:1"}']).open, 5).get("/x")
    assert (answer.status, answer.body) == (404, b'{"message":"No such image: x:1"}')


@pytest.mark.parametrize(
    "reply, says",
    [
        (b"HTTP/1.1 200 OK\r\nX-Filler: " + b"a" * (70 << 10) + b"\r\n\r\n", "more than 65536 bytes of headers"),
        (f"HTTP/1.1 200 OK\r\nContent-Length: {BODY_LIMIT + 1}\r\n\r\n".encode(), r"more than shipper reads \(64 MiB\)"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -5\r\n\r\n", "is -5 bytes long"),
        (b"SSH-2.0-OpenSSH_9.2\r\n\r\n", "is not HTTP"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "malformed header"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "neither a length nor chunks"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + b"ffffffff\r\n", "longer than shipper reads"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY", "chunk without its end"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nab\r\n", "malformed chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0x2\r\nab\r\n", "malformed chunk size"),
        (b"HTTP/1.1 100 Continue\r\n\r\n" * 9, "more than 8 interim answers"),
    ],
)
def test_a_malformed_or_oversized_answer_is_refused_without_reading_on(reply: bytes, says: str) -> None:
    engine = ScriptedEngine([reply, ok(b"OK")])
    quick = QuickGet(engine.open, timeout=5)

    with pytest.raises(BadAnswer, match=says):
        quick.get("/v1.41/info")
    assert quick.get("/_ping").body == b"OK" and engine.opened == 2  # that connection was dropped, not reused


def test_an_engine_that_says_nothing_times_out_with_the_path_named() -> None:
    quick = QuickGet(ScriptedEngine([lambda sock: time.sleep(3)]).open, timeout=0.5)
    started = time.monotonic()

    with pytest.raises(TimeoutError, match=r"Read timed out: no answer to GET /v1.41/info within 0.5 s"):
        quick.get("/v1.41/info?all=0")
    assert time.monotonic() - started < 2


def test_a_kept_alive_connection_the_engine_closed_is_replaced_once() -> None:
    engine = ScriptedEngine([ok(b"1"), lambda sock: None, ok(b"2")])  # the second request finds the connection closed
    quick = QuickGet(engine.open, timeout=5)

    assert quick.get("/a").body == b"1"
    assert quick.get("/b").body == b"2"
    assert engine.opened == 2


def test_an_answer_cut_short_on_a_fresh_connection_is_an_error() -> None:
    quick = QuickGet(ScriptedEngine([lambda sock: sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n1234")]).open, timeout=5)
    with pytest.raises(ConnectionError, match="closed the connection without a whole answer"):
        quick.get("/a")


def test_an_answer_told_to_close_is_not_reused() -> None:
    engine = ScriptedEngine([ok(b"1", "Connection: close\r\n"), ok(b"2")])
    quick = QuickGet(engine.open, timeout=5)
    assert quick.get("/a").body == b"1"
    assert quick.get("/b").body == b"2" and engine.opened == 2


def test_json_of_another_shape_than_asked_for_is_a_bad_answer_not_a_crash() -> None:
    # A list where an object belongs (or the reverse) used to reach the code reading it: a TypeError, a traceback.
    import docker

    from shipper.engine.client import Engine
    from shipper.errors import EngineUnreachable
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: docker.APIClient(base_url="ssh://shipper", use_ssh_client=True, version="1.41"),
                    "http+docker://ssh", quick=QuickGet(ScriptedEngine([ok(b'{"not": "a list"}'), ok(b"[1, 2]")]).open, 5))  # fmt: skip
    engine.agree("1.41", {"ApiVersion": "1.41"})
    with pytest.raises(EngineUnreachable, match="answer to /v1.41/images/json is not a JSON list"):
        engine.images()
    with pytest.raises(EngineUnreachable, match="answer to /v1.41/info is not a JSON object"):
        engine.info()


def test_an_api_version_that_is_not_one_is_said_so_not_a_traceback() -> None:
    # connect() compares it with its own: "1.x" raised a ValueError from the comparison.
    from shipper.engine.client import Engine
    from shipper.errors import EngineUnreachable
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: None, "http+docker://ssh",  # type: ignore[arg-type, return-value]
                    quick=QuickGet(ScriptedEngine([ok(b'{"ApiVersion": "1.x"}'), ok(b'{"ApiVersion": 41}')]).open, 5))  # fmt: skip
    for said in ("'1.x'", "'41'"):
        with pytest.raises(EngineUnreachable, match=f"API version {said} is not a version"), engine.errors("reach the engine"):
            engine.version()
