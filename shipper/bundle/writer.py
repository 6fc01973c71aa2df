"""Writing a bundle: bytes to ``PATH`` (zstd-compressed, split in parts), ``*.partial`` until committed,
then the checksum file; every file created afresh, never through a symlink planted at its name."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import zstandard

from shipper.bundle.format import ZSTD_LEVEL, BundleError


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

    def beside(self, suffix: str, data: bytes) -> Path:
        """``PATH + suffix`` (the bundle's signature, say), written whole under a temporary name, then renamed."""
        final = Path(f"{self.path}{suffix}")
        with _create(self._partial(final)) as out:
            out.write(data)
        os.replace(self._partial(final), final)
        return final

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
