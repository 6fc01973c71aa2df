"""A registry bundle read back: the OCI image layout oci_bundle.py writes, checked in one read, and streamed to
engines as docker save writes its archives.

The layout is untrusted input, checked as a docker-save bundle is (bundle/reader.py): only plain USTAR regular
files under known names (no extended headers, whose size Python's tarfile would hold in memory), every blob's
content against its name, metadata bounded, every member against the bundle's manifest, every descriptor's target
present with its size. Engines get the platform they run: an index's manifest for it, its config first, then its
layers as the registry compressed them (docker load decompresses them and checks each against the config).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from shipper.bundle import BundleError
from shipper.bundle.format import BUNDLE_DIGEST, BUNDLE_JSON, BUNDLE_SIG
from shipper.archive.tarheader import BLOCK, ArchiveError, Input, kind_of, pad, parse_header
from shipper.bundle.reader import content_chunks, expected_sums
from shipper.platforms import Platform
from shipper.registry.client import MANIFEST_TYPES, Manifest
from shipper.registry.names import check_repository

KIND = "oci-layout"
LAYOUT, INDEX = "oci-layout", "index.json"
REF_NAME = "org.opencontainers.image.ref.name"
REPOSITORY = "io.shipper.repository"
SUBJECT = "io.shipper.subject"  # an artifact's: the digest of the manifest it speaks of
MAX_METADATA = 4 << 20
MAX_KEPT = 64 << 20  # small blobs held while reading (manifests, configs), in all
MAX_DEPTH = 4  # indexes within indexes: an image's index lists manifests; deeper is not what registries serve
MAX_MANIFESTS = 10_000  # manifests and indexes in one bundle
BLOB_NAME = re.compile(r"blobs/sha256/([0-9a-f]{64})")
_FIXED = (LAYOUT, INDEX, BUNDLE_JSON, BUNDLE_DIGEST, BUNDLE_SIG)


@dataclass(frozen=True)
class Entry:
    """One manifest named in index.json: an image under a tag, or an artifact (a signature) of one."""

    repository: str
    tag: str  # "" for a referrer, stored by digest only
    digest: str
    media_type: str
    subject: str = ""


@dataclass
class OciVerified:
    """An OCI bundle that passed every check (the same attributes as reader.Verified that signatures use)."""

    entries: list[Entry]
    manifests: dict[str, Manifest]  # every manifest and index, by digest
    blob_sizes: dict[str, int]
    configs: dict[str, bytes]  # every image config, by digest (an engine's load needs them first)
    size: int
    checksum_file: bool
    manifest_data: bytes = b""
    signature: str | None = None
    signed_by: str = ""
    source: str = ""
    created: str = ""


def is_oci_bundle(path: Path) -> bool:
    """Whether the bundle at ``path`` is an OCI layout from a registry (its first member is ``oci-layout``)."""
    first = b""
    for chunk in content_chunks(path):
        first += chunk
        if len(first) >= 512:
            break
    return first[:100].rstrip(b"\0") == LAYOUT.encode()


# -- read back --------------------------------------------------------------------------------


class _Member:
    """One member of a strictly read tar: its name, size and bytes (read once, front to back)."""

    def __init__(self, name: str, size: int, source: Input) -> None:
        self.name, self.size, self._pieces, self._left = name, size, source.pieces(size), b""

    def chunks(self) -> Iterator[bytes]:
        if self._left:
            yield self._left
            self._left = b""
        for piece in self._pieces:
            yield bytes(piece)

    def read(self, size: int) -> bytes:
        """At most ``size`` bytes (b"" at the end), as a file's read."""
        out, self._left = self._left[:size], self._left[size:]
        while len(out) < size:
            piece = next(self._pieces, None)
            if piece is None:
                break
            need = size - len(out)
            out, self._left = out + bytes(piece[:need]), bytes(piece[need:])
        return out

    def drain(self) -> None:
        for _ in self._pieces:
            pass


def members_of(path: Path, chunks: Iterable[bytes]) -> Iterator[_Member]:
    """The tar's members, read strictly: only plain USTAR regular files (what create writes; no extended headers,
    whose size Python's tarfile would hold in memory), then the end marker, then nothing but zeros."""
    source = Input(chunks)
    try:
        while True:
            block = source.read(BLOCK)
            if block == bytes(BLOCK):
                if source.read(BLOCK) != bytes(BLOCK):
                    raise BundleError(f"{path.name}: a lone zero block inside the archive")
                while not source.at_end():
                    if bytes(source.read(len(source.rest()))).strip(b"\0"):
                        raise BundleError(f"{path.name} has data after the end of its archive (appended garbage)")
                return
            info = parse_header(block)
            if info.type not in (tarfile.REGTYPE, tarfile.AREGTYPE):
                raise BundleError(f"{path.name}: member {info.name[:100]!r} is a {kind_of(info)}: an OCI bundle holds only files")
            member = _Member(info.name, info.size, source)
            yield member
            member.drain()
            source.read(pad(info.size))
    except ArchiveError as exc:
        raise BundleError(f"{path.name}: {exc}") from None


