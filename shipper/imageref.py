"""Image references as users write them: ``httpd:2``, ``reg:5000/team/app``, ``app@sha256:…``, an image ID."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipper.errors import UsageError

# Docker's reference grammar, simplified: path components, optional registry host[:port], optional tag.
# Docker's reference grammar (github.com/distribution/reference), the one place shipper writes it down.
# Matched whole (fullmatch: "$" would accept a trailing newline) and ASCII only ("\w" would take any Unicode letter).
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
REPOSITORY = re.compile(rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*", re.ASCII)
TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
DIGEST = re.compile(r"sha256:[a-f0-9]{64}|sha512:[a-f0-9]{128}", re.ASCII)
_DOMAIN = re.compile(r"(?:\[[0-9a-fA-F:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)(?::[0-9]{1,5})?", re.ASCII)
_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}", re.ASCII)


def split_registry(repository: str) -> tuple[str, str]:
    """(registry, path) of a repository name, by Docker's rule: the first component names a registry
    when it holds a "." or a ":", is "localhost", or is an IPv6 address in brackets; else ("", name).

    ``localhost/app`` -> ("localhost", "app"); ``reg:5000/team/app`` -> ("reg:5000", "team/app");
    ``team/app`` -> ("", "team/app")."""
    first, slash, rest = repository.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost" or first.startswith("[")):
        return first, rest
    return "", repository


def is_domain(text: str) -> bool:
    """``host[:port]`` as a registry part may be written."""
    return bool(_DOMAIN.fullmatch(text))


@dataclass(frozen=True)
class ImageRef:
    """A reference: a ``repository:tag``, ``repository[:tag]@digest``, or an image ID (``tag`` and ``digest`` empty)."""

    repository: str
    tag: str = ""
    digest: str = ""

    @property
    def is_id(self) -> bool:
        return not self.tag and not self.digest

    @property
    def tag_name(self) -> str | None:
        """``repository:tag``, the name a target gets; None for an ID or a reference by digest alone."""
        return f"{self.repository}:{self.tag}" if self.tag else None

    def __str__(self) -> str:
        name = f"{self.repository}:{self.tag}" if self.tag else self.repository
        return f"{name}@{self.digest}" if self.digest else name


def parse(text: str) -> ImageRef:
    """Parse and check ``text``; a name without a tag means ``:latest``, as in Docker."""
    text = text.strip()
    if _ID.fullmatch(text):
        return ImageRef(text if text.startswith("sha256:") or len(text) < 64 else f"sha256:{text}")
    digest = ""
    if "@" in text:
        text, _, digest = text.partition("@")
        if not DIGEST.fullmatch(digest):
            raise UsageError(f"{digest!r} is not a digest", hint="write NAME@sha256:<64 hex digits>, as docker images --digests shows it")
    slash = text.rfind("/")
    colon = text.rfind(":")
    repository, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, "" if digest else "latest")
    registry, path = split_registry(repository)
    if (registry and not is_domain(registry)) or not REPOSITORY.fullmatch(path) or (tag and not TAG.fullmatch(tag)):
        raise UsageError(f"{text!r} is not a valid image name", hint="write NAME[:TAG], e.g. httpd:2 or registry.local:5000/team/app:1.4")
    return ImageRef(repository, tag, digest)


def without_registry(name: str) -> tuple[str, str]:
    """``reg:5000/team/app:1`` (or ``localhost/team/app:1``) -> (``team/app``, ``1``): the repository as
    another registry would hold it, and the tag."""
    repository, _, tag = name.rpartition(":")
    return split_registry(repository)[1], tag
