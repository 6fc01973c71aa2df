"""Where a delivery's bytes come from: one ``Source`` per origin.

- ``SSHSaveSource``: ``docker save`` on the source host, over OpenSSH (the relay);
- ``APISaveSource``: ``GET /images/get`` on the source engine (direct);
- ``FileSource``: a bundle file, read back (bundle load);
- the source-host program (program.py) is its own sender: it needs no source here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator, Protocol

from shipper.bundle import BundleError, content_chunks
from shipper.engine import connect
from shipper.errors import EngineError, EngineUnreachable, ShipperError, SSHError
from shipper.inventory.model import Host
from shipper.transport.openssh import SSH_CONNECTION_ERROR, RemoteCommand
from shipper.transfer.plan import SaveRequest

__all__ = ["APISaveSource", "FileSource", "SSHSaveSource", "SaveRequest", "Source", "SourceFailed", "docker_failure", "make_source"]


class SourceFailed(ShipperError):
    """The source stream could not be read to its end, or was not sound."""


class Source(Protocol):
    """A stream of docker-save bytes, and what went wrong at its origin."""

    def chunks(self) -> Iterator[bytes]: ...

    def broken(self, problem: Exception) -> ShipperError:
        """The stream turned out not to be sound (``problem``): what every target is told."""

    def failure(self) -> ShipperError | None:
        """After the stream ended (or broke): the origin's own account of what went wrong, if any."""

    def abort(self) -> None:
        """Stop reading: the origin must not block on a stream nobody reads."""


_ENGINE_GONE = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect")
COMMAND_NOT_FOUND = 127


def docker_failure(host: Host, stage: str, status: int, stderr: str) -> ShipperError:
    """A failed ``docker save``/``docker load`` (run over ssh) as a shipper error."""
    line = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
    where = f"{stage} on {host.describe()}"
    if status == SSH_CONNECTION_ERROR or status < 0:
        # ssh exits 255 both when the connection drops and when the remote command dies by a signal.
        return SSHError(
            f"the SSH session for {where} ended abnormally: "
            f"{line or f'the connection broke (the link dropped, or {host.name} was silent for {host.ssh.dead_after} s) or the remote command was killed'}",
            hint="check the network to that host and that nothing killed docker there, then run the same command again",
        )
    if any(marker in line for marker in _ENGINE_GONE):
        return EngineUnreachable(
            f"the engine stopped answering during {where}",
            hint=f"start dockerd on {host.name}, then run the same command again (docker said: {line[:200]})",
        )
    if "no space left" in line:
        return EngineError(f"{where} failed: engine said {line!r}", hint=f"free space under the engine's data root on {host.name}, then run again")
    return EngineError(f"{where} failed: {line or f'exit status {status}'}")


class SSHSaveSource:
    """``docker save`` run on the source host, its stdout over OpenSSH to this machine."""

    def __init__(self, host: Host, save: SaveRequest) -> None:
        self.host = host
        self.proc = RemoteCommand(host.ssh, save.command(), f"host {host.name}")
        self.aborted = False

    def chunks(self) -> Iterator[bytes]:
        return self.proc.chunks()

    def failure(self) -> ShipperError | None:
        """After the stream ended (or broke): the source's own account of what went wrong, if any
        (None when it only ended because shipper stopped it)."""
        status, _, stderr = self.proc.wait(timeout=30)
        if not status or (self.aborted and status < 0):
            return None
        return docker_failure(self.host, "save", status, stderr)

    def abort(self) -> None:
        self.aborted = True
        self.proc.kill()

    def broken(self, problem: Exception) -> ShipperError:
        # The source's own words (docker save's error) explain a broken stream best.
        return self.failure() or SourceFailed(f"the stream from {self.host.describe()} is not sound: {problem}")


class APISaveSource:
    """``GET /images/get`` on the source engine."""

    def __init__(self, host: Host, save: SaveRequest) -> None:
        self.host = host
        self.engine = connect(host, timeout=None)
        self._chunks = self.engine.save(save.refs, save.platform)

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def failure(self) -> ShipperError | None:
        self.engine.close()
        return None  # its errors surface from chunks() already, as ShipperErrors

    def abort(self) -> None:
        self.engine.close()

    def broken(self, problem: Exception) -> ShipperError:
        return SourceFailed(f"the stream from {self.host.describe()} is not sound: {problem}")


def make_source(route: str, host: Host, save: SaveRequest) -> SSHSaveSource | APISaveSource:
    return SSHSaveSource(host, save) if route == "ssh" else APISaveSource(host, save)


class FileSource:
    """A bundle's tar bytes (parts joined, decompressed, bounded), verified before and checked again on the way."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def chunks(self) -> Iterator[bytes]:
        return content_chunks(self.path)

    def failure(self) -> ShipperError | None:
        return None  # a file's errors surface from chunks() already

    def abort(self) -> None:
        pass

    def broken(self, problem: Exception) -> ShipperError:
        return BundleError(f"{self.path.name} changed while it was being loaded: {problem}")
