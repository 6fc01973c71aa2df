"""Registry addresses, repository names, tags and digests: checked before they go into a URL or a path.

The grammar is the distribution reference grammar (github.com/distribution/reference):
a repository is path components of lowercase letters and digits joined by
``.``, ``_``, ``__`` or dashes, separated by ``/``; a tag is up to 128 word
characters, dots and dashes, not starting with either; a digest is
``algorithm:hex`` (sha256 with 64 hex digits, sha512 with 128).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from shipper import imageref
from shipper.errors import UsageError

REPOSITORY, TAG, DIGEST = imageref.REPOSITORY, imageref.TAG, imageref.DIGEST  # Docker's grammar, written once (imageref.py)
MAX_NAME = 255


def check_digest(digest: str, what: str = "digest") -> str:
    if not DIGEST.fullmatch(digest):
        raise UsageError(f"{what} {digest!r} is not a valid digest (sha256:<64 hex digits>)")
    return digest


def check_repository(name: str) -> str:
    if len(name) > MAX_NAME or not REPOSITORY.fullmatch(name):
        raise UsageError(
            f"{name!r} is not a valid repository name",
            hint="lowercase letters, digits and . _ - separators, path components joined by /",
        )
    return name


def check_tag(tag: str) -> str:
    if not TAG.fullmatch(tag):
        raise UsageError(f"{tag!r} is not a valid tag", hint="up to 128 letters, digits, _ . -, not starting with . or -")
    return tag


@dataclass(frozen=True)
class Address:
    """Where a registry listens: ``host[:port]`` and whether it speaks plain HTTP."""

    host: str  # host or host:port, as the engine's certs.d directory names it
    plain_http: bool = False

    @property
    def hostname(self) -> str:
        host = self.host
        if host.startswith("["):
            return host[1 : host.index("]")]
        return host.rsplit(":", 1)[0] if ":" in host else host

    @property
    def base_url(self) -> str:
        return f"{'http' if self.plain_http else 'https'}://{self.host}"

    @property
    def is_loopback(self) -> bool:
        if self.hostname == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.hostname).is_loopback
        except ValueError:
            return False

    def __str__(self) -> str:
        return self.host


def parse_address(text: str) -> Address:
    """``host:port``, ``https://host:port`` or ``http://host:port`` (plain HTTP, loopback or --insecure only)."""
    plain = text.startswith("http://")
    bare = text.split("://", 1)[1] if "://" in text else text
    bare = bare.rstrip("/")
    if text.startswith(("http://", "https://")) or "://" not in text:
        if imageref.is_domain(bare):
            return Address(bare, plain)
    raise UsageError(f"{text!r} is not a registry address", hint="give host:port, e.g. registry.example:5000")


@dataclass(frozen=True)
class RepoRef:
    """``REGISTRY/REPO[:TAG|@DIGEST]``, split and checked."""

    registry: Address
    repository: str
    tag: str | None = None
    digest: str | None = None

    @property
    def reference(self) -> str:
        """What goes after ``/manifests/``: the digest if there is one, else the tag."""
        return self.digest or self.tag or "latest"

    def __str__(self) -> str:
        suffix = f"@{self.digest}" if self.digest else f":{self.tag}" if self.tag else ""
        return f"{self.registry}/{self.repository}{suffix}"


def parse_repo_ref(text: str, default_registry: Address | None = None, need_reference: bool = False) -> RepoRef:
    """``registry:5000/team/app:1.2`` or ``…/app@sha256:…``; the registry part may be left to ``default_registry``."""
    first, rest = imageref.split_registry(text)
    if first:
        registry = parse_address(first)
    elif default_registry is not None:
        registry, rest = default_registry, text
    else:
        raise UsageError(f"{text!r} names no registry", hint="write REGISTRY/REPOSITORY[:TAG], e.g. registry.example:5000/team/app:1")
    digest = tag = None
    if "@" in rest:
        rest, digest = rest.split("@", 1)
        check_digest(digest)
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        rest, tag = rest.rsplit(":", 1)
        check_tag(tag)
    check_repository(rest)
    if need_reference and not tag and not digest:
        raise UsageError(f"{text!r} names no tag or digest", hint=f"write {text}:TAG")
    return RepoRef(registry, rest, tag, digest)
