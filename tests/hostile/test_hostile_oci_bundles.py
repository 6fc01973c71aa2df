"""Registry bundles (an OCI layout in a tar) that were tampered with or built to hurt: refused by name, in bounded
time and memory, before any engine or registry is touched (shipper/ops/oci_layout.py)."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile
from pathlib import Path

import pytest

from shipper.errors import ShipperError
from shipper.ops.oci_layout import read_oci_verified

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def sha(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def bundle(path: Path, blobs: list[bytes], top: list[dict], extra: list[tarfile.TarInfo] = (), pax: bool = False) -> Path:  # type: ignore[assignment]
    """A registry bundle as shipper writes one: oci-layout, blobs, index.json, the manifest listing them, its digest."""
    members: list[tuple[str, bytes]] = [("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')]
    members += [(f"blobs/sha256/{hashlib.sha256(b).hexdigest()}", b) for b in blobs]
    members.append(("index.json", json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": top}).encode()))
    listed = {name: {"size": len(data), "sha256": sha(data)} for name, data in members}
    document = json.dumps({"format": 1, "kind": "oci-layout", "images": [], "relies_on": [], "members": listed}).encode()
    members += [("shipper-bundle.json", document), ("shipper-bundle-sha256.json", json.dumps({"sha256": hashlib.sha256(document).hexdigest()}).encode())]
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = {"comment": "x"}
            archive.addfile(info, io.BytesIO(data))
        for info in extra:
            archive.addfile(info, io.BytesIO(b"x" * info.size))
    path.write_bytes(out.getvalue())
    return path


def image(annotations: dict[str, str] | None = None) -> tuple[list[bytes], dict]:
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(config), "size": len(config)},
                           "layers": []}).encode()  # fmt: skip
    descriptor = {"mediaType": OCI_MANIFEST, "digest": sha(manifest), "size": len(manifest),
                  "annotations": annotations or {"io.shipper.repository": "lab/x", "org.opencontainers.image.ref.name": "1"}}  # fmt: skip
    return [config, manifest], descriptor


def test_a_sound_registry_bundle_reads_back(tmp_path: Path) -> None:
    blobs, top = image()
    found = read_oci_verified(bundle(tmp_path / "ok.tar", blobs, [top]))
    assert [(e.repository, e.tag) for e in found.entries] == [("lab/x", "1")]


def test_indexes_nested_without_end_are_refused_by_depth_not_by_a_crash(tmp_path: Path) -> None:
    blobs, inner = image()
    for _ in range(3000):  # Python's recursion limit is 1000: a walk without a bound would end in a traceback
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [{k: v for k, v in inner.items() if k != "annotations"}]}).encode()
        blobs.append(index)
        inner = {"mediaType": OCI_INDEX, "digest": sha(index), "size": len(index)}
    top = {**inner, "annotations": {"io.shipper.repository": "lab/x", "org.opencontainers.image.ref.name": "1"}}

    with pytest.raises(ShipperError, match="indexes nested deeper than 4"):
        read_oci_verified(bundle(tmp_path / "deep.tar", blobs, [top]))


def test_a_blob_whose_content_is_not_its_name_is_refused(tmp_path: Path) -> None:
    blobs, top = image()
    path = bundle(tmp_path / "swapped.tar", blobs, [top])
    data = bytearray(path.read_bytes())
    at = data.find(b'"architecture": "amd64"')
    data[at : at + 23] = b'"architecture": "arm64"'
    path.write_bytes(bytes(data))

    with pytest.raises(ShipperError, match="does not match its digest"):
        read_oci_verified(path)


@pytest.mark.parametrize(
    ("member", "said"),
    [
        (tarfile.TarInfo("../escape"), "is not a member of an OCI bundle"),
        (tarfile.TarInfo("blobs/sha256/" + "0" * 64), "does not match its digest"),
    ],
)
def test_a_member_added_after_the_fact_is_refused(tmp_path: Path, member: tarfile.TarInfo, said: str) -> None:
    blobs, top = image()
    member.size = 3
    with pytest.raises(ShipperError, match=said):
        read_oci_verified(bundle(tmp_path / "added.tar", blobs, [top], extra=[member]))


def test_extended_headers_are_refused_before_their_content_is_read(tmp_path: Path) -> None:
    """shipper writes plain USTAR; a PAX header could declare gigabytes that Python's tarfile would hold in memory."""
    blobs, top = image()
    with pytest.raises(ShipperError, match="an OCI bundle holds only files"):
        read_oci_verified(bundle(tmp_path / "pax.tar", blobs, [top], pax=True))
