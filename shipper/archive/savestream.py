"""Pass a ``docker save`` tar stream through, checked, with its tags taken out.

Standard library only, and importing nothing from shipper: this module is
also meant to run next to a source engine with the host's own ``python3``.

What it does to the stream, in one pass and bounded memory:

- every member's bytes are hashed as they go by; names and types are checked
  (no absolute names, no ``..``, no hard links, devices or duplicates);
  headers are parsed strictly (sizes must be non-negative decimal numbers, PAX
  records well formed, PAX ``path`` and ``linkpath`` checked like ustar names);
  symlinks are resolved against the tree the archive builds: none may point
  outside it, go through another symlink, or lead to anything but a regular
  member, and no member may sit below a symlink;
- ``manifest.json`` is re-emitted with ``RepoTags`` emptied, ``repositories``
  is dropped, and in an OCI ``index.json`` the image-name annotations are
  dropped: the target loads untagged images, and shipper moves tags itself
  once every image has arrived (``docker load`` of several images is not
  atomic, and tags it would move cannot be put back);
- at the end-of-archive marker, every image is checked: its config's digest is
  its ID, its layers' digests are its config's ``diff_ids``. Only then is the
  end marker emitted. A stream that is cut short, or wrong, never ends as a
  valid archive, so the engine loading it fails and creates nothing. (A tar cut
  on a member boundary would otherwise read back as a valid shorter archive.)

Layers are recognised as they go by (layers.py): ``run_tagged`` says which
layer each piece belongs to, so that a fan-out can leave out, per target, the
layers that target already holds. A stream may itself lack layers (``absent``:
shipper's own streams carry only what some target needs).
"""

from __future__ import annotations

import hashlib
import json
import posixpath
import tarfile
import zlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Tuple

from shipper.archive.layers import LayerIndex, is_hex64
from shipper.archive.tarheader import (
    BLOCK, MAX_EXTENDED_HEADER, ArchiveError, Input, check_name, kind_of, link_target, pad, pax_header, pax_records, pax_size, parse_header,
    text,
)  # fmt: skip

MAX_METADATA = 4 << 20  # a manifest or config larger than this is refused
CHUNK = 1 << 20  # bytes inflated at a time
SMALL_BLOB = 64 << 10  # OCI-layout blobs up to this size are held (configs are among them)
METADATA_NAMES = ("manifest.json", "index.json", "repositories", "oci-layout", "shipper-bundle.sig")  # the last: a signed bundle's signature
DROPPED = ("repositories",)
NAME_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")


@dataclass
class Member:
    name: str
    size: int
    digest: str = ""  # sha256:<hex> of the content
    link: str | None = None  # symlink target, resolved inside the archive
    linkname: str = ""  # the symlink's target as written
    directory: bool = False
    diff_id: str = ""  # a gzip-compressed layer (as pulled, saved from the containerd store): the digest of its tar


@dataclass
class StreamStats:
    """What went by."""

    bytes_in: int = 0
    bytes_out: int = 0
    members: dict[str, Member] = field(default_factory=dict)
    images: dict[str, list[str]] = field(default_factory=dict)  # image ID -> its layers' diff IDs
    layer_members: dict[str, list[str]] = field(default_factory=dict)  # image ID -> the member holding each layer ("": absent)


def _rewrite(name: str, data: bytes) -> bytes:
    """Tags out of manifest.json and index.json."""
    try:
        document: Any = json.loads(data)
    except ValueError:
        raise ArchiveError(f"{name} is not valid JSON") from None
    if name == "manifest.json":
        if not isinstance(document, list):
            raise ArchiveError("manifest.json is not a list of images")
        for entry in document:
            if isinstance(entry, dict):
                entry["RepoTags"] = None
    elif name == "index.json" and isinstance(document, dict):
        for descriptor in document.get("manifests") or []:
            annotations = descriptor.get("annotations") or {}
            for key in NAME_ANNOTATIONS:
                annotations.pop(key, None)
    return json.dumps(document, separators=(",", ":")).encode()


