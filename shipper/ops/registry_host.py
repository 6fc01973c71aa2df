"""A private registry on an inventory host: up, status, down.

``up`` makes a host's engine run the registry container with htpasswd
(bcrypt) auth and TLS, configured through the registry's own environment
variables, its files kept on the host under ``/var/lib/shipper/registry-PORT``
(0600, written over SSH):

    auth/htpasswd            bcrypt entries only
    certs/ca.crt, ca.key     the CA shipper made (self-signed mode)
    certs/server.crt, .key   the server certificate (SANs: every name of the host)
    http-secret              stable, so uploads survive a restart
    data/                    the registry's storage (or --data PATH): outlives the container
    settings.json            what was applied, to tell "unchanged" from "changed"

Then it waits until the registry answers (401 with a challenge, then a login
that works: a registry that invented its own user fails this), installs the
CA on the engines that must trust it (``/etc/docker/certs.d/ADDR:PORT/ca.crt``)
and proves it with a canary image pushed from one engine and pulled on another.
A second ``up`` with the same settings changes nothing and says so.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import secrets
import shlex
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from shipper import htpasswd, pki
from shipper.engine import Engine, connect
from shipper.errors import RegistryAuthFailed, RegistryError, ShipperError, UsageError
from shipper.inventory.model import Host
from shipper.ops.fanout import for_each_host
from shipper.registry import Address, Credentials, RegistryClient
from shipper.transport.ssh import SSHSession

STATE_ROOT = "/var/lib/shipper"
LABEL = "io.shipper.registry"
CERTS_D = "/etc/docker/certs.d"
READY_TIMEOUT = 30.0
RENEW_BEFORE_DAYS = 30


def state_dir(port: int) -> str:
    return f"{STATE_ROOT}/registry-{port}"


def container_name(port: int) -> str:
    return f"shipper-registry-{port}"


@dataclass(frozen=True)
class UpRequest:
    host: Host
    users: dict[str, str] = field(repr=False)  # name -> password (from files or a prompt, never argv; never printed)
    port: int = 5000
    address: str | None = None  # where engines reach it (default: the host's SSH address)
    image: str = "registry:2"
    data: str | None = None  # host path for the storage (default: STATE/data)
    cert: tuple[str, str] | None = None  # (cert file, key file) here; None: self-signed
    ca: str | None = None  # CA of a given cert (default: the cert itself)
    trust: tuple[Host, ...] = ()
    login: bool = False  # also log the trusting engines' docker CLIs in (docker login, password on stdin)

    @property
    def registry_address(self) -> str:
        return f"{self.address or self.host.ssh.hostname}:{self.port}"

    def names(self) -> list[str]:
        """Every name and address the certificate must cover."""
        return list(dict.fromkeys(n for n in (self.address, self.host.ssh.hostname, self.host.name, "localhost") if n))


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


# -- the image -------------------------------------------------------------------------


def config_path(command: Sequence[str]) -> str:
    """Where the image keeps its config: the .yml argument of its command (registry:2 and :3 differ)."""
    for argument in command:
        if argument.endswith((".yml", ".yaml")):
            return argument
    raise UsageError(
        f"cannot tell where the registry image keeps its config (its command is {' '.join(command) or 'empty'})",
        hint="use a registry:2 or registry:3 image (or one built like them)",
    )


# -- files on the host ------------------------------------------------------------------


class _HostFiles:
    """The registry's files on its host: read, compared, written only when they change."""

    def __init__(self, session: SSHSession, root: str, check: bool = False) -> None:
        self.session, self.root, self.check = session, root, check
        self.changes: list[str] = []

    def read(self, name: str) -> bytes | None:
        return self.session.read_file(f"{self.root}/{name}")

    def put(self, name: str, data: bytes, why: str, mode: int = 0o600) -> None:
        if self.read(name) != data:
            if not self.check:
                self.session.write_file(f"{self.root}/{name}", data, mode)
            self.changes.append(why)


