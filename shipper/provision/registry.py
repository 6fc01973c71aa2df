"""A private registry on an inventory host: up, status, down.

``up`` makes a host's engine run the registry container with htpasswd
(bcrypt) auth and TLS, configured through the registry's own environment
variables, its files kept on the host (layout.py). Then it waits until the
registry answers (401 with a challenge, then a login that works: a registry
that invented its own user fails this), installs the CA on the engines that
must trust it and proves it with a canary image pushed from one engine and
pulled on another. A second ``up`` with the same settings changes nothing and
says so.
"""

from __future__ import annotations

import secrets
import shlex
from dataclasses import dataclass, field
from typing import Any

from shipper import pki
from shipper.archive.boot import HOST_PYTHON
from shipper.engine import connect
from shipper.errors import ShipperError, UsageError
from shipper.inventory.model import Host
from shipper.provision.canary import canary
from shipper.provision.container import (
    container_alive, container_binds, container_environment, container_fingerprint, proxy_config, start_container, wait_ready,
)  # fmt: skip
from shipper.provision.credentials import htpasswd_file, tls_material
from shipper.provision.layout import LABEL, HostFiles, UpRequest, config_path, container_name, state_dir
from shipper.provision.trust import login_everywhere, trust
from shipper.registry import kept_cas
from shipper.transport.ssh import SSHSession


@dataclass
class UpResult:
    address: str
    changes: list[str] = field(default_factory=list)  # what this run changed ([] : nothing)
    trusted: list[str] = field(default_factory=list)  # hosts whose engines trust the CA (checked on each)
    canary: str = ""  # "pushed from a, pulled on b"
    container: str = ""

    @property
    def changed(self) -> bool:
        return bool(self.changes)

    def to_json(self) -> dict[str, Any]:
        return {"address": self.address, "changed": self.changed, "changes": self.changes, "trusted": self.trusted, "canary": self.canary}


def up(request: UpRequest, check: bool = False) -> UpResult:
    """Bring the registry to ``request``; ``check``: only say what would change (nothing is written or started)."""
    if not request.users:
        raise UsageError("registry up needs at least one user", hint="give --user NAME --password-file FILE")
    result = UpResult(request.registry_address)
    with connect(request.host) as engine, SSHSession(request.host.ssh, request.host.name) as session:
        image = engine.inspect_image(request.image)
        if image is None:
            raise UsageError(
                f"image {request.image} is not on {request.host.name}",
                hint=f"bring it there first (shipper move {request.image} --from HOST --to {request.host.name}, or a bundle)",
            )
        configured_at = config_path(image.command)
        if request.mirror_of is not None and not check:
            _check_upstream(session, request)
        files = HostFiles(session, state_dir(request.port), check)
        users_file = htpasswd_file(files, request.users)
        ca, cert, key = tls_material(files, request)
        secret = (files.read("http-secret") or b"").decode().strip() or secrets.token_hex(32)
        files.put("http-secret", secret.encode(), "a new HTTP secret")
        extra = []
        if request.mirror_of is not None:
            extra.append(proxy_config(request))
            files.put("proxy/config.yml", extra[0], f"a cache of {request.mirror_of.url}")
            if request.mirror_of.ca is not None:
                files.put("certs/upstream-ca.crt", request.mirror_of.ca, "the upstream's CA", mode=0o644)
                extra.append(request.mirror_of.ca)
        env = container_environment(request, secret)
        binds = container_binds(request, configured_at)
        fingerprint = container_fingerprint(image.id, env, binds, [users_file, cert, key, *extra])
        running = engine.container(container_name(request.port))
        if check:
            differs = running is None or running["Config"]["Labels"].get(LABEL) != fingerprint or not running["State"]["Running"]
            result.changes = files.changes + ([f"would run the registry container on {request.host.name}"] if differs else [])
            if request.trust:
                installed = trust(request.trust, request.registry_address, ca, check=True)
                result.changes += [f"would install the CA on {', '.join(installed)}"] if installed else []
            if any(kept_cas.keep(address, ca, check=True) for address in request.addresses_from_here()):
                result.changes.append("would keep the CA on this machine, for shipper's own requests")
            return result
        user, password = next(iter(request.users.items()))
        if running is None or running["Config"]["Labels"].get(LABEL) != fingerprint or not running["State"]["Running"]:
            alive = lambda: container_alive(engine, container_name(request.port))  # noqa: E731
            result.container = start_container(engine, request, image.id, env, fingerprint, lambda: wait_ready(request, ca, user, password, alive), binds)
            result.changes = files.changes + ([] if running is None else ["the container, replaced (the stored images stay)"])
            if running is None:
                result.changes.append(f"a registry container on {request.host.name}")
        else:
            result.container = str(running["Id"])
            wait_ready(request, ca, user, password)
    kept = [address for address in request.addresses_from_here() if kept_cas.keep(address, ca)]  # this machine is often no engine host
    if kept:
        result.changes.append(f"CA kept on this machine for shipper's own requests to {', '.join(kept)} (in {kept_cas.kept_cas_dir()})")
    if request.trust:
        installed = trust(request.trust, request.registry_address, ca)
        result.trusted = [h.name for h in request.trust]
        if installed:
            result.changes.append(f"CA installed on {', '.join(installed)}")
        if request.login:
            login_everywhere(request.trust, request.registry_address, user, password)
        if request.mirror_of is None:  # a cache takes no pushes: it fills itself from its upstream
            result.canary = canary(request.trust, request, ca, user, password)
    return result


