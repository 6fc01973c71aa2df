"""The bundle file: a docker-save tar, plus shipper's own manifest, optionally zstd-compressed and split.

    site.tar[.zst]                      one file, or
    site.tar.zst.000, .001, …           parts of at most --split bytes each, and
    site.tar[.zst].sha256               sha256sum lines for the file or each part

Inside, the members ``docker save`` wrote (tags included, so a plain
``docker load -i`` works without shipper), then two members of shipper's:
``shipper-bundle.json`` (images, tags, sizes, platform, who made it and when,
the size and sha256 of every member, the layers a delta bundle leaves out) and
``shipper-bundle-sha256.json`` (the digest of the first).

A bundle is untrusted input: it is never extracted. ``read_verified`` streams
it once through the checking filter (names, types, duplicates, metadata sizes,
every layer against its image's config, every config against its ID), then
holds every member against the bundle's manifest and refuses anything after the
end of the archive. A bundle is written as ``*.partial`` and renamed only once
complete.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import zstandard

from shipper.archive.savestream import ArchiveError, SaveStreamFilter, StreamStats
from shipper.errors import ShipperError

BUNDLE_JSON = "shipper-bundle.json"
BUNDLE_DIGEST = "shipper-bundle-sha256.json"
FORMAT = 1
ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
READ_CHUNK = 1 << 20
ZSTD_LEVEL = 1  # 1.3 GB/s on random data here; higher levels cost far more than they save on layers


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
            if document.get("format") != FORMAT:
                raise BundleError(f"{BUNDLE_JSON} is format {document.get('format')!r}; this shipper reads format {FORMAT}")
            images = [
                BundleImage(str(i["id"]), tuple(i["tags"]), int(i["size"]), tuple(i["layers"]), str(i.get("platform", "")))
                for i in document["images"]
            ]
            return cls(images, dict(document["members"]), list(document.get("relies_on") or []), str(document.get("source", "")),
                       str(document.get("created", "")), str(document.get("created_by", "")))  # fmt: skip
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise BundleError(f"{BUNDLE_JSON} is not a valid bundle manifest ({exc})") from None


def trailer_for(images: list[BundleImage], source: str, relies_on: Iterable[str]) -> Any:
    """The filter's trailer: shipper's manifest, made from the checked stream's members."""

    def make(stats: StreamStats) -> list[tuple[str, bytes]]:
        members = {m.name: {"size": m.size, "sha256": m.digest} for m in stats.members.values() if m.link is None and m.digest}
        manifest = BundleManifest(
            images, members, sorted(relies_on), source, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            f"{getpass.getuser()}@{socket.gethostname()} with shipper",
        )  # fmt: skip
        data = json.dumps(manifest.to_json(), indent=1).encode()
        return [(BUNDLE_JSON, data), (BUNDLE_DIGEST, json.dumps({"sha256": hashlib.sha256(data).hexdigest()}).encode())]

    return make


# -- writing --------------------------------------------------------------------------------


