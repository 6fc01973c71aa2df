"""A registry that lies, for tests: each path answers what the test says, and every request is recorded.

``HostileServer(tls=...)`` listens on 127.0.0.1 (a port of its own) and answers
each request with the first route whose method and path prefix match. A route
is a function of the request returning a ``Reply``; a reply's body may be bytes
or an iterator of chunks (endless, or trickled with pauses). A second server,
the "thief", stands for any other origin: the tests check it never sees a
credential.
"""

from __future__ import annotations

import http.server
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator

from shipper import pki


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | Iterable[bytes] = b""
    chunked: bool = False  # Transfer-Encoding: chunked (a body of unknown length: endless, trickled)


Route = Callable[[Seen], Reply]

BASIC_CHALLENGE = Reply(401, {"WWW-Authenticate": 'Basic realm="hostile"', "Content-Type": "application/json"}, b'{"errors":[]}')


def basic_only(route: Route) -> Route:
    """``route`` behind HTTP Basic: a request without Authorization gets the challenge."""

    def guarded(request: Seen) -> Reply:
        if "authorization" not in request.headers:
            return BASIC_CHALLENGE
        return route(request)

    return guarded


def endless(piece: bytes = b"x" * 65536) -> Iterator[bytes]:
    while True:
        yield piece


def trickle(data: bytes, pause: float) -> Iterator[bytes]:
    for i in range(len(data)):
        time.sleep(pause)
        yield data[i : i + 1]


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_Server"

    def log_message(self, format: str, *args: object) -> None:  # quiet
        pass

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
        self.server.owner.seen.append(seen)
        route = next((r for (m, prefix), r in self.server.owner.routes if m in (self.command, "*") and self.path.startswith(prefix)), None)
        reply = route(seen) if route else Reply(404, {"Content-Type": "application/json"}, b'{"errors":[{"code":"NAME_UNKNOWN"}]}')
        try:
            self._send(reply)
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError, OSError):
            self.close_connection = True

    def _send(self, reply: Reply) -> None:
        self.send_response(reply.status)
        for key, value in reply.headers.items():
            self.send_header(key, value)
        if reply.chunked:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            deadline = time.monotonic() + 120  # never run for ever, even if the client does
            for piece in reply.body if not isinstance(reply.body, bytes) else [reply.body]:
                if self.server.owner.stopped or time.monotonic() > deadline:
                    break
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        data = reply.body if isinstance(reply.body, bytes) else b"".join(reply.body)
        if "Content-Length" not in reply.headers:
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _handle


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    owner: "HostileServer"


class HostileServer:
    """One lying server; ``with HostileServer() as s:`` … ``s.url``, ``s.seen``."""

    def __init__(self, tls_dir: Path | None = None) -> None:
        """``tls_dir``: serve HTTPS with a CA of its own written there (``ca.crt``: give it as --ca)."""
        self.routes: list[tuple[tuple[str, str], Route]] = []
        self.seen: list[Seen] = []
        self.stopped = False
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self.port = self._server.server_address[1]
        self.scheme = "http"
        self.ca_file: Path | None = None
        if tls_dir is not None:
            self._wrap_tls(tls_dir)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def _wrap_tls(self, directory: Path) -> None:
        ca = pki.new_ca("hostile test CA")
        leaf = pki.issue(ca, "127.0.0.1", ["127.0.0.1", "localhost"])
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "ca.crt").write_bytes(ca.cert_pem)
        (directory / "server.crt").write_bytes(leaf.cert_pem)
        (directory / "server.key").write_bytes(leaf.key_pem)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(directory / "server.crt", directory / "server.key")
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.scheme, self.ca_file = "https", directory / "ca.crt"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.address}"

    def route(self, method: str, prefix: str, route: Route) -> None:
        self.routes.append(((method, prefix), route))

    def authorizations(self) -> list[str]:
        return [s.headers["authorization"] for s in self.seen if "authorization" in s.headers]

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped = True
        self._server.shutdown()
        self._server.server_close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
