"""A registry that lies: credentials stay with its own origin, and every read from it is bounded.

Each test stands up a lying HTTPS registry (and, where it matters, a "thief"
on another origin) and runs shipper against it as a user would; the thief
must never see a credential, and shipper must end with a clear error in
bounded time and memory.
"""

from __future__ import annotations

import json
import resource
import socket
import threading
import time
from pathlib import Path
from typing import Iterator

import pytest

from shipper.errors import RegistryError, RegistryUnreachable, ShipperError
from shipper.registry import Address, RegistryClient
from shipper.registry.credentials import Credentials
from tests.conftest import ShipperRunner
from tests.hostile.server import HostileServer, Reply, basic_only, endless, trickle

PASSWORD = "s3cret-hostile-pass"
CREDENTIALS = Credentials("deploy", PASSWORD, "test")
OK_V2 = Reply(200, {"Docker-Distribution-API-Version": "registry/2.0", "Content-Type": "application/json"}, b"{}")


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[HostileServer]:
    with HostileServer(tls_dir=tmp_path / "tls") as server:
        yield server


@pytest.fixture
def thief() -> Iterator[HostileServer]:
    """Another origin (plain HTTP, another port): whatever reaches it has left the registry."""
    with HostileServer() as server:
        server.route("*", "/", lambda r: Reply(200, {"Content-Type": "application/json"}, b'{"repositories":[],"token":"t"}'))
        yield server


@pytest.fixture
def password_file(tmp_path: Path) -> str:
    path = tmp_path / "password"
    path.write_text(PASSWORD + "\n")
    return str(path)


