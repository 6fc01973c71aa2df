"""Small GETs to an engine (quickget.py) read answers an engine could get wrong or a hostile one could craft:
bounded, timed, and never taken for more than they are."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from shipper.engine.quickget import BODY_LIMIT, BadAnswer, QuickGet


class ScriptedEngine:
    """A socket pair: shipper's end is the channel, this end answers each request with the next scripted reply."""

    def __init__(self, replies: list[bytes | Callable[[socket.socket], None]]) -> None:
        self.replies = replies
        self.requests: list[bytes] = []
        self.reads: list[int] = []  # for each request, the read (on its connection) that brought its end
        self.opened = 0

    def open(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        self.opened += 1
        threading.Thread(target=self._serve, args=(theirs,), daemon=True).start()
        return ours

    def _serve(self, sock: socket.socket) -> None:
        buffered, reads = b"", 0
        with sock:
            while self.replies:
                while b"\r\n\r\n" not in buffered:  # requests written at once (pipelined) are taken one by one
                    piece = sock.recv(4096)
                    if not piece:
                        return
                    buffered += piece
                    reads += 1
                request, _, buffered = buffered.partition(b"\r\n\r\n")
                self.requests.append(request + b"\r\n\r\n")
                self.reads.append(reads)
                reply = self.replies.pop(0)
                if callable(reply):
                    reply(sock)
                    return
                sock.sendall(reply)
                if b"Connection: close" in reply:
                    return


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
    from shipper.errors import EngineError
    from shipper.inventory import adhoc_host
    from shipper.ops.move_session import retryable

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: docker.APIClient(base_url="ssh://shipper", use_ssh_client=True, version="1.41"),
                    "http+docker://ssh", quick=QuickGet(ScriptedEngine([ok(b'{"not": "a list"}'), ok(b"[1, 2]")]).open, 5))  # fmt: skip
    engine.agree("1.41", {"ApiVersion": "1.41"})
    with pytest.raises(EngineError, match="answer to /v1.41/images/json is not a JSON list") as refused:
        engine.images()
    assert not retryable(refused.value)  # the engine answered, not as one does: trying again would not mend it
    assert "check that docker_host of 192.0.2.1 names a Docker (or podman) engine" in str(refused.value.hint)
    with pytest.raises(EngineError, match="answer to /v1.41/info is not a JSON object"):
        engine.info()


def test_an_api_version_that_is_not_one_is_said_so_not_a_traceback() -> None:
    # connect() compares it with its own: "1.x" raised a ValueError from the comparison.
    from shipper.engine.client import Engine
    from shipper.errors import EngineError
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: None, "http+docker://ssh",  # type: ignore[arg-type, return-value]
                    quick=QuickGet(ScriptedEngine([ok(b'{"ApiVersion": "1.x"}'), ok(b'{"ApiVersion": 41}')]).open, 5))  # fmt: skip
    for said in ("'1.x'", "'41'"):
        with pytest.raises(EngineError, match=f"API version {said} is not a version"), engine.errors("reach the engine"):
            engine.version()


