"""Reading a bundle back: parts joined, decompressed (bounded), every member checked in one read.

See format.py for what is checked. ``read_verified`` touches nothing anywhere;
``content_chunks`` gives the tar bytes again for a load or a push.
"""

from __future__ import annotations

import hashlib
import io
import json
import queue
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping, Protocol, Sequence, cast

import zstandard

from shipper.archive.savestream import ArchiveError, SaveStreamFilter, StreamStats
from shipper import signing
from shipper.bundle.format import (
    BUNDLE_DIGEST, BUNDLE_JSON, BUNDLE_SIG, MAX_RATIO, MAX_RATIO_GRACE, MAX_SUMS_FILE, READ_CHUNK, ZSTD_MAGIC, BundleError, BundleManifest,
)  # fmt: skip


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
    manifest_data: bytes = b""  # shipper-bundle.json as it is in the bundle: what a signature covers
    signature: str | None = None  # base64, from the bundle's own member, else from PATH.sig beside it
    signed_by: str = ""  # the key that verified it, once check_signature has run


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
    manifest = _check_manifest(path, checker)
    data = checker.metadata(BUNDLE_JSON) or b""
    return Verified(manifest, checker.stats, expected is not None, size, data, _signature(path, checker.metadata(BUNDLE_SIG)))


def _signature(path: Path, inside: bytes | None) -> str | None:
    """The bundle's signature: its own member, else ``PATH.sig`` beside it (bounded: a signature is short)."""
    if inside is not None:
        return inside.decode(errors="replace")
    beside = Path(f"{path}.sig")
    try:
        with open(beside, "rb") as source:
            return source.read(signing.MAX_SIGNATURE + 1).decode(errors="replace")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise BundleError(f"cannot read {beside}: {exc.strerror}") from None


class Signable(Protocol):
    """What a signature check needs of a verified bundle (reader.Verified, or a registry bundle's)."""

    manifest_data: bytes
    signature: str | None
    signed_by: str


def check_signature(verified: Signable, path: Path, keys: Sequence[Path]) -> None:
    """TrustError unless one of ``keys`` (public keys, PEM) verifies the bundle's signature over its manifest,
    which holds the digest of every member read_verified checked. Sets ``verified.signed_by``."""
    if not keys:
        return
    trusted = [(key, signing.load_public(key)) for key in keys]  # a key file that is not a key is refused first
    if verified.signature is None:
        raise signing.TrustError(
            f"{path.name} is not signed, and a signature is required (trusted keys: {', '.join(str(k) for k in keys)})",
            hint="ask for a bundle made with bundle create --sign; do not load what is not signed",
        )
    failures = []
    for key_path, key in trusted:
        try:
            signing.verify(key, verified.manifest_data, verified.signature, f"{path.name}")
        except signing.TrustError as exc:
            failures.append(exc)
            continue
        verified.signed_by = str(key_path)
        return
    if len(failures) == 1:
        raise failures[0]
    raise signing.TrustError(
        f"the signature of {path.name} verifies with none of the trusted keys ({', '.join(str(k) for k in keys)}): "
        f"signed with another key, or changed since ({failures[0].message.rsplit(': ', 1)[-1]})",
        hint="check which release key made it; do not load what does not verify",
    )


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
    seen = {m.name: m for m in checker.stats.members.values() if m.link is None and m.name not in (BUNDLE_JSON, BUNDLE_DIGEST, BUNDLE_SIG)}
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


def forward_reader(content: Any) -> Any:
    """``read_from(offset)`` over a member read front to back: the client asks for each chunk once, in order."""
    position = [0]

    def read_from(offset: int) -> Iterator[bytes]:
        if offset < position[0]:
            raise BundleError("an upload from a bundle cannot go back (the registry lost part of a chunk): run bundle push again")
        while position[0] < offset:
            skipped = content.read(min(1 << 20, offset - position[0]))
            if not skipped:
                return
            position[0] += len(skipped)
        while True:
            chunk = content.read(1 << 20)
            if not chunk:
                return
            position[0] += len(chunk)
            yield chunk

    return read_from
