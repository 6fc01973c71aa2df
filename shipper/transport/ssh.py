"""SSH connections to inventory hosts, strict about host keys.

shipper resolves every setting itself (``inventory.resolve``) and hands the
result to paramiko's client, with the host-key policy the user asked for
(``StrictHostKeyChecking``: yes by default), never paramiko's or Fabric's
``AutoAddPolicy``. The session is paramiko's ``SSHClient`` itself, not a Fabric
``Connection``: its per-connection configuration cost 5.8M instructions a
host (a third of a ``ping``), and importing it brought Invoke, a tenth of every
command's start-up, for nothing shipper uses (commands and bytes go over raw
channels, see ``run``).
"""

from __future__ import annotations

import os
import secrets
import shlex
import socket
import threading
from dataclasses import dataclass
from typing import Any

import paramiko

from shipper.errors import HostKeyMismatch, HostKeyUnknown, SSHAuthenticationFailed, SSHError
from shipper.inventory.model import SSHSettings
from shipper.transport.gateway import Gateway, gateway_command, open_gateway

AUTH_TIMEOUT = 20.0  # seconds for the server's banner and for authentication

# AES-GCM first: authenticated encryption in one pass of OpenSSL, where paramiko's default (aes128-ctr with
# hmac-sha2-256) adds a Python HMAC object and a byte-by-byte comparison to every packet. A server without it
# (OpenSSH before 6.2) still agrees on the rest of paramiko's list.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")

KNOWN_HOSTS_KEPT = 16  # sets of known_hosts files (and versions) kept parsed
_known_hosts_lock = threading.Lock()
_known_hosts_parsed: dict[tuple[tuple[str, int, int], ...], paramiko.HostKeys] = {}


@dataclass(frozen=True)
class CommandResult:
    """What a remote command left behind."""

    exit_status: int
    stdout: bytes
    stderr: bytes

    @property
    def ok(self) -> bool:
        return self.exit_status == 0

    def first_error_line(self) -> str:
        """The first non-empty line of stderr (or stdout), for messages."""
        for stream in (self.stderr, self.stdout):
            for line in stream.decode(errors="replace").splitlines():
                if line.strip():
                    return line.strip()
        return f"exit status {self.exit_status}"


class _StrictPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown host keys, with the fingerprint in the error."""

    def __init__(self, where: str, settings: SSHSettings) -> None:
        self.where, self.settings = where, settings

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        files = ", ".join(f for f in self.settings.known_hosts_files if os.path.exists(f)) or "none found"
        port = f" -p {self.settings.port}" if self.settings.port != 22 else ""
        raise HostKeyUnknown(
            f"cannot connect to {self.where}: its host key ({key.get_name()} {key.fingerprint}) "
            f"is not in known_hosts ({files})",
            hint=f"check the fingerprint with the host's owner, then add it: ssh-keyscan{port} "
            f"{self.settings.hostname} >> ~/.ssh/known_hosts (or set ssh_strict_host_key_checking: accept-new)",
        )


class _AcceptNewPolicy(paramiko.MissingHostKeyPolicy):
    """OpenSSH's ``accept-new``: trust a host seen for the first time and remember it."""

    def __init__(self, known_hosts: str | None) -> None:
        self.known_hosts = known_hosts

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        client.get_host_keys().add(hostname, key.get_name(), key)
        if self.known_hosts:
            os.makedirs(os.path.dirname(self.known_hosts) or ".", mode=0o700, exist_ok=True)
            with open(self.known_hosts, "a", encoding="ascii") as out:
                out.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")


def _policy(settings: SSHSettings, where: str) -> paramiko.MissingHostKeyPolicy:
    if settings.strict_host_key_checking == "no":
        return _AcceptNewPolicy(None)
    if settings.strict_host_key_checking == "accept-new":
        user_files = [f for f in settings.known_hosts_files if not f.startswith("/etc/")]
        return _AcceptNewPolicy(user_files[0] if user_files else None)
    return _StrictPolicy(where, settings)