def read_oci_verified(path: Path) -> OciVerified:
    """Check the whole OCI bundle in one read (nothing is touched anywhere); what it holds."""
    expected = expected_sums(path)
    actual: dict[str, Any] = {}
    kept: dict[str, bytes] = {}  # fixed members and small blobs
    sizes: dict[str, int] = {}  # every member
    digests: dict[str, str] = {}
    total = 0
    for member in members_of(path, content_chunks(path, actual)):
        name = member.name
        if name in sizes:
            raise BundleError(f"{path.name}: {name} appears twice")
        blob = BLOB_NAME.fullmatch(name)
        if blob is None and name not in _FIXED:
            raise BundleError(f"{path.name}: {name[:100]!r} is not a member of an OCI bundle (only blobs/sha256/<digest> and {', '.join(_FIXED)})")
        if blob is None and member.size > MAX_METADATA:
            raise BundleError(f"{path.name}: {name} is {member.size} bytes; metadata over {MAX_METADATA} bytes is refused")
        sha, held = hashlib.sha256(), []
        keep = member.size <= MAX_METADATA and total + member.size <= MAX_KEPT
        for chunk in member.chunks():
            sha.update(chunk)
            if keep:
                held.append(chunk)
        if blob is not None and sha.hexdigest() != blob.group(1):
            raise BundleError(f"{path.name}: {name} does not match its digest: the bundle was damaged or changed")
        sizes[name], digests[name] = member.size, "sha256:" + sha.hexdigest()
        if keep:
            kept[name] = b"".join(held)
            total += member.size
    if expected is not None:
        for part, digest in actual.items():
            if expected.get(part) != digest:
                raise BundleError(f"{part} does not match its checksum in {path.name}.sha256: the file is damaged or was changed")
    return _check_layout(path, kept, sizes, digests, expected is not None)


def _check_layout(path: Path, kept: dict[str, bytes], sizes: dict[str, int], digests: dict[str, str], checksums: bool) -> OciVerified:
    for fixed in (LAYOUT, INDEX, BUNDLE_JSON, BUNDLE_DIGEST):
        if fixed not in kept:
            raise BundleError(f"{path.name} lacks {fixed}: not a whole OCI bundle of shipper's")
    data = kept[BUNDLE_JSON]
    try:
        recorded = json.loads(kept[BUNDLE_DIGEST])["sha256"]
        document = json.loads(data)
        members = {str(k): (int(v["size"]), str(v["sha256"])) for k, v in document["members"].items()}
        index = json.loads(kept[INDEX])
        listed = [(d["digest"], str(d["mediaType"]), d.get("annotations") or {}, d["size"]) for d in index["manifests"]]
    except (ValueError, KeyError, TypeError, AttributeError):
        raise BundleError(f"{path.name}: its manifest or index.json is not what shipper writes") from None
    if recorded != hashlib.sha256(data).hexdigest():
        raise BundleError(f"{BUNDLE_JSON} in {path.name} does not match its digest: it was damaged or changed")
    present = {name: (size, digests[name]) for name, size in sizes.items() if name not in (BUNDLE_JSON, BUNDLE_DIGEST, BUNDLE_SIG)}
    if present != members:
        changed = sorted(set(present.items()) ^ set(members.items()))
        raise BundleError(f"{path.name} does not hold what its manifest lists ({changed[0][0]} differs): it was damaged or changed")
    blob_sizes = {f"sha256:{m.group(1)}": size for name, size in sizes.items() if (m := BLOB_NAME.fullmatch(name))}
    manifests: dict[str, Manifest] = {}

    def manifest(digest: str, media_type: str, depth: int = 0) -> Manifest:
        if digest in manifests:  # checked already (an index may list a manifest twice, or share it with another)
            return manifests[digest]
        if depth > MAX_DEPTH:
            raise BundleError(f"{path.name}: indexes nested deeper than {MAX_DEPTH} (at {digest}): not an image a registry serves")
        raw = kept.get(f"blobs/sha256/{digest.removeprefix('sha256:')}")
        if raw is None or media_type not in MANIFEST_TYPES:
            raise BundleError(f"{path.name}: manifest {digest} is missing or of a type shipper does not read ({media_type[:60]})")
        found = manifests[digest] = Manifest(raw, media_type, digest)
        for child in found.manifests if found.is_index else ():
            manifest(child.digest, child.media_type, depth + 1)
        for descriptor in [] if found.is_index else [found.config, *found.layers]:
            if descriptor is not None and blob_sizes.get(descriptor.digest) != descriptor.size:
                raise BundleError(f"{path.name}: {descriptor.digest} that manifest {digest} names is missing or of another size")
        return found

    entries = []
    for digest, media_type, annotations, size in listed:
        if len(manifest(str(digest), media_type).raw) != size:
            raise BundleError(f"{path.name}: index.json gives manifest {digest} another size than it has")
        repository = str(annotations.get(REPOSITORY, ""))
        check_repository(repository)
        entries.append(Entry(repository, str(annotations.get(REF_NAME, "")), str(digest), media_type, str(annotations.get(SUBJECT, ""))))
    signature = kept.get(BUNDLE_SIG)
    configs = {}
    for found in manifests.values():
        config = None if found.is_index else found.config
        if config is not None:
            raw = kept.get(f"blobs/sha256/{config.digest.removeprefix('sha256:')}")
            if raw is None:
                raise BundleError(f"{path.name}: the config {config.digest} is over {MAX_METADATA} bytes")
            configs[config.digest] = raw
    return OciVerified(
        entries, manifests, blob_sizes, configs, sum(sizes.values()), checksums, data, signature.decode(errors="replace") if signature is not None else _beside(path),
        source=str(document.get("source", "")), created=str(document.get("created", "")),
    )  # fmt: skip


