"""What engines say: their JSON message streams (push, pull) followed to the end, progress counted, errors read;
their error answers and connection failures in a few words."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import docker.errors

from shipper.engine.quickget import BadAnswer
from shipper.errors import EngineError, RegistryAuthFailed, RegistryUnreachable, ShipperError


class Progress:
    """Bytes moved so far across a push's or pull's layers (the engine reports each layer's own count)."""

    def __init__(self, on_progress: Callable[[int], None] | None) -> None:
        self.on_progress = on_progress
        self.layers: dict[str, int] = {}
        self.sizes: dict[str, int] = {}

    @property
    def total(self) -> int:
        return sum(self.layers.values())

    def __call__(self, layer: str, done: int, total: int = 0) -> None:
        if total:
            self.sizes[layer] = total
        self.layers[layer] = max(done, self.layers.get(layer, 0))
        if self.on_progress is not None:
            self.on_progress(self.total)

    def complete(self, layer: str) -> None:
        if layer in self.sizes:
            self(layer, self.sizes[layer])


def error_said(message: Mapping[str, Any]) -> str | None:
    """The engine's words when a streamed message reports an error (``errorDetail.message``, else ``error``), else None."""
    detail, error = message.get("errorDetail"), message.get("error")
    if not detail and not error:
        return None
    said = detail.get("message") if isinstance(detail, dict) else detail
    if not isinstance(said, str) or not said:
        said = error if error else said
    return str(said)[:2000]


def _count(value: Any) -> int | None:
    """A byte count as the engine reports one, or None where the field is something else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        return None
    return int(value)


def follow(stream: Iterable[Any], action: str, on_progress: Callable[..., None] | None) -> dict[str, Any]:
    """Read a push or pull's JSON messages to the end; the last ``aux`` (the pushed digest); errors raised.
    A message that is not an object is a ``BadAnswer``; a field of another kind than the API's is passed over."""
    aux: dict[str, Any] = {}
    progress = on_progress if isinstance(on_progress, Progress) else Progress(on_progress)
    for message in stream:
        if not isinstance(message, dict):
            raise BadAnswer(f"a message of the engine's {action} is not a JSON object")
        said = error_said(message)
        if said is not None:
            raise registry_refusal(action, said)
        layer, status, counts = str(message.get("id", "")), message.get("status"), message.get("progressDetail")
        counts = counts if isinstance(counts, dict) else {}
        current = _count(counts.get("current"))
        if layer and status in ("Pushing", "Downloading") and current is not None:
            progress(layer, current, _count(counts.get("total")) or 0)
        elif layer and status in ("Pushed", "Download complete"):
            progress.complete(layer)  # the engine's last progress message may lag behind
        if isinstance(message.get("aux"), dict):
            aux = {**aux, **message["aux"]}
        pushed = _PUSHED_DIGEST.search(str(status or ""))
        if pushed and "Digest" not in aux:
            # Docker 28 with the containerd store, pushing one platform of a multi-platform image whose other
            # platforms it lacks ("manifestPushedInsteadOfIndex"), says the digest only in this status line.
            aux = {**aux, "Digest": pushed.group(1)}
    return aux


_PUSHED_DIGEST = re.compile(r"digest: (sha256:[0-9a-f]{64}) size: \d+")


# What an engine says -> what the user can do about it (lowercase markers, first match wins).
ENGINE_REMEDIES: tuple[tuple[str, str], ...] = (
    ("no space left on device", "free space under the engine's data root on {host} (docker system prune, or move data-root to a larger disk), then run again"),
    ("permission denied", "the SSH user may not use the engine on {host}: add it to the docker group (usermod -aG docker USER) or log in as root"),
    ("is too new. maximum supported api version", "that engine is older than shipper's client: shipper needs Docker 20.10 (API 1.41) or newer"),
    ("client version", "that engine is older than shipper's client: shipper needs Docker 20.10 (API 1.41) or newer"),
    ("read-only file system", "the engine's data root is mounted read-only on that host: remount it read-write"),
    ("conflict: unable to remove", "a container still uses that image: remove the container first (or leave the image)"),
    ("no such image", "the image is not on that host: shipper images HOST lists what it has"),
    ("toomanyrequests", "the registry limits how often it may be asked: wait, or log in (shipper registry login)"),
    ("context deadline exceeded", "the engine gave up waiting: check the host's load and its link, then run again"),
)


def engine_remedy(detail: str, host: str = "that host") -> str | None:
    """A hint for what the engine on ``host`` said, where one is known."""
    lowered = detail.lower()
    return next((hint.format(host=host) for marker, hint in ENGINE_REMEDIES if marker in lowered), None)


def registry_refusal(action: str, detail: str) -> ShipperError:
    lowered = detail.lower()
    if "unauthorized" in lowered or "authentication required" in lowered or "no basic auth credentials" in lowered:
        return RegistryAuthFailed(f"cannot {action}: the registry refused the credentials ({detail})", hint="check them with shipper registry login")
    if "x509" in lowered or "certificate" in lowered:
        return RegistryUnreachable(
            f"cannot {action}: the engine does not trust the registry's certificate ({detail})",
            hint="install the registry's CA on that engine as /etc/docker/certs.d/HOST:PORT/ca.crt (shipper registry up does it)",
        )
    if "connection refused" in lowered or "no such host" in lowered or "i/o timeout" in lowered:
        return RegistryUnreachable(f"cannot {action}: the engine cannot reach the registry ({detail})", hint="can that host reach the registry's address?")
    return EngineError(f"cannot {action}: engine said {detail!r}")


def error_message(body: bytes) -> str:
    """The ``message`` of an engine's error answer (or its first line)."""
    try:
        said = json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip().splitlines()[0][:300] if body.strip() else ""
    return str(said.get("message", "")) if isinstance(said, dict) else ""


def explanation(exc: docker.errors.APIError) -> str:
    """What the engine said when docker-py raised."""
    return str(exc.explanation or exc).strip()


def why_unreachable(exc: BaseException) -> str:
    """Why an engine could not be reached, in a few words, from what the connection raised."""
    text = str(exc)
    for marker, why in (
        ("FileNotFoundError", "no engine socket there"),
        ("No such file or directory", "no engine socket there"),
        ("Connection refused", "connection refused"),
        ("CERTIFICATE_VERIFY_FAILED", "its TLS certificate is not trusted by docker_tls_ca"),
        ("SSLError", "the TLS handshake failed"),
        ("Read timed out", "no answer in time"),
        ("RemoteDisconnected", "the connection closed without an answer"),
        ("TooManyRedirects", "it answered with a redirect, which shipper does not follow (an engine never redirects)"),
    ):
        if marker in text or marker == type(exc).__name__:
            return why
    return text.splitlines()[0] if text else type(exc).__name__
