"""Reaching an engine's socket through SSH without starting a process there.

docker-py (as ``docker -H ssh://``) runs ``docker system dial-stdio`` on the
host for every connection: a Go program whose start costs about 180 ms of the
host's CPU, 48 hosts' worth of it the better part of a ``ping all``. OpenSSH
can instead connect a channel to a Unix socket on the host itself
(``direct-streamlocal@openssh.com``, OpenSSH 6.7+, allowed unless sshd says
``AllowStreamLocalForwarding no``): no process on the host at all.

Which socket: the one dial-stdio would reach. A short probe in the user's own
shell (as dial-stdio runs) reads ``DOCKER_HOST`` and ``DOCKER_CONTEXT``, and
whether a docker context is in use: ``unix://PATH`` gives PATH, nothing gives
``/var/run/docker.sock``; a context, ``tcp://`` or anything unclear keeps
dial-stdio. A channel the host refuses (no such socket, forwarding not
allowed, permission) falls back to dial-stdio too, so nothing that worked
before stops working.

paramiko has no call for this channel type (paramiko/paramiko#544): ``open``
is its ``Transport.open_channel`` with the channel's own fields, using the
transport's internals; any surprise there also falls back to dial-stdio.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import paramiko
from paramiko.channel import Channel
from paramiko.common import cMSG_CHANNEL_OPEN
from paramiko.message import Message

from shipper.transport.ssh import SSHSession

KIND = "direct-streamlocal@openssh.com"
DEFAULT_SOCKET = "/var/run/docker.sock"
# POSIX sh; a login shell that is not (fish, csh) prints something else, and dial-stdio is kept.
PROBE = (
    'printf "shipper-probe|%s|%s|" "$DOCKER_HOST" "$DOCKER_CONTEXT"; '
    'grep -qs currentContext "${DOCKER_CONFIG:-$HOME/.docker}/config.json" && printf context; printf "|\\n"'
)
MAX_PROBE = 4096
PROBE_TIMEOUT = 30.0
_UNKNOWN = object()


class Unavailable(Exception):
    """No streamlocal channel here: dial-stdio it is."""


def socket_from_probe(output: str) -> str | None:
    """The socket dial-stdio would reach, from the probe's output; None when only dial-stdio knows."""
    line = output.strip().splitlines()[-1] if output.strip() else ""
    parts = line.split("|")
    if len(parts) != 5 or parts[0] != "shipper-probe" or parts[4] != "":
        return None
    docker_host, context, configured = parts[1], parts[2], parts[3]
    if context or configured:
        return None  # a docker context decides, which only the docker CLI reads
    if not docker_host:
        return DEFAULT_SOCKET
    if docker_host.startswith("unix://") and docker_host[len("unix://"):].startswith("/"):
        return docker_host[len("unix://"):]
    return None


def probe(transport: paramiko.Transport, timeout: float) -> str | None:
    """Run the probe on the host (in the user's shell, as dial-stdio would run): the engine's socket, or None."""
    channel = transport.open_session(timeout=timeout)
    try:
        channel.settimeout(timeout)
        channel.exec_command(PROBE)
        output = b""
        while len(output) < MAX_PROBE:
            chunk = channel.recv(MAX_PROBE)
            if not chunk:
                break
            output += chunk
        return socket_from_probe(output.decode(errors="replace"))
    finally:
        channel.close()


def open_channel(transport: paramiko.Transport, path: str, timeout: float) -> Channel:
    """A channel connected to the Unix socket ``path`` on the host; ``Unavailable`` when the host refuses."""
    t: Any = transport  # paramiko's internals, as Transport.open_channel uses them
    try:
        t.lock.acquire()
        try:
            window_size = t._sanitize_window_size(None)
            max_packet_size = t._sanitize_packet_size(None)
            chanid = t._next_channel()
            message = Message()
            message.add_byte(cMSG_CHANNEL_OPEN)
            message.add_string(KIND)
            message.add_int(chanid)
            message.add_int(window_size)
            message.add_int(max_packet_size)
            message.add_string(path)  # the socket on the host
            message.add_string("")  # reserved
            message.add_int(0)  # reserved
            channel: Any = Channel(chanid)
            t._channels.put(chanid, channel)
            t.channel_events[chanid] = event = threading.Event()
            t.channels_seen[chanid] = True
            channel._set_transport(transport)
            channel._set_window(window_size, max_packet_size)
        finally:
            t.lock.release()
        t._send_user_message(message)
    except AttributeError as exc:  # a paramiko without these internals
        raise Unavailable(f"this paramiko cannot open {KIND} channels ({exc})") from None
    deadline = time.monotonic() + timeout
    while not event.wait(0.1):
        if not transport.is_active():
            raise paramiko.SSHException("the SSH connection closed while opening a channel to the engine's socket")
        if time.monotonic() > deadline:
            raise Unavailable(f"no answer to opening {path} on the host within {timeout:.0f} s")
    opened: Channel | None = t._channels.get(chanid)
    if opened is None:
        raise Unavailable(f"the host refused a channel to {path}: {t.saved_exception or 'refused'}")
    return opened


class EngineSocket:
    """The engine's socket on one SSH host, worked out once (the probe) and then opened as often as asked: by the
    quick GETs and by docker-py's connections alike. No docker-py here: a survey that needs only GETs never loads it."""

    def __init__(self, session: SSHSession, timeout: float | None) -> None:
        self.session = session
        self.timeout = timeout  # a channel's read timeout; None: none (transfers)
        self._path: str | None | object = _UNKNOWN
        self._lock = threading.Lock()
        self.kind = ""  # "streamlocal" or "dial-stdio", once known

    def path(self) -> str | None:
        """The engine's socket on the host, for channels straight to it; None: dial-stdio (worked out once)."""
        with self._lock:
            if self._path is _UNKNOWN:
                try:
                    self._path = probe(self.transport(), PROBE_TIMEOUT)
                except (paramiko.SSHException, OSError, EOFError):
                    self._path = None
                self.kind = "streamlocal" if self._path else "dial-stdio"
            return self._path if isinstance(self._path, str) else None

    def open(self) -> Channel:
        """A channel to the engine's socket (``Unavailable`` where the host has none for us)."""
        path = self.path()
        if path is None:
            raise Unavailable("the engine is reached through dial-stdio on this host")
        try:
            channel = open_channel(self.transport(), path, self.timeout or PROBE_TIMEOUT)
        except Unavailable:
            self.refused()
            raise
        channel.settimeout(self.timeout)
        return channel

    def refused(self) -> None:
        """The host would not connect a channel to the socket: dial-stdio from now on."""
        with self._lock:
            self._path = None
            self.kind = "dial-stdio"

    def transport(self) -> paramiko.Transport:
        transport = self.session.client.get_transport()
        if transport is None:
            raise paramiko.SSHException("the SSH connection is closed")
        return transport
