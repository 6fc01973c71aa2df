"""Bundles from a registry: the registry's own bytes in an OCI image layout, so that digests survive the air gap.

``bundle create --from-registry R IMAGE...`` writes, as a tar (zstd and
signing as for any bundle)::

    oci-layout                  {"imageLayoutVersion": "1.0.0"}
    blobs/sha256/<hex>          every manifest, index, config and layer exactly as R stores them
    index.json                  the images (and their signatures) by digest, with their repository and tag
    shipper-bundle.json         the digest and size of every member (signed with --sign), its digest, its signature

Each image comes whole: an index with every platform, or with ``--platform``
that platform's manifest. With it come its signatures and attestations, found
by cosign's tag scheme (``sha256-<digest>.sig``, ``.att``, ``.sbom``) and its
referrers: the OCI 1.1 referrers API where the registry serves it, else the
spec's fallback, an index of referrers under the tag ``sha256-<digest>``. ``bundle push``
recreates every manifest byte for byte in the far registry, so every digest,
and any signature made upstream, holds there too.

Reading one back (checked as any bundle, and into engines) is oci_layout.py.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import socket
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from shipper.bundle import BundleError, BundleWriter
from shipper.bundle.format import BUNDLE_DIGEST, BUNDLE_JSON, BUNDLE_SIG, FORMAT
from shipper.bundle.reader import content_chunks, forward_reader
from shipper.errors import UsageError
from shipper.ops.oci_layout import MAX_DEPTH, MAX_KEPT, MAX_MANIFESTS, BLOB_NAME, INDEX, KIND, LAYOUT, REF_NAME, REPOSITORY, SUBJECT, Entry, OciVerified, members_of
from shipper.platforms import Platform
from shipper.registry import RegistryClient
from shipper.registry.client import OCI_INDEX, Manifest
from shipper.registry.names import check_repository

COSIGN_SUFFIXES = (".sig", ".att", ".sbom")


# -- create -----------------------------------------------------------------------------------


@dataclass
class CreatedOci:
    parts: list[Path]
    entries: list[Entry]
    bytes_written: int
    signature: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "files": [str(p) for p in self.parts], "bytes": self.bytes_written, "signature": str(self.signature) if self.signature else None,
            "images": [{"repository": e.repository, "tag": e.tag, "digest": e.digest, "media_type": e.media_type, "subject": e.subject or None}
                       for e in self.entries],
        }  # fmt: skip


def split_reference(reference: str) -> tuple[str, str]:
    repository, at, digest = reference.partition("@")
    if at:
        check_repository(repository)
        return repository, digest
    slash = repository.rfind("/")
    colon = repository.rfind(":")
    repository, tag = (repository[:colon], repository[colon + 1 :]) if colon > slash else (repository, "latest")
    check_repository(repository)
    return repository, tag


class _Collector:
    """Everything the chosen images need, read from the registry: manifests in memory, blobs by where to read them."""

    def __init__(self, client: RegistryClient) -> None:
        self.client = client
        self.manifests: dict[str, Manifest] = {}
        self.blobs: dict[str, tuple[str, int]] = {}  # digest -> (a repository holding it, size)
        self.entries: list[Entry] = []
        self.held = 0  # bytes of manifests in memory

    def image(self, reference: str, platform: Platform | None) -> None:
        repository, tag = split_reference(reference)
        top = self.client.manifest(repository, tag)
        if platform is not None and top.is_index:
            chosen = [d for d in top.manifests if d.platform and platform.matches(*(d.platform.split("/") + [""])[:3])]
            if not chosen:
                held = ", ".join(d.platform for d in top.manifests if d.platform) or "none"
                raise UsageError(f"{reference} in {self.client.address} has no {platform} manifest (it has {held})")
            top = self.client.manifest(repository, chosen[0].digest)
        self._walk(repository, top)
        self.entries.append(Entry(repository, "" if tag.startswith("sha256:") else tag, top.digest, top.media_type))
        self._artifacts(repository, top.digest)

    def _artifacts(self, repository: str, subject: str) -> None:
        for suffix in COSIGN_SUFFIXES:  # cosign's tag scheme: sha256-<hex>.sig beside the image
            tag = f"sha256-{subject.removeprefix('sha256:')}{suffix}"
            if self.client.manifest_head(repository, tag) is not None:
                found = self.client.manifest(repository, tag)
                self._walk(repository, found)
                self.entries.append(Entry(repository, tag, found.digest, found.media_type, subject))
        listed = self.client.referrers(repository, subject)  # OCI 1.1, where the registry serves it
        if listed is None:  # else the spec's fallback: an index of the referrers under the tag sha256-<hex>
            tag = f"sha256-{subject.removeprefix('sha256:')}"
            if self.client.manifest_head(repository, tag) is not None:
                found = self.client.manifest(repository, tag)
                if found.is_index:
                    self._walk(repository, found)  # the index and every referrer it lists
                    self.entries.append(Entry(repository, tag, found.digest, found.media_type, subject))
            return
        for descriptor in listed:
            if descriptor.digest not in {e.digest for e in self.entries}:
                found = self.client.manifest(repository, descriptor.digest)
                self._walk(repository, found)
                self.entries.append(Entry(repository, "", found.digest, found.media_type, subject))

    def _walk(self, repository: str, manifest: Manifest, depth: int = 0) -> None:
        """``manifest`` and everything it names; a registry's answers are bounded (nesting, count, bytes held)."""
        if depth > MAX_DEPTH or len(self.manifests) >= MAX_MANIFESTS or self.held > MAX_KEPT:
            raise BundleError(
                f"{repository} in {self.client.address} names more than a bundle takes (indexes nested over {MAX_DEPTH} deep, "
                f"over {MAX_MANIFESTS} manifests, or over {MAX_KEPT >> 20} MiB of them)",
                hint="bundle fewer images at a time, or check what that registry serves",
            )
        self.manifests[manifest.digest] = manifest
        self.held += len(manifest.raw)
        if manifest.is_index:
            for child in manifest.manifests:
                if child.digest not in self.manifests:
                    self._walk(repository, self.client.manifest(repository, child.digest), depth + 1)
            return
        for descriptor in [manifest.config, *manifest.layers]:
            if descriptor is not None:
                self.blobs.setdefault(descriptor.digest, (repository, descriptor.size))