def watch_for_silence(transport: paramiko.Transport | None, settings: SSHSettings) -> None:
    """A peer gone silent (a dropped link) ends the session after about ``settings.dead_after`` seconds, as OpenSSH's
    ServerAliveInterval/CountMax end its own, instead of a read that waits for ever: paramiko sends a keepalive after
    ``alive_interval`` seconds without traffic, and the kernel gives up on data unacknowledged for ``dead_after``
    (TCP_USER_TIMEOUT; TCP keepalives for an idle connection). Not for a session through a ProxyCommand or a jump
    host (no socket of ours): there the outer hop's own settings apply."""
    if transport is None or settings.alive_interval <= 0:
        return
    transport.set_keepalive(settings.alive_interval)
    sock = transport.sock
    if not isinstance(sock, socket.socket) or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, settings.alive_interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, settings.alive_interval)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, settings.alive_count)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, settings.dead_after * 1000)
    except (OSError, AttributeError):  # not Linux: paramiko's keepalive alone
        pass


def known_host_keys(paths: tuple[str, ...] | list[str]) -> paramiko.HostKeys:
    """The keys of the known_hosts files in ``paths`` (those that exist), parsed once per process and version of
    the files: every session of a fleet shares them, read-only. Each used to parse every file again, which cost
    about 1 ms a host with a dozen lines and grows with the file (a user's known_hosts of thousands)."""
    versions = []
    for path in paths:
        if not os.path.isfile(path):
            continue
        stat = os.stat(path)
        versions.append((path, stat.st_mtime_ns, stat.st_size))
    key = tuple(versions)
    with _known_hosts_lock:
        keys = _known_hosts_parsed.get(key)
        if keys is None:
            keys = paramiko.HostKeys()
            for path, _, _ in versions:
                keys.load(path)
            # Hosts may name different files (a site's own known_hosts): a few sets are kept; a file that changed
            # leaves its old version behind, dropped once KNOWN_HOSTS_KEPT newer ones came.
            _known_hosts_parsed[key] = keys
            while len(_known_hosts_parsed) > KNOWN_HOSTS_KEPT:
                del _known_hosts_parsed[next(iter(_known_hosts_parsed))]
        return keys


