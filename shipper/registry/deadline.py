"""Deadlines for registry requests: a server that trickles bytes cannot hold shipper.

``requests`` bounds each socket read (``timeout``), not a whole request: a
server sending one byte every few seconds keeps a request alive for ever. Here
every request runs under a ``Deadline``; the sockets it uses (a new
connection's, or a pooled one's when its response is read) are registered with
it, and one watchdog thread shuts them down once the deadline has passed. The
blocked read then fails, and the client reports the deadline, not a reset.

Streams (blobs) move their deadline on as bytes arrive (``allow_until``): a
slow link is fine, a stalled or trickling one is not.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from typing import Any, Iterator

import requests.adapters
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

TICK = 0.25  # how often the watchdog looks: a deadline is kept within this


class Deadline:
    """A point in time after which the request's sockets are shut down."""

    def __init__(self, seconds: float) -> None:
        self.started = time.monotonic()
        self.expires = self.started + seconds
        self.expired = False
        # A descriptor of our own for each socket: TLS takes over the one a connection was opened with (the
        # original socket object is then closed), and shutting down a duplicate shuts down the connection itself,
        # so a handshake that never ends is cut too.
        self._sockets: list[socket.socket] = []
        self._attached: list[socket.socket] = []  # the socket objects given (held: their id()s are not reused meanwhile)
        self._lock = threading.Lock()

    def allow_until(self, when: float) -> None:
        """Move the deadline to ``when`` (monotonic seconds), never earlier than it is."""
        self.expires = max(self.expires, when)

    def attach(self, sock: Any) -> None:
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            if self.expired:
                _shut(sock)
                return
            if any(given is sock for given in self._attached):
                return
            try:
                own = socket.socket(fileno=os.dup(sock.fileno()))
            except OSError:  # closed meanwhile: nothing to watch
                return
            self._attached.append(sock)
            self._sockets.append(own)

    def expire(self) -> None:
        with self._lock:
            self.expired = True
            for sock in self._sockets:
                _shut(sock)
                sock.close()
            self._sockets.clear()
            self._attached.clear()

    def start(self) -> "Deadline":
        _watchdog.watch(self)
        return self

    @contextlib.contextmanager
    def current(self) -> Iterator[None]:
        """Sockets opened or used by this thread meanwhile belong to this deadline."""
        previous = getattr(_current, "deadline", None)
        _current.deadline = self
        try:
            yield
        finally:
            _current.deadline = previous

    def done(self) -> None:
        """The request is over (its body read or dropped): stop watching it, and close our descriptors."""
        _watchdog.forget(self)
        with self._lock:
            for sock in self._sockets:
                sock.close()
            self._sockets.clear()
            self._attached.clear()

    @property
    def seconds(self) -> float:
        return self.expires - self.started


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class _Watchdog:
    """One daemon thread for every deadline in the process."""

    def __init__(self) -> None:
        self._deadlines: set[Deadline] = set()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._lock:
            self._deadlines.add(deadline)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="shipper-deadlines", daemon=True)
                self._thread.start()

    def forget(self, deadline: Deadline) -> None:
        with self._lock:
            self._deadlines.discard(deadline)

    def _run(self) -> None:
        while True:
            time.sleep(TICK)
            now = time.monotonic()
            with self._lock:
                due = [d for d in self._deadlines if d.expires <= now]
                for deadline in due:
                    self._deadlines.discard(deadline)
            for deadline in due:
                deadline.expire()


_watchdog = _Watchdog()
_current = threading.local()


def _attach(sock: Any) -> None:
    deadline = getattr(_current, "deadline", None)
    if deadline is not None:
        deadline.attach(sock)


class _WatchedHTTPConnection(HTTPConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)  # before the TLS handshake: a trickled handshake counts too
        return sock

    def getresponse(self) -> Any:
        _attach(self.sock)  # a pooled connection, reused
        return super().getresponse()


class _WatchedHTTPSConnection(HTTPSConnection):
    def _new_conn(self) -> socket.socket:
        sock = super()._new_conn()
        _attach(sock)
        return sock

    def getresponse(self) -> Any:
        _attach(self.sock)
        return super().getresponse()


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


class WatchedAdapter(requests.adapters.HTTPAdapter):
    """An HTTPAdapter whose connections report their sockets to the current ``Deadline``;
    ``receive_buffer``: their sockets' receive buffer, in bytes (a small one keeps what a peer can send
    ahead of our reads small)."""

    def __init__(self, *args: Any, receive_buffer: int | None = None, **kwargs: Any) -> None:
        self.receive_buffer = receive_buffer
        super().__init__(*args, **kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self.receive_buffer:
            options = [*HTTPConnection.default_socket_options, (socket.SOL_SOCKET, socket.SO_RCVBUF, self.receive_buffer)]
            kwargs["socket_options"] = options
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}