class _TarOut:
    """Members written to a bundle writer as a tar, each listed with its size and sha256."""

    def __init__(self, writer: BundleWriter) -> None:
        self.writer, self.members = writer, {}  # type: ignore[var-annotated]

    def _header(self, name: str, size: int) -> None:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = size, 0o644, 0
        self.writer.write(info.tobuf(format=tarfile.USTAR_FORMAT))

    def add(self, name: str, data: bytes, listed: bool = True) -> None:
        self.add_stream(name, len(data), [data], listed)

    def add_stream(self, name: str, size: int, chunks: Iterable[bytes], listed: bool = True) -> None:
        self._header(name, size)
        sha, written = hashlib.sha256(), 0
        for chunk in chunks:
            sha.update(chunk)
            written += len(chunk)
            self.writer.write(chunk)
        if written != size:
            raise BundleError(f"{name}: {written} bytes arrived, {size} expected")
        self.writer.write(bytes(-size % 512))
        if listed:
            self.members[name] = {"size": size, "sha256": "sha256:" + sha.hexdigest()}


def create_from_registry(
    client: RegistryClient, references: Sequence[str], output: Path, compress: bool = False, split: int | None = None,
    platform: Platform | None = None, signer: Callable[[bytes], str] | None = None,
) -> CreatedOci:  # fmt: skip
    """Write the images ``references`` (``repository:tag`` or ``repository@digest`` in ``client``'s registry), their
    signatures and attestations, into an OCI-layout bundle at ``output``."""
    if output.exists() or output.with_name(output.name + ".000").exists():
        raise UsageError(f"{output} exists already", hint="choose another name, or remove it first")
    found = _Collector(client)
    for reference in references:
        found.image(reference, platform)
    writer = BundleWriter(output, compress, split)
    out = _TarOut(writer)
    try:
        out.add(LAYOUT, b'{"imageLayoutVersion":"1.0.0"}')
        for digest, (repository, size) in found.blobs.items():
            out.add_stream(f"blobs/sha256/{digest.removeprefix('sha256:')}", size, found.client.blob(repository, digest, size))
        for digest, manifest in found.manifests.items():
            out.add(f"blobs/sha256/{digest.removeprefix('sha256:')}", manifest.raw)
        out.add(INDEX, json.dumps(_index(found.entries, found.manifests), indent=1).encode())
        document = {
            "format": FORMAT, "kind": KIND, "source": str(client.address), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "created_by": f"{getpass.getuser()}@{socket.gethostname()} with shipper", "images": [], "relies_on": [], "members": out.members,
        }  # fmt: skip
        data = json.dumps(document, indent=1).encode()
        out.add(BUNDLE_JSON, data, listed=False)
        out.add(BUNDLE_DIGEST, json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode(), listed=False)
        signature = signer(data) if signer is not None else None
        if signature is not None:
            out.add(BUNDLE_SIG, signature.encode(), listed=False)
        writer.write(bytes(1024))
        parts = writer.commit()
        beside = writer.beside(".sig", signature.encode()) if signature is not None else None
        if signature is None:
            Path(f"{output}.sig").unlink(missing_ok=True)
    except BaseException:
        writer.abort()
        raise
    return CreatedOci(parts, found.entries, writer.written, beside)


