"""Garbage collection, safely: read-only (proven), ``registry garbage-collect``, read-write again, every tag checked."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from shipper.engine import connect
from shipper.errors import RegistryError, RegistryNotFound, UsageError
from shipper.inventory.model import Host
from shipper.provision.container import registry_client, recreate, until_ready
from shipper.provision.layout import UpRequest, config_path, container_name, state_dir
from shipper.provision.registry import data_dir, du
from shipper.registry import Credentials, RegistryClient
from shipper.registry.manifest import INDEX_TYPES
from shipper.transport.ssh import SSHSession


@dataclass
class GCResult:
    dry_run: bool
    read_only_proven: bool = False
    output: str = ""
    reclaimed_bytes: int | None = None
    tags_checked: int = 0

    @property
    def eligible_blobs(self) -> int:
        """Blobs the collector deleted (or, in a dry run, would delete)."""
        return sum(1 for line in self.output.splitlines() if "blob eligible for deletion" in line)

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in vars(self).items() if k != "output"} | {"eligible_blobs": self.eligible_blobs, "collector": self.output.splitlines()[-20:]}


def index_manifests(client: RegistryClient) -> list[str]:
    found = []
    for repository in client.catalog():
        for tag in client.tags(repository):
            head = client.manifest_head(repository, tag)
            if head is not None and head.media_type in INDEX_TYPES:
                found.append(f"{repository}:{tag}")
    return found


def check_every_tag(client: RegistryClient) -> int:
    """Every tag still resolves, and its manifest's blobs are all there; how many tags."""
    checked = 0
    for repository in client.catalog():
        for tag in _tags(client, repository):
            manifest = client.manifest(repository, tag)
            children = [client.manifest(repository, m.digest) for m in manifest.manifests] if manifest.is_index else [manifest]
            for child in children:
                for blob in [*child.layers, *([child.config] if child.config else [])]:
                    if client.blob_size(repository, blob.digest) is None:
                        raise RegistryError(f"after garbage collection, {repository}:{tag} lacks blob {blob.digest}")
            checked += 1
    return checked


def _tags(client: RegistryClient, repository: str) -> list[str]:
    """The repository's tags; none where the registry knows it by its blobs alone (NAME_UNKNOWN for its tags): a
    push cut short, or refused while the registry was read-only, before its manifest went in."""
    try:
        return list(client.tags(repository))
    except RegistryNotFound:
        return []


def gc(host: Host, port: int, credentials: Credentials, dry_run: bool = False, delete_untagged: bool = False) -> GCResult:
    """Read-only (proven), ``registry garbage-collect``, read-write again, every tag checked, bytes reclaimed."""
    result = GCResult(dry_run)
    with connect(host, timeout=None) as engine, SSHSession(host.ssh, host.name) as session:
        container = engine.container(container_name(port))
        if container is None:
            raise UsageError(f"no shipper registry on {host.name} port {port}", hint=f"shipper registry up {host.name} --port {port}")
        env = dict(e.split("=", 1) for e in container["Config"].get("Env") or [] if "=" in e)
        image = engine.inspect_image(str(container["Image"]))
        command = image.command if image is not None else ()
        config = config_path(command)
        ca = session.read_file(f"{state_dir(port)}/certs/ca.crt") or b""
        address = env.get("REGISTRY_HTTP_ADDR", "").replace("0.0.0.0", host.ssh.hostname)
        request = UpRequest(host, {}, port=port, address=address.rsplit(":", 1)[0])
        with registry_client(request, ca, credentials) as client:
            until_ready(client)
            _, version_output = engine.exec(container_name(port), [command[0] if command else "/bin/registry", "--version"])
            version = version_output.split()[-1] if version_output.split() else "?"  # "2.8.2+ds1", "v3.0.0"
            if delete_untagged and version.lstrip("v").startswith("2."):
                indexes = index_manifests(client)
                if indexes:
                    raise UsageError(
                        f"--delete-untagged is unsafe on registry {version}: it deletes the images of manifest lists and indexes ({', '.join(indexes[:3])})",
                        hint="run gc without --delete-untagged, or upgrade the registry to 3.x",
                    )
            data = data_dir(container, port)
            before = du(session, data)
            recreate(engine, container, {**env, "REGISTRY_STORAGE_MAINTENANCE_READONLY": "{enabled: true}"}, port)
            try:
                until_ready(client)
                result.read_only_proven = refuses_uploads(client)
                if not result.read_only_proven:
                    raise RegistryError(f"the registry on {host.name} still takes uploads in read-only mode: garbage collection not started")
                argv = [command[0] if command else "/bin/registry", "garbage-collect", config]
                argv += ["--dry-run"] if dry_run else []
                argv += ["--delete-untagged"] if delete_untagged else []
                status, result.output = engine.exec(container_name(port), argv)
                if status != 0:
                    raise RegistryError(f"registry garbage-collect on {host.name} failed: {result.output.strip().splitlines()[-1:] or status}")
            finally:
                recreate(engine, container, env, port)  # read-write again; a restart also drops the blob cache
            until_ready(client)
            result.tags_checked = check_every_tag(client)
            after = du(session, data)
            result.reclaimed_bytes = None if before is None or after is None else before - after
    return result


def refuses_uploads(client: RegistryClient) -> bool:
    try:
        client.upload_blob("shipper-gc-probe", "sha256:" + hashlib.sha256(b"probe").hexdigest(), 5, lambda _offset: iter([b"probe"]))
    except RegistryError as exc:
        return "UNSUPPORTED" in exc.message or "read-only" in exc.message.lower() or "405" in exc.message
    return False