def _beside(path: Path) -> str | None:
    try:
        with open(f"{path}.sig", "rb") as source:
            return source.read(4096).decode(errors="replace")
    except FileNotFoundError:
        return None


# -- into engines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineImage:
    """One image of an OCI bundle as an engine loads it: its config (whose digest is its ID in the classic store),
    its layers as the registry compressed them (docker load decompresses), under its tags."""

    config: str
    layers: tuple[str, ...]  # blob digests
    diff_ids: tuple[str, ...]
    size: int
    tags: tuple[str, ...]
    platform: str


def engine_images(found: OciVerified, platform: Platform) -> list[EngineImage]:
    """The bundle's images (not their signatures) for engines of ``platform``: an index's manifest for it."""
    images: dict[str, EngineImage] = {}
    for entry in found.entries:
        if entry.subject:
            continue  # a signature or an attestation: registries keep those, engines do not
        manifest = found.manifests[entry.digest]
        if manifest.is_index:
            fits = [d for d in manifest.manifests if d.platform and platform.matches(*(d.platform.split("/") + ["", ""])[:3])]
            if not fits:
                held = ", ".join(d.platform for d in manifest.manifests if d.platform)
                raise BundleError(f"{entry.repository}:{entry.tag} in the bundle has no {platform} manifest (it has {held})",
                                  hint="bundle it again with that platform, or load it into engines of a platform it has")  # fmt: skip
            manifest = found.manifests[fits[0].digest]
        config = manifest.config
        if config is None:
            raise BundleError(f"{entry.repository}:{entry.tag} in the bundle is not an image (its manifest has no config)")
        try:
            document = json.loads(found.configs[config.digest])
            diff_ids = tuple(str(d) for d in document["rootfs"]["diff_ids"])
            made_for = "/".join(str(document[k]) for k in ("os", "architecture") if document.get(k))
        except (ValueError, KeyError, TypeError):
            raise BundleError(f"the config of {entry.repository}:{entry.tag} in the bundle is not an image config") from None
        layers = tuple(d.digest for d in manifest.layers)
        if len(diff_ids) != len(layers):
            raise BundleError(f"{entry.repository}:{entry.tag} in the bundle has {len(layers)} layers and {len(diff_ids)} diff IDs")
        tag = (f"{entry.repository}:{entry.tag}",) if entry.tag else ()
        before = images.get(config.digest)
        size = sum(d.size for d in manifest.layers)
        images[config.digest] = EngineImage(config.digest, layers, diff_ids, size, (before.tags if before else ()) + tag, made_for)
    return list(images.values())


def docker_save_chunks(path: Path, found: OciVerified, images: Sequence[EngineImage]) -> Iterator[bytes]:
    """The images as a docker-save archive, configs and manifest.json first (so that each layer is known as it
    passes, and one a target holds can be left out), then the layer blobs read from the bundle."""
    out = io.BytesIO()

    def member(name: str, data: bytes) -> bytes:
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), 0o644, 0
        return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % BLOCK)

    for image in images:
        out.write(member(f"blobs/sha256/{image.config.removeprefix('sha256:')}", found.configs[image.config]))
    entries = [{"Config": f"blobs/sha256/{i.config.removeprefix('sha256:')}", "RepoTags": list(i.tags),
                "Layers": [f"blobs/sha256/{d.removeprefix('sha256:')}" for d in i.layers]} for i in images]  # fmt: skip
    out.write(member("manifest.json", json.dumps(entries).encode()))
    yield out.getvalue()
    needed = {d for i in images for d in i.layers}
    for each in members_of(path, content_chunks(path)):
        found_blob = BLOB_NAME.fullmatch(each.name)
        if found_blob is None or f"sha256:{found_blob.group(1)}" not in needed:
            continue
        needed.discard(f"sha256:{found_blob.group(1)}")
        info = tarfile.TarInfo(each.name)
        info.size, info.mode, info.mtime = each.size, 0o644, 0
        yield info.tobuf(format=tarfile.USTAR_FORMAT)
        yield from each.chunks()
        yield bytes(-each.size % BLOCK)
    if needed:
        raise BundleError(f"{path.name} changed while it was read: {sorted(needed)[0]} is gone")
    yield bytes(2 * BLOCK)