def _index(entries: Sequence[Entry], held: dict[str, Manifest]) -> dict[str, Any]:
    manifests = []
    for entry in entries:
        annotations = {REPOSITORY: entry.repository, **({REF_NAME: entry.tag} if entry.tag else {}), **({SUBJECT: entry.subject} if entry.subject else {})}
        manifests.append({"mediaType": entry.media_type, "digest": entry.digest, "size": len(held[entry.digest].raw), "annotations": annotations})
    return {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": manifests}


# -- push -------------------------------------------------------------------------------------


@dataclass
class PushedOci:
    uploaded: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    manifests: list[str] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"uploaded": len(self.uploaded), "already_there": len(self.present), "manifests": len(self.manifests), "tags": self.tags}


def push_oci(path: Path, client: RegistryClient, verified: OciVerified) -> PushedOci:
    """Every blob the far registry lacks (each under every repository that needs it), then every manifest byte for
    byte, children first, then the tags: the same digests as where the bundle was made."""
    needs: dict[str, list[str]] = {}  # blob digest -> repositories
    for entry in verified.entries:
        for digest in _blobs_of(verified, entry.digest):
            needs.setdefault(digest, [])
            if entry.repository not in needs[digest]:
                needs[digest].append(entry.repository)
    pushed = PushedOci()
    for member in members_of(path, content_chunks(path)):
        found = BLOB_NAME.fullmatch(member.name)
        digest = f"sha256:{found.group(1)}" if found else ""
        if digest not in needs:
            continue
        first, *others = needs[digest]
        outcome = client.upload_blob(first, digest, member.size, forward_reader(member))
        (pushed.uploaded if outcome == "uploaded" else pushed.present).append(digest)
        for repository in others:
            if client.blob_size(repository, digest) is None and not client.mount_blob(repository, digest, first):
                raise BundleError(f"registry {client.address} would not link blob {digest} into {repository}", hint="run bundle push again")
    for entry in verified.entries:
        for digest in _manifests_of(verified, entry.digest):
            client.put_manifest(entry.repository, digest, verified.manifests[digest])
            pushed.manifests.append(digest)
        if entry.tag:
            client.put_manifest(entry.repository, entry.tag, verified.manifests[entry.digest])
            pushed.tags.append(f"{entry.repository}:{entry.tag}")
    return pushed


def _manifests_of(verified: OciVerified, digest: str, seen: set[str] | None = None) -> list[str]:
    """``digest``'s manifest and those it lists, children first, each once (read_oci_verified bounded the nesting)."""
    seen = set() if seen is None else seen
    seen.add(digest)
    manifest = verified.manifests[digest]
    children = [d for child in (manifest.manifests if manifest.is_index else []) if child.digest not in seen
                for d in _manifests_of(verified, child.digest, seen)]  # fmt: skip
    return [*children, digest]


def _blobs_of(verified: OciVerified, digest: str) -> list[str]:
    found = []
    for each in _manifests_of(verified, digest):
        manifest = verified.manifests[each]
        if not manifest.is_index:
            found += [d.digest for d in [manifest.config, *manifest.layers] if d is not None]
    return found


