"""Image references as users write them: ``httpd:2``, ``reg:5000/team/app``, an image ID."""

from __future__ import annotations

import re
from dataclasses import dataclass

from shipper.errors import UsageError

# Docker's reference grammar, simplified: path components, optional registry host[:port], optional tag.
# Matched whole (fullmatch: "$" would accept a trailing newline) and ASCII only ("\w" would take any Unicode letter).
_NAME = re.compile(r"(?:[a-zA-Z0-9.-]+(?::[0-9]+)?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*", re.ASCII)
_TAG = re.compile(r"[\w][\w.-]{0,127}", re.ASCII)
_ID = re.compile(r"(?:sha256:)?[0-9a-f]{12,64}", re.ASCII)


@dataclass(frozen=True)
class ImageRef:
    """A reference: a ``repository:tag``, or an image ID (``tag`` empty)."""

    repository: str
    tag: str = ""

    @property
    def is_id(self) -> bool:
        return not self.tag

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}" if self.tag else self.repository


def parse(text: str) -> ImageRef:
    """Parse and check ``text``; a name without a tag means ``:latest``, as in Docker."""
    text = text.strip()
    if _ID.fullmatch(text):
        return ImageRef(text if text.startswith("sha256:") or len(text) < 64 else f"sha256:{text}")
    if "@" in text:
        raise UsageError(f"{text!r}: references by digest are not supported here", hint="name the image by tag or by ID")
    slash = text.rfind("/")
    colon = text.rfind(":")
    repository, tag = (text[:colon], text[colon + 1 :]) if colon > slash else (text, "latest")
    if not _NAME.fullmatch(repository) or not _TAG.fullmatch(tag):
        raise UsageError(f"{text!r} is not a valid image name", hint="write NAME[:TAG], e.g. httpd:2 or registry.local:5000/team/app:1.4")
    return ImageRef(repository, tag)
