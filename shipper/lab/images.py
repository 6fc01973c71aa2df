"""Test images made from nothing: no registry, no internet.

An image is written as a docker-save tar stream (``manifest.json``, a config,
``<dir>/layer.tar`` per layer) and streamed straight into ``docker load``.
Everything is deterministic: the same ``Layer`` always gives the same bytes,
so two images that list the same base layers share them on the engine, and
an image built twice has the same ID.

- ``Layer(size, seed)``: one file of pseudo-random bytes (AES-CTR keyed by the seed).
- ``Layer(size, seed, "text")``: compressible text (zstd shrinks it about 4x or more).
- ``busybox_image()``: a runnable image from Debian's ``busybox-static``.
"""

from __future__ import annotations

import hashlib
import io
import json
import platform
import tarfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from collections.abc import Iterable, Iterator, Sequence

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

CHUNK = 1 << 20
BLOCK = 512
EPOCH = 1767225600  # 2026-01-01T00:00:00Z: fixed mtimes make layers reproducible
CREATED = "2026-01-01T00:00:00Z"
BUSYBOX = Path("/bin/busybox")
BUSYBOX_APPLETS = ("sh", "echo", "cat", "ls", "sleep", "env", "true", "false", "wc", "sha256sum", "head", "hostname")
_WORDS = (
    "shipper moves docker images between engines over ssh through a registry or across the air gap "
    "layer manifest config digest blob tag push pull save load stream verify chunk host group fleet"
).split()


@dataclass(frozen=True)
class Layer:
    """One layer holding one file of ``size`` bytes derived from ``seed``."""

    size: int
    seed: str
    kind: Literal["random", "text"] = "random"

    @property
    def path(self) -> str:
        return f"shipper-lab/{self.seed}.bin"


@dataclass(frozen=True)
class SyntheticImage:
    """An image made of ``layers``, tagged ``name`` (repo:tag)."""

    name: str
    layers: tuple[Layer, ...]
    cmd: tuple[str, ...] = ()
    files: tuple[tuple[str, Path], ...] = field(default=())  # extra (path in image, source file) in the top layer


def _arch() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm"}.get(machine, machine)


def _pad(size: int) -> int:
    return -size % BLOCK


def _header(name: str, size: int = 0, kind: bytes = tarfile.REGTYPE, mode: int = 0o644, link: str = "") -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.type, info.mode, info.mtime, info.linkname = size, kind, mode, EPOCH, link
    info.uname = info.gname = "root"
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def _random_bytes(seed: str, size: int) -> Iterator[bytes]:
    key = hashlib.sha256(seed.encode()).digest()[:16]
    encryptor = Cipher(algorithms.AES(key), modes.CTR(b"\0" * 16)).encryptor()
    zeros = bytes(CHUNK)
    left = size
    while left > 0:
        n = min(CHUNK, left)
        yield encryptor.update(zeros[:n])
        left -= n