class SaveStreamFilter:
    """One pass over a docker-save stream; see the module docstring.

    ``expected_ids``: image IDs (``sha256:…``) the archive must contain.
    ``verify_content``: hash every layer too. A stream going straight into
    ``docker load`` may skip it: the engine checks each layer against its
    config's diff ID as it loads (20.10: "invalid diffID", nothing created) and
    shipper checks the image ID before any tag moves. Configs, structure and
    completeness are always checked. Untrusted files (bundles) keep it on.
    """

    def __init__(
        self, expected_ids: Iterable[str] = (), verify_content: bool = True,
        layers: Optional[Mapping[str, Sequence[str]]] = None, absent: Iterable[str] = (),
        keep_tags: bool = False, trailer: Optional[Callable[[StreamStats], Sequence[Tuple[str, bytes]]]] = None,
        declared_absent: Optional[Callable[[Mapping[str, bytes]], Iterable[str]]] = None,
    ) -> None:  # fmt: skip
        """``layers``: image ID -> diff IDs, to tell which layer a member holds.
        ``absent``: diff IDs the stream may leave out (its manifest still names them).
        ``keep_tags``: leave manifest.json and repositories as they are (a bundle, for plain ``docker load``).
        ``trailer``: members to add just before the end marker, once everything is checked (a bundle's own manifest).
        ``declared_absent``: given the archive's metadata members, further diff IDs it may leave out (a delta bundle says which)."""
        self.declared_absent = declared_absent
        self.keep_tags = keep_tags
        self.leftover = b""  # bytes after the end marker that came in the same chunk
        self.trailer = trailer
        self.expected_ids = set(expected_ids)
        self.verify_content = verify_content
        self.index = LayerIndex(layers or {})
        self.absent = set(absent)
        self._tag: Optional[str] = None  # the layer the piece being emitted belongs to
        self.stats = StreamStats()
        self._metadata: dict[str, bytes] = {}
        self._small_kept = 0
        self._pending_pax = b""  # a PAX or GNU long-name header that belongs to the next member

    def metadata(self, name: str) -> bytes | None:
        """A metadata member's content (manifest.json, a config, …) as it was read."""
        return self._metadata.get(name)

    def run_tagged(self, chunks: Iterable[bytes]) -> Iterator[Tuple[Optional[str], bytes | memoryview]]:
        """Like ``run``, each piece with the diff ID of the layer it belongs to (None: not a layer we know)."""
        for piece in self.run(chunks):
            yield self._tag, piece

    def run(self, chunks: Iterable[bytes]) -> Iterator[bytes | memoryview]:
        """The filtered stream. Raises ``ArchiveError`` before the end marker if anything is wrong."""
        source = Input(chunks)
        pax: dict[str, str] = {}
        while True:
            block = source.read(BLOCK)
            if block == bytes(BLOCK):
                self._finish(source)
                self._tag = None
                for name, data in self.trailer(self.stats) if self.trailer else ():
                    yield from self._emit(pax_header(name, len(data)) + data + bytes(pad(len(data))))
                yield from self._emit(bytes(2 * BLOCK))
                self.stats.bytes_in = source.consumed
                self.leftover = bytes(source.rest())
                return
            info = parse_header(block)
            if info.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.GNUTYPE_LONGNAME):
                if info.size > MAX_EXTENDED_HEADER:
                    raise ArchiveError(f"an extended tar header of {info.size} bytes (over {MAX_EXTENDED_HEADER}) is refused")
                raw = source.read(info.size + pad(info.size))
                if info.type == tarfile.XHDTYPE:
                    pax = {**pax, **pax_records(raw[: info.size])}
                elif info.type == tarfile.XGLTYPE:
                    # Go's archive/tar (docker load) does not apply global headers to later members; tarfile does.
                    if set(pax_records(raw[: info.size])) & {"path", "linkpath", "size"}:
                        raise ArchiveError("a global PAX header sets a path or size, which readers disagree about")
                else:
                    pax = {**pax, "path": text(raw[: info.size].rstrip(b"\0"), "GNU long name")}
                self._pending_pax += block + raw
                continue
            name = pax.get("path", info.name)
            size = pax_size(pax["size"]) if "size" in pax else info.size
            yield from self._member(source, block, name, size, info, pax.get("linkpath", info.linkname))
            pax = {}

    def _emit(self, data: bytes | memoryview) -> Iterator[bytes | memoryview]:
        self.stats.bytes_out += len(data)
        yield data

    def _member(
        self, source: Input, block: bytes, name: str, size: int, info: tarfile.TarInfo, linkname: str
    ) -> Iterator[bytes | memoryview]:
        clean = check_name(name, self.stats.members)
        header, self._pending_pax = self._pending_pax + block, b""
        self._tag = self.index.layer_of(clean)
        if info.isdir() or info.issym():
            link = None
            if info.issym():
                link = link_target(clean, linkname, self._links())
            self.stats.members[clean] = Member(clean, 0, link=link, linkname=linkname if link else "", directory=info.isdir())
            yield from self._emit(header)
        elif not info.isreg():
            raise ArchiveError(f"member {name!r} is a {kind_of(info)}, which a docker-save archive never holds")
        elif clean in METADATA_NAMES or (clean.endswith(".json") and "/" not in clean) or _is_v1_json(clean):
            yield from self._metadata_member(source, header, clean, size)
        else:
            yield from self._content_member(source, header, clean, size)

    def _metadata_member(self, source: Input, header: bytes, name: str, size: int) -> Iterator[bytes | memoryview]:
        if size > MAX_METADATA:
            raise ArchiveError(f"{name} is {size} bytes; metadata over {MAX_METADATA} bytes is refused")
        data = source.read(size)
        source.read(pad(size))
        self.stats.members[name] = Member(name, size, "sha256:" + hashlib.sha256(data).hexdigest())
        if _is_v1_json(name):
            self.index.identify_v1(name.split("/", 1)[0], data)
        else:
            self._metadata[name] = data
        if name in DROPPED and not self.keep_tags:
            return
        if name in ("manifest.json", "index.json") and not self.keep_tags:
            data = _rewrite(name, data)
            header = pax_header(name, len(data))
        yield from self._emit(header)
        yield from self._emit(data)
        if pad(len(data)):
            yield from self._emit(bytes(pad(len(data))))

    def _content_member(self, source: Input, header: bytes, name: str, size: int) -> Iterator[bytes | memoryview]:
        if name.startswith("blobs/") and size <= SMALL_BLOB and self._small_kept + size <= MAX_METADATA:
            # An OCI-layout save (Docker 25+) keeps configs among the blobs: hold the small ones,
            # so that configs can be read (diff IDs) once manifest.json says which they are.
            data = source.read(size)
            source.read(pad(size))
            self._small_kept += size
            self._metadata[name] = data
            diff_id = ""
            if self.verify_content and data[:2] == b"\x1f\x8b":  # a small gzip layer: what it unpacks to counts, as below
                small = _Gunzip(name)
                small.update(data)
                diff_id = small.digest()
            self.stats.members[name] = Member(name, size, "sha256:" + hashlib.sha256(data).hexdigest(), diff_id=diff_id)
            yield from self._emit(header + data + bytes(pad(size)))
            return
        sha = hashlib.sha256() if self.verify_content else None
        unzipped: Optional[_Gunzip] = None
        yield from self._emit(header)
        first = True
        for piece in source.pieces(size):
            if sha is not None:
                if first and bytes(piece[:2]) == b"\x1f\x8b":  # gzip: hash what it unpacks to as well
                    unzipped = _Gunzip(name)
                first = False
                sha.update(piece)
                if unzipped is not None:
                    unzipped.update(piece)
            yield from self._emit(piece)
        padding = source.read(pad(size))
        if padding:
            yield from self._emit(padding)
        # Not hashed (an engine-bound stream: the engine checks it): a content-addressed name stands for its digest.
        digest = "sha256:" + sha.hexdigest() if sha is not None else (_named_digest(name) or "")
        self.stats.members[name] = Member(name, size, digest, diff_id=unzipped.digest() if unzipped is not None else "")

    def _resolve(self, name: str, absent_as: Optional[str] = None) -> Member:
        """The member ``name`` is (links followed). ``absent_as``: the diff ID it stands for, if it may be absent."""
        seen = set()
        member = self.stats.members.get(posixpath.normpath(name))
        while member is not None and member.link is not None and member.name not in seen:
            seen.add(member.name)
            member = self.stats.members.get(member.link)
        if member is None and absent_as is not None and absent_as in self.absent:
            return Member(name, 0, absent_as)
        if member is None or member.link is not None:
            raise ArchiveError(f"manifest.json names {name!r}, which the archive does not hold")
        return member

    def _links(self) -> set[str]:
        return {name for name, member in self.stats.members.items() if member.link is not None}

    def _check_links(self) -> None:
        """Every member and symlink against the whole tree: nothing below a symlink, every link to a regular member."""
        links = self._links()
        for name, member in self.stats.members.items():
            parts = name.split("/")
            through = next((p for p in ("/".join(parts[:i]) for i in range(1, len(parts))) if p in links), None)
            if through is not None:
                raise ArchiveError(f"member {name!r} lies below symlink {through!r}: refused")
        for name, member in self.stats.members.items():
            if member.link is not None:
                link_target(name, member.linkname, links)  # again, now that every symlink is known
                target = self._follow(member)
                if target is None or target.directory:
                    raise ArchiveError(f"symlink {name!r} does not lead to a file of the archive")

    def _follow(self, member: Member) -> Member | None:
        seen: set[str] = set()
        while member.link is not None:
            if member.name in seen:
                return None
            seen.add(member.name)
            found = self.stats.members.get(member.link)
            if found is None:
                return None
            member = found
        return member

    def _finish(self, source: Input) -> None:
        """Checks at the end marker: links, content digests, then every image's config and layers."""
        source.read(BLOCK)  # the second zero block of the end marker
        self._check_links()
        for member in self.stats.members.values():
            expected = _named_digest(member.name)
            if expected and member.digest and member.digest != expected:
                raise ArchiveError(f"{member.name} is corrupt: its content has digest {member.digest}")
        if "manifest.json" not in self._metadata:
            raise ArchiveError("the archive has no manifest.json")
        if self.declared_absent is not None:
            self.absent |= set(self.declared_absent(self._metadata))
        try:
            manifest = json.loads(self._metadata["manifest.json"])
        except ValueError:
            raise ArchiveError("manifest.json is not valid JSON") from None
        for entry in manifest if isinstance(manifest, list) else []:
            self._check_image(entry)
        missing = self.expected_ids - set(self.stats.images)
        if missing:
            raise ArchiveError(f"the archive lacks image(s) {', '.join(sorted(missing))}")

    def _check_image(self, entry: Any) -> None:
        if not isinstance(entry, dict) or not isinstance(entry.get("Config"), str) or not isinstance(entry.get("Layers"), list):
            raise ArchiveError("manifest.json has an entry without Config and Layers")
        config = self._resolve(entry["Config"])
        raw = self._metadata.get(config.name)
        diff_ids = _diff_ids(raw, config.name) if raw is not None else []  # legacy layout: the config is at the top
        layers = [self._resolve(layer, diff_ids[i] if i < len(diff_ids) else None) for i, layer in enumerate(entry["Layers"])]
        if raw is not None and self.verify_content:
            actual = [layer.diff_id or layer.digest for layer in layers]
            if diff_ids != actual:
                bad = next((i for i, (a, b) in enumerate(zip(diff_ids, actual)) if a != b), len(actual))
                raise ArchiveError(f"layer {bad + 1} of image {config.digest} does not match its config (corrupt or cut)")
        # Layers not hashed (verify_content off) stand for what their config says they are.
        self.stats.layer_members[config.digest] = [layer.name if layer.name in self.stats.members else "" for layer in layers]
        named = [diff_ids[i] if i < len(diff_ids) else "" for i in range(len(layers))]
        if self.verify_content:
            self.stats.images[config.digest] = [layer.diff_id or layer.digest or named[i] for i, layer in enumerate(layers)]
        else:  # a compressed layer's member digest is not its diff ID
            self.stats.images[config.digest] = [named[i] or layer.digest for i, layer in enumerate(layers)]


