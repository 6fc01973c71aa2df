"""docker-py's SSH adapter, fed a connection that shipper opened.

docker-py's own ``ssh://`` support connects by itself: it reads only
``~/.ssh/config`` (a few keys of it), only the system known_hosts, and gives
no say over keys, ports from the inventory or the host-key policy. Its
adapter, once given a connected paramiko client, runs
``docker system dial-stdio`` on a new channel per HTTP connection, which is
all we want from it. So shipper builds the client with ``shell_out=True``
(which makes the parent connect nothing) and then hands it our client.

Each HTTP connection is a channel straight to the engine's socket where the
host allows it (streamlocal.py: no process started there), else
``docker system dial-stdio`` as docker-py does. Imported only when an engine
needs docker-py (connection.py): a survey's GETs go without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import paramiko
from docker.transport.sshconn import SSHConnection, SSHConnectionPool, SSHHTTPAdapter

from shipper.engine import streamlocal
from shipper.transport.ssh import SSHSession

# sshd's MaxSessions is 10: one channel is kept for commands, one for quick GETs (quickget.py).
SSH_POOL_SIZE = 8
POOL_KEY = "http+docker://ssh"


class SessionSSHAdapter(SSHHTTPAdapter):
    """An ``SSHHTTPAdapter`` whose SSH connection is a shipper ``SSHSession``."""

    def __init__(self, session: SSHSession, socket: streamlocal.EngineSocket, timeout: float | None) -> None:
        super().__init__(
            "ssh://shipper",
            timeout=timeout,  # type: ignore[arg-type]  # docker-py takes None: no read timeout
            pool_connections=SSH_POOL_SIZE, max_pool_size=SSH_POOL_SIZE, shell_out=True
        )
        self.session = session
        self.ssh_client = session.client
        self.socket = socket  # shared with the quick GETs

    def get_connection(self, url: str | bytes, proxies: Mapping[str, str] | None = None) -> SSHConnectionPool:
        # docker-py keys SSH pools by the whole request URL, so every new API
        # path started a fresh `docker system dial-stdio` (~100 ms each). One
        # engine, one pool.
        pools: Any = self.pools  # docker-py's RecentlyUsedContainer (its stubs say otherwise)
        with pools.lock:
            pool = pools.get(POOL_KEY)
            if pool:
                return pool
            if not self.session.client.get_transport():
                self._connect()
            pool = _Pool(self, maxsize=self.max_pool_size)
            pools[POOL_KEY] = pool
        return pool

    def open_engine_channel(self) -> Any:
        """A channel to the engine's socket (``streamlocal.Unavailable`` where the host has none for us)."""
        return self.socket.open()

    def _transport(self) -> paramiko.Transport:
        return self.socket.transport()

    def _connect(self) -> None:
        # Called by the parent when the transport dropped: reconnect through our session.
        self.session.close()
        self.ssh_client = self.session.client

    def close(self) -> None:
        super().close()
        self.session.close()


class _Connection(SSHConnection):
    """One HTTP connection to the engine: a channel to its socket, else dial-stdio."""

    def __init__(self, adapter: SessionSSHAdapter, transport: paramiko.Transport) -> None:
        super().__init__(transport, adapter.timeout)  # None: no read timeout
        self.adapter = adapter
        self.transport = transport

    def connect(self) -> None:
        try:
            self.sock = self.adapter.open_engine_channel()  # a socket-like channel, as dial-stdio's
        except streamlocal.Unavailable:
            super().connect()


class _Pool(SSHConnectionPool):
    def __init__(self, adapter: SessionSSHAdapter, maxsize: int) -> None:
        super().__init__(ssh_client=adapter.session.client, timeout=adapter.timeout, maxsize=maxsize)
        self.adapter = adapter

    def _new_conn(self) -> Any:
        return _Connection(self.adapter, self.adapter._transport())
