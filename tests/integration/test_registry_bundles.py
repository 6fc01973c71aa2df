"""Bundles from a registry: ``bundle create --from-registry`` keeps what the registry holds byte for byte (an OCI
layout: a multi-platform index whole, compressed layers, the image's cosign signature), and ``bundle push`` into
another registry recreates it with the same digests, proven by an independent client (skopeo)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from pathlib import Path

import pytest

from shipper.lab import Lab
from shipper.registry import Address, RegistryClient
from shipper.registry.client import OCI_INDEX, OCI_MANIFEST, Manifest
from shipper.registry.credentials import Credentials
from shipper.registry.names import parse_address
from tests.conftest import ShipperRunner, events, one
from tests.integration.helpers import image_id_of, remove
from tests.integration.test_registry_interop import skopeo_auth  # noqa: F401  (a fixture)

REPOSITORY = "lab/multi"


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def put_blob(client: RegistryClient, data: bytes) -> dict:
    client.upload_blob(REPOSITORY, digest(data), len(data), lambda offset: iter([data[offset:]]))
    return {"digest": digest(data), "size": len(data)}


def put_manifest(client: RegistryClient, document: dict, media_type: str, reference: str | None = None) -> dict:
    raw = json.dumps(document, indent=3).encode()  # an indent no one else uses: the digest holds only if bytes are kept
    client.put_manifest(REPOSITORY, reference or digest(raw), Manifest(raw, media_type, digest(raw)))
    return {"mediaType": media_type, "digest": digest(raw), "size": len(raw)}


@pytest.fixture(scope="module")
def upstream(lab: Lab) -> dict[str, str]:
    """In the lab's plain registry: lab/multi:1, an index of linux/amd64 and linux/arm64 (gzip layers), and a
    cosign-style signature of the index under sha256-<hex>.sig."""
    with RegistryClient(Address(lab.plain_registry.host_port, plain_http=True)) as client:
        children, configs = {}, {}
        for arch in ("amd64", "arm64"):
            layer = gzip.compress(layer_tar(f"{arch}.bin", os.urandom(1 << 20)), mtime=0)
            config = json.dumps({"architecture": arch, "os": "linux", "rootfs": {"type": "layers", "diff_ids": [digest(gzip.decompress(layer))]},
                                 "config": {}}).encode()  # fmt: skip
            configs[arch] = digest(config)
            children[arch] = put_manifest(client, {
                "schemaVersion": 2, "mediaType": OCI_MANIFEST,
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put_blob(client, config)},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", **put_blob(client, layer)}],
            }, OCI_MANIFEST)  # fmt: skip
        index = put_manifest(client, {
            "schemaVersion": 2, "mediaType": OCI_INDEX,
            "manifests": [{**children[a], "platform": {"os": "linux", "architecture": a}} for a in ("amd64", "arm64")],
        }, OCI_INDEX, "1")  # fmt: skip
        payload = json.dumps({"critical": {"image": {"docker-manifest-digest": index["digest"]}, "type": "cosign container image signature"}}).encode()
        signature = put_manifest(client, {
            "schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **put_blob(client, b"{}")},
            "layers": [{"mediaType": "application/vnd.dev.cosign.simplesigning.v1+json", **put_blob(client, payload),
                        "annotations": {"dev.cosignproject.cosign/signature": "MEUCIQDexample"}}],
        }, OCI_MANIFEST, f"sha256-{index['digest'][7:]}.sig")  # fmt: skip
        empty = put_blob(client, b"{}")
        sbom = put_manifest(client, {  # an OCI 1.1 referrer: an SBOM whose subject is the index
            "schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": "application/spdx+json",
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", **empty},
            "layers": [{"mediaType": "application/spdx+json", **put_blob(client, b'{"spdxVersion": "SPDX-2.3"}')}],
            "subject": {"mediaType": OCI_INDEX, "digest": index["digest"], "size": index["size"]},
        }, OCI_MANIFEST)  # fmt: skip
        referrers = put_manifest(client, {  # distribution 2.8 has no referrers API: the spec's fallback tag lists it
            "schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{**sbom, "artifactType": "application/spdx+json"}],
        }, OCI_INDEX, f"sha256-{index['digest'][7:]}")  # fmt: skip
    return {"index": index["digest"], "amd64": children["amd64"]["digest"], "arm64": children["arm64"]["digest"], "signature": signature["digest"],
            "amd64_config": configs["amd64"], "sbom": sbom["digest"], "referrers": referrers["digest"]}  # fmt: skip


def layer_tar(name: str, data: bytes) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as archive:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


@pytest.fixture
def far(lab: Lab, tmp_path: Path) -> list[str]:
    """Options that reach the lab's TLS registry with a password (the far side's registry)."""
    user, password = lab.registry_credentials()
    (tmp_path / "password").write_text(password)
    return ["--ca", str(lab.tls_file("ca.crt")), "--username", user, "--password-file", str(tmp_path / "password")]


def far_client(lab: Lab) -> RegistryClient:
    user, password = lab.registry_credentials()
    return RegistryClient(parse_address(lab.registry.host_port), Credentials(user, password), ca_file=str(lab.tls_file("ca.crt")))


def test_a_registry_bundle_pushed_to_another_registry_keeps_every_digest_and_the_signature(
    shipper: ShipperRunner, lab: Lab, upstream: dict[str, str], far: list[str], skopeo_auth: list[str], tmp_path: Path
) -> None:  # fmt: skip
    bundle = tmp_path / "multi.tar.zst"
    created = shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", f"{REPOSITORY}:1", "-o", str(bundle), "--json")
    assert created.status == 0, created.stderr
    entries = {(e["tag"], e["digest"]) for e in one(created.stdout, "created")["images"]}
    assert entries == {("1", upstream["index"]), (f"sha256-{upstream['index'][7:]}.sig", upstream["signature"]),
                       (f"sha256-{upstream['index'][7:]}", upstream["referrers"])}  # fmt: skip

    verified = shipper("bundle", "verify", str(bundle), "--json")
    assert verified.status == 0, verified.stderr
    pushed = shipper("bundle", "push", str(bundle), "--registry", lab.registry.host_port, *far, "--json")
    assert pushed.status == 0, pushed.stderr

    with far_client(lab) as client:
        head = client.manifest_head(REPOSITORY, "1")
        assert head is not None and head.digest == upstream["index"]
        index = client.manifest(REPOSITORY, "1")
        assert [d.digest for d in index.manifests] == [upstream["amd64"], upstream["arm64"]]  # the index whole
        for child in index.manifests:
            manifest = client.manifest(REPOSITORY, child.digest)
            assert all(client.blob_size(REPOSITORY, d.digest) == d.size for d in [manifest.config, *manifest.layers] if d is not None)
        signature = client.manifest_head(REPOSITORY, f"sha256-{upstream['index'][7:]}.sig")
        assert signature is not None and signature.digest == upstream["signature"]
        referrers = client.manifest(REPOSITORY, f"sha256-{upstream['index'][7:]}")
        assert referrers.digest == upstream["referrers"] and [d.digest for d in referrers.manifests] == [upstream["sbom"]]
        sbom = client.manifest(REPOSITORY, upstream["sbom"])
        assert json.loads(sbom.raw)["subject"]["digest"] == upstream["index"]  # the SBOM still speaks of the same index
    raw = subprocess.run(["skopeo", "inspect", "--raw", *skopeo_auth, f"docker://{lab.registry.host_port}/{REPOSITORY}:1"], capture_output=True)
    assert raw.returncode == 0, raw.stderr
    assert digest(raw.stdout) == upstream["index"]  # an independent client reads the same bytes


def test_a_chosen_platform_is_bundled_alone_under_its_own_digest(shipper: ShipperRunner, lab: Lab, upstream: dict[str, str], tmp_path: Path) -> None:
    bundle = tmp_path / "arm64.tar"
    created = shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", f"{REPOSITORY}:1", "--platform", "linux/arm64",
                      "-o", str(bundle), "--json")  # fmt: skip
    assert created.status == 0, created.stderr
    top = [e for e in one(created.stdout, "created")["images"] if e["tag"] == "1"]
    assert [e["digest"] for e in top] == [upstream["arm64"]]


def test_a_changed_byte_or_an_unsigned_registry_bundle_is_refused(
    shipper: ShipperRunner, lab: Lab, upstream: dict[str, str], tmp_path: Path
) -> None:  # fmt: skip
    from shipper import signing

    signing.generate(tmp_path / "release", None)
    bundle = tmp_path / "multi.tar"
    created = shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", f"{REPOSITORY}:1", "-o", str(bundle),
                      "--sign", str(tmp_path / "release.key"))  # fmt: skip
    assert created.status == 0, created.stderr
    assert shipper("bundle", "verify", str(bundle), "--key", str(tmp_path / "release.pub")).status == 0

    data = bytearray(bundle.read_bytes())
    data[len(data) // 3] ^= 0x01  # inside a layer blob (the blobs make up nearly all of the file)
    (tmp_path / "changed.tar").write_bytes(bytes(data))
    changed = shipper("bundle", "verify", str(tmp_path / "changed.tar"))
    assert changed.status != 0 and "does not match its digest" in changed.stderr

    unsigned = tmp_path / "unsigned.tar"
    assert shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", f"{REPOSITORY}:1", "-o", str(unsigned)).status == 0
    refused = shipper("bundle", "push", str(unsigned), "--registry", f"http://{lab.plain_registry.host_port}", "--key", str(tmp_path / "release.pub"))
    assert refused.status != 0 and "is not signed" in refused.stderr



def test_a_registry_bundle_loads_into_engines_as_the_platform_they_run(shipper: ShipperRunner, lab: Lab, upstream: dict[str, str], tmp_path: Path) -> None:
    """The lab's engines run linux/amd64: they get that manifest's image (its config digest is the image ID in the
    classic store), under the tag, its gzip layers decompressed by docker load; the signature stays out."""
    bundle = tmp_path / "multi.tar.zst"
    assert shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", f"{REPOSITORY}:1", "-o", str(bundle)).status == 0
    remove(lab, "b,c", f"{REPOSITORY}:1", upstream["amd64_config"])

    first = shipper("bundle", "load", str(bundle), "--to", "b,c", "--json", "-i", str(lab.inventory_path))
    again = shipper("bundle", "load", str(bundle), "--to", "b,c", "--json", "-i", str(lab.inventory_path))

    assert first.status == 0, first.stderr
    for host in ("b", "c"):
        assert image_id_of(lab, host, f"{REPOSITORY}:1") == upstream["amd64_config"]
    assert {r["status"] for r in events(again.stdout, "result")} == {"unchanged"}