class _Gunzip:
    """The sha256 of what a gzip member unpacks to, computed as it goes by (bounded memory)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._inflate = zlib.decompressobj(wbits=31)
        self._sha = hashlib.sha256()

    def update(self, piece: bytes | memoryview) -> None:
        try:
            data = self._inflate.decompress(piece, CHUNK)
            self._sha.update(data)
            while self._inflate.unconsumed_tail:
                self._sha.update(self._inflate.decompress(self._inflate.unconsumed_tail, CHUNK))
        except zlib.error as exc:
            raise ArchiveError(f"{self.name} is not valid gzip: {exc}") from None

    def digest(self) -> str:
        return "sha256:" + self._sha.hexdigest()


def _is_v1_json(name: str) -> bool:
    """``<v1-id>/json``: a legacy layer directory's description, which tells which layer it holds."""
    directory, _, base = name.partition("/")
    return base == "json" and is_hex64(directory)


def _named_digest(name: str) -> str | None:
    """The digest a content-addressed member must have: blobs/sha256/<hex> or <hex>.json."""
    base = posixpath.basename(name)
    hexpart = base[: -len(".json")] if base.endswith(".json") and "/" not in name else base
    if (name.startswith("blobs/sha256/") or "/" not in name) and len(hexpart) == 64 and all(c in "0123456789abcdef" for c in hexpart):
        return "sha256:" + hexpart
    return None


def _diff_ids(raw: bytes, name: str) -> list[str]:
    try:
        config = json.loads(raw)
        diff_ids = config["rootfs"]["diff_ids"]
    except (ValueError, KeyError, TypeError):
        raise ArchiveError(f"config {name} has no rootfs.diff_ids") from None
    if not isinstance(diff_ids, list):
        raise ArchiveError(f"config {name} has no rootfs.diff_ids")
    return [str(d) for d in diff_ids]
