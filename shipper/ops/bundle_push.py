"""``bundle push`` of a bundle made from engines: its images into a registry, straight from the file (no engine).

Layers go up uncompressed, as OCI allows, so that a layer's digest is its diff
ID and "already there" is a HEAD away; a bundle made from a containerd store
holds pulled layers gzip-compressed, and those go up as gzip layers under their
own digest. Only the missing blobs go up; manifests and tags come last.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from shipper.ops.oci_bundle import PushedOci, push_oci
from shipper.ops.oci_layout import OciVerified, is_oci_bundle, read_oci_verified
from shipper.bundle import BundleError, BundleImage, Verified, check_signature, content_chunks, read_verified
from shipper.bundle.reader import ChunkFile, forward_reader
from shipper.errors import UsageError
from shipper.imageref import without_registry
from shipper.progress import NullReporter, Reporter
from shipper.registry import Manifest, RegistryClient
from shipper.registry.client import digest_of

OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"


@dataclass
class Pushed:
    uploaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"uploaded": len(self.uploaded), "already_there": len(self.present), "tags": self.tags}


def _repositories(image: BundleImage) -> list[tuple[str, str]]:
    """(repository, tag) of each of an image's tags, without any registry part."""
    return [without_registry(name) for name in image.tags]


def push(path: Path, client: RegistryClient, reporter: Reporter | None = None, verified: Verified | None = None) -> tuple[Verified, Pushed]:
    """Seed a registry from the bundle: verified first (``verified``: already, with its signature: see ``verify``),
    then only the missing blobs, then manifests and tags."""
    reporter = reporter or NullReporter()
    verified = verified or read_verified(path)
    targets = {image.id: _repositories(image) for image in verified.manifest.images}
    untagged = [i.id for i in verified.manifest.images if not targets[i.id]]
    if untagged:
        raise UsageError(f"image {untagged[0][:19]} in {path.name} has no tag: a registry needs a name for it")
    # The bundle's own list of members (every entry checked by read_verified): name -> digest and size.
    digest_of_member = {name: str(entry["sha256"]) for name, entry in verified.manifest.members.items()}
    size_of_digest = {str(entry["sha256"]): int(entry["size"]) for entry in verified.manifest.members.values()}
    for image in verified.manifest.images:
        repository = targets[image.id][0][0]
        for layer in image.layers:
            if layer in verified.manifest.relies_on and client.blob_size(repository, layer) is None:
                raise BundleError(f"registry {client.address} lacks layer {layer[:19]}… of {repository}, which this delta bundle relies on")
    result = Pushed()
    blobs = {image.id: _layer_blobs(image, verified, digest_of_member) for image in verified.manifest.images}
    wanted: dict[str, str] = {}  # blob digest -> repository to put it in first
    for image in verified.manifest.images:
        for digest in (*(digest for digest, _ in blobs[image.id]), image.id):
            wanted.setdefault(digest, targets[image.id][0][0])
    with tarfile.open(fileobj=io.BufferedReader(ChunkFile(content_chunks(path)), 1 << 20), mode="r|") as archive:
        for member in archive:
            digest = digest_of_member.get(member.name, "")
            if not member.isfile() or digest not in wanted:
                continue
            repository = wanted.pop(digest)
            content = archive.extractfile(member)
            assert content is not None
            status = client.upload_blob(repository, digest, member.size, forward_reader(content))
            (result.uploaded if status == "uploaded" else result.present).append(digest)
    for digest in wanted:  # blobs the bundle relies on, or shared: already in the registry
        result.present.append(digest)
    for image in verified.manifest.images:
        _put_image(client, image, blobs[image.id], size_of_digest, targets[image.id], result)
    return verified, result


def _layer_blobs(image: BundleImage, verified: Verified, digest_of_member: dict[str, str]) -> list[tuple[str, str]]:
    """(blob digest, media type) of each layer as the bundle holds it: an uncompressed tar goes up under its
    diff ID; a gzip one (saved from a containerd store that pulled it) as it is, under its own digest."""
    members = verified.stats.layer_members.get(image.id, [])
    found = []
    for i, diff_id in enumerate(image.layers):
        stored = digest_of_member.get(members[i], diff_id) if i < len(members) and members[i] else diff_id
        found.append((stored, OCI_LAYER if stored == diff_id else OCI_LAYER + "+gzip"))
    return found


def _put_image(
    client: RegistryClient, image: BundleImage, blobs: list[tuple[str, str]], sizes: dict[str, int], tags: list[tuple[str, str]],
    result: Pushed,
) -> None:  # fmt: skip
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": image.id, "size": sizes[image.id]},
        "layers": [{"mediaType": kind, "digest": blob, "size": _layer_size(client, tags[0][0], blob, sizes)} for blob, kind in blobs],
    }
    raw = json.dumps(document, separators=(",", ":")).encode()
    manifest = Manifest(raw, OCI_MANIFEST, digest_of(raw))
    for repository, tag in tags:
        for layer in (*(blob for blob, _ in blobs), image.id):
            if repository != tags[0][0] and client.blob_size(repository, layer) is None:
                client.mount_blob(repository, layer, tags[0][0])
        client.put_manifest(repository, tag, manifest)
        result.tags.append(f"{repository}:{tag}")


def _layer_size(client: RegistryClient, repository: str, layer: str, sizes: dict[str, int]) -> int:
    if layer in sizes:
        return sizes[layer]
    size = client.blob_size(repository, layer)  # a layer the bundle relies on
    if size is None:
        raise BundleError(f"registry {client.address} lacks layer {layer[:19]}… of {repository}")
    return size


def verify_for_push(path: Path, keys: Sequence[Path] = ()) -> Verified | OciVerified:
    """Either kind of bundle, read whole and checked (its signature with ``keys``), before any registry is asked."""
    found: Verified | OciVerified = read_oci_verified(path) if is_oci_bundle(path) else read_verified(path)
    check_signature(found, path, keys)
    return found


def push_verified(path: Path, client: RegistryClient, verified: Verified | OciVerified) -> Pushed | PushedOci:
    """Either kind of bundle into ``client``'s registry: a registry bundle with every digest as it was."""
    if isinstance(verified, OciVerified):
        return push_oci(path, client, verified)
    return push(path, client, verified=verified)[1]
