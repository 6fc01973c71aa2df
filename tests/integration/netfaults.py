"""Network faults between shipper and a real server: a TCP proxy that cuts a connection mid-stream."""

from __future__ import annotations

import socket
import threading


class CuttingProxy:
    """Forwards ``listen`` -> ``target``; the first connection that carries ``cut_after`` bytes
    upstream is cut there (both sides reset), later ones pass untouched.

    ``before_body_of=(b"PATCH ", 3)`` cuts instead right after the headers of
    the third PATCH request: the server gets the request, and none of its body.

        with CuttingProxy(("127.0.9.11", 5099), ("127.0.9.11", 5000), 5 << 20) as proxy:
            ...  # talk to 127.0.9.11:5099
        assert proxy.cut
    """

    def __init__(
        self, listen: tuple[str, int], target: tuple[str, int], cut_after: int = 1 << 62, before_body_of: tuple[bytes, int] | None = None
    ) -> None:
        self.target, self.cut_after, self.before_body_of = target, cut_after, before_body_of
        self._requests = 0
        self.cut = threading.Event()
        self._server = socket.create_server(listen, reuse_port=False)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def __enter__(self) -> "CuttingProxy":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._server.close()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            upstream = socket.create_connection(self.target)
            threading.Thread(target=self._pipe, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, client, False), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket, counts: bool) -> None:
        moved = 0
        tail = bytearray()
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                keep = self._cut_point(data, moved, tail) if counts and not self.cut.is_set() else None
                if keep is not None:
                    self.cut.set()
                    sink.sendall(data[:keep])
                    _reset(source)
                    _reset(sink)
                    return
                sink.sendall(data)
                moved += len(data)
        except OSError:
            pass
        finally:
            _shut_both(source, sink)


    def _cut_point(self, data: bytes, moved: int, tail: bytearray) -> int | None:
        """Where in ``data`` to cut, if here. ``tail``: this connection's last bytes not yet searched."""
        if self.before_body_of is None:
            return max(self.cut_after - moved, 0) if moved + len(data) >= self.cut_after else None
        marker, nth = self.before_body_of
        window = bytes(tail) + data
        start = 0
        while True:
            found = window.find(marker, start)
            if found < 0:
                break
            end = window.find(b"\r\n\r\n", found)
            if end < 0:  # the headers are not all here yet: search from this marker again next time
                tail[:] = window[found:]
                return None
            self._requests += 1
            if self._requests == nth:
                return max(end + 4 - len(tail), 0)
            start = end + 4
        tail[:] = window[max(start, len(window) - len(marker) + 1) :]
        return None


def _shut_both(*ends: socket.socket) -> None:
    for end in ends:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _reset(sock: socket.socket) -> None:
    """Close with RST, as a dropped connection looks."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        sock.close()
    except OSError:
        pass


class StallingProxy(CuttingProxy):
    """Forwards ``listen`` -> ``target``; a connection whose answers (server to client) pass ``stall_after`` bytes
    stops there: nothing more is forwarded either way, and the connection stays open, as on a link that hangs.
    ``stalled`` is set once one has. Requests (client to server) pass untouched."""

    def __init__(self, listen: tuple[str, int], target: tuple[str, int], stall_after: int) -> None:
        super().__init__(listen, target)
        self.stall_after = stall_after
        self.stalled = threading.Event()

    def _pipe(self, source: socket.socket, sink: socket.socket, counts: bool) -> None:
        if counts:  # the requests
            return super()._pipe(source, sink, False)
        moved = 0
        try:
            while moved < self.stall_after:
                data = source.recv(65536)
                if not data:
                    break
                sink.sendall(data[: self.stall_after - moved])
                moved += len(data)
            else:
                self.stalled.set()
                self._stop.wait()
        except OSError:
            pass
        finally:
            _shut_both(source, sink)