def _htpasswd(files: _HostFiles, users: dict[str, str]) -> bytes:
    """Keep the file when it already holds exactly these users with these passwords (bcrypt is salted)."""
    old = (files.read("auth/htpasswd") or b"").decode()
    names = [line.partition(":")[0] for line in old.splitlines() if line.strip()]
    if sorted(names) == sorted(users) and all(htpasswd.check(old, u, p) for u, p in users.items()):
        return old.encode()
    new = htpasswd.render(users).encode()
    files.put("auth/htpasswd", new, f"users: {', '.join(sorted(users))}")
    return new


def _tls(files: _HostFiles, request: UpRequest) -> tuple[bytes, bytes, bytes]:
    """(CA cert, server cert, server key): kept while they cover every name and are not about to expire."""
    if request.cert is not None:
        cert, key = Path(request.cert[0]).read_bytes(), Path(request.cert[1]).read_bytes()
        ca = Path(request.ca).read_bytes() if request.ca else cert
        files.put("certs/server.crt", cert, "the given certificate")
        files.put("certs/server.key", key, "the given key")
        files.put("certs/ca.crt", ca, "the given CA", mode=0o644)
        return ca, cert, key
    ca_cert, ca_key = files.read("certs/ca.crt"), files.read("certs/ca.key")
    if ca_cert is None or ca_key is None:
        authority = pki.new_ca(f"shipper registry CA ({request.host.name})")
        files.put("certs/ca.crt", authority.cert_pem, "a new CA", mode=0o644)
        files.put("certs/ca.key", authority.key_pem, "a new CA key")
    else:
        authority = pki.CertKey(ca_cert, ca_key)
    old_cert, old_key = files.read("certs/server.crt"), files.read("certs/server.key")
    if old_cert is not None and old_key is not None and set(request.names()) <= pki.san_names(old_cert):
        if pki.expires(old_cert).timestamp() - time.time() > RENEW_BEFORE_DAYS * 86400:
            return authority.cert_pem, old_cert, old_key
    issued = pki.issue(authority, f"shipper registry {request.registry_address}", request.names())
    files.put("certs/server.crt", issued.cert_pem, f"a server certificate for {', '.join(request.names())}", mode=0o644)
    files.put("certs/server.key", issued.key_pem, "a new server key")
    return authority.cert_pem, issued.cert_pem, issued.key_pem


# -- the container ----------------------------------------------------------------------


def _environment(request: UpRequest, secret: str, read_only: bool = False) -> dict[str, str]:
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
    return env


def _binds(request: UpRequest) -> dict[str, str]:
    root = state_dir(request.port)
    return {f"{root}/auth": "/auth:ro", f"{root}/certs": "/certs:ro", request.data or f"{root}/data": "/var/lib/registry"}


def _fingerprint(image_id: str, env: dict[str, str], binds: dict[str, str], files: Sequence[bytes]) -> str:
    """What the container is made of: equal fingerprints, nothing to change."""
    document = {"image": image_id, "env": env, "binds": binds, "files": [hashlib.sha256(f).hexdigest() for f in files]}
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _start(engine: Engine, request: UpRequest, image_id: str, env: dict[str, str], fingerprint: str, ready: Callable[[], None]) -> str:
    """Replace the registry container; if the new one does not come up, the previous one is started again."""
    name, previous = container_name(request.port), f"{container_name(request.port)}-previous"
    engine.remove_container(previous)
    had_one = engine.container(name) is not None
    if had_one:
        engine.stop_container(name)
        engine.rename_container(name, previous)
    labels = {LABEL: fingerprint, f"{LABEL}.port": str(request.port), f"{LABEL}.image": request.image}
    try:
        started = engine.run_container(name, image_id, env, _binds(request), labels)
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
def _client(request: UpRequest, ca: bytes, credentials: Credentials | None) -> Iterator[RegistryClient]:
    with tempfile.NamedTemporaryFile(prefix="shipper-ca-", suffix=".crt") as ca_file:
        ca_file.write(ca)
        ca_file.flush()
        with RegistryClient(Address(request.registry_address), credentials, ca_file=ca_file.name, timeout=10.0) as client:
            yield client


