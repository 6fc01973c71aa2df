"""``move --via registry`` without ``docker push``: the layers go from the source's layer store into the registry.

``docker push`` gzips every layer before its first byte goes up: on a fast
link most of a push is that compression, and every tier's first hop is this
push. The source's store holds each layer's tar exactly; it goes up
uncompressed, as OCI allows, under its diff ID, so:

1. here, a HEAD per layer says what the registry already holds (nothing is
   read on the source for those);
2. on the source, a program (archive/storeupload.py) uploads the rest straight
   from the store to the registry, several layers at once, never through this
   machine; it is given a token scoped to pushing these repositories (or the
   Basic credentials a Basic-auth registry takes, as the engine's push would be);
3. here, the manifests (OCI, with the digests Docker 25+ gives the same
   image) and the tags go up last: until then no name in the registry points
   at anything new.

Where the store cannot be read there (another storage driver, the containerd
store, no python3, no permission), the engine pushes as before.
"""

from __future__ import annotations

from typing import Sequence

from shipper.archive.layerstore import OCI_MANIFEST, oci_manifest
from shipper.errors import RegistryError, ShipperError
from shipper.inventory.model import Host
from shipper.ops.move_registry import Pushed, RegistryRoute, remote_repository
from shipper.progress import Reporter
from shipper.registry import Manifest, RegistryClient
from shipper.registry.client import digest_of
from shipper.transfer.store_upload import StoreUploaded, StoreUploader, UploadTarget, read_ca

MAX_CHILDREN = 32  # platforms of an index looked at for the image


def can_upload_from_store(source: Host, store_read: bool, source_store: str) -> bool:
    """The program reads the store of the engine the docker CLI on the source's SSH host talks to."""
    return store_read and source_store == "classic" and source.engine.scheme == "ssh"


def push_from_store(
    source: Host, images: Sequence[tuple[str, str, Sequence[str]]], route: RegistryRoute, reporter: Reporter,
    uploader: StoreUploader | None = None,
) -> tuple[list[Pushed] | None, str]:  # fmt: skip
    """Put ``(name, image ID, diff IDs)`` into the registry from ``source``'s layer store: what was pushed,
    and a note; None (and why) when the store cannot be read there and nothing was sent.
    ``uploader``: the program on the source, started already (else it starts now)."""
    try:
        with route.client() as client:
            held = {image_id: _held(client, route, name, image_id) for name, image_id, _ in images}
        there = [found for found in held.values() if found is not None]
        images = [image for image in images if held[image[1]] is None]
        if not images:
            return there, ""
        uploader = uploader or StoreUploader(source)
        pushed, note = _upload(uploader, images, route, reporter)
        return (None, note) if pushed is None else ([*there, *pushed], note)
    finally:
        if uploader is not None:
            uploader.cancel()  # nothing to do once its upload is done


def _held(client: RegistryClient, route: RegistryRoute, name: str, image_id: str) -> Pushed | None:
    """The image as the registry holds it under its name already: the manifest there (or one platform's of the
    index there) whose config is this image's (the same config is the same image). Targets pull that one,
    and nothing goes up; the tag, an index of several platforms included, stays as it is."""
    remote, tag = remote_repository(route, name)
    repository = remote.split("/", 1)[1]
    try:
        found = client.manifest(repository, tag)
        candidates = [found] if not found.is_index else [client.manifest(repository, d.digest) for d in found.manifests[:MAX_CHILDREN]]
    except ShipperError:  # nothing there (or nothing readable): it goes up
        return None
    for manifest in candidates:
        config = None if manifest.is_index else manifest.config
        if config is not None and config.digest == image_id:
            kept = f"{remote}:{tag} still names the multi-platform index, which holds it" if found.is_index else ""
            return Pushed(name, image_id, remote, manifest.digest, kept or f"{remote}:{tag} held it already: nothing uploaded")
    return None


def _upload(
    uploader: StoreUploader, images: Sequence[tuple[str, str, Sequence[str]]], route: RegistryRoute, reporter: Reporter
) -> tuple[list[Pushed] | None, str]:  # fmt: skip
    with route.client() as client:
        repository_of = {image_id: remote_repository(route, name)[0].split("/", 1)[1] for name, image_id, _ in images}
        first_home: dict[str, str] = {}  # blob -> the repository it goes up to (others mount it from there)
        missing: list[tuple[str, str]] = []  # (blob, repository) the registry lacks
        present = 0
        for name, image_id, diff_ids in images:
            repository = repository_of[image_id]
            for digest in (*diff_ids, image_id):
                if client.blob_size(repository, digest) is not None:
                    present += 1
                elif (digest, repository) not in missing:
                    missing.append((digest, repository))
                    first_home.setdefault(digest, repository)
        target = UploadTarget(
            route.address.base_url, client.push_authorization(sorted(set(repository_of.values()))), read_ca(client.ca_source), route.insecure
        )
    uploads = [(digest, repository) for digest, repository in missing if first_home[digest] == repository]
    outcome = uploader.upload(target, {image_id: tuple(diff_ids) for _, image_id, diff_ids in images}, uploads, reporter)
    if not outcome.available:
        return None, outcome.reason
    return _put_manifests(images, route, outcome, missing, first_home), _note(uploader.source, outcome, present)


def _put_manifests(
    images: Sequence[tuple[str, str, Sequence[str]]], route: RegistryRoute, outcome: StoreUploaded, missing: list[tuple[str, str]],
    first_home: dict[str, str],
) -> list[Pushed]:  # fmt: skip
    """Blobs shared by several repositories mounted where they are missing, then each image's manifest under its tag."""
    pushed = []
    with route.client() as client:
        for digest, repository in missing:
            if first_home[digest] != repository and not client.mount_blob(repository, digest, first_home[digest]):
                raise RegistryError(
                    f"registry {route.address} would not mount blob {digest[:19]}… from {first_home[digest]} into {repository}",
                    hint="move the images of each repository separately, or move them --via ssh",
                )
        for name, image_id, diff_ids in images:
            remote, tag = remote_repository(route, name)
            raw = oci_manifest(image_id, outcome.sizes[image_id], [(d, outcome.sizes[d]) for d in diff_ids])
            manifest = Manifest(raw, OCI_MANIFEST, digest_of(raw))
            client.put_manifest(remote.split("/", 1)[1], tag, manifest)
            pushed.append(Pushed(name, image_id, remote, manifest.digest))
    return pushed


def _note(source: Host, outcome: StoreUploaded, present: int) -> str:
    sent = sum(outcome.uploaded.values())
    there = f", {present} already in the registry" if present else ""
    return f"uploaded from {source.name}'s layer store: {len(outcome.uploaded)} blobs, {sent} bytes, uncompressed, in {outcome.seconds:.1f} s{there}"
