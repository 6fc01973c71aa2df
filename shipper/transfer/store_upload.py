"""Registry route: the program shipper runs on the source host (archive/storeupload.py) to upload the layers
it reads from its engine's store straight into the registry, and what it reports."""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from shipper.archive.boot import HOST_PYTHON
from shipper.archive.storeupload import LOADER, script
from shipper.errors import RegistryError, ShipperError
from shipper.inventory.model import Host
from shipper.progress import Reporter
from shipper.transfer.sources import docker_failure
from shipper.transport.openssh import SSH_CONNECTION_ERROR
from shipper.transport.session_command import StartingCommand
from shipper.transport.ssh import SSHSession

COMMAND_NOT_FOUND = 127
MAX_OUTCOME = 4 << 20  # the program's report: sizes and short errors, never more
MAX_CA = 1 << 20


@dataclass(frozen=True)
class UploadTarget:
    """Where the blobs go, as the source host reaches the registry, and what it may send there."""

    url: str  # https://host:port (the address the engines use)
    authorization: str  # the Authorization header value ("" for an open registry): a secret
    cadata: str = ""  # PEM of the CA the registry's certificate must chain to ("": the source's system CAs)
    insecure: bool = False

    def __repr__(self) -> str:  # never print the header
        return f"UploadTarget({self.url!r})"


@dataclass
class StoreUploaded:
    available: bool
    reason: str = ""
    sizes: dict[str, int] = field(default_factory=dict)  # every layer's and config's size (the manifests need them)
    uploaded: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


def read_ca(path: str | None) -> str:
    if not path:
        return ""
    with open(path, "rb") as source:
        data = source.read(MAX_CA + 1)
    if len(data) > MAX_CA:
        raise RegistryError(f"the CA file {path} is larger than {MAX_CA >> 10} KiB: not a CA certificate")
    return data.decode("ascii", errors="replace")


class StoreUploader:
    """The upload program on ``source``, started before its work is known: its SSH login, python3's start-up
    and its look at the engine's store overlap shipper's planning. ``upload`` gives it the work, ``cancel``
    tells it there is none."""

    def __init__(self, source: Host) -> None:
        self.source = source
        self.reporter: Reporter | None = None
        code = script().encode()
        # On a channel of a session of its own, logged in in the background (see transport/session_command.py).
        self.session = SSHSession(source.ssh, source.name)  # its engine's connection may share it (EnginePool.share)
        self.session_owned = True  # False once shared: the pool closes it
        self._starting: StartingCommand | None = StartingCommand(
            self.session, f"{HOST_PYTHON} -c {shlex.quote(LOADER.format(size=len(code)))}",
            f"host {source.name}", code, on_stderr_line=self._progress,
        )  # fmt: skip

    def _progress(self, line: str) -> bool:
        if not line.startswith('{"progress"'):
            return False
        try:
            done = int(json.loads(line)["progress"]["b"])
        except (ValueError, KeyError, TypeError):
            return False
        if self.reporter is not None:
            self.reporter.advance(self.source.name, done)
        return True

    def upload(
        self, target: UploadTarget, images: Mapping[str, Sequence[str]], blobs: Sequence[tuple[str, str]], reporter: Reporter, workers: int = 4
    ) -> StoreUploaded:  # fmt: skip
        """Upload ``blobs`` ((digest, repository): the layers and configs the registry lacks) of ``images``
        (image ID -> diff IDs); unavailable (nothing sent) where the store cannot be read there."""
        assert self._starting is not None, "one upload per program"
        starting, self._starting = self._starting, None
        command = starting.result()
        if command is None:
            starting.close(session_too=self.session_owned)
            return StoreUploaded(False, starting.failure)
        self.reporter = reporter
        spec = {
            "registry": {"url": target.url, "cadata": target.cadata, "insecure": target.insecure},
            "authorization": target.authorization,
            "images": {image_id: list(diff_ids) for image_id, diff_ids in images.items()},
            "blobs": [{"digest": digest, "repository": repository} for digest, repository in blobs],
            "workers": workers,
        }
        try:
            try:
                command.write(json.dumps(spec).encode() + b"\n")
            except BrokenPipeError:
                pass
            out = b""
            for chunk in command.chunks():
                out += chunk
                if len(out) > MAX_OUTCOME:
                    raise ShipperError(f"the upload program on {self.source.name} wrote more than {MAX_OUTCOME >> 20} MiB of report: stopped")
            status, _, err = command.wait(keep_stdin=True)
        finally:
            starting.close(session_too=self.session_owned)
        return _outcome(self.source, status, out.decode(errors="replace"), err)

    def cancel(self) -> None:
        """No work: the program ends (an empty line)."""
        starting, self._starting = self._starting, None
        if starting is None:
            return
        command = starting.result()
        try:
            if command is not None:
                command.write(b"\n")
                command.wait(timeout=30)
        except BrokenPipeError:
            pass
        finally:
            starting.close(session_too=self.session_owned)


def _outcome(source: Host, status: int, out: str, err: str) -> StoreUploaded:
    if status == COMMAND_NOT_FOUND:
        return StoreUploaded(False, f"no python3 on {source.name}")
    try:
        report: dict[str, Any] = json.loads(out)
        if not isinstance(report, dict):
            raise ValueError(out[:80])
    except ValueError:
        if status == SSH_CONNECTION_ERROR or status < 0:
            raise docker_failure(source, "upload from the layer store", status, err) from None
        return StoreUploaded(False, f"the upload program failed on {source.name}: {(err.strip().splitlines() or ['?'])[-1][:300]}")
    if not report.get("available"):
        return StoreUploaded(False, str(report.get("reason") or "?")[:300])
    errors = {str(k): str(v) for k, v in dict(report.get("errors") or {}).items()}
    if errors:
        raise _upload_failure(source, errors)
    return StoreUploaded(
        True,
        sizes={str(k): int(v) for k, v in dict(report.get("sizes") or {}).items()},
        uploaded={str(k): int(v) for k, v in dict(report.get("uploaded") or {}).items()},
        seconds=float(report.get("seconds") or 0.0),
    )


def _upload_failure(source: Host, errors: dict[str, str]) -> RegistryError:
    damaged = sorted(digest for digest, why in errors.items() if "DIGEST_INVALID" in why)
    if damaged:
        return RegistryError(
            f"layer {damaged[0][:19]}… read from {source.name}'s layer store is not what its image says (the registry checked it "
            "against its digest and refused it): nothing was named in the registry",
            hint=f"the engine's store on {source.name} is damaged or changed while read: check it (docker image inspect, "
            "a fresh docker pull or load of the image), or run with --no-store-read to let the engine push",
        )
    digest, why = next(iter(sorted(errors.items())))
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return RegistryError(
        f"uploading {digest[:19]}… from {source.name}'s layer store failed{more}: {why[:400]}",
        hint=f"check that {source.name} reaches the registry (address, CA, credentials), then run the same command again",
    )
