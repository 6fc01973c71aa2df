"""Gateways: reaching a host through a ProxyCommand, or a ProxyJump host (as OpenSSH's ``ssh -W``)."""

from __future__ import annotations

import io
import os
import select
import shlex
import socket
import subprocess
import time

import paramiko
from paramiko.config import SSHConfig

from shipper.inventory.model import SSHSettings


def open_gateway(command: str, settings: SSHSettings) -> Gateway:
    """Start the gateway's process, its %h/%p/%r tokens expanded by paramiko's ssh_config rules (as Fabric did, which
    left %p at 22 and %r at the local user)."""
    config = SSHConfig()
    host = settings.hostname
    config.parse(io.StringIO(f"Host {host}\n    Port {settings.port}\n    User {settings.user}\n    ProxyCommand {command}\n"))
    return Gateway(config.lookup(host)["proxycommand"])


class Gateway(paramiko.ProxyCommand):
    """paramiko's ProxyCommand with a socket's manners. Its ``recv`` spun on a gateway that had exited (an end of
    file read as "no data yet") until the connect timeout: 10 s of a core for every host whose jump host failed.
    Its ``close`` killed a pid that may already be reaped, and left it unreaped."""

    def recv(self, size: int) -> bytes:
        buffer = b""
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        stdout = self.process.stdout
        assert stdout is not None
        while len(buffer) < size:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([stdout], [], [], wait)[0]:
                if buffer:
                    return buffer
                raise socket.timeout()
            chunk = os.read(stdout.fileno(), size - len(buffer))
            if not chunk:  # the gateway ended: as a socket's end of file
                return buffer
            buffer += chunk
        return buffer

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
        try:
            self.process.wait(timeout=5.0)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def said(self) -> str:
        """The last line the gateway wrote to stderr once it has exited (paramiko keeps it in a pipe nobody
        reads); "" while it still runs (the failure lies beyond it) or when it said nothing."""
        try:
            self.process.wait(timeout=1.0)
        except subprocess.TimeoutExpired:
            return ""
        stderr = self.process.stderr
        if stderr is None or not select.select([stderr], [], [], 0)[0]:
            return ""
        lines = os.read(stderr.fileno(), 4096).decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""


def gateway_command(settings: SSHSettings) -> str | None:
    """The command that reaches the host for these settings (ProxyCommand, or ProxyJump's first hop), or None."""
    if settings.proxy_command:
        return settings.proxy_command
    if settings.proxy_jump and settings.proxy_jump.lower() != "none":
        # paramiko has no ProxyJump; OpenSSH's -W honours the user's whole config for the jump host: the file
        # these settings came from, which need not be ~/.ssh/config (the inventory's ssh_config_file).
        first_hop = settings.proxy_jump.split(",")[0]
        target = f"[{settings.hostname}]:{settings.port}"
        config = f"-F {shlex.quote(settings.config_file)} " if settings.config_file else ""
        return f"ssh {config}-o BatchMode=yes -W {shlex.quote(target)} {shlex.quote(first_hop)}"
    return None
