"""``connect(host)``: the one place a host becomes an engine client, whatever the endpoint (unix socket, tcp + TLS,
SSH), with the API version agreed.

docker-py is imported when an engine first needs it (``Engine.api``). Behind SSH, small GETs go on a channel of
their own (quickget.py): a ``ping``, an ``images`` or a dry-run's survey never loads docker-py, requests and
urllib3, a quarter of a command's start-up (#20)."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from shipper.engine import streamlocal
from shipper.engine.client import COMMAND_TIMEOUT, Engine
from shipper.engine.quickget import QuickGet
from shipper.engine.versions import NEWEST_API, OLDEST_API, version_lt
from shipper.errors import EngineUnreachable
from shipper.inventory.model import Host, TLSFiles
from shipper.transport.ssh import SSHSession

if TYPE_CHECKING:
    import docker
    import docker.tls

SSH_BASE_URL = "http+docker://ssh"  # docker-py's base URL for an ssh:// engine


def _tls_config(host: Host, tls: TLSFiles) -> docker.tls.TLSConfig:
    import docker.tls

    for label, path in (("docker_tls_ca", tls.ca), ("docker_tls_cert", tls.cert), ("docker_tls_key", tls.key)):
        if path and not os.path.isfile(path):
            raise EngineUnreachable(
                f"cannot reach the engine of {host.describe()}: {label} file {path} does not exist",
                hint=f"fix {label} (or docker_cert_path) for host {host.name} in the inventory ({host.origin})",
            )
    client_cert = (tls.cert, tls.key) if tls.cert and tls.key else None
    return docker.tls.TLSConfig(client_cert=client_cert, ca_cert=tls.ca, verify=tls.verify)


def _ssh_api(session: SSHSession, socket: streamlocal.EngineSocket, timeout: float | None) -> docker.APIClient:
    import docker

    from shipper.engine.sshadapter import SessionSSHAdapter

    # A fixed version at construction keeps docker-py from calling the engine before we can wrap its errors;
    # Engine.api sets the agreed one.
    api = docker.APIClient(base_url="ssh://shipper", use_ssh_client=True, version=OLDEST_API, timeout=timeout)  # type: ignore[arg-type]
    adapter = SessionSSHAdapter(session, socket, timeout)
    api.mount(SSH_BASE_URL, adapter)
    api._custom_adapter = adapter  # type: ignore[attr-defined]  # docker-py closes it with the client
    api.trust_env = False  # no proxy applies to an SSH channel: not looked up in the environment on every request
    api.max_redirects = 0  # see _plain_api
    return api


def _plain_api(host: Host, timeout: float | None) -> docker.APIClient:
    import docker

    endpoint = host.engine
    tls = _tls_config(host, endpoint.tls) if endpoint.tls else False
    api = docker.APIClient(base_url=endpoint.url, tls=tls, version=OLDEST_API, timeout=timeout)  # type: ignore[arg-type]
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment replace
    # the session's CA (docker_tls_ca), and HTTPS_PROXY reroute it: neither
    # belongs between shipper and an engine.
    api.trust_env = False
    # An engine never redirects. requests would follow one to any host with the request's headers (a push's
    # X-Registry-Auth: the registry's password) and the TLS client certificate: a redirect is an error instead.
    api.max_redirects = 0
    return api


def _engine(host: Host, timeout: float | None, session: SSHSession | None = None) -> Engine:
    if host.engine.scheme == "ssh":
        session = (session or SSHSession(host.ssh, host.name)).open()
        socket = streamlocal.EngineSocket(session, timeout)
        return Engine(host, lambda: _ssh_api(session, socket, timeout), SSH_BASE_URL, session, QuickGet(socket.open, timeout), socket)
    api = _plain_api(host, timeout)  # every request of a local or tcp engine goes through docker-py: made now
    return Engine(host, lambda: api, api.base_url)


def connect(host: Host, timeout: float | None = COMMAND_TIMEOUT, session: SSHSession | None = None) -> Engine:
    """Connect to ``host``'s engine and agree on an API version.

    ``timeout`` is the read timeout in seconds; ``None`` for transfers. ``session``: the SSH session to the host to
    use where its engine is behind SSH (opened if it is not), instead of a new one.
    Raises ``EngineUnreachable`` or an ``SSHError`` with a hint.
    """
    engine = _engine(host, timeout, session)
    try:
        with engine.errors("reach the engine"):
            handshake = engine.handshake()  # /_ping's headers: the engine's API version, at little cost to it
            server = engine.version() if handshake is None else None  # its ApiVersion checked
    except BaseException:
        engine.close()
        raise
    server_api = handshake[0] if handshake is not None else str((server or {}).get("ApiVersion", OLDEST_API))
    # Speak the older of the two versions.
    engine.agree(server_api if version_lt(server_api, NEWEST_API) else NEWEST_API, server, handshake)
    engine.round_trips = 0  # counted from here: the requests of the work itself
    engine.last_answer = time.monotonic()
    return engine
