"""What a registry holds, as plain values: descriptors, manifests and indexes, their media types and digests."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

from shipper.errors import RegistryError
from shipper.registry.names import check_digest

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
MANIFEST_TYPES = (OCI_INDEX, DOCKER_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
INDEX_TYPES = (OCI_INDEX, DOCKER_LIST)
MAX_METADATA = 4 << 20


@dataclass(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: str = ""  # os/arch[/variant], in an index


@dataclass(frozen=True)
class Manifest:
    """A manifest or index exactly as the registry holds it."""

    raw: bytes
    media_type: str
    digest: str

    @property
    def document(self) -> dict[str, Any]:
        try:
            data = json.loads(self.raw)
        except ValueError:
            raise RegistryError(f"manifest {self.digest} is not JSON") from None
        if not isinstance(data, dict):
            raise RegistryError(f"manifest {self.digest} is not a JSON object")
        return data

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEX_TYPES

    @property
    def config(self) -> Descriptor | None:
        return _descriptor(self.document.get("config"))

    @property
    def layers(self) -> list[Descriptor]:
        return [d for d in (_descriptor(x) for x in self.document.get("layers") or []) if d is not None]

    @property
    def manifests(self) -> list[Descriptor]:
        return [d for d in (_descriptor(x) for x in self.document.get("manifests") or []) if d is not None]


def _descriptor(raw: Any) -> Descriptor | None:
    if not isinstance(raw, dict):
        return None
    platform = raw.get("platform") or {}
    plat = "/".join(str(platform[k]) for k in ("os", "architecture", "variant") if platform.get(k))
    digest = str(raw.get("digest", ""))
    check_digest(digest, "descriptor digest")
    return Descriptor(str(raw.get("mediaType", "")), digest, size_of(raw.get("size", 0), f"the size of {digest}"), plat)


def size_of(value: Any, what: str) -> int:
    """A size a registry gave (a JSON field or a header): a non-negative integer, else RegistryError."""
    if isinstance(value, bool):
        value = None
    try:
        size = int(value)
    except (TypeError, ValueError):
        raise RegistryError(f"the registry gave {what} as {str(value)[:40]!r}, which is not a size") from None
    if size < 0:
        raise RegistryError(f"the registry gave {what} as {size}, which is not a size")
    return size


def digest_of(data: bytes, algorithm: str = "sha256") -> str:
    return f"{algorithm}:{hashlib.new(algorithm, data).hexdigest()}"
