"""The target's receiver (archive/receiver.py) against a real engine, fed streams made here: a base layer's
carrier is an import, registered while the layer arrives and checked against the digest it came under; a cut
keeps it, and the next whole stream removes it with the receiver's own carriers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time

from shipper.archive import receiver
from shipper.lab import Lab
from tests.integration.helpers import carrier_ids

LAYER_FILE = 300_000  # over the receiver's in-memory size: a layer fed to its carrier as it comes


def layer_tar(seed: str) -> bytes:
    """A layer: one file of bytes no other layer has."""
    data = b"".join(hashlib.sha256(f"{seed}-{i}".encode()).digest() for i in range(LAYER_FILE // 32))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        info = tarfile.TarInfo(f"{seed}.bin")
        info.size, info.mtime = len(data), 0
        archive.addfile(info, io.BytesIO(data))
    return out.getvalue()


def member(name: str, data: bytes) -> bytes:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    return info.tobuf(format=tarfile.USTAR_FORMAT) + data + bytes(-len(data) % 512)


def digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def save_stream(layers: list[bytes], names: list[str] | None = None, leave_out: int = 0) -> tuple[bytes, str, list[str]]:
    """(a docker-save stream as shipper's source writes it, the image's ID, its layers' diff IDs). ``names``: the
    digests the layers come under (their own by default); ``leave_out``: the first layers are not in the stream."""
    diff_ids = names or [digest(layer) for layer in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {}, "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps([{"Config": "blobs/sha256/" + digest(config)[7:], "RepoTags": None, "Layers": ["blobs/sha256/" + d[7:] for d in diff_ids]}]).encode()
    body = b"".join(member("blobs/sha256/" + d[7:], layer) for d, layer in list(zip(diff_ids, layers))[leave_out:])
    return body + member("blobs/sha256/" + digest(config)[7:], config) + member("manifest.json", manifest) + bytes(1024), digest(config), diff_ids


def run_receiver(lab: Lab, host: str, spec: dict, stream: bytes) -> subprocess.CompletedProcess[bytes]:
    env = {"PATH": os.environ["PATH"], "DOCKER_HOST": f"unix://{lab.engine(host).socket}", "HOME": "/nonexistent"}
    return subprocess.run([sys.executable, "-I", "-c", receiver.script(), json.dumps(spec)], input=stream, capture_output=True, env=env, timeout=120)


def image_ids(lab: Lab, host: str) -> set[str]:
    return set(lab.docker(host, "images", "-aq", "--no-trunc").stdout.split())


def layers_of(lab: Lab, host: str, image_id: str) -> list[str] | None:
    done = lab.docker(host, "image", "inspect", "-f", "{{json .RootFS.Layers}}", image_id, check=False)
    return json.loads(done.stdout) if done.returncode == 0 else None


def test_a_base_layer_goes_into_the_engines_store_by_import_and_leaves_no_carrier(lab: Lab) -> None:
    layers = [layer_tar("import-base"), layer_tar("import-top")]
    stream, image_id, diff_ids = save_stream(layers)
    spec = {"images": [{"layers": diff_ids, "os": "linux", "architecture": "amd64"}], "held": []}
    since = int(time.time())

    done = run_receiver(lab, "b", spec, stream)

    assert done.returncode == 0, done.stderr.decode()
    assert layers_of(lab, "b", image_id) == diff_ids
    actions = lab.docker("b", "events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter", "type=image", "--format", "{{.Action}}").stdout.split()
    assert "import" in actions  # the base layer's carrier; the top one's is a load
    assert carrier_ids(lab, "b") == set()
    lab.docker("b", "image", "rm", image_id)


def test_a_base_layer_that_is_not_what_its_name_says_is_refused_and_leaves_no_image(lab: Lab) -> None:
    """The engine checks an import against nothing: the receiver asks what it made, and removes it if it is wrong."""
    real, claimed = layer_tar("import-real"), layer_tar("import-claimed")
    stream, _, diff_ids = save_stream([real], names=[digest(claimed)])
    spec = {"images": [{"layers": diff_ids, "os": "linux", "architecture": "amd64"}], "held": []}
    before = image_ids(lab, "b")

    done = run_receiver(lab, "b", spec, stream)

    assert done.returncode == 1
    assert f"layer {digest(claimed)} arrived corrupt" in done.stderr.decode()
    assert image_ids(lab, "b") == before


def test_a_cut_after_the_base_layer_keeps_its_import_and_the_next_whole_stream_removes_it(lab: Lab) -> None:
    """The import's ID is the engine's to choose: shipper finds it on the target (a labelled carrier) and names it
    in the next receiver's spec ("carriers"), which removes it once the image holds its layer."""
    layers = [layer_tar("import-cut-base"), layer_tar("import-cut-top")]
    stream, image_id, diff_ids = save_stream(layers)
    spec = {"images": [{"layers": diff_ids, "os": "linux", "architecture": "amd64"}], "held": []}
    cut_at = len(member("x", layers[0])) + 512 + LAYER_FILE // 2  # half way through the top layer

    cut = run_receiver(lab, "b", spec, stream[:cut_at])

    assert cut.returncode == 1 and b"the stream was cut: 1 layer(s) kept" in cut.stderr
    kept = carrier_ids(lab, "b")
    assert [layers_of(lab, "b", c) for c in kept] == [diff_ids[:1]]

    rest, _, _ = save_stream(layers, leave_out=1)
    done = run_receiver(lab, "b", {**spec, "held": diff_ids[:1], "carriers": sorted(kept)}, rest)

    assert done.returncode == 0, done.stderr.decode()
    assert layers_of(lab, "b", image_id) == diff_ids
    assert carrier_ids(lab, "b") == set()
    lab.docker("b", "image", "rm", image_id)


def test_a_cut_inside_the_base_layer_leaves_nothing_behind(lab: Lab) -> None:
    """The import's body ends without its last chunk: the engine makes nothing of a half layer (not even one that
    happens to end between two files, which a tar reader would take for whole)."""
    layers = [layer_tar("import-half-base"), layer_tar("import-half-top")]
    stream, _, diff_ids = save_stream(layers)
    spec = {"images": [{"layers": diff_ids, "os": "linux", "architecture": "amd64"}], "held": []}
    before = image_ids(lab, "b")
    file_end = 512 + 512 + LAYER_FILE + (-LAYER_FILE % 512)  # the stream's header, the file's, the file: no end marker

    for end in (512 + LAYER_FILE // 2, file_end):
        cut = run_receiver(lab, "b", spec, stream[:end])

        assert cut.returncode == 1 and b"the stream was cut: 0 layer(s) kept" in cut.stderr, end
        assert image_ids(lab, "b") == before, end


def test_on_a_host_as_users_have_it_the_receiver_finds_the_system_engine_on_its_default_socket(lab: Lab) -> None:
    """No DOCKER_HOST, no docker config: the engine at /var/run/docker.sock, as a system dockerd is. The test gives
    the receiver a /run of its own (a mount namespace with a tmpfs there) where docker.sock is the lab engine's, so
    the machine's own /run is never touched."""
    layers = [layer_tar("system-base"), layer_tar("system-top")]
    stream, image_id, diff_ids = save_stream(layers)
    spec = {"images": [{"layers": diff_ids, "os": "linux", "architecture": "amd64"}], "held": []}
    since = int(time.time())
    inside = 'mount -t tmpfs tmpfs /run && ln -s "$1" /run/docker.sock && shift && exec "$@"'
    argv = ["unshare", "-m", "--propagation", "private", "sh", "-c", inside, "sh", lab.engine("b").socket,
            sys.executable, "-I", "-c", receiver.script(), json.dumps(spec)]  # fmt: skip

    done = subprocess.run(argv, input=stream, capture_output=True, env={"PATH": os.environ["PATH"], "HOME": "/nonexistent"}, timeout=120)

    assert done.returncode == 0, done.stderr.decode()
    assert layers_of(lab, "b", image_id) == diff_ids
    actions = lab.docker("b", "events", "--since", str(since), "--until", str(int(time.time()) + 1), "--filter", "type=image", "--format", "{{.Action}}").stdout.split()
    assert "import" in actions and "load" in actions  # the import goes only on a socket the receiver found itself
    assert carrier_ids(lab, "b") == set()
    lab.docker("b", "image", "rm", image_id)
