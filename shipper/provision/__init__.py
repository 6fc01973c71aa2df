"""Provisioning: a registry of shipper's own on an inventory host (up, status, down, gc), split by idea:
its files (layout), users and TLS (credentials), the container, the engines' trust, the canary, gc."""

from shipper.provision.gc import GCResult, gc
from shipper.provision.layout import Mirror, UpRequest, config_path, container_name, state_dir
from shipper.provision.registry import Status, UpResult, down, status, up
from shipper.provision.trust import docker_login, logged_in

__all__ = [
    "GCResult", "Mirror", "Status", "UpRequest", "UpResult", "config_path", "container_name", "docker_login", "down", "gc", "logged_in", "state_dir",
    "status", "up",
]  # fmt: skip
