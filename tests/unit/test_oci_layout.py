"""shipper's own save streams are OCI image layouts, written as Docker 25+ writes them."""

import hashlib

from shipper.archive.layerstore import _name_annotations, blob_path, oci_manifest

# Read from `docker save matrix/app:2` on Docker 28.5 (classic store): the manifest blob's digest, its config, its layers.
DOCKER_28_MANIFEST = "sha256:059e6a73ca8333978bf9867d46de537a43848e1fe7828b458b4a0ce0619b0e60"
CONFIG = ("sha256:33c37432c9ab7dfb18c88063375c160faccd28d1d9c2106517d0a97a6850e847", 601)
LAYERS = [
    ("sha256:8a76de648160062a9e4c14f7d199b1c4e1f9e0a2e5fd8288a4629208d460ecfe", 4196352),
    ("sha256:1862e3ecf3be3121a0967aaa49d4395367f9b2e95677ed570cf5eb9b3c22932e", 264192),
    ("sha256:451168eec998dd6b884891d3395caa211745b9987ac3c00cec21a38c2f4adf61", 1990656),
]


def test_the_oci_manifest_is_byte_for_byte_the_one_docker_28_writes() -> None:
    # The containerd image store names an image by this digest: the same bytes give the same image ID there.
    raw = oci_manifest(*CONFIG, LAYERS)
    assert "sha256:" + hashlib.sha256(raw).hexdigest() == DOCKER_28_MANIFEST
    assert len(raw) == 705


def test_blobs_are_named_by_their_digest() -> None:
    assert blob_path(LAYERS[0][0]) == "blobs/sha256/" + LAYERS[0][0][7:]


def test_index_annotations_name_the_image_as_docker_does() -> None:
    assert _name_annotations("matrix/app:2") == {"io.containerd.image.name": "docker.io/matrix/app:2", "org.opencontainers.image.ref.name": "2"}
    assert _name_annotations("busybox") == {"io.containerd.image.name": "docker.io/library/busybox:latest", "org.opencontainers.image.ref.name": "latest"}
    assert _name_annotations("reg.example:5000/team/app:v1")["io.containerd.image.name"] == "reg.example:5000/team/app:v1"
    assert _name_annotations("localhost/app:1")["io.containerd.image.name"] == "localhost/app:1"
