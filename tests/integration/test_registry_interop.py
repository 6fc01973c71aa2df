"""Interop with an independent registry client (skopeo): what shipper pushes, skopeo reads
and copies; what skopeo pushes, shipper reads, every blob verified."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import pytest

from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.lab.images import save_stream
from shipper.registry import Credentials, RegistryClient, parse_address
from tests.integration.test_registry_client import push


@pytest.fixture
def skopeo_auth(lab: Lab, tmp_path: Path) -> list[str]:
    """skopeo options for the lab's TLS registry: an auth file and a CA directory (no password in argv)."""
    user, password = lab.registry_credentials()
    auth = tmp_path / "auth.json"
    auth.write_text(json.dumps({"auths": {lab.registry.host_port: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}}}))
    certs = tmp_path / "certs"
    certs.mkdir()
    (certs / "ca.crt").write_bytes(lab.tls_file("ca.crt").read_bytes())
    return ["--authfile", str(auth), "--cert-dir", str(certs)]


@pytest.fixture
def client(lab: Lab) -> RegistryClient:
    user, password = lab.registry_credentials()
    return RegistryClient(parse_address(lab.registry.host_port), Credentials(user, password), ca_file=str(lab.tls_file("ca.crt")))


def skopeo(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["skopeo", *args], capture_output=True, text=True, timeout=120)


def test_what_shipper_pushes_skopeo_inspects_and_copies(lab: Lab, client: RegistryClient, skopeo_auth: list[str], tmp_path: Path) -> None:
    layers = [b"interop layer one" * 1000, b"interop layer two"]
    manifest = push(client, "interop/from-shipper", "1", layers)
    ref = f"docker://{lab.registry.host_port}/interop/from-shipper:1"

    inspected = skopeo("inspect", *skopeo_auth, ref)
    copied = skopeo("copy", "--src-cert-dir", skopeo_auth[3], "--src-authfile", skopeo_auth[1], ref, f"dir:{tmp_path / 'copy'}")

    assert inspected.returncode == 0, inspected.stderr
    assert json.loads(inspected.stdout)["Digest"] == manifest.digest
    assert copied.returncode == 0, copied.stderr
    assert (tmp_path / "copy" / "manifest.json").read_bytes() == manifest.raw


def test_what_skopeo_pushes_shipper_reads_and_verifies(lab: Lab, client: RegistryClient, skopeo_auth: list[str], tmp_path: Path) -> None:
    image = SyntheticImage("interop/from-skopeo:1", (Layer(1 << 20, "interop-base"), Layer(64 << 10, "interop-top", "text")))
    archive = tmp_path / "image.tar"
    archive.write_bytes(b"".join(save_stream([image])))

    pushed = skopeo("copy", "--dest-cert-dir", skopeo_auth[3], "--dest-authfile", skopeo_auth[1],
                    f"docker-archive:{archive}", f"docker://{lab.registry.host_port}/interop/from-skopeo:1")  # fmt: skip

    assert pushed.returncode == 0, pushed.stderr
    manifest = client.manifest("interop/from-skopeo", "1")
    assert manifest.config is not None and manifest.config.digest == image_id(image)  # the same image
    for blob in manifest.layers:
        assert sum(len(chunk) for chunk in client.blob("interop/from-skopeo", blob.digest, blob.size)) == blob.size
    config = json.loads(client.blob_bytes("interop/from-skopeo", manifest.config.digest))
    assert len(config["rootfs"]["diff_ids"]) == len(manifest.layers) == 2
