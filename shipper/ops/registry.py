"""Looking after a registry: list, tags, inspect, remove an image, log in.

Registries are named in the inventory (``registries:``) or given as
``host:port``; credentials come from a password file, else the Docker CLI's
config (see registry/credentials.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from shipper.errors import RegistryNotFound, UsageError
from shipper.provision.layout import Mirror
from shipper.inventory.model import Inventory, RegistrySpec
from shipper.registry import Address, Credentials, Descriptor, RegistryClient, RepoRef, parse_address, parse_repo_ref
from shipper.registry.credentials import from_docker_config, from_password_file, store


@dataclass(frozen=True)
class Access:
    """How to reach a registry: what the command line says, over what the inventory says."""

    username: str | None = None
    password_file: str | None = None
    ca: str | None = None
    insecure: bool = False
    config_dir: Path | None = None  # the Docker CLI config directory (default: $DOCKER_CONFIG or ~/.docker)


def _spec(inventory: Inventory | None, name: str) -> RegistrySpec | None:
    return inventory.registries.get(name) if inventory is not None else None


def resolve(text: str, inventory: Inventory | None) -> tuple[Address, RegistrySpec | None]:
    """A registry by inventory name or by address."""
    spec = _spec(inventory, text)
    return (parse_address(spec.address), spec) if spec else (parse_address(text), None)


def resolve_ref(text: str, inventory: Inventory | None, need_reference: bool = False) -> tuple[RepoRef, RegistrySpec | None]:
    """``REGISTRY/REPO[:TAG]`` where REGISTRY is an inventory name or an address."""
    first, _, rest = text.partition("/")
    spec = _spec(inventory, first)
    if spec is not None and rest:
        return parse_repo_ref(rest, parse_address(spec.address), need_reference), spec
    return parse_repo_ref(text, need_reference=need_reference), None


def credentials_for(address: Address, spec: RegistrySpec | None, access: Access) -> Credentials | None:
    username = access.username or (spec.username if spec else None)
    password_file = access.password_file or (spec.password_file if spec else None)
    if password_file:
        return from_password_file(username, password_file)
    if access.username and not password_file:
        raise UsageError("--username needs --password-file (a file, or - for stdin)", hint="passwords never go on the command line")
    return from_docker_config(address.host, access.config_dir)


def open_client(address: Address, spec: RegistrySpec | None, access: Access) -> RegistryClient:
    ca = access.ca or (spec.ca if spec else None)
    insecure = access.insecure or (spec.insecure if spec else False)
    return RegistryClient(address, credentials_for(address, spec, access), ca_file=ca, insecure=insecure)


# -- inspect -------------------------------------------------------------------------


@dataclass(frozen=True)
class PlatformImage:
    platform: str
    digest: str
    media_type: str
    config: Descriptor | None
    layers: tuple[Descriptor, ...]

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers) + (self.config.size if self.config else 0)


@dataclass(frozen=True)
class Inspection:
    ref: RepoRef
    digest: str
    media_type: str
    images: tuple[PlatformImage, ...]

    @property
    def total(self) -> int:
        """Bytes stored: every distinct blob once."""
        blobs = {layer.digest: layer.size for image in self.images for layer in image.layers}
        blobs.update({image.config.digest: image.config.size for image in self.images if image.config})
        return sum(blobs.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "reference": str(self.ref),
            "digest": self.digest,
            "media_type": self.media_type,
            "total_size": self.total,
            "platforms": [
                {
                    "platform": image.platform,
                    "digest": image.digest,
                    "media_type": image.media_type,
                    "config": image.config.digest if image.config else None,
                    "layers": [{"digest": layer.digest, "size": layer.size, "media_type": layer.media_type} for layer in image.layers],
                    "size": image.size,
                }
                for image in self.images
            ],
        }


def _platform_of(client: RegistryClient, repository: str, config: Descriptor | None) -> str:
    if config is None:
        return ""
    try:
        import json

        data = json.loads(client.blob_bytes(repository, config.digest))
        return "/".join(str(data[k]) for k in ("os", "architecture", "variant") if data.get(k))
    except (ValueError, TypeError, RegistryNotFound):
        return ""


def inspect(client: RegistryClient, ref: RepoRef) -> Inspection:
    """Digest, media type, platforms, layers and sizes of ``ref``."""
    top = client.manifest(ref.repository, ref.reference)
    images = []
    children = top.manifests if top.is_index else [Descriptor(top.media_type, top.digest, len(top.raw))]
    for child in children:
        manifest = top if child.digest == top.digest else client.manifest(ref.repository, child.digest)
        platform = child.platform or _platform_of(client, ref.repository, manifest.config)
        images.append(PlatformImage(platform, manifest.digest, manifest.media_type, manifest.config, tuple(manifest.layers)))
    return Inspection(ref, top.digest, top.media_type, tuple(images))


# -- remove --------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    """What deleting ``ref``'s manifest takes with it."""

    ref: RepoRef
    digest: str
    other_tags: tuple[str, ...] = field(default=())


