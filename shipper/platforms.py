"""Platforms as Docker writes them: ``os[/arch[/variant]]`` (``linux/amd64``, ``linux/arm64/v8``, ``linux/arm/v7``).

Normalized as containerd's ``platforms.Normalize`` does, so that what a user
types, what an image's config says and what an index lists compare equal:
``x86_64`` is ``amd64``, ``aarch64`` is ``arm64`` (whose default variant
``v8`` is the same as none), ``armhf`` is ``arm/v7``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from shipper.errors import UsageError

_PART = re.compile(r"[a-z0-9_.-]{1,32}", re.ASCII)
_ARCH_ALIASES = {"x86_64": ("amd64", ""), "x86-64": ("amd64", ""), "aarch64": ("arm64", ""), "armhf": ("arm", "v7"),
                 "armel": ("arm", "v6"), "i386": ("386", ""), "i686": ("386", "")}  # fmt: skip


@dataclass(frozen=True)
class Platform:
    os: str
    architecture: str = ""
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(part for part in (self.os, self.architecture, self.variant) if part)

    def matches(self, os: str, architecture: str, variant: str = "") -> bool:
        """Whether an image built for os/architecture/variant is this platform (parts left out here match any)."""
        other = normalized(os, architecture, variant)
        if self.os != other.os:
            return False
        if self.architecture and self.architecture != other.architecture:
            return False
        return not self.variant or self.variant == other.variant

    def to_api(self) -> str:
        """The JSON-encoded OCI platform the Engine API takes (``platform`` query parameter, API 1.48+)."""
        document = {"os": self.os, "architecture": self.architecture, "variant": self.variant}
        return json.dumps({k: v for k, v in document.items() if v}, separators=(",", ":"))


def normalized(os: str, architecture: str = "", variant: str = "") -> Platform:
    os, architecture, variant = os.lower(), architecture.lower(), variant.lower()
    if architecture in _ARCH_ALIASES:
        architecture, implied = _ARCH_ALIASES[architecture]
        variant = variant or implied
    if architecture == "arm64" and variant == "v8":
        variant = ""  # arm64's only variant in practice: written or not, the same platform
    if architecture == "arm" and not variant:
        variant = "v7"
    return Platform(os, architecture, variant)


def parse_platform(text: str) -> Platform:
    """``--platform`` as a user typed it; a UsageError naming the expected form otherwise."""
    parts = text.strip().split("/")
    if not 1 <= len(parts) <= 3 or not all(_PART.fullmatch(p.lower()) for p in parts):
        raise UsageError(
            f"--platform {text!r} is not a platform",
            hint="write it as Docker does: os[/arch[/variant]], for example linux/amd64, linux/arm64 or linux/arm/v7",
        )
    return normalized(*parts)
