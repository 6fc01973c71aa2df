"""``connect(host)``: the one place a host becomes a docker client, whatever the endpoint (unix socket, tcp + TLS,
SSH), with the API version agreed."""

from __future__ import annotations

import os
import time
from typing import Any

import docker
import docker.tls
from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION
from docker.utils import version_lt

from shipper.engine.client import COMMAND_TIMEOUT, Engine
from shipper.engine.quickget import QuickGet
from shipper.engine.sshadapter import SessionSSHAdapter
from shipper.errors import EngineUnreachable
from shipper.inventory.model import Host, TLSFiles
from shipper.transport.ssh import SSHSession


def _tls_config(host: Host, tls: TLSFiles) -> docker.tls.TLSConfig:
    for label, path in (("docker_tls_ca", tls.ca), ("docker_tls_cert", tls.cert), ("docker_tls_key", tls.key)):
        if path and not os.path.isfile(path):
            raise EngineUnreachable(
                f"cannot reach the engine of {host.describe()}: {label} file {path} does not exist",
                hint=f"fix {label} (or docker_cert_path) for host {host.name} in the inventory ({host.origin})",
            )
    client_cert = (tls.cert, tls.key) if tls.cert and tls.key else None
    return docker.tls.TLSConfig(client_cert=client_cert, ca_cert=tls.ca, verify=tls.verify)


def _api_client(host: Host, timeout: float | None) -> tuple[docker.APIClient, SSHSession | None, QuickGet | None]:
    endpoint = host.engine
    # A fixed version at construction keeps docker-py from calling the engine
    # before we can wrap its errors; the real version is negotiated below.
    common: dict[str, Any] = {"version": MINIMUM_DOCKER_API_VERSION, "timeout": timeout}
    if endpoint.scheme == "ssh":
        session = SSHSession(host.ssh, host.name).open()
        api = docker.APIClient(base_url="ssh://shipper", use_ssh_client=True, **common)
        adapter = SessionSSHAdapter(session, timeout)
        api.mount("http+docker://ssh", adapter)
        api._custom_adapter = adapter  # type: ignore[attr-defined]  # docker-py closes it with the client
        api.trust_env = False  # no proxy applies to an SSH channel: not looked up in the environment on every request
        return api, session, QuickGet(adapter.open_engine_channel, timeout)
    tls = _tls_config(host, endpoint.tls) if endpoint.tls else False
    api = docker.APIClient(base_url=endpoint.url, tls=tls, **common)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment replace
    # the session's CA (docker_tls_ca), and HTTPS_PROXY reroute it: neither
    # belongs between shipper and an engine.
    api.trust_env = False
    return api, None, None


def connect(host: Host, timeout: float | None = COMMAND_TIMEOUT) -> Engine:
    """Connect to ``host``'s engine and agree on an API version.

    ``timeout`` is docker-py's read timeout in seconds; ``None`` for transfers.
    Raises ``EngineUnreachable`` or an ``SSHError`` with a hint.
    """
    api, session, quick = _api_client(host, timeout)
    engine = Engine(host, api, session, quick)
    try:
        with engine.errors("reach the engine"):
            server = engine.version()
    except BaseException:
        engine.close()
        raise
    server_api = str(server.get("ApiVersion", MINIMUM_DOCKER_API_VERSION))
    # Speak the older of the two versions; docker-py has no public setter for it.
    agreed = server_api if version_lt(server_api, DEFAULT_DOCKER_API_VERSION) else DEFAULT_DOCKER_API_VERSION
    api._version = agreed  # type: ignore[attr-defined]
    engine._version = dict(server)
    engine.round_trips = 0  # counted from here, as docker-py's hook below counts
    engine.last_answer = time.monotonic()
    api.hooks["response"].append(engine._answered)  # counted from here: the requests of the work itself
    return engine
