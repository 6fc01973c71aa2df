"""Where a move's bytes come from and go to, one kind per route.

A source yields the ``docker save`` stream of the images; a sink feeds one
target's ``docker load`` from a bounded queue in a thread of its own, so a
slow target slows the others down (memory stays flat) but a failed one does
not stop them. A sink that is aborted sends an invalid tar block before it
lets go: a tar stream that merely stops on a member boundary reads as a
complete, shorter archive, and must never be loaded as one.
"""

from __future__ import annotations

import queue
import shlex
import threading
from typing import Callable, Iterator

from shipper.engine import connect
from shipper.errors import EngineError, EngineUnreachable, ShipperError, SSHError
from shipper.inventory.model import Host
from shipper.transport.openssh import SSH_CONNECTION_ERROR, RemoteCommand

QUEUE_DEPTH = 8  # chunks of about 1 MiB per target
POISON = b"\xff" * 512  # fails a tar header's checksum: the engine's load fails, nothing is created
_END = object()
_ABORT = object()


class Aborted(Exception):
    """The stream to a target was abandoned on purpose."""


_ENGINE_GONE = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect")


def _docker_failure(host: Host, stage: str, status: int, stderr: str) -> ShipperError:
    line = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
    where = f"{stage} on {host.describe()}"
    if status == SSH_CONNECTION_ERROR or status < 0:
        # ssh exits 255 both when the connection drops and when the remote command dies by a signal.
        return SSHError(
            f"the SSH session for {where} ended abnormally: {line or 'the connection broke or the remote command was killed'}",
            hint="check the network to that host and that nothing killed docker there, then run the same command again",
        )
    if any(marker in line for marker in _ENGINE_GONE):
        return EngineUnreachable(
            f"the engine stopped answering during {where}",
            hint=f"start dockerd on {host.name}, then run the same command again (docker said: {line[:200]})",
        )
    line = line or f"exit status {status}"
    if "no space left" in line:
        return EngineError(f"{where} failed: engine said {line!r}", hint="free space under the engine's data root there, then run again")
    return EngineError(f"{where} failed: {line}")


def _loaded_ids(output: str) -> list[str]:
    return [ln.split(": ", 1)[1].strip() for ln in output.splitlines() if ln.startswith("Loaded image")]


# -- sources ----------------------------------------------------------------------


class SSHSaveSource:
    """``docker save`` run on the source host, its stdout over OpenSSH."""

    def __init__(self, host: Host, image_ids: tuple[str, ...]) -> None:
        self.host = host
        command = "docker save " + " ".join(shlex.quote(i) for i in image_ids)
        self.proc = RemoteCommand(host.ssh, command, f"host {host.name}")

    def chunks(self) -> Iterator[bytes]:
        return self.proc.chunks()

    def failure(self) -> ShipperError | None:
        """After the stream ended (or broke): the source's own account of what went wrong, if any."""
        status, _, stderr = self.proc.wait(timeout=30)
        return _docker_failure(self.host, "save", status, stderr) if status else None

    def abort(self) -> None:
        self.proc.kill()


class APISaveSource:
    """``GET /images/get`` on the source engine."""

    def __init__(self, host: Host, image_ids: tuple[str, ...]) -> None:
        self.host = host
        self.engine = connect(host, timeout=None)
        self._chunks = self.engine.save(image_ids)

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def failure(self) -> ShipperError | None:
        self.engine.close()
        return None  # errors surface from chunks() already, as ShipperErrors

    def abort(self) -> None:
        self.engine.close()


# -- sinks --------------------------------------------------------------------------


class Sink:
    """One target's load, fed through a bounded queue by its own thread."""

    def __init__(self, host: Host) -> None:
        self.host = host
        self.sent = 0
        self.error: ShipperError | None = None
        self.loaded: list[str] = []
        self._queue: queue.Queue[object] = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._main, name=f"load-{host.name}", daemon=True)

    @property
    def failed(self) -> bool:
        return self.error is not None

    def start(self) -> "Sink":
        self._thread.start()
        return self

    def put(self, chunk: bytes | memoryview) -> bool:
        """Queue ``chunk``; False (and nothing queued) once this target has failed."""
        while not self.failed:
            try:
                self._queue.put(chunk, timeout=0.2)
                self.sent += len(chunk)
                return True
            except queue.Full:
                continue
        return False

    def finish(self) -> None:
        """The stream is complete: let the load end, wait for it."""
        self._close(_END)

    def abort(self) -> None:
        """The stream is bad: make the load fail, wait for it."""
        self._close(_ABORT)

    def _close(self, marker: object) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(marker, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()

    def items(self) -> Iterator[bytes | memoryview]:
        """What the load reads: chunks, then the end; or a poison block and ``Aborted``."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                yield POISON
                raise Aborted()
            yield item  # type: ignore[misc]

    def _main(self) -> None:
        try:
            self.loaded = self.load()
        except Aborted:
            self.error = ShipperError("aborted")
        except ShipperError as exc:
            self.error = exc
        except Exception as exc:  # a bug must not hang the other targets
            self.error = ShipperError(f"loading on {self.host.name} failed unexpectedly: {exc!r}")
        finally:
            self._drain()

    def _drain(self) -> None:
        # Unblock a producer waiting on a full queue after this sink gave up.
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                return

    def load(self) -> list[str]:
        raise NotImplementedError


class SSHLoadSink(Sink):
    """``docker load`` run on the target host, its stdin over OpenSSH."""

    def load(self) -> list[str]:
        proc = RemoteCommand(self.host.ssh, "docker load -q", f"host {self.host.name}", stdin=True)
        try:
            for chunk in self.items():
                proc.write(chunk)
        except Aborted:
            proc.wait(timeout=60)
            raise
        except BrokenPipeError:
            pass  # the far end quit early: its exit status says why
        status, out, err = proc.wait()
        if status:
            raise _docker_failure(self.host, "load", status, err)
        return _loaded_ids(out)


class APILoadSink(Sink):
    """``POST /images/load`` on the target engine."""

    def load(self) -> list[str]:
        with connect(self.host, timeout=None) as engine:
            return engine.load(self.items())


def make_sinks(route: str, hosts: list[Host]) -> list[Sink]:
    kind: Callable[[Host], Sink] = SSHLoadSink if route == "ssh" else APILoadSink
    return [kind(h).start() for h in hosts]


def make_source(route: str, host: Host, image_ids: tuple[str, ...]) -> SSHSaveSource | APISaveSource:
    return SSHSaveSource(host, image_ids) if route == "ssh" else APISaveSource(host, image_ids)