def _text_bytes(seed: str, size: int) -> Iterator[bytes]:
    # Lines of words chosen by the seeded stream: varied enough not to be trivial, still ~4x+ compressible.
    left, counter = size, 0
    for noise in _random_bytes(seed + "/text", size):
        words = [_WORDS[b % len(_WORDS)] for b in noise[: len(noise) // 6]]
        lines = []
        for i in range(0, len(words), 12):
            lines.append(f"{counter:010d} " + " ".join(words[i : i + 12]) + "\n")
            counter += 1
        chunk = "".join(lines).encode()[:left]
        chunk += b"." * (min(len(noise), left) - len(chunk))
        left -= len(chunk)
        yield chunk
        if left <= 0:
            return


def _file_tar(entries: Sequence[tuple[bytes, Iterable[bytes], int]]) -> Iterator[bytes]:
    """A tar stream from (header, content chunks, content size) entries, with the end marker."""
    for header, chunks, size in entries:
        yield header
        yield from chunks
        if _pad(size):
            yield bytes(_pad(size))
    yield bytes(2 * BLOCK)


def _layer_entries(layer: Layer) -> list[tuple[bytes, Iterable[bytes], int]]:
    data = _random_bytes(layer.seed, layer.size) if layer.kind == "random" else _text_bytes(layer.seed, layer.size)
    return [
        (_header("shipper-lab/", kind=tarfile.DIRTYPE, mode=0o755), (), 0),
        (_header(layer.path, layer.size), data, layer.size),
    ]


def _files_entries(files: Sequence[tuple[str, Path]], cmd_links: Sequence[str]) -> list[tuple[bytes, Iterable[bytes], int]]:
    entries: list[tuple[bytes, Iterable[bytes], int]] = [(_header("bin/", kind=tarfile.DIRTYPE, mode=0o755), (), 0)]
    for name, source in files:
        size = source.stat().st_size
        entries.append((_header(name, size, mode=0o755), _read_file(source), size))
    for applet in cmd_links:
        entries.append((_header(f"bin/{applet}", kind=tarfile.SYMTYPE, mode=0o777, link="busybox"), (), 0))
    return entries


def _read_file(path: Path) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(CHUNK):
            yield chunk


def _entries_size(entries: Sequence[tuple[bytes, Iterable[bytes], int]]) -> int:
    return sum(len(h) + size + _pad(size) for h, _, size in entries) + 2 * BLOCK


class _Hashing:
    """Passes chunks through while hashing them: the diff ID of a layer."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self.chunks, self.sha = chunks, hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self.chunks:
            self.sha.update(chunk)
            yield chunk

    @property
    def diff_id(self) -> str:
        return "sha256:" + self.sha.hexdigest()


def _member(name: str, data: bytes) -> Iterator[bytes]:
    yield _header(name, len(data))
    yield data
    yield bytes(_pad(len(data)))


def _config(image: SyntheticImage, diff_ids: Sequence[str]) -> bytes:
    config: dict[str, object] = {
        "architecture": _arch(),
        "os": "linux",
        "created": CREATED,
        "config": {"Env": ["PATH=/bin"], **({"Cmd": list(image.cmd)} if image.cmd else {})},
        "rootfs": {"type": "layers", "diff_ids": list(diff_ids)},
        "history": [{"created": CREATED, "created_by": f"shipper lab: layer {i}"} for i in range(len(diff_ids))],
    }
    return json.dumps(config, separators=(",", ":"), sort_keys=True).encode()


def _layer_sources(image: SyntheticImage) -> list[tuple[str, list[tuple[bytes, Iterable[bytes], int]]]]:
    sources = [(f"{layer.kind}:{layer.size}:{layer.seed}", _layer_entries(layer)) for layer in image.layers]
    if image.files:
        links = BUSYBOX_APPLETS if any(name == "bin/busybox" for name, _ in image.files) else ()
        key = "files:" + ",".join(f"{n}={p}:{p.stat().st_size}" for n, p in image.files)
        sources.append((key, _files_entries(image.files, links)))
    return sources


def save_stream(images: Sequence[SyntheticImage]) -> Iterator[bytes]:
    """A docker-save tar holding ``images``; a layer shared by several is written once.

    Layers come first and the configs last, since a config names its layers'
    digests, which are known only once the layer has streamed by.
    """
    written: dict[str, str] = {}  # layer key -> diff ID
    manifest = []
    configs: list[tuple[str, bytes]] = []
    for image in images:
        layer_paths, diff_ids = [], []
        for key, entries in _layer_sources(image):
            directory = hashlib.sha256(key.encode()).hexdigest()
            if key not in written:
                hashing = _Hashing(_file_tar(entries))
                yield _header(f"{directory}/layer.tar", _entries_size(entries))
                yield from hashing
                written[key] = hashing.diff_id
            layer_paths.append(f"{directory}/layer.tar")
            diff_ids.append(written[key])
        config = _config(image, diff_ids)
        config_name = hashlib.sha256(config).hexdigest() + ".json"
        configs.append((config_name, config))
        manifest.append({"Config": config_name, "RepoTags": [image.name], "Layers": layer_paths})
    for name, config in configs:
        yield from _member(name, config)
    yield from _member("manifest.json", json.dumps(manifest).encode())
    yield bytes(2 * BLOCK)


def image_id(image: SyntheticImage) -> str:
    """The ID ``image`` will have once loaded (the digest of its config), computed without an engine."""
    diff_ids = [_Hashing(_file_tar(entries)) for _, entries in _layer_sources(image)]
    for hashing in diff_ids:
        for _ in hashing:
            pass
    return "sha256:" + hashlib.sha256(_config(image, [h.diff_id for h in diff_ids])).hexdigest()


def busybox_image(name: str = "shipper-lab/busybox:1") -> SyntheticImage:
    """A runnable image: Debian's static busybox and a few applet links, ``sh`` as its command."""
    return SyntheticImage(name, layers=(), cmd=("sh",), files=(("bin/busybox", BUSYBOX),))


REGISTRY_BINARY = Path("/usr/bin/docker-registry")
# Where the official images keep their config: registry:2 and registry:3 differ.
REGISTRY_CONFIG_PATHS = {"2": "etc/docker/registry/config.yml", "3": "etc/distribution/config.yml"}
REGISTRY_BASE_CONFIG = """version: 0.1
log:
  fields:
    service: registry
storage:
  cache:
    blobdescriptor: inmemory
  filesystem:
    rootdirectory: /var/lib/registry
http:
  addr: :5000
  headers:
    X-Content-Type-Options: [nosniff]
health:
  storagedriver:
    enabled: true
    interval: 10s
    threshold: 3
"""


def registry_image(name: str = "shipper-lab/registry:2", flavour: str = "2", work_dir: Path = Path("/tmp")) -> SyntheticImage:
    """The registry as an image, made from Debian's ``docker-registry`` (no pull): the binary as
    ``/bin/registry``, libc and the loader, and the config where registry:2 or registry:3 keeps it."""
    config = work_dir / f"shipper-registry-config-{flavour}.yml"
    config.write_text(REGISTRY_BASE_CONFIG)
    path = REGISTRY_CONFIG_PATHS[flavour]
    libraries = [("lib/x86_64-linux-gnu/libc.so.6", Path("/lib/x86_64-linux-gnu/libc.so.6")), ("lib64/ld-linux-x86-64.so.2", Path("/lib64/ld-linux-x86-64.so.2"))]
    files = (("bin/registry", REGISTRY_BINARY), *((n, p.resolve()) for n, p in libraries), (path, config))
    return SyntheticImage(name, layers=(), cmd=("/bin/registry", "serve", f"/{path}"), files=files)


def as_file(images: Sequence[SyntheticImage]) -> io.BytesIO:
    """A whole save tar in memory: only for the tiny images of unit tests."""
    return io.BytesIO(b"".join(save_stream(images)))


def oci_archive(config: bytes, layer_blobs: Sequence[bytes], repo_tags: list[str] | None = None) -> bytes:
    """A docker-save archive in OCI layout whose layers are stored exactly as given (gzip ones named by their
    compressed digest, as a containerd store saves layers it pulled): small, in memory, for tests."""
    blobs = {"blobs/sha256/" + hashlib.sha256(blob).hexdigest(): blob for blob in [config, *layer_blobs]}
    names = list(blobs)
    manifest = [{"Config": names[0], "RepoTags": repo_tags, "Layers": names[1:]}]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in {**blobs, "manifest.json": json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue()