def _alive(engine: Engine, name: str) -> bool:
    """Running, and never restarted (under ``restart: always`` a crashing registry looks running between restarts)."""
    found = engine.container(name) or {}
    return bool(found.get("State", {}).get("Running")) and not found.get("RestartCount")


def _wait_ready(request: UpRequest, ca: bytes, user: str, password: str, alive: Callable[[], bool] = lambda: True) -> None:
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
            with _client(request, ca, None) as anonymous:
                try:
                    anonymous.ping()
                    open_to_all = True
                except RegistryAuthFailed:
                    open_to_all = False  # challenged, as it must be
            if open_to_all:
                raise RegistryError(f"the registry at {request.registry_address} answers without asking for a password", hint="its auth settings did not apply")
            with _client(request, ca, Credentials(user, password, "registry up")) as client:
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


# -- trust and the canary -------------------------------------------------------------------


def _trust(hosts: Sequence[Host], address: str, ca: bytes, check: bool = False) -> list[str]:
    """Make sure every engine host has the CA (over SSH); the hosts where it had to be (``check``: would be) installed."""

    def install(host: Host) -> bool:
        with SSHSession(host.ssh, host.name) as session:
            path = f"{CERTS_D}/{address}/ca.crt"
            if session.read_file(path) == ca:
                return False
            if not check:
                session.write_file(path, ca, 0o644)
            return True

    outcomes = for_each_host(list(hosts), install)
    for outcome in outcomes:
        if outcome.error is not None:
            raise outcome.error
    return [o.host.name for o in outcomes if o.value]


def logged_in(session: SSHSession, address: str) -> bool:
    """Whether the host's docker CLI config already holds credentials for ``address``."""
    config = session.run('cat "${DOCKER_CONFIG:-$HOME/.docker}/config.json" 2>/dev/null').stdout
    return f'"{address}"' in config.decode(errors="replace")


def docker_login(session: SSHSession, host: Host, address: str, user: str, password: str) -> None:
    """``docker login`` on the host, the password on stdin (never in argv)."""
    result = session.run(f"docker login --username {shlex.quote(user)} --password-stdin {shlex.quote(address)}", stdin=password.encode())
    if not result.ok:
        raise RegistryAuthFailed(f"docker login to {address} on {host.name} failed: {result.first_error_line()}")


def _login(hosts: Sequence[Host], address: str, user: str, password: str) -> None:
    def login(host: Host) -> None:
        with SSHSession(host.ssh, host.name) as session:
            docker_login(session, host, address, user, password)

    for outcome in for_each_host(list(hosts), login):
        if outcome.error is not None:
            raise outcome.error


def canary_archive(token: str) -> bytes:
    """A tiny image as a docker-save tar: one layer holding one file (``token``), made here."""
    layer_buffer = io.BytesIO()
    with tarfile.open(fileobj=layer_buffer, mode="w", format=tarfile.USTAR_FORMAT) as layer:
        data = f"shipper registry canary {token}\n".encode()
        info = tarfile.TarInfo("canary")
        info.size, info.mtime = len(data), 0
        layer.addfile(info, io.BytesIO(data))
    layer_bytes = layer_buffer.getvalue()
    diff_id = "sha256:" + hashlib.sha256(layer_bytes).hexdigest()
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": [diff_id]}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": ["canary/layer.tar"]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, blob in (("canary/layer.tar", layer_bytes), (config_name, config), ("manifest.json", manifest)):
            info = tarfile.TarInfo(name)
            info.size = len(blob)
            archive.addfile(info, io.BytesIO(blob))
    return out.getvalue()


