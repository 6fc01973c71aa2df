"""The registry container: configured only through the registry's own variables, replaced safely, awaited."""

from __future__ import annotations

import contextlib
import hashlib
import json
import tempfile
import time
from typing import Any, Callable, Iterator, Sequence

from shipper.engine import Engine
from shipper.errors import RegistryAuthFailed, RegistryError, ShipperError
from shipper.provision.layout import LABEL, READY_TIMEOUT, UpRequest, container_name, state_dir
from shipper.registry import Address, Credentials, RegistryClient


def container_environment(request: UpRequest, secret: str, read_only: bool = False) -> dict[str, str]:
    env = {
        "REGISTRY_AUTH": "htpasswd",
        "REGISTRY_AUTH_HTPASSWD_REALM": f"shipper registry {request.registry_address}",
        "REGISTRY_AUTH_HTPASSWD_PATH": "/auth/htpasswd",
        "REGISTRY_HTTP_ADDR": f"{request.address or '0.0.0.0'}:{request.port}",
        "REGISTRY_HTTP_TLS_CERTIFICATE": "/certs/server.crt",
        "REGISTRY_HTTP_TLS_KEY": "/certs/server.key",
        "REGISTRY_HTTP_SECRET": secret,
        "REGISTRY_STORAGE_DELETE_ENABLED": "true",
        "REGISTRY_STORAGE_FILESYSTEM_ROOTDIRECTORY": "/var/lib/registry",
    }
    if read_only:
        env["REGISTRY_STORAGE_MAINTENANCE_READONLY"] = "{enabled: true}"
    if request.mirror_of is not None:
        # The upstream's address only: its login is in proxy/config.yml (0600), never in the environment, which
        # docker inspect shows to anyone who may talk to the engine.
        env["REGISTRY_PROXY_REMOTEURL"] = request.mirror_of.url
        if request.mirror_of.ca is not None:
            env["SSL_CERT_FILE"] = "/certs/upstream-ca.crt"
    return env


def container_binds(request: UpRequest, config_path: str = "") -> dict[str, str]:
    """Host path -> container path. A cache's config file goes over the image's own (``config_path``)."""
    root = state_dir(request.port)
    binds = {f"{root}/auth": "/auth:ro", f"{root}/certs": "/certs:ro", request.data or f"{root}/data": "/var/lib/registry"}
    if request.mirror_of is not None and config_path:
        binds[f"{root}/proxy/config.yml"] = f"{config_path}:ro"
    return binds


def proxy_config(request: UpRequest) -> bytes:
    """A site cache's whole config file (the environment sets the rest): storage, and its upstream with the login."""
    assert request.mirror_of is not None
    proxy: dict[str, str] = {"remoteurl": request.mirror_of.url}
    if request.mirror_of.username:
        proxy["username"] = request.mirror_of.username
        proxy["password"] = request.mirror_of.password or ""
    document = {"version": "0.1", "storage": {"filesystem": {"rootdirectory": "/var/lib/registry"}}, "http": {"addr": ":5000"}, "proxy": proxy}
    return json.dumps(document, indent=1).encode() + b"\n"  # JSON is YAML: no quoting surprises in a password


def container_fingerprint(image_id: str, env: dict[str, str], binds: dict[str, str], files: Sequence[bytes]) -> str:
    """What the container is made of: equal fingerprints, nothing to change."""
    document = {"image": image_id, "env": env, "binds": binds, "files": [hashlib.sha256(f).hexdigest() for f in files]}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def start_container(
    engine: Engine, request: UpRequest, image_id: str, env: dict[str, str], fingerprint: str, ready: Callable[[], None], binds: dict[str, str],
) -> str:  # fmt: skip
    """Replace the registry container; if the new one does not come up, the previous one is started again."""
    name, previous = container_name(request.port), f"{container_name(request.port)}-previous"
    engine.remove_container(previous)
    had_one = engine.container(name) is not None
    if had_one:
        engine.stop_container(name)
        engine.rename_container(name, previous)
    labels = {LABEL: fingerprint, f"{LABEL}.port": str(request.port), f"{LABEL}.image": request.image}
    try:
        started = engine.run_container(name, image_id, env, binds, labels)
        ready()
    except ShipperError as exc:
        engine.remove_container(name)
        if had_one:
            engine.rename_container(previous, name)
            engine.start_container(name)
            raise ShipperError(f"the new registry container on {request.host.name} did not come up: {exc.message}; the previous one runs again", hint=exc.hint) from None
        raise
    engine.remove_container(previous)
    return started


@contextlib.contextmanager
def registry_client(request: UpRequest, ca: bytes, credentials: Credentials | None) -> Iterator[RegistryClient]:
    with tempfile.NamedTemporaryFile(prefix="shipper-ca-", suffix=".crt") as ca_file:
        ca_file.write(ca)
        ca_file.flush()
        with RegistryClient(Address(request.registry_address), credentials, ca_file=ca_file.name, timeout=10.0) as client:
            yield client


def container_alive(engine: Engine, name: str) -> bool:
    """Running, and never restarted (under ``restart: always`` a crashing registry looks running between restarts)."""
    found = engine.container(name) or {}
    return bool(found.get("State", {}).get("Running")) and not found.get("RestartCount")


def wait_ready(request: UpRequest, ca: bytes, user: str, password: str, alive: Callable[[], bool] = lambda: True) -> None:
    """Until ``/v2/`` challenges (401) and our user logs in; ``alive``: the container still runs."""
    deadline = time.monotonic() + READY_TIMEOUT
    last: ShipperError | None = None
    while time.monotonic() < deadline:
        if not alive():
            raise RegistryError(
                f"the registry container on {request.host.name} exited instead of serving",
                hint=f"see why: docker logs {container_name(request.port)} (is {request.image} a registry image?)",
            )
        try:
            with registry_client(request, ca, None) as anonymous:
                try:
                    anonymous.ping()
                    open_to_all = True
                except RegistryAuthFailed:
                    open_to_all = False  # challenged, as it must be
            if open_to_all:
                raise RegistryError(f"the registry at {request.registry_address} answers without asking for a password", hint="its auth settings did not apply")
            with registry_client(request, ca, Credentials(user, password, "registry up")) as client:
                client.ping()
            return
        except RegistryAuthFailed as exc:
            raise RegistryAuthFailed(
                f"the registry at {request.registry_address} refuses the user shipper configured ({exc.message})",
                hint="it may have made an htpasswd of its own: check the auth/ mount and REGISTRY_AUTH_HTPASSWD_PATH",
            ) from None
        except RegistryError:
            raise
        except ShipperError as exc:
            last = exc
            time.sleep(0.3)
    raise RegistryError(f"the registry at {request.registry_address} did not come up within {READY_TIMEOUT:.0f} s: {last.message if last else ''}")


def recreate(engine: Engine, container: dict[str, Any], env: dict[str, str], port: int) -> None:
    binds = {}
    for bind in container["HostConfig"].get("Binds") or []:
        source, _, target = bind.partition(":")
        binds[source] = target
    engine.remove_container(container_name(port))
    engine.run_container(container_name(port), str(container["Image"]), env, binds, dict(container["Config"].get("Labels") or {}))


def until_ready(client: RegistryClient) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        try:
            client.ping()
            return
        except RegistryAuthFailed:
            raise
        except ShipperError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.3)