def test_requests_written_at_once_are_answered_in_order_on_one_connection() -> None:
    """Pipelining: one write, one round trip on a far link; a POST says it has no body."""
    engine = ScriptedEngine([ok(b"1"), b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", ok(b"3")])
    quick = QuickGet(engine.open, timeout=5)

    answers = quick.exchange([("GET", "/a"), ("POST", "/b?tag=1"), ("GET", "/c")])

    assert [(a.status, a.body) for a in answers] == [(200, b"1"), (201, b""), (200, b"3")]
    assert engine.opened == 1 and engine.reads == [1, 1, 1]
    assert engine.requests[1] == b"POST /b?tag=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: shipper\r\nContent-Length: 0\r\n\r\n"


def test_an_answer_that_closes_the_connection_leaves_the_rest_of_the_batch_to_a_fresh_one() -> None:
    engine = ScriptedEngine([ok(b"1", "Connection: close\r\n"), ok(b"2"), ok(b"3")])
    quick = QuickGet(engine.open, timeout=5)

    answers = quick.exchange([("GET", "/a"), ("GET", "/b"), ("GET", "/c")])

    assert [a.body for a in answers] == [b"1", b"2", b"3"] and engine.opened == 2
    assert [r.split(b" ")[1] for r in engine.requests[-2:]] == [b"/b", b"/c"]


def test_a_batch_on_a_kept_alive_connection_the_engine_closed_is_sent_again_once() -> None:
    engine = ScriptedEngine([ok(b"0"), lambda sock: None, ok(b"1"), ok(b"2")])
    quick = QuickGet(engine.open, timeout=5)
    quick.get("/first")

    assert [a.body for a in quick.exchange([("GET", "/a"), ("GET", "/b")])] == [b"1", b"2"] and engine.opened == 2


def test_a_malformed_answer_in_a_batch_is_refused_and_the_connection_dropped() -> None:
    engine = ScriptedEngine([ok(b"1"), b"SSH-2.0-OpenSSH_9.2\r\n\r\n", ok(b"OK")])
    quick = QuickGet(engine.open, timeout=5)

    with pytest.raises(BadAnswer, match="is not HTTP"):
        quick.exchange([("GET", "/a"), ("GET", "/b")])
    assert quick.get("/_ping").body == b"OK" and engine.opened == 2


def engine_answering(*replies: bytes) -> "Engine":  # noqa: F821
    from shipper.engine.client import Engine
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: None, "http+docker://ssh", quick=QuickGet(ScriptedEngine(list(replies)).open, 5))  # type: ignore[arg-type, return-value]
    engine.agree("1.41", handshake=("1.41", "docker"))
    return engine


def test_a_surveys_inspections_and_a_commits_tags_with_their_checks_cost_one_round_trip_each() -> None:
    image = b'{"Id": "sha256:1", "RepoTags": ["a:1"], "RootFS": {"Layers": []}}'
    scripted = ScriptedEngine([ok(image), b'HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\n{}', b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n", ok(image)])
    from shipper.engine.client import Engine
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: None, "http+docker://ssh", quick=QuickGet(scripted.open, 5))  # type: ignore[arg-type, return-value]
    engine.agree("1.41", handshake=("1.41", "docker"))

    found = engine.inspect_images(["sha256:1", "sha256:2"])
    tagged = engine.tag_and_inspect([("sha256:1", "a:1")])

    assert [d.id if d else None for d in found] == ["sha256:1", None] and [d.id for d in tagged if d] == ["sha256:1"]
    assert scripted.reads == [1, 1, 2, 2] and engine.round_trips == 2
    assert scripted.requests[2].startswith(b"POST /v1.41/images/sha256:1/tag?repo=a&tag=1&force=1 HTTP/1.1")


@pytest.mark.parametrize(
    "call, body, says",
    [
        ("images", b'[{"RepoTags": ["a:1"]}]', "an image without an Id"),
        ("images", b'[{"Id": "sha256:1", "Size": "big"}]', "Size 'big' is not a number"),
        ("images", b'[{"Id": 7}]', "an Id that is not text"),
        ("images", b'[{"Id": "sha256:1", "RepoTags": "a:1"}]', "RepoTags is not a list of text"),
        ("images", b'["sha256:1"]', "an image that is not an object"),
        ("info", b'{"Images": "many"}', "Images 'many' is not a number"),
        ("info", b'{"Images": 1e400}', "Images"),
        ("inspect", b'{"Id": "sha256:1", "RootFS": {"Layers": "sha256:aa"}}', "Layers is not a list of text"),
        ("inspect", b'{"Id": "sha256:1", "Config": "none"}', "Config is not an object"),
        ("history", b'[{"Size": "x"}]', "Size 'x' is not a number"),
        ("history", b"[1]", "an entry that is not an object"),
    ],
)
def test_fields_of_the_wrong_kind_in_an_engines_json_are_a_bad_answer_not_a_traceback(call: str, body: bytes, says: str) -> None:
    # A KeyError, ValueError or TypeError from a field: a traceback; or worse, "sha256:aa" taken for 9 layers.
    from shipper.errors import EngineError

    engine = engine_answering(ok(body), ok(body))
    with pytest.raises(EngineError, match=says):
        calls = {"images": engine.images, "info": engine.info, "inspect": lambda: engine.inspect_image("a:1"), "history": lambda: engine.layer_sizes("sha256:1", 1)}
        calls[call]()


PING_DOCKER = "Api-Version: 1.43\r\nDocker-Experimental: false\r\nOstype: linux\r\nServer: Docker/24.0.7 (linux)\r\n"
PING_PODMAN = "Api-Version: 1.41\r\nLibpod-Api-Version: 4.3.1\r\nServer: Libpod/4.3.1 (linux)\r\n"  # as podman 4.3 answers


@pytest.mark.parametrize("headers, said", [(PING_DOCKER, ("1.43", "docker")), (PING_PODMAN, ("1.41", "podman")), ("", None)])
def test_the_handshake_reads_the_api_version_and_the_product_from_pings_headers(headers: str, said: tuple[str, str] | None) -> None:
    # /_ping costs the engine nothing; /version runs runc and docker-init for their versions (8 ms of dockerd's CPU).
    engine = engine_answering(ok(b"OK", headers))
    assert engine.handshake() == said


def test_after_the_handshake_engine_facts_come_from_info_alone() -> None:
    info = b'{"ServerVersion": "4.3.1", "OSType": "linux", "Architecture": "amd64", "KernelVersion": "6.1", "Driver": "overlay"}'
    scripted = ScriptedEngine([ok(b"OK", PING_PODMAN), ok(info)])
    from shipper.engine.client import Engine
    from shipper.inventory import adhoc_host

    engine = Engine(adhoc_host("ssh://root@192.0.2.1"), lambda: None, "http+docker://ssh", quick=QuickGet(scripted.open, 5))  # type: ignore[arg-type, return-value]
    handshake = engine.handshake()
    engine.agree("1.41", handshake=handshake)
    facts = engine.info()

    assert (facts.product, facts.version, facts.api_version, facts.os, facts.arch) == ("podman", "4.3.1", "1.41", "linux", "amd64")
    assert [r.split(b" ")[1] for r in scripted.requests] == [b"/_ping", b"/v1.41/info"]


def test_an_api_version_in_pings_headers_that_is_not_one_is_said_so() -> None:
    from shipper.errors import EngineError

    engine = engine_answering(ok(b"OK", "Api-Version: 1.41; rm -rf /\r\n"))
    with pytest.raises(EngineError, match="is not a version"), engine.errors("reach the engine"):
        engine.handshake()


class _Recorder:
    """A real HTTP server on loopback: ``answer(handler)`` replies; every request's path and headers are kept."""

    def __init__(self, answer: Callable[..., None]) -> None:
        import http.server

        self.requests: list[tuple[str, str, dict[str, str]]] = []
        recorder = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _any(self) -> None:
                recorder.requests.append((self.command, self.path, {k.lower(): v for k, v in self.headers.items()}))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                answer(self)

            do_GET = do_POST = _any

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _reply(handler: Any, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
    handler.send_response(status)
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def test_an_engine_that_redirects_gets_no_credentials_sent_on_to_another_host(tmp_path: Any) -> None:
    # requests follows redirects, keeping custom headers: a push's X-Registry-Auth (the registry's password) and the
    # TLS client certificate would go wherever a hostile engine pointed. An engine never redirects: refused.
    from shipper.engine import connect
    from shipper.errors import ShipperError
    from shipper.inventory import load_inventory

    elsewhere = _Recorder(lambda h: _reply(h, 200, b"{}"))
    engine_side = _Recorder(
        lambda h: _reply(h, 200, b"OK", {"Api-Version": "1.41"}) if h.path == "/_ping"
        else _reply(h, 307, headers={"Location": f"http://127.0.0.1:{elsewhere.port}{h.path}"})
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  hosts:\n    hostile:\n      docker_host: tcp://127.0.0.1:{engine_side.port}\n")
    try:
        with connect(load_inventory(inventory).host("hostile")) as engine:
            with pytest.raises(ShipperError, match="push registry.example/app:1 on hostile .*: it answered with a redirect, which shipper does not follow"):
                engine.push("registry.example/app", "1", {"username": "u", "password": "the-secret", "serveraddress": "registry.example"})
            with pytest.raises(ShipperError, match="hostile"):
                engine.images()
    finally:
        engine_side.close()
        elsewhere.close()
    assert elsewhere.requests == []  # the push carried X-Registry-Auth there before
    assert any(path.startswith("/v1.41/images/registry.example/app/push") for _, path, _ in engine_side.requests)


def _endless(handler: Any, first: bytes, filler: bytes, status: int = 200) -> None:
    """A chunked answer that never ends: ``first``, then ``filler`` until shipper hangs up."""
    handler.send_response(status)
    handler.send_header("Transfer-Encoding", "chunked")
    handler.end_headers()
    try:
        handler.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        while True:
            handler.wfile.write(b"%x\r\n%s\r\n" % (len(filler), filler))
    except OSError:  # shipper hung up: what the test wants
        pass


@pytest.fixture
def tcp_engine(tmp_path: Any) -> Any:
    """``make(answer)``: a host whose engine is a real HTTP server on loopback answering ``/_ping`` as docker does
    and everything else with ``answer(handler)``."""
    from shipper.inventory import load_inventory

    servers: list[_Recorder] = []

    def make(answer: Callable[..., None]) -> Any:
        server = _Recorder(lambda h: _reply(h, 200, b"OK", {"Api-Version": "1.41"}) if h.path == "/_ping" else answer(h))
        servers.append(server)
        inventory = tmp_path / "hosts.yml"
        inventory.write_text(f"all:\n  hosts:\n    hostile:\n      docker_host: tcp://127.0.0.1:{server.port}\n")
        return load_inventory(inventory).host("hostile")

    yield make
    for server in servers:
        server.close()


def _peak_mib() -> float:
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_endless_answer_from_a_local_or_tcp_engine_stops_at_the_bound_not_at_the_memory(tcp_engine: Any) -> None:
    # docker-py read an answer whole: an engine sending without end grew shipper's memory without end.
    from shipper.engine import connect
    from shipper.errors import ShipperError

    host = tcp_engine(lambda h: _endless(h, b"[", b"{}," * 100_000))
    with connect(host) as engine:
        before = _peak_mib()
        with pytest.raises(ShipperError, match=r"list images on hostile .*longer than shipper reads \(64 MiB\)"):
            engine.images()
    assert _peak_mib() - before < 200  # the bound, read once, and a copy: not the gigabytes the engine offered


def test_an_answer_declared_longer_than_the_bound_is_refused_without_waiting_for_it(tcp_engine: Any) -> None:
    from shipper.engine import connect
    from shipper.errors import ShipperError

    def huge(handler: Any) -> None:
        handler.send_response(200)
        handler.send_header("Content-Length", str(10**15))
        handler.end_headers()
        time.sleep(5)  # and never sends it

    with connect(tcp_engine(huge), timeout=30) as engine:
        started = time.monotonic()
        with pytest.raises(ShipperError, match=r"read engine info on hostile .*1000000000000000 bytes long: more than shipper reads"):
            engine.info()
        assert time.monotonic() - started < 3


@pytest.mark.parametrize(
    "call, answer, says",
    [
        ("load", lambda h: _endless(h, b'{"stream":"', b"a" * 65536), r"a message of the engine's load is longer than shipper reads \(1 MiB\)"),
        ("push", lambda h: _endless(h, b'{"status":"Pushing","progressDetail":{"current":', b"9" * 65536), r"a message of the engine's push registry.example/app:1 is longer"),
        ("pull", lambda h: _endless(h, b"[", b"[" * 65536), r"a message of the engine's pull registry.example/app is longer"),
        ("load", lambda h: _endless(h, b'{"stream":"Loaded image: x:1"}\n<html>', b"\n"), r"a message of the engine's load is not JSON: '<html>'"),
        ("push", lambda h: _endless(h, b'{"message":"', b"denied " * 10000, status=500), r"longer than shipper reads \(64 MiB\)"),
    ],
)
def test_a_progress_stream_without_end_or_not_json_stops_at_the_bound(tcp_engine: Any, call: str, answer: Callable[..., None], says: str) -> None:
    # docker-py's splitter kept everything until a JSON value ended: one value that never ends grew without end.
    from shipper.engine import connect
    from shipper.errors import ShipperError

    auth = {"username": "u", "password": "p", "serveraddress": "registry.example"}
    with connect(tcp_engine(answer)) as engine:
        before = _peak_mib()
        with pytest.raises(ShipperError, match=says):
            if call == "load":
                engine.load([b"not a tar, not read"])
            elif call == "push":
                engine.push("registry.example/app", "1", auth)
            else:
                engine.pull("registry.example/app", "sha256:" + "a" * 64, auth)
    assert _peak_mib() - before < 200


def test_a_commands_endless_output_in_a_container_is_kept_to_its_last_mib(tcp_engine: Any) -> None:
    # docker-py joined an exec's whole output in memory (a registry's garbage collection names every blob it marks).
    import struct

    from shipper.engine import connect

    def answer(handler: Any) -> None:
        if handler.path.endswith("/exec"):
            _reply(handler, 201, b'{"Id": "e1"}')
        elif handler.path.endswith("/start"):
            handler.send_response(200)
            handler.send_header("Content-Type", "application/vnd.docker.raw-stream")
            handler.end_headers()
            handler.wfile.flush()
            time.sleep(0.3)  # as dockerd: the command's output comes after the answer's head (docker-py reads it off the socket)
            line = b"marking blob sha256:" + b"a" * 64 + b"\n"
            frame = struct.pack(">BxxxL", 1, len(line) * 4096) + line * 4096
            for _ in range(400):  # 140 MiB
                handler.wfile.write(frame)
            handler.wfile.write(struct.pack(">BxxxL", 2, 5) + b"done\n")
            handler.close_connection = True
        else:
            _reply(handler, 200, b'{"ExitCode": 0}')

    with connect(tcp_engine(answer)) as engine:
        before = _peak_mib()
        status, output = engine.exec("registry", ["/bin/registry", "garbage-collect"])
    assert status == 0 and output.endswith("marking blob sha256:" + "a" * 64 + "\ndone\n")
    assert len(output) == 1 << 20
    assert _peak_mib() - before < 60


def _trickle(handler: Any) -> None:
    """An answer of a valid length, sent a byte at a time, each in time for the read's timeout."""
    body = b"[" + b" " * 1000 + b"]"
    handler.send_response(200)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    try:
        for byte in body:
            handler.wfile.write(bytes([byte]))
            handler.wfile.flush()
            time.sleep(0.05)
    except OSError:
        pass


def test_an_answer_trickled_out_ends_at_the_answer_time_over_tcp_and_on_the_quick_channel(tcp_engine: Any, monkeypatch: Any) -> None:
    # Each read had a timeout, the answer as a whole none: a byte now and then held shipper for as long as the engine liked.
    from shipper.engine import connect, quickget
    from shipper.errors import ShipperError

    monkeypatch.setattr(quickget, "ANSWER_TIME", 1.0)
    with connect(tcp_engine(_trickle), timeout=5) as engine:
        started = time.monotonic()
        with pytest.raises(ShipperError, match=r"list images on hostile .*answer took more than 1 s"):
            engine.images()
        assert time.monotonic() - started < 3

    def trickle_head(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):  # until shipper hangs up
            for byte in b"HTTP/1.1 200 OK\r\nX-Filler: " + b"y" * 100:
                sock.sendall(bytes([byte]))
                time.sleep(0.05)

    quick = QuickGet(ScriptedEngine([trickle_head]).open, timeout=5)
    started = time.monotonic()
    with pytest.raises(BadAnswer, match="took more than 1 s"):
        quick.get("/_ping")
    assert time.monotonic() - started < 3


def test_a_batch_whose_kept_alive_connection_is_gone_before_it_is_written_is_sent_again_once() -> None:
    """The engine closed the kept connection before the next write: the write itself fails, and a fresh one takes it."""
    engine = ScriptedEngine([lambda sock: sock.sendall(ok(b"0")), ok(b"1"), ok(b"2")])  # answers, then closes
    quick = QuickGet(engine.open, timeout=5)
    assert quick.get("/first").body == b"0"
    time.sleep(0.2)  # its end is closed now

    assert [a.body for a in quick.exchange([("GET", "/a"), ("GET", "/b")])] == [b"1", b"2"] and engine.opened == 2