@dataclass
class Status:
    host: str
    port: int
    container: str = ""  # running, exited, … or "" when there is none
    image: str = ""
    address: str = ""
    tls_expires: str = ""
    users: list[str] = field(default_factory=list)
    storage_bytes: int | None = None
    mirror_of: str = ""  # a site cache's upstream
    upstream: str = ""  # what the cache's host got from it: "reachable (HTTP 401)", or why not

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def du(session: SSHSession, path: str) -> int | None:
    """Bytes under ``path``. A live registry's uploads come and go while du walks: du then says so and fails
    (status 1), but still prints its total, which is what is asked for."""
    result = session.run(f"du -sb {shlex.quote(path)}")
    try:
        return int(result.stdout.split()[0])
    except (IndexError, ValueError):
        return None


def data_dir(container: dict[str, Any], port: int) -> str:
    for bind in container["HostConfig"].get("Binds") or []:
        source, _, target = bind.partition(":")
        if target.split(":")[0] == "/var/lib/registry":
            return source
    return f"{state_dir(port)}/data"


def status(host: Host, port: int) -> Status:
    found = Status(host.name, port)
    with connect(host) as engine, SSHSession(host.ssh, host.name) as session:
        container = engine.container(container_name(port))
        if container is not None:
            env = dict(e.split("=", 1) for e in container["Config"].get("Env") or [] if "=" in e)
            found.container = str(container["State"]["Status"])
            found.image = str((container["Config"].get("Labels") or {}).get(f"{LABEL}.image") or container["Config"]["Image"])
            found.address = env.get("REGISTRY_HTTP_ADDR", "")
            found.storage_bytes = du(session, data_dir(container, port))
            found.mirror_of = env.get("REGISTRY_PROXY_REMOTEURL", "")
            if found.mirror_of:
                found.upstream = reach_upstream(session, found.mirror_of, f"{state_dir(port)}/certs/upstream-ca.crt")
        cert = session.read_file(f"{state_dir(port)}/certs/server.crt")
        if cert is not None:
            found.tls_expires = pki.expires(cert).isoformat()
        users = session.read_file(f"{state_dir(port)}/auth/htpasswd")
        found.users = [line.partition(":")[0] for line in (users or b"").decode().splitlines() if line.strip()]
    return found


_REACH = """
import ssl, sys, urllib.error, urllib.request
url, ca = sys.argv[1], sys.argv[2]
try:
    context = ssl.create_default_context(cafile=ca if __import__("os").path.exists(ca) else None)
    urllib.request.urlopen(url + "/v2/", timeout=10, context=context)
    print("reachable (HTTP 200)")
except urllib.error.HTTPError as exc:
    scheme = (exc.headers.get("WWW-Authenticate") or "").split(" ")[0]
    print(f"reachable (HTTP {exc.code}, {scheme or 'no challenge'})" if exc.code == 401 else f"answers HTTP {exc.code}")
except Exception as exc:
    print(f"unreachable: {str(getattr(exc, 'reason', exc))[:200]}")
"""


def _check_upstream(session: SSHSession, request: UpRequest) -> None:
    """Refuse a cache that could never log in to its upstream: distribution 2.x's proxy mode speaks only Bearer
    tokens to an upstream (distribution/distribution#3153), so one that asks for Basic auth (htpasswd, as
    ``registry up`` makes them) refuses every pull the cache passes on. Checked from the cache's host."""
    assert request.mirror_of is not None
    if request.mirror_of.ca is not None:
        session.write_file(f"{state_dir(request.port)}/certs/upstream-ca.crt", request.mirror_of.ca, 0o644)
    said = reach_upstream(session, request.mirror_of.url, f"{state_dir(request.port)}/certs/upstream-ca.crt")
    if request.mirror_of.username and ", Basic)" in said:
        raise UsageError(
            f"{request.mirror_of.url} asks for Basic auth, which a registry cache cannot give it (distribution's proxy mode "
            "logs in to its upstream with Bearer tokens only: distribution/distribution#3153)",
            hint="give the upstream token auth (REGISTRY_AUTH=token and a token service), or cache an upstream the site may read without a login",
        )


def reach_upstream(session: SSHSession, url: str, ca: str) -> str:
    """Whether a cache's host reaches its upstream (TLS checked with the upstream's CA where one was given): the
    host's own network, not this machine's. Needs python3 there, as resumable moves do."""
    result = session.run(f"{HOST_PYTHON} -c {shlex.quote(_REACH)} {shlex.quote(url)} {shlex.quote(ca)}", timeout=30)
    said = result.stdout.decode(errors="replace").strip()
    return said if result.ok and said else f"not checked: {result.first_error_line() or 'no python3 on the host'}"


def down(host: Host, port: int, purge: bool = False) -> list[str]:
    """Stop and remove the registry container; ``purge``: its files and stored images too. What was done."""
    done = []
    with connect(host) as engine:
        if engine.container(container_name(port)) is not None:
            engine.remove_container(container_name(port))
            done.append(f"removed container {container_name(port)}")
    if purge:
        with SSHSession(host.ssh, host.name) as session:
            ca = session.read_file(f"{state_dir(port)}/certs/ca.crt")
            result = session.run(f"rm -rf --one-file-system {shlex.quote(state_dir(port))}")
            if not result.ok:
                raise ShipperError(f"cannot remove {state_dir(port)} on {host.name}: {result.first_error_line()}")
        done.append(f"removed {state_dir(port)} (configuration and stored images)")
        forgotten = kept_cas.forget(port, ca) if ca else []
        if forgotten:
            done.append(f"forgot its CA on this machine ({', '.join(forgotten)})")
    return done