def _canary(hosts: Sequence[Host], request: UpRequest, ca: bytes, user: str, password: str) -> str:
    """Push a canary from the first engine, pull it on the last; everything taken away again."""
    source, target = hosts[0], hosts[-1]
    token = secrets.token_hex(6)
    repository = f"{request.registry_address}/shipper-canary"
    auth = {"username": user, "password": password, "serveraddress": request.registry_address}
    with connect(source, timeout=None) as pusher, connect(target, timeout=None) as puller:
        image_id = next(iter(pusher.load([canary_archive(token)])), "")
        pusher.tag(image_id, f"{repository}:{token}")
        try:
            digest = pusher.push(repository, token, auth)
            puller.pull(repository, digest, auth)
            arrived = puller.inspect_image(f"{repository}@{digest}")
            if arrived is None or arrived.id != image_id:
                raise RegistryError(f"the canary pulled on {target.name} is not the one pushed from {source.name}")
        finally:
            for engine in {id(pusher): pusher, id(puller): puller}.values():
                try:
                    engine.remove_image(image_id)
                except ShipperError:
                    pass  # best effort: the canary is a few hundred bytes
        with _client(request, ca, Credentials(user, password)) as client:
            client.delete_manifest("shipper-canary", digest)
    return f"pushed from {source.name}, pulled on {target.name}"


# -- up ------------------------------------------------------------------------------------


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
        config_path(image.command)
        files = _HostFiles(session, state_dir(request.port), check)
        users_file = _htpasswd(files, request.users)
        ca, cert, key = _tls(files, request)
        secret = (files.read("http-secret") or b"").decode().strip() or secrets.token_hex(32)
        files.put("http-secret", secret.encode(), "a new HTTP secret")
        env = _environment(request, secret)
        fingerprint = _fingerprint(image.id, env, _binds(request), [users_file, cert, key])
        running = engine.container(container_name(request.port))
        if check:
            differs = running is None or running["Config"]["Labels"].get(LABEL) != fingerprint or not running["State"]["Running"]
            result.changes = files.changes + ([f"would run the registry container on {request.host.name}"] if differs else [])
            if request.trust:
                installed = _trust(request.trust, request.registry_address, ca, check=True)
                result.changes += [f"would install the CA on {', '.join(installed)}"] if installed else []
            return result
        user, password = next(iter(request.users.items()))
        if running is None or running["Config"]["Labels"].get(LABEL) != fingerprint or not running["State"]["Running"]:
            alive = lambda: _alive(engine, container_name(request.port))  # noqa: E731
            result.container = _start(engine, request, image.id, env, fingerprint, lambda: _wait_ready(request, ca, user, password, alive))
            result.changes = files.changes + ([] if running is None else ["the container, replaced (the stored images stay)"])
            if running is None:
                result.changes.append(f"a registry container on {request.host.name}")
        else:
            result.container = str(running["Id"])
            _wait_ready(request, ca, user, password)
    if request.trust:
        installed = _trust(request.trust, request.registry_address, ca)
        result.trusted = [h.name for h in request.trust]
        if installed:
            result.changes.append(f"CA installed on {', '.join(installed)}")
        if request.login:
            _login(request.trust, request.registry_address, user, password)
        result.canary = _canary(request.trust, request, ca, user, password)
    return result


# -- status, down ----------------------------------------------------------------------------


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

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))


def _du(session: SSHSession, path: str) -> int | None:
    result = session.run(f"du -sb {shlex.quote(path)}")
    try:
        return int(result.stdout.split()[0]) if result.ok else None
    except (IndexError, ValueError):
        return None


def _data_dir(container: dict[str, Any], port: int) -> str:
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
            found.storage_bytes = _du(session, _data_dir(container, port))
        cert = session.read_file(f"{state_dir(port)}/certs/server.crt")
        if cert is not None:
            found.tls_expires = pki.expires(cert).isoformat()
        users = session.read_file(f"{state_dir(port)}/auth/htpasswd")
        found.users = [line.partition(":")[0] for line in (users or b"").decode().splitlines() if line.strip()]
    return found


def down(host: Host, port: int, purge: bool = False) -> list[str]:
    """Stop and remove the registry container; ``purge``: its files and stored images too. What was done."""
    done = []
    with connect(host) as engine:
        if engine.container(container_name(port)) is not None:
            engine.remove_container(container_name(port))
            done.append(f"removed container {container_name(port)}")
    if purge:
        with SSHSession(host.ssh, host.name) as session:
            result = session.run(f"rm -rf --one-file-system {shlex.quote(state_dir(port))}")
            if not result.ok:
                raise ShipperError(f"cannot remove {state_dir(port)} on {host.name}: {result.first_error_line()}")
        done.append(f"removed {state_dir(port)} (configuration and stored images)")
    return done