def _tcp_connection(host: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection to the host's sshd with Nagle's algorithm off. paramiko leaves it on, and an SSH
    exchange that writes twice before it reads (a channel's open, then its request; a request written in two
    packets) then waits for the server's delayed ACK: 40 ms a time on Linux. Opening a channel and running a
    command took 50 ms on the lab's hosts with it on, 14 ms with it off."""
    connection = socket.create_connection((host, port), timeout=timeout)
    connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return connection


def known_host_lines(settings: SSHSettings) -> str:
    """The host's keys as its known_hosts files hold them, as known_hosts lines for its address; "" where they hold
    none or the host's keys are not checked strictly (a key learnt on connecting is known only after connecting)."""
    if settings.strict_host_key_checking != "yes":
        return ""
    pattern = settings.hostname if settings.port == 22 else f"[{settings.hostname}]:{settings.port}"
    keys = known_host_keys(settings.known_hosts_files).lookup(pattern)
    return "".join(f"{pattern} {key.get_name()} {key.get_base64()}\n" for key in (keys or {}).values())


def _transport(sock: Any, **kwargs: Any) -> paramiko.Transport:
    """paramiko's transport, AES-GCM first (see PREFERRED_CIPHERS)."""
    transport = paramiko.Transport(sock, **kwargs)
    options = transport.get_security_options()
    options.ciphers = PREFERRED_CIPHERS + tuple(c for c in options.ciphers if c not in PREFERRED_CIPHERS)
    return transport


class SSHSession:
    """One SSH connection to one host. Open it with ``open()`` or ``with``."""

    def __init__(self, settings: SSHSettings, host_name: str | None = None) -> None:
        self.settings = settings
        self.where = f"host {host_name} over SSH ({settings.destination})" if host_name else settings.destination
        self._client: paramiko.SSHClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> paramiko.SSHClient:
        """The connected paramiko client (connecting first if needed)."""
        self.open()
        assert self._client is not None
        return self._client

    def _connected(self) -> bool:
        transport = self._client.get_transport() if self._client is not None else None
        return transport is not None and transport.is_active()

    @property
    def connected(self) -> bool:
        """The session is up, as far as this end knows (a dropped link is noticed within ServerAlive's time)."""
        return self._connected()

    def open(self) -> "SSHSession":
        """Connect, if not connected already. Raises an ``SSHError`` subclass."""
        with self._lock:
            if self._connected():
                return self
            if self._client is not None:
                self._client.close()
            self._client = client = self._new_client()
            gateway: Gateway | None = None
            try:
                arguments = self._connect_arguments()
                gateway = arguments["sock"] if isinstance(arguments.get("sock"), Gateway) else None
                client.connect(**arguments)
            except BaseException as exc:
                said = gateway.said() if gateway is not None else ""
                client.close()
                if gateway is not None:
                    gateway.close()
                self._client = None
                raise (self._gateway_failed(said) if said else self._wrap(exc)) from None
            watch_for_silence(client.get_transport(), self.settings)
            return self

    def _new_client(self) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        client.set_missing_host_key_policy(_policy(self.settings, self.where))
        # paramiko has no setter; its client only reads these (keys it learns go to its own _host_keys).
        client._system_host_keys = known_host_keys(self.settings.known_hosts_files)  # type: ignore[attr-defined]
        return client

    def _connect_arguments(self) -> dict[str, Any]:
        s = self.settings
        arguments: dict[str, Any] = {
            "hostname": s.hostname,
            "port": s.port,
            "username": s.user,
            "timeout": s.connect_timeout,
            "allow_agent": True,
            # Like OpenSSH: the default key files are tried only when none is configured.
            "look_for_keys": not s.identity_files,
            "banner_timeout": AUTH_TIMEOUT,
            "auth_timeout": AUTH_TIMEOUT,
            "transport_factory": _transport,
        }
        if s.identity_files:
            arguments["key_filename"] = [f for f in s.identity_files if os.path.exists(f)] or list(s.identity_files)
        gateway = gateway_command(s)
        arguments["sock"] = open_gateway(gateway, s) if gateway else _tcp_connection(s.hostname, s.port, s.connect_timeout)
        return arguments

    def _gateway_failed(self, said: str) -> SSHError:
        s = self.settings
        via = f"ProxyJump {s.proxy_jump}" if s.proxy_jump and not s.proxy_command else f"ProxyCommand {s.proxy_command}"
        return SSHError(
            f"cannot connect to {self.where} through its gateway ({via[:200]}): {said}",
            hint="the gateway failed before the host was reached: fix its entry in ssh_config (or the inventory's "
            "ssh_config_file), or try it by hand with ssh -v",
        )

    def _wrap(self, exc: BaseException) -> BaseException:
        s = self.settings
        if isinstance(exc, SSHError):
            return exc
        if isinstance(exc, paramiko.BadHostKeyException):
            return HostKeyMismatch(
                f"cannot connect to {self.where}: its host key changed "
                f"(now {exc.key.get_name()} {exc.key.fingerprint}, known_hosts has {exc.expected_key.fingerprint})",
                hint="someone may be intercepting the connection; if the host was reinstalled, "
                f"remove the old key with ssh-keygen -R '[{s.hostname}]:{s.port}' and check the new one",
            )
        if isinstance(exc, paramiko.PasswordRequiredException):
            return SSHAuthenticationFailed(
                f"cannot log in to {self.where}: the key {', '.join(s.identity_files) or '~/.ssh/id_*'} is protected by a passphrase",
                hint="load it into your agent once (ssh-add KEY) and shipper will use the agent; shipper never asks for a passphrase",
            )
        if isinstance(exc, FileNotFoundError) and exc.filename and exc.filename in s.identity_files:
            return SSHAuthenticationFailed(
                f"cannot log in to {self.where}: the key file {exc.filename} does not exist",
                hint="fix ssh_key (or ansible_ssh_private_key_file) for this host, or remove it to use the agent and ~/.ssh/id_*",
            )
        if isinstance(exc, paramiko.SSHException) and "No authentication methods available" in str(exc):
            return SSHAuthenticationFailed(
                f"cannot log in to {self.where}: shipper has no key to offer (no agent, no ~/.ssh/id_* and no ssh_key)",
                hint="start an agent and ssh-add your key, put it in ~/.ssh/id_ed25519, or set ssh_key (ansible_ssh_private_key_file) for this host",
            )
        if isinstance(exc, paramiko.AuthenticationException):
            keys = ", ".join(s.identity_files) or "the agent's and the default keys"
            return SSHAuthenticationFailed(
                f"cannot log in to {self.where}: the server refused the key ({keys})",
                hint=f"check ssh_user/ssh_key for this host, or that the key's .pub is in ~{s.user}/.ssh/authorized_keys there",
            )
        if isinstance(exc, socket.gaierror):
            return SSHError(
                f"cannot connect to {self.where}: name {s.hostname!r} does not resolve",
                hint="fix ssh_host (or ansible_host) for this host, or its HostName in ssh_config",
            )
        if isinstance(exc, (socket.timeout, TimeoutError)):
            return SSHError(
                f"cannot connect to {self.where}: no answer within {s.connect_timeout:g} s",
                hint="is the host up and is sshd listening on that port? (ssh_connect_timeout raises the limit)",
            )
        if isinstance(exc, (paramiko.ssh_exception.NoValidConnectionsError, ConnectionRefusedError)):
            return SSHError(
                f"cannot connect to {self.where}: connection refused",
                hint="is sshd running there and listening on that port?",
            )
        if isinstance(exc, (OSError, EOFError, paramiko.SSHException)):
            return SSHError(f"cannot connect to {self.where}: {exc or type(exc).__name__}")
        return exc

    def known_hosts_line(self) -> str:
        """The host key this session verified, as a known_hosts line for its address."""
        key = self.client.get_transport().get_remote_server_key()  # type: ignore[union-attr]
        s = self.settings
        pattern = s.hostname if s.port == 22 else f"[{s.hostname}]:{s.port}"
        return f"{pattern} {key.get_name()} {key.get_base64()}\n"

    def run(self, command: str, timeout: float = 60.0, stdin: bytes = b"") -> CommandResult:
        """Run ``command`` (``stdin`` fed to it), collecting its output as bytes (for short outputs)."""
        channel = self.client.get_transport().open_session()  # type: ignore[union-attr]
        try:
            channel.settimeout(timeout)
            channel.exec_command(command)
            if stdin:
                channel.sendall(stdin)
            channel.shutdown_write()
            stdout = channel.makefile("rb").read()
            stderr = channel.makefile_stderr("rb").read()
            return CommandResult(channel.recv_exit_status(), stdout, stderr)
        except (socket.timeout, paramiko.SSHException, OSError) as exc:
            raise SSHError(f"{command.split()[0]} on {self.where} failed: {exc or 'timed out'}") from None
        finally:
            channel.close()

    def write_file(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Put ``data`` at ``path`` on the host, created with ``mode`` (never readable by others first), atomically."""
        # A name of its own per write: two writers of one path (hosts sharing a filesystem, two shipper runs) each
        # rename a whole file of theirs, never one the other is writing or has just renamed away.
        directory, temporary = os.path.dirname(path), f"{path}.shipper-new-{secrets.token_hex(6)}"
        command = (
            f"umask 077 && mkdir -p {shlex.quote(directory)} && {{ cat > {shlex.quote(temporary)} && "
            f"chmod {mode:o} {shlex.quote(temporary)} && mv -f {shlex.quote(temporary)} {shlex.quote(path)}; }} "
            f"|| {{ status=$?; rm -f {shlex.quote(temporary)}; exit $status; }}"
        )
        result = self.run(command, stdin=data)
        if not result.ok:
            raise SSHError(f"cannot write {path} on {self.where}: {result.first_error_line()}", hint="can the SSH user write there (root, typically)?")

    def read_file(self, path: str) -> bytes | None:
        """The content of ``path`` on the host, or None when it does not exist."""
        result = self.run(f"test -e {shlex.quote(path)} || exit 3; cat {shlex.quote(path)}")
        if result.exit_status == 3:
            return None
        if not result.ok:
            raise SSHError(f"cannot read {path} on {self.where}: {result.first_error_line()}")
        return result.stdout

    def close(self) -> None:
        """Close the connection; safe to call twice."""
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def __enter__(self) -> "SSHSession":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
