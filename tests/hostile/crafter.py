"""Hostile archives and bundles, built byte by byte: bad headers, links, bombs, tampering.

Everything starts from a sound docker-save archive of a tiny synthetic image
(``sound_archive``) or a sound bundle made from it by shipper's own writer
(``sound_bundle``), then changes exactly one thing.
"""

from __future__ import annotations

import hashlib
import tarfile
from pathlib import Path
from typing import Iterable

import zstandard

from shipper.archive.savestream import SaveStreamFilter
from shipper.bundle import BundleImage, BundleWriter
from shipper.bundle.format import trailer_for
from shipper.lab import Layer, SyntheticImage, image_id
from shipper.lab.images import save_stream

BLOCK = 512
IMAGE = SyntheticImage("hostile/app:1", (Layer(64 << 10, "hostile-base"), Layer(32 << 10, "hostile-top", "text")))
END = bytes(2 * BLOCK)


def _pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.linkname, info.mode = size, kind, linkname, 0o644
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def raw_header(name: str, size_field: bytes, kind: bytes = tarfile.REGTYPE) -> bytes:
    """A ustar header whose size field is written as given (base-256 negatives, garbage), checksum fixed up."""
    block = bytearray(header(name, 0, kind))
    block[124:136] = size_field.ljust(12, b"\0")[:12]
    block[148:156] = b" " * 8
    block[148:156] = f"{sum(block):06o}\0 ".encode()
    return bytes(block)


def pax_records(records: dict[str, str]) -> bytes:
    out = b""
    for key, value in records.items():
        body = f" {key}={value}\n".encode()
        length = len(body) + len(str(len(body)))
        length = len(body) + len(str(length))
        out += str(length).encode() + body
    return out


def pax_member(name: str, data: bytes, raw_records: bytes, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    """A member preceded by a PAX header holding ``raw_records`` exactly as given."""
    pax = header(f"PaxHeaders/{name[:80]}", len(raw_records), tarfile.XHDTYPE) + _pad(raw_records)
    return pax + header(name, len(data), kind, linkname) + _pad(data)


def member(name: str, data: bytes = b"", kind: bytes = tarfile.REGTYPE, linkname: str = "") -> bytes:
    return header(name, len(data), kind, linkname) + _pad(data)


def sound_archive() -> bytes:
    """``docker save`` of IMAGE, without its end marker (members may be added; then END)."""
    data = b"".join(save_stream([IMAGE]))
    assert data.endswith(END)
    return data[: -len(END)]


def archive_with(*extra: bytes) -> bytes:
    return sound_archive() + b"".join(extra) + END


def check(data: bytes | Iterable[bytes]) -> SaveStreamFilter:
    """Run the bundle reader's checks over ``data``; the filter, once it passed."""
    checker = SaveStreamFilter([image_id(IMAGE)], verify_content=True, keep_tags=True)
    for _ in checker.run([data] if isinstance(data, bytes) else data):
        pass
    return checker


def sound_bundle(path: Path, compress: bool = False) -> Path:
    """A bundle of IMAGE written by shipper's own writer, with its checksum file."""
    layers = {image_id(IMAGE): [_diff_id(layer) for layer in IMAGE.layers]}
    images = [BundleImage(image_id(IMAGE), (IMAGE.name,), 96 << 10, tuple(layers[image_id(IMAGE)]), "linux/amd64")]
    checker = SaveStreamFilter([image_id(IMAGE)], verify_content=True, layers=layers, keep_tags=True, trailer=trailer_for(images, "crafter", []))
    writer = BundleWriter(path, compress)
    for piece in checker.run(save_stream([IMAGE])):
        writer.write(piece)
    writer.commit()
    return path


def _diff_id(layer: Layer) -> str:
    from shipper.lab.images import _file_tar, _layer_entries

    sha = hashlib.sha256()
    for chunk in _file_tar(_layer_entries(layer)):
        sha.update(chunk)
    return "sha256:" + sha.hexdigest()


def rewrite_sums(path: Path) -> None:
    """Write the checksum file anew for the bundle as it now is (as whoever changed the bundle would)."""
    Path(f"{path}.sha256").write_text(f"{hashlib.sha256(path.read_bytes()).hexdigest()}  {path.name}\n")


def layer_offset(data: bytes) -> tuple[int, int]:
    """(offset, size) of the largest layer member's content in an uncompressed bundle or archive."""
    import io

    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        found = max((m for m in archive.getmembers() if m.name.endswith("layer.tar") or m.name.startswith("blobs/")), key=lambda m: m.size)
        return found.offset_data, found.size


def zstd_bomb(path: Path, zeros: int) -> Path:
    """A .tar.zst that starts as a sound archive and then expands to ``zeros`` zero bytes (valid tar padding)."""
    compressor = zstandard.ZstdCompressor(level=19).compressobj()
    out = [compressor.compress(archive_with())]
    chunk = bytes(4 << 20)
    for _ in range(zeros // len(chunk)):
        out.append(compressor.compress(chunk))
    out.append(compressor.flush())
    path.write_bytes(b"".join(out))
    return path
