"""A multi-platform image in a registry, made without pulling anything: for the tests and the matrix.

The linux/amd64 platform is an image already pushed to the registry (a lab
image that runs here); a small linux/arm64 image is made on the spot. Engines
here can pull only the amd64 one, so they hold part of the index, as an engine
holds any multi-platform image it pulled.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from typing import Callable, Iterator

from shipper.registry import Address, Manifest, RegistryClient
from shipper.registry.client import digest_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def _arm64_image() -> tuple[bytes, bytes]:
    """(gzip layer, config) of a one-file linux/arm64 image."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as archive:
        info = tarfile.TarInfo("arm64.txt")
        info.size = 6
        archive.addfile(info, io.BytesIO(b"arm64\n"))
    diff_id = "sha256:" + hashlib.sha256(layer.getvalue()).hexdigest()
    config = json.dumps({"architecture": "arm64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    return gzip.compress(layer.getvalue(), mtime=0), config


def _reader(blob: bytes) -> Callable[[int], Iterator[bytes]]:
    return lambda offset: iter([blob[offset:]])


def push_index(registry: str, amd64: tuple[str, str], repository: str, tag: str) -> Manifest:
    """Put ``repository:tag`` in the plain-HTTP ``registry``: an index of ``amd64`` (repository, tag: pushed there
    already) as linux/amd64 and a small linux/arm64 image. Returns the index."""
    with RegistryClient(Address(registry, plain_http=True)) as client:
        amd = client.manifest(*amd64)
        for descriptor in [*amd.layers, amd.config]:
            assert descriptor is not None
            client.mount_blob(repository, descriptor.digest, amd64[0])
        client.put_manifest(repository, amd.digest, amd)
        packed, config = _arm64_image()
        for blob in (packed, config):
            client.upload_blob(repository, digest_of(blob), len(blob), _reader(blob))
        arm_raw = json.dumps({
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": digest_of(config), "size": len(config)},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": digest_of(packed), "size": len(packed)}],
        }).encode()  # fmt: skip
        arm = Manifest(arm_raw, OCI_MANIFEST, digest_of(arm_raw))
        client.put_manifest(repository, arm.digest, arm)
        raw = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": amd.media_type, "digest": amd.digest, "size": len(amd.raw), "platform": {"architecture": "amd64", "os": "linux"}},
            {"mediaType": OCI_MANIFEST, "digest": arm.digest, "size": len(arm_raw), "platform": {"architecture": "arm64", "os": "linux"}},
        ]}).encode()  # fmt: skip
        index = Manifest(raw, OCI_INDEX, digest_of(raw))
        client.put_manifest(repository, tag, index)
    return index


def tag_holds(registry: str, repository: str, tag: str) -> Manifest:
    with RegistryClient(Address(registry, plain_http=True)) as client:
        return client.manifest(repository, tag)
