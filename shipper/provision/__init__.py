"""Provisioning: a registry of shipper's own on an inventory host (up, status, down, gc), split by idea:
its files (layout), users and TLS (credentials), the container, the engines' trust, the canary, gc.

The names below are imported when first used: a move that only needs ``layout`` (a site cache's settings) does
not pay for the certificates' library (cryptography's x509, a tenth of a command's start-up)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipper.provision.garbage import GCResult, gc
    from shipper.provision.layout import Mirror, UpRequest, config_path, container_name, state_dir
    from shipper.provision.registry import Status, UpResult, down, status, up
    from shipper.provision.trust import docker_login, logged_in

_HOMES = {
    "GCResult": "garbage", "gc": "garbage",
    "Mirror": "layout", "UpRequest": "layout", "config_path": "layout", "container_name": "layout", "state_dir": "layout",
    "Status": "registry", "UpResult": "registry", "down": "registry", "status": "registry", "up": "registry",
    "docker_login": "trust", "logged_in": "trust",
}  # fmt: skip

__all__ = [
    "GCResult", "Mirror", "Status", "UpRequest", "UpResult", "config_path", "container_name", "docker_login", "down", "gc", "logged_in", "state_dir",
    "status", "up",
]  # fmt: skip


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipper.provision.{home}"), name)
