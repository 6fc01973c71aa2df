"""The bundle file: a docker-save tar, plus shipper's own manifest, optionally zstd-compressed and split.

    site.tar[.zst]                      one file, or
    site.tar.zst.000, .001, …           parts of at most --split bytes each, and
    site.tar[.zst].sha256               sha256sum lines for the file or each part

Inside, the members ``docker save`` wrote (tags included, so a plain
``docker load -i`` works without shipper), then two members of shipper's:
``shipper-bundle.json`` (images, tags, sizes, platform, who made it and when,
the size and sha256 of every member, the layers a delta bundle leaves out) and
``shipper-bundle-sha256.json`` (the digest of the first), and when the
bundle is signed ``shipper-bundle.sig``: the release key's signature over
``shipper-bundle.json`` (which holds the digest of every member), in the
form ``cosign sign-blob`` writes, also written beside the bundle as
``site.tar[.zst].sig`` so that openssl or cosign can check it without shipper.

Here: the bundle's own manifest and the errors; writer.py writes a bundle,
reader.py reads one back verified.

A bundle is untrusted input: it is never extracted. ``read_verified`` streams
it once through the checking filter (names, types, duplicates, metadata sizes,
every layer hashed against its image's config, every config against its ID),
then holds every member against the bundle's manifest and refuses anything
after the end of the archive. The checksum file travels with the bundle, so it
proves nothing about tampering (a signature does: see signing.py): it is checked in the same read (and named first
when it disagrees, as it says best that a file was damaged), never in place of
hashing the layers. Decompression is bounded: at most 1 MiB comes out per step,
and past 256 MiB the output may not exceed 1000 times the compressed bytes read.

A bundle is written as ``*.partial`` and renamed only once complete; every
file is created afresh, never through a symlink planted at its name.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

from shipper.archive.savestream import StreamStats
from shipper.errors import ShipperError

BUNDLE_JSON = "shipper-bundle.json"
BUNDLE_DIGEST = "shipper-bundle-sha256.json"
BUNDLE_SIG = "shipper-bundle.sig"  # base64 ECDSA-SHA256 over shipper-bundle.json, as cosign sign-blob writes it
FORMAT = 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
READ_CHUNK = 1 << 20
ZSTD_LEVEL = 1  # 1.3 GB/s on random data here; higher levels cost far more than they save on layers
MAX_RATIO = 1000  # decompressed bytes per compressed byte, past MAX_RATIO_GRACE (zstd -1 gives ~5:1 on text layers)
MAX_RATIO_GRACE = 256 << 20
MAX_SUMS_FILE = 1 << 20


class BundleError(ShipperError):
    """A bundle is not sound: damaged, cut, tampered with, or not a bundle."""


@dataclass(frozen=True)
class BundleImage:
    id: str
    tags: tuple[str, ...]
    size: int
    layers: tuple[str, ...]
    platform: str


@dataclass
class BundleManifest:
    images: list[BundleImage]
    members: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {"size", "sha256"}
    relies_on: list[str] = field(default_factory=list)  # layers left out: the far side must hold them
    source: str = ""
    created: str = ""
    created_by: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT, "source": self.source, "created": self.created, "created_by": self.created_by,
            "images": [vars(image) | {"tags": list(image.tags), "layers": list(image.layers)} for image in self.images],
            "relies_on": self.relies_on, "members": self.members,
        }  # fmt: skip

    @classmethod
    def from_json(cls, data: bytes) -> "BundleManifest":
        try:
            document = json.loads(data)
            if not isinstance(document, dict):
                raise TypeError("not a JSON object")
            if document.get("format") != FORMAT:
                raise BundleError(f"{BUNDLE_JSON} is format {document.get('format')!r}; this shipper reads format {FORMAT}")
            images = [
                BundleImage(str(i["id"]), _strings(i["tags"]), _count(i["size"]), _strings(i["layers"]), str(i.get("platform", "")))
                for i in document["images"]
            ]
            members = {str(name): {"size": _count(entry["size"]), "sha256": str(entry["sha256"])} for name, entry in document["members"].items()}
            return cls(images, members, list(_strings(document.get("relies_on") or [])), str(document.get("source", "")),
                       str(document.get("created", "")), str(document.get("created_by", "")))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError, OverflowError) as exc:
            raise BundleError(f"{BUNDLE_JSON} is not a valid bundle manifest ({type(exc).__name__}: {str(exc)[:100]})") from None


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"{str(value)[:40]!r} is not a list of strings")
    return tuple(value)


def _count(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise TypeError(f"{str(value)[:40]!r} is not a size")
    return value


def trailer_for(images: list[BundleImage], source: str, relies_on: Iterable[str], signer: Callable[[bytes], str] | None = None) -> Any:
    """The filter's trailer: shipper's manifest, made from the checked stream's members; signed by ``signer``
    (manifest bytes -> base64 signature) when given, the signature a member after it."""

    def make(stats: StreamStats) -> list[tuple[str, bytes]]:
        members = {m.name: {"size": m.size, "sha256": m.digest} for m in stats.members.values() if m.link is None and m.digest}
        manifest = BundleManifest(
            images, members, sorted(relies_on), source, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            f"{getpass.getuser()}@{socket.gethostname()} with shipper",
        )  # fmt: skip
        data = json.dumps(manifest.to_json(), indent=1).encode()
        trailer = [(BUNDLE_JSON, data), (BUNDLE_DIGEST, json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode())]
        return trailer + ([(BUNDLE_SIG, signer(data).encode())] if signer is not None else [])

    return make
