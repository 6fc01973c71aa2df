"""The Registry API V2 client against the real registry (Debian's docker-registry):
with htpasswd + TLS, and plain HTTP without auth."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

from shipper.errors import DigestMismatch, RegistryAuthFailed, RegistryNotFound, RegistryUnreachable, UsageError
from shipper.lab import Lab
from shipper.registry import Address, Credentials, Manifest, RegistryClient, parse_address
from shipper.registry.client import DOCKER_MANIFEST, OCI_INDEX, digest_of
from tests.integration.netfaults import CuttingProxy


def secure_client(lab: Lab, password: str | None = None, ca: bool = True) -> RegistryClient:
    user, real = lab.registry_credentials()
    return RegistryClient(
        parse_address(lab.registry.host_port),
        Credentials(user, real if password is None else password, "test"),
        ca_file=str(lab.tls_file("ca.crt")) if ca else None,
        certs_dir=Path("/nonexistent"),
    )


def plain_client(lab: Lab, port: int | None = None) -> RegistryClient:
    host = lab.plain_registry.host_port if port is None else f"{lab.plain_registry.address}:{port}"
    return RegistryClient(Address(host, plain_http=True))


@pytest.fixture(params=["tls+auth", "plain"])
def client(request: pytest.FixtureRequest, lab: Lab) -> Iterator[RegistryClient]:
    with secure_client(lab) if request.param == "tls+auth" else plain_client(lab) as made:
        yield made


def blob_reader(data: bytes):  # type: ignore[no-untyped-def]
    return lambda offset: iter([data[offset:]])


def push(client: RegistryClient, repository: str, tag: str, layers: list[bytes], chunk_size: int = 16 << 20) -> Manifest:
    """An image made of ``layers`` (any bytes do for a registry) under ``repository:tag``."""
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest_of(b) for b in layers]}}).encode()
    for blob in [*layers, config]:
        client.upload_blob(repository, digest_of(blob), len(blob), blob_reader(blob), chunk_size=chunk_size)
    document = {
        "schemaVersion": 2,
        "mediaType": DOCKER_MANIFEST,
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": digest_of(config), "size": len(config)},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": digest_of(b), "size": len(b)} for b in layers],
    }
    raw = json.dumps(document).encode()
    manifest = Manifest(raw, DOCKER_MANIFEST, digest_of(raw))
    client.put_manifest(repository, tag, manifest)
    return manifest


def test_ping_says_it_is_a_v2_registry(client: RegistryClient) -> None:
    assert client.ping() == "registry/2.0"


def test_an_image_pushed_blob_by_blob_reads_back_verified(client: RegistryClient) -> None:
    layers = [os.urandom(300_000), os.urandom(1000)]

    manifest = push(client, "client/roundtrip", "1", layers)

    head = client.manifest_head("client/roundtrip", "1")
    assert head is not None and head.digest == manifest.digest and head.media_type == DOCKER_MANIFEST
    got = client.manifest("client/roundtrip", "1")
    assert got.raw == manifest.raw and got.digest == manifest.digest
    assert [layer.digest for layer in got.layers] == [digest_of(b) for b in layers]
    assert b"".join(client.blob("client/roundtrip", digest_of(layers[0]), len(layers[0]))) == layers[0]
    assert client.blob_size("client/roundtrip", digest_of(layers[1])) == 1000
    assert "1" in list(client.tags("client/roundtrip")) and "client/roundtrip" in list(client.catalog())


def test_a_big_blob_goes_up_in_chunks_and_a_second_upload_finds_it_there(client: RegistryClient) -> None:
    blob = os.urandom(5 << 20)
    progress: list[int] = []

    first = client.upload_blob("client/chunked", digest_of(blob), len(blob), blob_reader(blob), chunk_size=1 << 20, on_progress=progress.append)
    again = client.upload_blob("client/chunked", digest_of(blob), len(blob), blob_reader(blob), chunk_size=1 << 20)

    assert (first, again) == ("uploaded", "exists")
    assert progress[:5] == [1 << 20, 2 << 20, 3 << 20, 4 << 20, 5 << 20]
    assert hashlib.sha256(b"".join(client.blob("client/chunked", digest_of(blob)))).hexdigest() == digest_of(blob)[7:]


def test_tag_and_catalog_lists_are_read_page_by_page(client: RegistryClient) -> None:
    for tag in ("a", "b", "c", "d", "e"):
        push(client, "client/paged", tag, [tag.encode() * 100])
    for name in ("p1", "p2", "p3"):
        push(client, f"client/paged-{name}", "1", [name.encode()])

    assert sorted(client.tags("client/paged", page_size=2)) == ["a", "b", "c", "d", "e"]
    repositories = list(client.catalog(page_size=2))
    assert {"client/paged", "client/paged-p1", "client/paged-p2", "client/paged-p3"} <= set(repositories)
    assert len(repositories) == len(set(repositories))


def test_a_blob_is_mounted_from_another_repository_without_uploading_it(client: RegistryClient) -> None:
    blob = os.urandom(100_000)
    client.upload_blob("client/mount-from", digest_of(blob), len(blob), blob_reader(blob))

    assert client.mount_blob("client/mount-to", digest_of(blob), "client/mount-from")
    assert client.blob_size("client/mount-to", digest_of(blob)) == len(blob)


def test_deleting_a_manifest_by_digest_removes_its_tag(client: RegistryClient) -> None:
    manifest = push(client, "client/delete", "1", [b"to be deleted"])

    client.delete_manifest("client/delete", manifest.digest)

    assert client.manifest_head("client/delete", "1") is None
    with pytest.raises(RegistryNotFound, match="MANIFEST_UNKNOWN"):
        client.manifest("client/delete", "1")


def test_an_index_is_stored_and_read_with_its_platforms(client: RegistryClient) -> None:
    amd = push(client, "client/multi", "amd64", [b"amd64 layer"])
    arm = push(client, "client/multi", "arm64", [b"arm64 layer"])
    index = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": amd.digest, "size": len(amd.raw), "platform": {"os": "linux", "architecture": "amd64"}},
            {"mediaType": DOCKER_MANIFEST, "digest": arm.digest, "size": len(arm.raw), "platform": {"os": "linux", "architecture": "arm64", "variant": "v8"}},
        ],
    }
    raw = json.dumps(index).encode()

    client.put_manifest("client/multi", "1", Manifest(raw, OCI_INDEX, digest_of(raw)))

    got = client.manifest("client/multi", "1")
    assert got.is_index and [m.platform for m in got.manifests] == ["linux/amd64", "linux/arm64/v8"]


def test_unknown_names_are_clear_not_found_errors(client: RegistryClient) -> None:
    with pytest.raises(RegistryNotFound, match="NAME_UNKNOWN|MANIFEST_UNKNOWN") as caught:
        client.manifest("client/never-pushed", "1")
    assert "read manifest client/never-pushed:1" in caught.value.message
    assert client.manifest_head("client/never-pushed", "1") is None
    assert client.blob_size("client/never-pushed", "sha256:" + "0" * 64) is None


def test_digests_and_names_are_checked_before_any_request(client: RegistryClient) -> None:
    with pytest.raises(UsageError, match="not a valid digest"):
        client.blob_size("client/x", "sha256:../../etc/passwd")
    with pytest.raises(UsageError, match="not a valid repository name"):
        client.tags("Client/../x")


def test_a_wrong_password_is_a_clear_authentication_error(lab: Lab) -> None:
    with secure_client(lab, password="wrong") as client, pytest.raises(RegistryAuthFailed) as caught:
        client.ping()

    assert caught.value.message == f"registry {lab.registry.host_port} refused user 'shipper' (credentials from test)"
    assert "wrong" not in str(caught.value) + (caught.value.hint or "")


def test_no_credentials_for_a_registry_that_wants_them_says_how_to_log_in(lab: Lab) -> None:
    with RegistryClient(parse_address(lab.registry.host_port), None, ca_file=str(lab.tls_file("ca.crt"))) as client:
        with pytest.raises(RegistryAuthFailed, match="wants credentials") as caught:
            list(client.catalog())
    assert "shipper registry login" in (caught.value.hint or "")


def test_an_unknown_ca_is_refused_with_a_hint_never_downgraded(lab: Lab) -> None:
    with secure_client(lab, ca=False) as client, pytest.raises(RegistryUnreachable) as caught:
        client.ping()

    assert "TLS certificate of registry" in caught.value.message and "cannot be verified" in caught.value.message
    assert "--ca FILE" in (caught.value.hint or "")


def test_the_engine_certs_d_convention_is_honoured(lab: Lab, tmp_path: Path) -> None:
    (tmp_path / lab.registry.host_port).mkdir()
    (tmp_path / lab.registry.host_port / "ca.crt").write_bytes(lab.tls_file("ca.crt").read_bytes())
    user, password = lab.registry_credentials()

    with RegistryClient(parse_address(lab.registry.host_port), Credentials(user, password), certs_dir=tmp_path) as client:
        assert client.ping() == "registry/2.0"


def test_plain_http_is_refused_off_loopback_unless_insecure_is_asked_for() -> None:
    with pytest.raises(UsageError, match="refusing plain HTTP"):
        RegistryClient(Address("registry.example:5000", plain_http=True))
    RegistryClient(Address("registry.example:5000", plain_http=True), insecure=True).close()


def test_a_corrupted_blob_is_refused_by_its_digest(lab: Lab) -> None:
    blob = os.urandom(200_000)
    with plain_client(lab) as client:
        client.upload_blob("client/corrupt", digest_of(blob), len(blob), blob_reader(blob))
        stored = lab.plain_registry.dir / "data/docker/registry/v2/blobs/sha256" / digest_of(blob)[7:9] / digest_of(blob)[7:] / "data"
        damaged = bytearray(stored.read_bytes())
        damaged[100_000] ^= 0xFF
        stored.write_bytes(bytes(damaged))

        with pytest.raises(DigestMismatch, match="is corrupt: its content has digest"):
            b"".join(client.blob("client/corrupt", digest_of(blob), len(blob)))


def test_a_chunked_upload_resumes_from_the_range_the_registry_reports_after_the_connection_drops(lab: Lab) -> None:
    blob = os.urandom(6 << 20)
    registry = lab.plain_registry.address

    # Cut right after the headers of the third PATCH: the registry holds two chunks, and says so.
    with CuttingProxy((registry, 5099), (registry, 5000), before_body_of=(b"PATCH ", 3)) as proxy, plain_client(lab, 5099) as client:
        result = client.upload_blob("client/resumed", digest_of(blob), len(blob), blob_reader(blob), chunk_size=1 << 20)

    assert proxy.cut.is_set() and result == "uploaded"
    assert client.uploads.resumed_at == [2 << 20] and client.uploads.restarts == 0
    with plain_client(lab) as direct:
        assert b"".join(direct.blob("client/resumed", digest_of(blob), len(blob))) == blob


def test_an_upload_the_registry_dropped_after_a_cut_mid_chunk_starts_again_and_completes(lab: Lab) -> None:
    blob = os.urandom(6 << 20)
    registry = lab.plain_registry.address

    with CuttingProxy((registry, 5098), (registry, 5000), cut_after=(2 << 20) + 300_000) as proxy, plain_client(lab, 5098) as client:
        result = client.upload_blob("client/restarted", digest_of(blob), len(blob), blob_reader(blob), chunk_size=1 << 20)

    assert proxy.cut.is_set() and result == "uploaded"
    assert client.uploads.restarts + len(client.uploads.resumed_at) == 1
    with plain_client(lab) as direct:
        assert b"".join(direct.blob("client/restarted", digest_of(blob), len(blob))) == blob


# -- Bearer tokens (the lab's token registry and token service) -----------------------


def token_client(lab: Lab, password: str | None = None) -> RegistryClient:
    user, real = lab.registry_credentials()
    return RegistryClient(
        parse_address(lab.token_registry.host_port), Credentials(user, real if password is None else password, "test"),
        ca_file=str(lab.tls_file("ca.crt")),
    )  # fmt: skip


def test_a_token_registry_is_used_with_bearer_tokens_per_scope(lab: Lab) -> None:
    with token_client(lab) as client:
        manifest = push(client, "token/app", "1", [b"behind a token"])

        assert client.manifest("token/app", "1").digest == manifest.digest
        assert "token/app" in list(client.catalog())
        assert client.auth.fetched >= 2  # push scope, catalog scope: one token each


def test_a_token_about_to_expire_is_renewed_and_a_refused_one_replaced_once(lab: Lab) -> None:
    import time

    with token_client(lab) as client:
        push(client, "token/renew", "1", [b"renewed"])
        fetched = client.auth.fetched
        time.sleep(3)  # the lab's tokens live 12 s; shipper renews 10 s before expiry
        assert client.manifest_head("token/renew", "1") is not None
        assert client.auth.fetched == fetched + 1

        for token in client.auth._tokens.values():
            token.value = token.value[:-8] + "AAAAAAAA"  # the registry refuses a token with a bad signature
        assert client.manifest_head("token/renew", "1") is not None
        assert client.auth.fetched == fetched + 2


def test_a_wrong_password_at_the_token_service_is_a_clear_authentication_error(lab: Lab) -> None:
    with token_client(lab, password="wrong") as client, pytest.raises(RegistryAuthFailed) as caught:
        list(client.tags("token/app"))

    assert caught.value.message == f"registry {lab.token_registry.host_port} refused user 'shipper' (credentials from test)"
