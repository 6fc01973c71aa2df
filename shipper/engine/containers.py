"""An engine's containers: the calls shipper makes for the containers it runs itself (a registry, a cache).

Part of ``Engine`` (client.py), kept apart by subject: docker-py's container API, with its errors turned into
shipper's by the engine's ``errors``.
"""

from __future__ import annotations

import contextlib
from types import ModuleType
from typing import Any, Protocol

from shipper.inventory.model import Host

EXEC_OUTPUT_LIMIT = 1 << 20  # the last MiB of a command's output run in a container


class EngineCalls(Protocol):
    """What these calls use of an ``Engine`` (client.py), which they are part of."""

    host: Host
    api_version: str

    @property
    def api(self) -> Any: ...

    def errors(self, action: str) -> contextlib.AbstractContextManager[None]: ...

    def _url(self, path: str, *args: str, version: str | None = None) -> str: ...


def docker_errors() -> ModuleType:
    import docker.errors  # loaded already by whoever called docker-py

    return docker.errors


class ContainerCalls:

    def container(self: "EngineCalls", name: str) -> dict[str, Any] | None:
        """``docker inspect`` of a container, or None."""
        with self.errors(f"inspect container {name}"):
            try:
                found: dict[str, Any] = self.api.inspect_container(name)
                return found
            except docker_errors().NotFound:
                return None

    def run_container(
        self: "EngineCalls", name: str, image: str, env: dict[str, str], binds: dict[str, str], labels: dict[str, str],
        restart: str = "always", network_mode: str = "host", command: list[str] | None = None,
        ports: dict[str, str] | None = None, healthcheck: dict[str, Any] | None = None,
    ) -> str:  # fmt: skip
        """Create and start a detached container; its ID. ``binds``: host path -> container path[:ro];
        ``ports``: "8080/tcp" -> host port (bridge networks only)."""
        with self.errors(f"run container {name}"):
            host_config = self.api.create_host_config(
                binds=[f"{source}:{target}" for source, target in binds.items()],
                restart_policy={"Name": restart} if restart != "no" else None, network_mode=network_mode,
                port_bindings={p: int(h) for p, h in (ports or {}).items()} or None,
            )  # fmt: skip
            created = self.api.create_container(
                image, name=name, environment=env, labels=labels, host_config=host_config, detach=True, command=command,
                ports=list((ports or {}).keys()) or None, healthcheck=healthcheck,
            )  # fmt: skip
            self.api.start(created["Id"])
            return str(created["Id"])

    def rename_container(self: "EngineCalls", name: str, new_name: str) -> None:
        with self.errors(f"rename container {name}"):
            self.api.rename(name, new_name)

    def stop_container(self: "EngineCalls", name: str) -> None:
        with self.errors(f"stop container {name}"):
            self.api.stop(name, timeout=10)

    def start_container(self: "EngineCalls", name: str) -> None:
        with self.errors(f"start container {name}"):
            self.api.start(name)

    def remove_container(self: "EngineCalls", name: str) -> None:
        with self.errors(f"remove container {name}"):
            try:
                self.api.remove_container(name, force=True)
            except docker_errors().NotFound:
                pass

    def exec(self: "EngineCalls", name: str, argv: list[str]) -> tuple[int, str]:
        """Run ``argv`` in a running container; exit status and output (stdout and stderr: the last MiB of it)."""
        with self.errors(f"run {argv[0]} in container {name}"):
            created = self.api.exec_create(name, argv, stdout=True, stderr=True)
            # Streamed and kept to its last EXEC_OUTPUT_LIMIT bytes: docker-py would join all of it in memory
            # (a registry's garbage collection names every blob it marks).
            output = bytearray()
            for piece in self.api.exec_start(created["Id"], stream=True):
                output += piece
                if len(output) > 2 * EXEC_OUTPUT_LIMIT:
                    del output[:-EXEC_OUTPUT_LIMIT]
            status = self.api.exec_inspect(created["Id"]).get("ExitCode")
        kept = bytes(output[-EXEC_OUTPUT_LIMIT:]).decode(errors="replace")
        return int(status) if isinstance(status, int) else -1, kept
