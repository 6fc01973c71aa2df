"""SSH connections to inventory hosts, strict about host keys.

shipper resolves every setting itself (``inventory.resolve``) and hands the
result to Fabric, whose own ssh_config loading is switched off so nothing is
applied twice. Fabric's ``Connection`` installs paramiko's ``AutoAddPolicy``,
which would trust any host key on first sight; shipper replaces it with the
policy the user asked for (``StrictHostKeyChecking``: yes by default).
"""

from __future__ import annotations

import os
import shlex
import socket
import threading
from dataclasses import dataclass
from typing import Any

import fabric
import paramiko
from paramiko.config import SSHConfig

from shipper.errors import HostKeyMismatch, HostKeyUnknown, SSHAuthenticationFailed, SSHError
from shipper.inventory.model import SSHSettings

AUTH_TIMEOUT = 20.0  # seconds for the server's banner and for authentication


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


def _gateway(settings: SSHSettings) -> str | None:
    if settings.proxy_command:
        return settings.proxy_command
    if settings.proxy_jump and settings.proxy_jump.lower() != "none":
        # paramiko has no ProxyJump; OpenSSH's -W honours the user's whole config for the jump host.
        first_hop = settings.proxy_jump.split(",")[0]
        target = f"[{settings.hostname}]:{settings.port}"
        return f"ssh -o BatchMode=yes -W {shlex.quote(target)} {shlex.quote(first_hop)}"
    return None


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


class SSHSession:
    """One SSH connection to one host. Open it with ``open()`` or ``with``."""

    def __init__(self, settings: SSHSettings, host_name: str | None = None) -> None:
        self.settings = settings
        self.where = f"host {host_name} over SSH ({settings.destination})" if host_name else settings.destination
        self._conn: fabric.Connection | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> paramiko.SSHClient:
        """The connected paramiko client (connecting first if needed)."""
        return self.open()._connection().client

    def _connection(self) -> fabric.Connection:
        assert self._conn is not None
        return self._conn

    def open(self) -> "SSHSession":
        """Connect, if not connected already. Raises an ``SSHError`` subclass."""
        with self._lock:
            if self._conn is not None and self._conn.is_connected:
                return self
            self._conn = self._new_connection()
            try:
                self._conn.open()
            except BaseException as exc:
                self._conn.close()
                self._conn = None
                raise self._wrap(exc) from None
            watch_for_silence(self._conn.client.get_transport(), self.settings)
            return self

    def _new_connection(self) -> fabric.Connection:
        s = self.settings
        connect_kwargs: dict[str, Any] = {
            "allow_agent": True,
            # Like OpenSSH: the default key files are tried only when none is configured.
            "look_for_keys": not s.identity_files,
            "banner_timeout": AUTH_TIMEOUT,
            "auth_timeout": AUTH_TIMEOUT,
        }
        if s.identity_files:
            connect_kwargs["key_filename"] = [f for f in s.identity_files if os.path.exists(f)] or list(s.identity_files)
        conn = fabric.Connection(
            host=s.hostname,
            user=s.user,
            port=s.port,
            config=fabric.Config(ssh_config=SSHConfig()),  # explicit and empty: no second lookup
            connect_timeout=s.connect_timeout,
            connect_kwargs=connect_kwargs,
            gateway=_gateway(s),
        )
        conn.client.set_missing_host_key_policy(_policy(s, self.where))
        for path in s.known_hosts_files:
            if os.path.isfile(path):
                conn.client.load_system_host_keys(path)
        return conn

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
        directory, temporary = os.path.dirname(path), f"{path}.shipper-new"
        command = (
            f"umask 077 && mkdir -p {shlex.quote(directory)} && cat > {shlex.quote(temporary)} && "
            f"chmod {mode:o} {shlex.quote(temporary)} && mv -f {shlex.quote(temporary)} {shlex.quote(path)}"
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
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def __enter__(self) -> "SSHSession":
        return self.open()

    def __exit__(self, *exc_info: object) -> None:
        self.close()
