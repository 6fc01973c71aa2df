"""Tar headers read strictly, for streams that are never extracted (docker-save archives, bundles).

Standard library only, and importing nothing from shipper but its own package:
this module also runs next to a source engine (archive/hostpipe.py).

``docker load`` reads these streams with Go's archive/tar, shipper with this
module: anything the two could read differently is refused. Sizes must be
non-negative decimal numbers; a PAX record's length must cover exactly that
record; sparse members and global headers that set a path or a size are
refused; names and symlink targets may not leave the archive.
"""

from __future__ import annotations

import posixpath
import tarfile
from typing import Container, Iterable, Iterator

BLOCK = 512
MAX_EXTENDED_HEADER = 1 << 20  # a PAX or GNU long-name header larger than this is refused
MAX_SIZE = 1 << 62  # a member size beyond this is not a size
PAX_KEYS_REFUSED = ("GNU.sparse.",)  # sparse members change what "size" means: a docker save never writes them


class ArchiveError(Exception):
    """The stream is not a sound docker-save archive."""


class Input:
    """Reads exact byte counts out of an iterable of chunks, without joining big ones."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._view = memoryview(b"")
        self.consumed = 0

    def _fill(self) -> bool:
        while not self._view:
            try:
                self._view = memoryview(next(self._chunks))
            except StopIteration:
                return False
        return True

    def pieces(self, size: int) -> Iterator[memoryview]:
        """Yield the next ``size`` bytes as views; ``ArchiveError`` if the input ends first."""
        if size < 0:
            raise ArchiveError(f"a member of {size} bytes is not a member")
        left = size
        while left:
            if not self._fill():
                raise ArchiveError(f"the archive ends early: {left} bytes missing after {self.consumed} bytes")
            piece = self._view[:left]
            self._view = self._view[len(piece) :]
            left -= len(piece)
            self.consumed += len(piece)
            yield piece

    def read(self, size: int) -> bytes:
        return b"".join(bytes(p) for p in self.pieces(size))

    def rest(self) -> memoryview:
        """What was read past the last byte consumed (the caller reads on from its own iterator)."""
        return self._view

    def at_end(self) -> bool:
        return not self._fill()


def pad(size: int) -> int:
    return -size % BLOCK


def check_name(name: str, seen: Container[str]) -> str:
    clean = posixpath.normpath(name.rstrip("/"))
    if name.startswith("/") or clean == ".." or clean.startswith("../") or "/../" in f"/{clean}/":
        raise ArchiveError(f"member {name!r} points outside the archive")
    if clean in seen:
        raise ArchiveError(f"member {name!r} appears twice")
    return clean


def ustar_header(name: str, size: int) -> bytes:
    """A plain member's header, as docker save writes one (mode 0644, no time)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def pax_header(name: str, size: int) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o644, 0
    return info.tobuf(format=tarfile.PAX_FORMAT)


def parse_header(block: bytes) -> tarfile.TarInfo:
    try:
        info = tarfile.TarInfo.frombuf(block, "utf-8", "surrogateescape")
    except tarfile.HeaderError as exc:
        raise ArchiveError(f"not a tar archive, or corrupt: {exc}") from None
    if not 0 <= info.size <= MAX_SIZE:
        raise ArchiveError(f"a tar header gives member {info.name[:100]!r} the size {info.size}, which is not a size")
    return info

def pax_records(raw: bytes) -> dict[str, str]:
    """PAX records (``"%d %s=%s\n"``), strictly: each length must cover exactly its record."""
    records: dict[str, str] = {}
    while raw:
        length_text, space, _ = raw.partition(b" ")
        if not space or not length_text.isdigit() or len(length_text) > 20:
            raise ArchiveError("corrupt PAX header: a record without a length")
        length = int(length_text)
        if length <= len(length_text) + 1 or length > len(raw) or raw[length - 1 : length] != b"\n":
            raise ArchiveError("corrupt PAX header: a record's length does not match it")
        key, equals, value = raw[len(length_text) + 1 : length - 1].partition(b"=")
        if not equals or not key:
            raise ArchiveError("corrupt PAX header: a record without a key")
        name = text(key, "PAX key")
        if name.startswith(PAX_KEYS_REFUSED):
            raise ArchiveError(f"PAX record {name!r} (a sparse file) is refused: a docker-save archive never holds one")
        records[name] = text(value, f"PAX {name}")
        raw = raw[length:]
    return records


def text(raw: bytes, what: str) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ArchiveError(f"{what} is not UTF-8 text") from None


def pax_size(text: str) -> int:
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise ArchiveError(f"a PAX header gives the size {text[:40]!r}, which is not a size")
    return int(text)


def link_target(name: str, linkname: str, links: set[str]) -> str:
    """Where symlink ``name`` points, as a member name; ``ArchiveError`` if that is outside the archive.

    The path is walked as a file system would, with the symlinks ``links`` known so far: going
    through one, or up out of one, is refused, so the name worked out here is the one an
    extractor would reach (a ``..`` after a symlink goes up from the symlink's target, not its name)."""
    if not linkname or linkname.startswith("/"):
        raise ArchiveError(f"symlink {name!r} points outside the archive ({linkname[:100]!r})")
    parts = name.split("/")[:-1]
    steps = [p for p in linkname.split("/") if p not in ("", ".")]
    for part in steps:
        if parts and "/".join(parts) in links:
            raise ArchiveError(f"symlink {name!r} points through symlink {'/'.join(parts)!r}: refused")
        if part == "..":
            if not parts:
                raise ArchiveError(f"symlink {name!r} points outside the archive ({linkname[:100]!r})")
            parts.pop()
        else:
            parts.append(part)
    if not parts:
        raise ArchiveError(f"symlink {name!r} points at the archive's root")
    return "/".join(parts)


def kind_of(info: tarfile.TarInfo) -> str:
    if info.islnk():
        return "hard link"
    if info.ischr() or info.isblk():
        return "device"
    if info.isfifo():
        return "fifo"
    return f"type {info.type!r}"