class BundleWriter:
    """Bytes to ``path`` (compressed with zstd, split in parts): ``*.partial`` until ``commit``."""

    def __init__(self, path: Path, compress: bool = False, split: int | None = None) -> None:
        self.path, self.split = path, split
        self._compressor = zstandard.ZstdCompressor(level=ZSTD_LEVEL, threads=-1).compressobj() if compress else None
        self.parts: list[Path] = []
        self._file: Any = None
        self._in_part = 0
        self._sums: list[Any] = []
        self.written = 0

    def _name(self, index: int) -> Path:
        return self.path if self.split is None else self.path.with_name(f"{self.path.name}.{index:03d}")

    def _partial(self, final: Path) -> Path:
        return final.with_name(final.name + ".partial")

    def _next_part(self) -> None:
        if self._file is not None:
            self._file.close()
        final = self._name(len(self.parts))
        self.parts.append(final)
        self._file = open(self._partial(final), "wb")
        self._sums.append(hashlib.sha256())
        self._in_part = 0

    def _raw(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._file is None or (self.split is not None and self._in_part >= self.split):
                self._next_part()
            room = len(view) if self.split is None else min(len(view), self.split - self._in_part)
            piece = view[:room]
            self._file.write(piece)
            self._sums[-1].update(piece)
            self._in_part += room
            self.written += room
            view = view[room:]

    def write(self, data: bytes | memoryview) -> None:
        self._raw(self._compressor.compress(bytes(data)) if self._compressor is not None else bytes(data))

    def commit(self) -> list[Path]:
        """Flush, fsync, rename every part to its final name, write the checksum file; the parts."""
        if self._compressor is not None:
            self._raw(self._compressor.flush())
        if self._file is None:
            self._next_part()
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        for part in self.parts:
            os.replace(self._partial(part), part)
        lines = "".join(f"{s.hexdigest()}  {p.name}\n" for s, p in zip(self._sums, self.parts))
        Path(f"{self.path}.sha256").write_text(lines)
        return self.parts

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        for part in self.parts:
            self._partial(part).unlink(missing_ok=True)


# -- reading --------------------------------------------------------------------------------


def parts_of(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    parts = sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9]"))
    if not parts:
        raise BundleError(f"no bundle at {path} (nor parts {path.name}.000, …)")
    expected = [path.with_name(f"{path.name}.{i:03d}") for i in range(len(parts))]
    if parts != expected:
        raise BundleError(f"bundle parts of {path} are not numbered 000 to {len(parts) - 1:03d} without a gap")
    return parts


def expected_sums(path: Path) -> dict[str, str] | None:
    """``PATH.sha256``: part name -> sha256, or None when there is no such file."""
    sums_file = Path(f"{path}.sha256")
    if not sums_file.exists():
        return None
    expected = {}
    for line in sums_file.read_text().splitlines():
        digest, _, name = line.partition("  ")
        expected[name.strip()] = digest.strip()
    return expected


def _raw_chunks(parts: list[Path], sums: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The parts' bytes in order; ``sums``: filled with a sha256 per part as they are read."""
    for part in parts:
        sha = hashlib.sha256() if sums is not None else None
        with open(part, "rb") as source:
            while chunk := source.read(READ_CHUNK):
                if sha is not None:
                    sha.update(chunk)
                yield chunk
        if sums is not None and sha is not None:
            sums[part.name] = sha.hexdigest()


def content_chunks(path: Path, sums: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The bundle's tar bytes, its parts joined and decompressed; ``BundleError`` on garbage after a zstd frame.

    ``sums``: filled with the sha256 of each part's raw bytes, read in the same pass."""
    raw = _raw_chunks(parts_of(path), sums)
    first = next(raw, b"")
    if not first.startswith(ZSTD_MAGIC):
        yield first
        yield from raw
        return
    decompressor = zstandard.ZstdDecompressor().decompressobj()
    for chunk in _chain(first, raw):
        if decompressor.eof:
            if chunk:
                raise BundleError(f"{path.name} has data after its compressed content (appended garbage)")
            continue
        try:
            out = decompressor.decompress(chunk)
        except zstandard.ZstdError as exc:
            raise BundleError(f"{path.name} is not valid zstd data: {exc}") from None
        if out:
            yield out
        if decompressor.eof and decompressor.unused_data:
            raise BundleError(f"{path.name} has data after its compressed content (appended garbage)")
    if not decompressor.eof:
        raise BundleError(f"{path.name} ends in the middle of its compressed content (cut short)")


def _chain(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    yield first
    yield from rest


@dataclass
class Verified:
    """A bundle that passed every check."""

    manifest: BundleManifest
    stats: StreamStats
    checksum_file: bool  # PATH.sha256 was there and matched
    size: int  # bytes of tar content


def _declared_absent(metadata: Mapping[str, bytes]) -> list[str]:
    data = metadata.get(BUNDLE_JSON)
    return BundleManifest.from_json(data).relies_on if data is not None else []


def read_verified(path: Path) -> Verified:
    """Check the whole bundle in one read (nothing is touched anywhere); what it holds.

    With a checksum file beside it, the file's own sha256 proves every byte is
    as written (and ``create`` checked every layer as it wrote), so layers are
    not hashed a second time; without one, every layer is.
    """
    parts = parts_of(path)
    expected = expected_sums(path)
    actual: dict[str, Any] = {}
    checker = SaveStreamFilter(verify_content=expected is None, keep_tags=True, declared_absent=_declared_absent)
    chunks = content_chunks(path, actual)
    size = 0
    try:
        try:
            for piece in checker.run(chunks):
                size += len(piece)
        except ArchiveError as exc:
            raise BundleError(f"{path.name}: {exc}") from None
        for rest in _chain(checker.leftover, chunks):  # after the end marker, a tar may only be padded with zeros
            if rest.strip(b"\0"):
                raise BundleError(f"{path.name} has data after the end of its archive (appended garbage)")
    except BundleError as problem:
        if expected is not None:  # the checksum file says best what happened: say that first
            for _ in _raw_chunks(parts, actual):
                pass
            _check_sums(path, parts, expected, actual, f" (first problem found: {problem.message})")
        raise
    if expected is not None:
        _check_sums(path, parts, expected, actual)
    return Verified(_check_manifest(path, checker, expected is not None), checker.stats, expected is not None, size)


def _check_sums(path: Path, parts: list[Path], expected: dict[str, str], actual: dict[str, Any], more: str = "") -> None:
    for part in parts:
        if expected.get(part.name) != actual.get(part.name):
            raise BundleError(f"{part.name} does not match its checksum in {path.name}.sha256: the file is damaged or was changed{more}")


def _check_manifest(path: Path, checker: SaveStreamFilter, hashed_whole: bool) -> BundleManifest:
    data, digest = checker.metadata(BUNDLE_JSON), checker.metadata(BUNDLE_DIGEST)
    if data is None or digest is None:
        raise BundleError(f"{path.name} is an image archive but not a shipper bundle (no {BUNDLE_JSON})", hint="docker load -i can load it")
    if json.loads(digest).get("sha256") != hashlib.sha256(data).hexdigest():
        raise BundleError(f"{BUNDLE_JSON} in {path.name} does not match its digest: it was damaged or changed")
    manifest = BundleManifest.from_json(data)
    seen = {m.name: m for m in checker.stats.members.values() if m.link is None and m.name not in (BUNDLE_JSON, BUNDLE_DIGEST)}
    seen = {n: m for n, m in seen.items() if m.digest or (hashed_whole and n in manifest.members)}
    for name, member in seen.items():
        listed = manifest.members.get(name)
        if listed is None:
            raise BundleError(f"{path.name} holds {name}, which its manifest does not list (added after the bundle was made)")
        # Not hashed this time (the checksum file vouched for every byte): the size must still match.
        if (member.digest and listed.get("sha256") != member.digest) or listed.get("size") != member.size:
            raise BundleError(f"{name} in {path.name} does not match the bundle's manifest: it was damaged or changed")
    missing = sorted(set(manifest.members) - set(seen))
    if missing:
        raise BundleError(f"{path.name} lacks {', '.join(missing[:3])}, which its manifest lists")
    images = {image.id: list(image.layers) for image in manifest.images}
    if images != checker.stats.images:
        raise BundleError(f"the images in {path.name} are not the ones its manifest lists")
    return manifest