# -- garbage collection -------------------------------------------------------------------------


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


def _recreate(engine: Engine, container: dict[str, Any], env: dict[str, str], port: int) -> None:
    binds = {}
    for bind in container["HostConfig"].get("Binds") or []:
        source, _, target = bind.partition(":")
        binds[source] = target
    engine.remove_container(container_name(port))
    engine.run_container(container_name(port), str(container["Image"]), env, binds, dict(container["Config"].get("Labels") or {}))


def _until_ready(client: RegistryClient) -> None:
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


def _index_manifests(client: RegistryClient) -> list[str]:
    from shipper.registry.client import INDEX_TYPES

    found = []
    for repository in client.catalog():
        for tag in client.tags(repository):
            head = client.manifest_head(repository, tag)
            if head is not None and head.media_type in INDEX_TYPES:
                found.append(f"{repository}:{tag}")
    return found


def _check_every_tag(client: RegistryClient) -> int:
    """Every tag still resolves, and its manifest's blobs are all there; how many tags."""
    checked = 0
    for repository in client.catalog():
        for tag in client.tags(repository):
            manifest = client.manifest(repository, tag)
            children = [client.manifest(repository, m.digest) for m in manifest.manifests] if manifest.is_index else [manifest]
            for child in children:
                for blob in [*child.layers, *([child.config] if child.config else [])]:
                    if client.blob_size(repository, blob.digest) is None:
                        raise RegistryError(f"after garbage collection, {repository}:{tag} lacks blob {blob.digest}")
            checked += 1
    return checked


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
        with _client(request, ca, credentials) as client:
            _until_ready(client)
            _, version_output = engine.exec(container_name(port), [command[0] if command else "/bin/registry", "--version"])
            version = version_output.split()[-1] if version_output.split() else "?"  # "2.8.2+ds1", "v3.0.0"
            if delete_untagged and version.lstrip("v").startswith("2."):
                indexes = _index_manifests(client)
                if indexes:
                    raise UsageError(
                        f"--delete-untagged is unsafe on registry {version}: it deletes the images of manifest lists and indexes ({', '.join(indexes[:3])})",
                        hint="run gc without --delete-untagged, or upgrade the registry to 3.x",
                    )
            data = _data_dir(container, port)
            before = _du(session, data)
            _recreate(engine, container, {**env, "REGISTRY_STORAGE_MAINTENANCE_READONLY": "{enabled: true}"}, port)
            try:
                _until_ready(client)
                result.read_only_proven = _refuses_uploads(client)
                if not result.read_only_proven:
                    raise RegistryError(f"the registry on {host.name} still takes uploads in read-only mode: garbage collection not started")
                argv = [command[0] if command else "/bin/registry", "garbage-collect", config]
                argv += ["--dry-run"] if dry_run else []
                argv += ["--delete-untagged"] if delete_untagged else []
                status, result.output = engine.exec(container_name(port), argv)
                if status != 0:
                    raise RegistryError(f"registry garbage-collect on {host.name} failed: {result.output.strip().splitlines()[-1:] or status}")
            finally:
                _recreate(engine, container, env, port)  # read-write again; a restart also drops the blob cache
            _until_ready(client)
            result.tags_checked = _check_every_tag(client)
            after = _du(session, data)
            result.reclaimed_bytes = None if before is None or after is None else before - after
    return result


def _refuses_uploads(client: RegistryClient) -> bool:
    try:
        client.upload_blob("shipper-gc-probe", "sha256:" + hashlib.sha256(b"probe").hexdigest(), 5, lambda _offset: iter([b"probe"]))
    except RegistryError as exc:
        return "UNSUPPORTED" in exc.message or "read-only" in exc.message.lower() or "405" in exc.message
    return False
