"""docker-py's SSH adapter, fed a connection that shipper opened.

docker-py's own ``ssh://`` support connects by itself: it reads only
``~/.ssh/config`` (a few keys of it), only the system known_hosts, and gives
no say over keys, ports from the inventory or the host-key policy. Its
adapter, once given a connected paramiko client, runs
``docker system dial-stdio`` on a new channel per HTTP connection, which is
all we want from it. So shipper builds the client with ``shell_out=True``
(which makes the parent connect nothing) and then hands it our client.
"""

from __future__ import annotations

from collections.abc import Mapping

from docker.transport.sshconn import SSHConnectionPool, SSHHTTPAdapter

from shipper.transport.ssh import SSHSession

# docker-py's default for SSH: sshd's MaxSessions is 10, one is kept for commands.
SSH_POOL_SIZE = 9


class SessionSSHAdapter(SSHHTTPAdapter):
    """An ``SSHHTTPAdapter`` whose SSH connection is a shipper ``SSHSession``."""

    def __init__(self, session: SSHSession, timeout: float | None) -> None:
        super().__init__(
            "ssh://shipper",
            timeout=timeout,  # type: ignore[arg-type]  # docker-py takes None: no read timeout
            pool_connections=SSH_POOL_SIZE, max_pool_size=SSH_POOL_SIZE, shell_out=True
        )
        self.session = session
        self.ssh_client = session.client

    def get_connection(self, url: str | bytes, proxies: Mapping[str, str] | None = None) -> SSHConnectionPool:
        # docker-py keys SSH pools by the whole request URL, so every new API
        # path started a fresh `docker system dial-stdio` (~100 ms each). One
        # engine, one pool.
        return super().get_connection("http+docker://ssh", proxies)

    def _connect(self) -> None:
        # Called by the parent when the transport dropped: reconnect through our session.
        self.session.close()
        self.ssh_client = self.session.client

    def close(self) -> None:
        super().close()
        self.session.close()