def plan_removal(client: RegistryClient, ref: RepoRef) -> Removal:
    """Resolve ``ref`` to its digest and find every other tag on that digest (they go too)."""
    found = client.manifest_head(ref.repository, ref.reference)
    if found is None:
        raise RegistryNotFound(f"registry {ref.registry} has no {ref}", hint=f"shipper registry tags {ref.registry}/{ref.repository} lists the tags")
    others = []
    for tag in client.tags(ref.repository):
        if tag == ref.tag:
            continue
        head = client.manifest_head(ref.repository, tag)
        if head is not None and head.digest == found.digest:
            others.append(tag)
    return Removal(ref, found.digest, tuple(sorted(others)))


def remove(client: RegistryClient, removal: Removal) -> None:
    """Delete the manifest by digest, then check the tag no longer resolves."""
    client.delete_manifest(removal.ref.repository, removal.digest)
    if removal.ref.tag and client.manifest_head(removal.ref.repository, removal.ref.tag) is not None:
        raise RegistryNotFound(f"{removal.ref} still resolves after its manifest was deleted")


# -- login ---------------------------------------------------------------------------


def login(address: Address, spec: RegistrySpec | None, access: Access, credentials: Credentials) -> str:
    """Prove ``credentials`` work against the registry, then keep them as ``docker login`` does; where they went."""
    ca = access.ca or (spec.ca if spec else None)
    with RegistryClient(address, credentials, ca_file=ca, insecure=access.insecure or bool(spec and spec.insecure)) as client:
        client.ping()
    return store(address.host, credentials, access.config_dir)


def mirror_for(inventory: Inventory | None, name: str, username: str | None, password_file: str | None, ca: str | None) -> Mirror:
    """The upstream of a site cache: a registry of the inventory's (its address, login and CA), or HOST:PORT."""
    spec = inventory.registries.get(name) if inventory is not None else None
    address = spec.address if spec is not None else name
    if address.startswith("http://"):
        raise UsageError(f"{name} is a plain-HTTP registry: a cache's upstream must speak TLS")
    url = address if address.startswith("https://") else f"https://{address}"
    username = username or (spec.username if spec is not None else None)
    password_file = password_file or (spec.password_file if spec is not None else None)
    if username and not password_file:
        raise UsageError(f"the upstream user {username} needs a password", hint="--upstream-password-file FILE (or password_file: in the inventory)")
    password = from_password_file(username, password_file).password if username and password_file else None
    ca_file = ca or (spec.ca if spec is not None else None)
    try:
        ca_bytes = _first_bytes(ca_file, 1 << 20) if ca_file else None
    except OSError as exc:
        raise UsageError(f"cannot read the upstream's CA {ca_file}: {exc.strerror}") from None
    if ca_bytes is not None and len(ca_bytes) > 1 << 20:
        raise UsageError(f"{ca_file} is over 1 MiB: not a CA certificate")
    return Mirror(url, username, password, ca_bytes)


def _first_bytes(path: str, limit: int) -> bytes:
    """At most ``limit`` + 1 bytes of ``path``: enough to tell a file that is too large, never all of /dev/zero."""
    with open(path, "rb") as source:
        return source.read(limit + 1)
