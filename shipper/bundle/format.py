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
every layer hashed against its image's config, every config against its ID),
then holds every member against the bundle's manifest and refuses anything
after the end of the archive. The checksum file travels with the bundle, so it
proves nothing about tampering: it is checked in the same read (and named first
when it disagrees, as it says best that a file was damaged), never in place of
hashing the layers. Decompression is bounded: at most 1 MiB comes out per step,
and past 256 MiB the output may not exceed 1000 times the compressed bytes read.

A bundle is written as ``*.partial`` and renamed only once complete; every
file is created afresh, never through a symlink planted at its name.
"""

from __future__ import annotations

import getpass
import hashlib
import io
import json
import os
import queue
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, cast

import zstandard

from shipper.archive.savestream import ArchiveError, SaveStreamFilter, StreamStats
from shipper.errors import ShipperError

BUNDLE_JSON = "shipper-bundle.json"
BUNDLE_DIGEST = "shipper-bundle-sha256.json"
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
        self._file = _create(self._partial(final))
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
        sums = Path(f"{self.path}.sha256")
        with _create(self._partial(sums)) as out:
            out.write(lines.encode())
        os.replace(self._partial(sums), sums)  # replaces whatever is at the name (a symlink itself, never its target)
        return self.parts

    def abort(self) -> None:
        if self._file is not None:
            self._file.close()
        for part in self.parts:
            self._partial(part).unlink(missing_ok=True)


def _create(path: Path) -> Any:
    """A new file at ``path``, opened for writing: a stale file or a planted symlink there is removed first
    (the link itself), and the file is created exclusively, never through a link."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except IsADirectoryError:
        raise BundleError(f"cannot write {path}: a directory is in the way") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except FileExistsError:
        raise BundleError(f"cannot write {path}: something created it meanwhile", hint="is another shipper writing there?") from None
    return os.fdopen(fd, "wb")


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
    if sums_file.stat().st_size > MAX_SUMS_FILE:
        raise BundleError(f"{sums_file.name} is over {MAX_SUMS_FILE} bytes: not a checksum file of shipper's")
    expected = {}
    for line in sums_file.read_text(errors="replace").splitlines():
        digest, _, name = line.partition("  ")
        expected[name.strip()] = digest.strip()
    return expected


