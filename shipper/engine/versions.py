"""Engine API versions ("1.41"): compared as docker-py compares them, without importing docker-py (a quarter of
a command's start-up, which a survey over SSH does without), and checked, since an engine's answer says them."""

from __future__ import annotations

import re

# docker-py's DEFAULT_DOCKER_API_VERSION and MINIMUM_DOCKER_API_VERSION (docker.constants), which shipper speaks:
# the newest it knows and the oldest it accepts (a unit test keeps them equal to the installed docker-py's).
NEWEST_API = "1.45"
OLDEST_API = "1.24"

_VERSION = re.compile(r"[0-9]{1,4}(\.[0-9]{1,4}){0,3}")


def is_api_version(text: str) -> bool:
    return _VERSION.fullmatch(text) is not None


def _parts(version: str) -> tuple[int, ...]:
    if not is_api_version(version):
        raise ValueError(f"not an API version: {version[:40]!r}")
    return tuple(int(p) for p in version.split("."))


def version_lt(a: str, b: str) -> bool:
    """``a`` is older than ``b`` ("1.9" < "1.10"; missing parts count as 0)."""
    pa, pb = _parts(a), _parts(b)
    width = max(len(pa), len(pb))
    return pa + (0,) * (width - len(pa)) < pb + (0,) * (width - len(pb))