@pytest.fixture(autouse=True)
def outside_the_checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default inventory: the registry is named by its address."""
    monkeypatch.chdir(tmp_path)


def client(registry: HostileServer, **kwargs: object) -> RegistryClient:
    options = {"ca_file": str(registry.ca_file), **kwargs}
    return RegistryClient(Address(registry.address), CREDENTIALS, **options)  # type: ignore[arg-type]


def login_args(registry: HostileServer, password_file: str) -> list[str]:
    return ["--username", "deploy", "--password-file", password_file, "--ca", str(registry.ca_file)]


def never_saw_the_password(server: HostileServer) -> None:
    assert server.authorizations() == []
    assert all(PASSWORD not in json.dumps(vars(s), default=repr) for s in server.seen)


# -- credentials stay with the registry's origin ---------------------------------------------


def test_a_next_page_link_to_another_origin_is_refused_and_gets_no_credentials(
    shipper: ShipperRunner, registry: HostileServer, thief: HostileServer, password_file: str
) -> None:
    registry.route("GET", "/v2/_catalog", basic_only(lambda r: Reply(
        200, {"Content-Type": "application/json", "Link": f'<{thief.url}/v2/_catalog?last=a>; rel="next"'}, b'{"repositories":["a"]}'
    )))  # fmt: skip

    result = shipper("registry", "ls", registry.address, *login_args(registry, password_file))

    assert result.status != 0
    assert "another place" in result.stderr and "refused" in result.stderr
    assert thief.seen == []
    assert PASSWORD not in result.stdout + result.stderr


def test_a_token_realm_over_plain_http_is_refused_for_an_https_registry(
    shipper: ShipperRunner, registry: HostileServer, thief: HostileServer, password_file: str
) -> None:
    challenge = Reply(401, {"WWW-Authenticate": f'Bearer realm="{thief.url}/token",service="hostile"'}, b"")
    registry.route("GET", "/v2/", lambda r: challenge if "authorization" not in r.headers else OK_V2)

    result = shipper("registry", "login", registry.address, *login_args(registry, password_file))

    assert result.status != 0
    assert "plain HTTP" in result.stderr and "refused" in result.stderr
    never_saw_the_password(thief)
    assert thief.seen == []


def test_a_token_realm_over_https_on_another_host_is_the_protocol_and_gets_the_credentials(registry: HostileServer, tmp_path: Path) -> None:
    with HostileServer(tls_dir=tmp_path / "tokens") as tokens:
        both = tmp_path / "both-cas.crt"
        both.write_bytes(Path(str(registry.ca_file)).read_bytes() + Path(str(tokens.ca_file)).read_bytes())
        tokens.route("GET", "/token", lambda r: Reply(200, {"Content-Type": "application/json"}, b'{"token":"tok","expires_in":60}'))
        challenge = Reply(401, {"WWW-Authenticate": f'Bearer realm="{tokens.url}/token",service="hostile"'}, b"")
        registry.route("GET", "/v2/", lambda r: OK_V2 if r.headers.get("authorization") == "Bearer tok" else challenge)

        with client(registry, ca_file=str(both)) as c:
            assert c.ping().startswith("registry/2")

        assert [a.split()[0] for a in tokens.authorizations()] == ["Basic"]


def test_a_plain_http_realm_is_allowed_when_the_user_named_the_registry_as_plain_http(thief: HostileServer) -> None:
    with HostileServer() as plain:
        challenge = Reply(401, {"WWW-Authenticate": f'Bearer realm="{thief.url}/token",service="hostile"'}, b"")
        plain.route("GET", "/v2/", lambda r: OK_V2 if r.headers.get("authorization") == "Bearer t" else challenge)

        with RegistryClient(Address(plain.address, plain_http=True), CREDENTIALS) as c:
            assert c.ping().startswith("registry/2")


def test_an_upload_location_on_another_origin_is_refused_and_gets_neither_credentials_nor_data(
    registry: HostileServer, thief: HostileServer
) -> None:
    registry.route("HEAD", "/v2/team/app/blobs/", basic_only(lambda r: Reply(404)))
    registry.route("POST", "/v2/team/app/blobs/uploads/", basic_only(lambda r: Reply(202, {"Location": f"{thief.url}/upload/1"})))
    digest = "sha256:" + "0" * 64

    with client(registry) as c, pytest.raises(RegistryError, match="upload location .* another place"):
        c.upload_blob("team/app", digest, 5, lambda offset: iter([b"hello"]))

    assert thief.seen == []


def test_a_redirect_of_a_blob_to_another_host_loses_the_authorization_header(registry: HostileServer, thief: HostileServer) -> None:
    data = b"layer bytes"
    import hashlib

    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    registry.route("GET", f"/v2/team/app/blobs/{digest}", basic_only(lambda r: Reply(307, {"Location": f"http://localhost:{thief.port}/blob"})))
    thief.routes.insert(0, (("GET", "/blob"), lambda r: Reply(200, {}, data)))

    with client(registry) as c:
        assert b"".join(c.blob("team/app", digest, len(data))) == data

    never_saw_the_password(thief)
    assert [s.path for s in thief.seen] == ["/blob"]


# -- every read is bounded --------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def test_an_endless_catalog_page_is_cut_at_the_metadata_limit(shipper: ShipperRunner, registry: HostileServer, password_file: str) -> None:
    registry.route("GET", "/v2/_catalog", basic_only(lambda r: Reply(200, {"Content-Type": "application/json"}, endless(), chunked=True)))
    before, started = _peak_rss_mb(), time.monotonic()

    result = shipper("registry", "ls", registry.address, *login_args(registry, password_file))

    assert result.status != 0
    assert "over 4194304 bytes" in result.stderr
    assert time.monotonic() - started < 20
    assert _peak_rss_mb() - before < 64


def test_an_endless_error_body_is_read_only_as_far_as_its_message(registry: HostileServer) -> None:
    registry.route("GET", "/v2/", lambda r: Reply(500, {"Content-Type": "application/json"}, endless(b"{" * 65536), chunked=True))
    started = time.monotonic()

    with client(registry) as c, pytest.raises(ShipperError, match="refused to answer /v2/"):
        c.ping()

    assert time.monotonic() - started < 20


def test_a_next_page_link_to_the_same_page_is_refused_instead_of_looping(registry: HostileServer) -> None:
    registry.route("GET", "/v2/_catalog", lambda r: Reply(
        200, {"Content-Type": "application/json", "Link": '</v2/_catalog?n=100>; rel="next"'}, b'{"repositories":["a"]}'
    ))  # fmt: skip

    with client(registry) as c, pytest.raises(RegistryError, match="page already read"):
        list(c.catalog())


def test_a_trickling_server_is_cut_off_at_the_request_deadline(registry: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shipper.registry.http.REQUEST_DEADLINE", 2.0)
    registry.route("GET", "/v2/", lambda r: Reply(200, {"Content-Type": "application/json"}, trickle(b"{" + b" " * 100 + b"}", 0.2), chunked=True))
    started = time.monotonic()

    with client(registry, timeout=5.0) as c, pytest.raises(RegistryUnreachable, match="did not answer /v2/ within 2 s"):
        c.ping()

    assert time.monotonic() - started < 5


def test_a_tls_server_that_never_finishes_its_handshake_is_cut_off_at_the_request_deadline(monkeypatch: pytest.MonkeyPatch) -> None:
    """TCP accepted, the TLS handshake never answered: the deadline cuts it (the socket is shut down through a
    descriptor of its own, since TLS takes over the one the connection was opened with), not the read timeout."""
    monkeypatch.setattr("shipper.registry.http.REQUEST_DEADLINE", 1.0)
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nothing ever answers
        address = Address(f"127.0.0.1:{silent.getsockname()[1]}")  # HTTPS
        started = time.monotonic()
        with RegistryClient(address, Credentials("u", "p", "test"), timeout=20.0) as c, pytest.raises(RegistryUnreachable, match="within 1 s"):
            c.ping()

    assert time.monotonic() - started < 5


def test_a_client_aborted_in_a_tls_handshake_that_never_ends_stops_at_once() -> None:
    """RegistryHTTP.abort() from another thread (shipper is being interrupted) while the handshake waits."""
    with socket.create_server(("127.0.0.1", 0)) as silent:
        address = Address(f"127.0.0.1:{silent.getsockname()[1]}")
        with RegistryClient(address, Credentials("u", "p", "test"), timeout=20.0) as c:
            threading.Timer(0.5, c.abort).start()
            started = time.monotonic()
            with pytest.raises(ShipperError):
                c.ping()

    assert time.monotonic() - started < 3


def test_a_blob_that_stalls_is_cut_off_though_each_read_gets_a_byte(registry: HostileServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("shipper.registry.http.REQUEST_DEADLINE", 1.0)
    monkeypatch.setattr("shipper.registry.http.MIN_RATE", 1 << 20)
    digest = "sha256:" + "1" * 64
    registry.route("GET", "/v2/team/app/blobs/", lambda r: Reply(200, {}, trickle(b"x" * 1000, 0.2), chunked=True))
    started = time.monotonic()

    with client(registry, timeout=5.0) as c, pytest.raises(RegistryUnreachable, match="within"):
        b"".join(c.blob("team/app", digest, 1000))

    assert time.monotonic() - started < 5


# -- malformed answers are errors, not tracebacks ----------------------------------------------


def test_a_layer_size_that_is_not_a_number_is_a_clear_error(shipper: ShipperRunner, registry: HostileServer) -> None:
    manifest = json.dumps({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": "sha256:" + "a" * 64, "size": 10},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": "sha256:" + "b" * 64, "size": "huge"}],
    }).encode()  # fmt: skip
    registry.route("GET", "/v2/team/app/manifests/1", lambda r: Reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, manifest))
    registry.route("GET", "/v2/", lambda r: OK_V2)

    result = shipper("registry", "inspect", f"{registry.address}/team/app:1", "--ca", str(registry.ca_file))

    assert result.status == 1, result.stderr
    assert "'huge', which is not a size" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_next_page_link_with_a_bad_port_is_a_clear_error(registry: HostileServer) -> None:
    registry.route("GET", "/v2/_catalog", lambda r: Reply(
        200, {"Content-Type": "application/json", "Link": '<https://127.0.0.1:99999999/x>; rel="next"'}, b'{"repositories":["a"]}'
    ))  # fmt: skip

    with client(registry) as c, pytest.raises(RegistryError, match="another place"):
        list(c.catalog())




def test_a_head_answer_naming_a_large_size_is_not_a_body_to_refuse(registry: HostileServer) -> None:
    digest = "sha256:" + "2" * 64
    registry.route("HEAD", f"/v2/team/app/blobs/{digest}", lambda r: Reply(200, {"Content-Length": str(5 << 30)}))

    with client(registry) as c:
        assert c.blob_size("team/app", digest) == 5 << 30