def _raw_chunks(parts: list[Path], sums: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The parts' bytes in order; ``sums``: filled with a sha256 per part as they are read
    (hashed on a thread of its own, beside the layers' hashing: hashlib lets go of the GIL)."""
    for part in parts:
        sha = _BackgroundSha() if sums is not None else None
        try:
            with open(part, "rb") as source:
                while chunk := source.read(READ_CHUNK):
                    if sha is not None:
                        sha.update(chunk)
                    yield chunk
            if sums is not None and sha is not None:
                sums[part.name] = sha.hexdigest()
        finally:
            if sha is not None:
                sha.close()


class _BackgroundSha:
    """sha256 computed on another thread, fed through a short queue (bounded memory)."""

    def __init__(self) -> None:
        self._sha = hashlib.sha256()
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=4)
        self._thread = threading.Thread(target=self._run, name="shipper-part-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (chunk := self._queue.get()) is not None:
            self._sha.update(chunk)

    def update(self, chunk: bytes) -> None:
        self._queue.put(chunk)

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def hexdigest(self) -> str:
        self.close()
        return self._sha.hexdigest()


def content_chunks(path: Path, sums: dict[str, Any] | None = None) -> Iterator[bytes]:
    """The bundle's tar bytes, its parts joined and decompressed (at most READ_CHUNK bytes a step, and at
    most MAX_RATIO times what was read); ``BundleError`` on bad zstd data or garbage after it.

    ``sums``: filled with the sha256 of each part's raw bytes, read in the same pass.
    A zstd stream cut short ends early here; the tar inside then ends early, which the reader refuses."""
    raw = _raw_chunks(parts_of(path), sums)
    first = next(raw, b"")
    if not first.startswith(ZSTD_MAGIC):
        yield first
        yield from raw
        return
    source = ChunkFile(_chain(first, raw))
    reader = zstandard.ZstdDecompressor().stream_reader(cast(Any, source), read_size=READ_CHUNK, read_across_frames=True)
    produced = 0
    while True:
        try:
            out = reader.read(READ_CHUNK)
        except zstandard.ZstdError as exc:
            raise BundleError(f"{path.name} is not valid zstd data, or has data after its compressed content (appended garbage): {exc}") from None
        if not out:
            return
        produced += len(out)
        if produced > MAX_RATIO_GRACE and produced > MAX_RATIO * max(source.consumed, 1):
            raise BundleError(
                f"{path.name} expands more than {MAX_RATIO}:1 ({source.consumed} compressed bytes gave {produced}): refused as a decompression bomb",
                hint="a real bundle of mostly empty files may do this: decompress it yourself (zstd -d) and give shipper the .tar",
            )
        yield out


class ChunkFile(io.RawIOBase):
    """An iterator of chunks as a file, counting the bytes read from it."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._buffer, self.consumed = chunks, b"", 0

    def readable(self) -> bool:
        return True

    def readinto(self, target: Any) -> int:
        while not self._buffer:
            self._buffer = next(self._chunks, b"")
            if not self._buffer:
                return 0
        size = min(len(target), len(self._buffer))
        target[:size], self._buffer = self._buffer[:size], self._buffer[size:]
        self.consumed += size
        return size


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


def _recorded_digest(raw: bytes) -> str:
    try:
        document = json.loads(raw)
    except ValueError:
        raise BundleError(f"{BUNDLE_DIGEST} is not JSON: the bundle was damaged or changed") from None
    if not isinstance(document, dict) or not isinstance(document.get("sha256"), str):
        raise BundleError(f"{BUNDLE_DIGEST} holds no sha256: the bundle was damaged or changed")
    return str(document["sha256"])


def _declared_absent(metadata: Mapping[str, bytes]) -> list[str]:
    data = metadata.get(BUNDLE_JSON)
    return BundleManifest.from_json(data).relies_on if data is not None else []


def read_verified(path: Path) -> Verified:
    """Check the whole bundle in one read (nothing is touched anywhere); what it holds.

    Every layer is hashed against its image's config, every member against the
    bundle's manifest. A checksum file beside the bundle is checked in the same
    read, but vouches for nothing: whoever could change the bundle could change it too.
    """
    parts = parts_of(path)
    expected = expected_sums(path)
    actual: dict[str, Any] = {}
    checker = SaveStreamFilter(verify_content=True, keep_tags=True, declared_absent=_declared_absent)
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
    return Verified(_check_manifest(path, checker), checker.stats, expected is not None, size)


def _check_sums(path: Path, parts: list[Path], expected: dict[str, str], actual: dict[str, Any], more: str = "") -> None:
    for part in parts:
        if expected.get(part.name) != actual.get(part.name):
            raise BundleError(f"{part.name} does not match its checksum in {path.name}.sha256: the file is damaged or was changed{more}")


def _check_manifest(path: Path, checker: SaveStreamFilter) -> BundleManifest:
    data, digest = checker.metadata(BUNDLE_JSON), checker.metadata(BUNDLE_DIGEST)
    if data is None or digest is None:
        raise BundleError(f"{path.name} is an image archive but not a shipper bundle (no {BUNDLE_JSON})", hint="docker load -i can load it")
    if _recorded_digest(digest) != hashlib.sha256(data).hexdigest():
        raise BundleError(f"{BUNDLE_JSON} in {path.name} does not match its digest: it was damaged or changed")
    manifest = BundleManifest.from_json(data)
    seen = {m.name: m for m in checker.stats.members.values() if m.link is None and m.name not in (BUNDLE_JSON, BUNDLE_DIGEST)}
    seen = {n: m for n, m in seen.items() if m.digest}
    for name, member in seen.items():
        listed = manifest.members.get(name)
        if listed is None:
            raise BundleError(f"{path.name} holds {name}, which its manifest does not list (added after the bundle was made)")
        if listed.get("sha256") != member.digest or listed.get("size") != member.size:
            raise BundleError(f"{name} in {path.name} does not match the bundle's manifest: it was damaged or changed")
    missing = sorted(set(manifest.members) - set(seen))
    if missing:
        raise BundleError(f"{path.name} lacks {', '.join(missing[:3])}, which its manifest lists")
    images = {image.id: list(image.layers) for image in manifest.images}
    if images != checker.stats.images:
        raise BundleError(f"the images in {path.name} are not the ones its manifest lists")
    return manifest
