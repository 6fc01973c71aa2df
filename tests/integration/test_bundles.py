"""``shipper bundle``: across the air gap and back, proven on the far side; every kind of
damage refused, naming what is wrong, before any engine or registry is touched."""

from __future__ import annotations

import io
import json
import subprocess
import tarfile
from pathlib import Path

import pytest

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image, image_id
from shipper.lab.images import oci_archive
from shipper.registry import Address, RegistryClient
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import image_id_of, remove, tags_of

BASE = (Layer(3 << 20, "bundle-base"),)
APP = SyntheticImage("lab/bundled:1", (*BASE, Layer(512 << 10, "bundle-top", "text")))
BUSYBOX = busybox_image("lab/bundled-busybox:1")
NEXT = SyntheticImage("lab/bundled:2", (*BASE, Layer(256 << 10, "bundle-next")))


@pytest.fixture(scope="module")
def on_a(lab: Lab) -> Lab:
    lab.load_images("a", [APP, BUSYBOX, NEXT])
    return lab


@pytest.fixture(scope="module")
def bundle_file(on_a: Lab, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.conftest import ShipperRunner

    path = tmp_path_factory.mktemp("bundles") / "site.tar"
    result = ShipperRunner()("bundle", "create", APP.name, BUSYBOX.name, "--from", "a", "-o", str(path), "-i", str(on_a.inventory_path))
    assert result.status == 0, result.stderr
    return path


def run(lab: Lab, host: str, image: str) -> str:
    return lab.docker(host, "run", "--rm", "--network", "none", image, "echo", "from the bundle").stdout


def test_create_then_verify_reports_what_is_inside(shipper: ShipperRunner, bundle_file: Path) -> None:
    result = shipper("bundle", "verify", str(bundle_file), "--json")

    assert result.status == 0, result.stderr
    report = one(result.stdout, "verified")
    assert report["sound"] and report["checksum_file"]
    assert {tuple(i["tags"]): i["id"] for i in report["images"]} == {(APP.name,): image_id(APP), (BUSYBOX.name,): image_id(BUSYBOX)}
    assert not Path(f"{bundle_file}.partial").exists()


def test_load_on_b_and_c_arrives_identical_and_runs(shipper: ShipperRunner, on_a: Lab, bundle_file: Path) -> None:
    remove(on_a, "b,c", APP.name, BUSYBOX.name, image_id(APP), image_id(BUSYBOX))

    result = shipper("bundle", "load", str(bundle_file), "--to", "b,c", "--json", "-i", str(on_a.inventory_path))

    assert result.status == 0, result.stderr
    for host in ("b", "c"):
        assert image_id_of(on_a, host, APP.name) == image_id(APP)
        assert tags_of(on_a, host, image_id(BUSYBOX)) == [BUSYBOX.name]
        assert run(on_a, host, BUSYBOX.name) == "from the bundle\n"


def test_a_plain_docker_load_reads_the_same_file(on_a: Lab, bundle_file: Path) -> None:
    remove(on_a, "c", APP.name, BUSYBOX.name, image_id(APP), image_id(BUSYBOX))

    loaded = on_a.docker("c", "load", "-i", str(bundle_file))

    assert APP.name in loaded.stdout and BUSYBOX.name in loaded.stdout
    assert run(on_a, "c", BUSYBOX.name) == "from the bundle\n"


def test_a_compressed_split_bundle_verifies_and_loads(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    path = tmp_path / "site.tar.zst"
    created = shipper("bundle", "create", APP.name, "--from", "a", "-o", str(path), "--split", "1M", "--json", "-i", str(on_a.inventory_path))
    assert created.status == 0, created.stderr
    assert len(one(created.stdout, "created")["files"]) >= 2
    remove(on_a, "b", APP.name, image_id(APP))

    loaded = shipper("bundle", "load", str(path), "--to", "b", "-i", str(on_a.inventory_path))

    assert loaded.status == 0, loaded.stderr
    assert image_id_of(on_a, "b", APP.name) == image_id(APP)


def test_bundle_push_seeds_a_registry_an_engine_then_pulls_from(shipper: ShipperRunner, on_a: Lab, bundle_file: Path) -> None:
    registry = on_a.plain_registry.host_port

    first = shipper("bundle", "push", str(bundle_file), "--registry", f"http://{registry}", "--json")
    again = shipper("bundle", "push", str(bundle_file), "--registry", f"http://{registry}", "--json")

    assert first.status == 0, first.stderr
    assert one(first.stdout, "pushed")["uploaded"] >= 4
    assert one(again.stdout, "pushed")["uploaded"] == 0  # only what is missing goes up
    with RegistryClient(Address(registry, plain_http=True)) as client:
        assert "1" in list(client.tags("lab/bundled"))
    remove(on_a, "c", f"{registry}/lab/bundled-busybox:1")
    assert on_a.docker("c", "pull", f"{registry}/lab/bundled-busybox:1").returncode == 0
    assert image_id_of(on_a, "c", f"{registry}/lab/bundled-busybox:1") == image_id(BUSYBOX)
    assert run(on_a, "c", f"{registry}/lab/bundled-busybox:1") == "from the bundle\n"


def test_a_delta_bundle_leaves_out_what_the_far_side_holds_and_loads_there(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    remove(on_a, "b", NEXT.name, image_id(NEXT))
    on_a.load_images("b", [APP])  # b holds the base
    have = tmp_path / "have.json"
    assert shipper("bundle", "have", "b", "-o", str(have), "-i", str(on_a.inventory_path)).status == 0
    full, delta = tmp_path / "full.tar", tmp_path / "delta.tar"

    shipper("bundle", "create", NEXT.name, "--from", "a", "-o", str(full), "-i", str(on_a.inventory_path))
    made = shipper("bundle", "create", NEXT.name, "--from", "a", "-o", str(delta), "--have", str(have), "--json", "-i", str(on_a.inventory_path))

    assert made.status == 0, made.stderr
    assert full.stat().st_size - delta.stat().st_size > 3 << 20  # the shared base is not in it
    assert shipper("bundle", "verify", str(delta)).status == 0
    loaded = shipper("bundle", "load", str(delta), "--to", "b", "-i", str(on_a.inventory_path))
    assert loaded.status == 0, loaded.stderr
    assert image_id_of(on_a, "b", NEXT.name) == image_id(NEXT)


def test_a_delta_bundle_is_refused_where_what_it_relies_on_is_missing(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    on_a.load_images("b", [APP])
    have = tmp_path / "have.json"
    shipper("bundle", "have", "b", "-o", str(have), "-i", str(on_a.inventory_path))
    delta = tmp_path / "delta.tar"
    shipper("bundle", "create", NEXT.name, "--from", "a", "-o", str(delta), "--have", str(have), "-i", str(on_a.inventory_path))
    remove(on_a, "c", NEXT.name, APP.name, image_id(NEXT), image_id(APP))

    result = shipper("bundle", "load", str(delta), "--to", "c", "-i", str(on_a.inventory_path))

    assert result.status != 0
    assert "layer(s) this delta bundle relies on" in result.stderr and "error: c lacks" in result.stderr
    assert image_id_of(on_a, "c", image_id(NEXT)) is None


# -- damage -----------------------------------------------------------------------------------


def members(path: Path) -> list[tarfile.TarInfo]:
    with tarfile.open(path) as archive:
        return archive.getmembers()


def damaged(bundle_file: Path, tmp_path: Path, how: str) -> Path:
    data = bytearray(bundle_file.read_bytes())
    found = {m.name: m for m in members(bundle_file)}
    layer = next(m for name, m in found.items() if name.endswith("layer.tar") and m.size > 1 << 20)
    if how == "flipped byte":
        data[layer.offset_data + layer.size // 2] ^= 0x01
    elif how == "truncated":
        data = data[: layer.offset_data + layer.size // 2]
    elif how == "cut at a member boundary":
        data = data[: found["manifest.json"].offset]
    elif how == "appended garbage":
        data += b"\x00" * 1024 + b"garbage" + b"\x00" * 505
    elif how == "changed manifest":
        manifest = found["manifest.json"]
        text = data[manifest.offset_data : manifest.offset_data + manifest.size]
        data[manifest.offset_data : manifest.offset_data + manifest.size] = text.replace(b"lab/bundled:1", b"lab/bundlex:1")
    else:
        raise ValueError(how)
    out = tmp_path / f"{how.replace(' ', '-')}.tar"
    out.write_bytes(bytes(data))
    return out


def extra_member(bundle_file: Path, tmp_path: Path, info: tarfile.TarInfo, data: bytes = b"") -> Path:
    """The bundle with one more member just before its end (as an attacker would add it)."""
    out = tmp_path / "extra.tar"
    with tarfile.open(bundle_file) as source, tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as target:
        for member in source.getmembers():
            target.addfile(member, source.extractfile(member) if member.isfile() else None)
        target.addfile(info, io.BytesIO(data) if data else None)
    return out


DAMAGE = {
    "flipped byte": "does not match its config",
    "truncated": "ends early",
    "cut at a member boundary": "ends early",
    "appended garbage": "appended garbage",
    "changed manifest": "manifest.json in",
}


@pytest.mark.parametrize("how", list(DAMAGE))
def test_a_damaged_bundle_is_refused_before_any_engine_is_touched(
    shipper: ShipperRunner, on_a: Lab, bundle_file: Path, tmp_path: Path, how: str
) -> None:
    remove(on_a, "b", APP.name, image_id(APP))
    bad = damaged(bundle_file, tmp_path, how)

    verify = shipper("bundle", "verify", str(bad))
    load = shipper("bundle", "load", str(bad), "--to", "b", "-i", str(on_a.inventory_path))

    assert verify.status != 0 and load.status != 0
    assert DAMAGE[how] in verify.stderr, verify.stderr
    assert image_id_of(on_a, "b", image_id(APP)) is None


@pytest.mark.parametrize(
    ("name", "kind", "expected"),
    [
        ("../escape", tarfile.REGTYPE, "points outside the archive"),
        ("/etc/absolute", tarfile.REGTYPE, "points outside the archive"),
        ("link", tarfile.LNKTYPE, "hard link"),
        ("device", tarfile.CHRTYPE, "device"),
        ("manifest.json", tarfile.REGTYPE, "appears twice"),
    ],
)
def test_hostile_members_are_refused(shipper: ShipperRunner, bundle_file: Path, tmp_path: Path, name: str, kind: bytes, expected: str) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = "manifest.json" if kind == tarfile.LNKTYPE else ""
    data = b"x" if kind == tarfile.REGTYPE else b""
    info.size = len(data)

    result = shipper("bundle", "verify", str(extra_member(bundle_file, tmp_path, info, data)))

    assert result.status != 0
    assert expected in result.stderr, result.stderr


def test_a_changed_bundle_manifest_is_refused(shipper: ShipperRunner, bundle_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "site.tar"
    copy.write_bytes(bundle_file.read_bytes().replace(b'"created_by": "root', b'"created_by": "ROOT'))  # same length: a sound tar

    result = shipper("bundle", "verify", str(copy))

    assert result.status != 0
    assert "shipper-bundle.json in site.tar does not match its digest" in result.stderr


def test_oversized_metadata_is_refused(shipper: ShipperRunner, bundle_file: Path, tmp_path: Path) -> None:
    info = tarfile.TarInfo("huge.json")
    data = b"[" + b" " * (5 << 20) + b"]"
    info.size = len(data)

    result = shipper("bundle", "verify", str(extra_member(bundle_file, tmp_path, info, data)))

    assert result.status != 0 and "metadata over" in result.stderr


def test_a_zstd_bundle_is_loadable_by_hand_with_zstd_and_docker_load(on_a: Lab, shipper: ShipperRunner, tmp_path: Path) -> None:
    path = tmp_path / "hand.tar.zst"
    assert shipper("bundle", "create", APP.name, "--from", "a", "-o", str(path), "-i", str(on_a.inventory_path)).status == 0
    remove(on_a, "c", APP.name, image_id(APP))

    loaded = subprocess.run(f"zstd -dc {path} | docker -H unix://{on_a.engine('c').socket} load", shell=True, capture_output=True, text=True)

    assert loaded.returncode == 0, loaded.stderr
    assert image_id_of(on_a, "c", APP.name) == image_id(APP)


def test_the_checksum_file_beside_a_bundle_catches_any_change_to_the_file(shipper: ShipperRunner, bundle_file: Path, tmp_path: Path) -> None:
    copy = tmp_path / "site.tar"
    data = bytearray(bundle_file.read_bytes())
    data[-2000] ^= 0x01  # in the end padding: the content itself would still pass
    copy.write_bytes(bytes(data))
    Path(f"{copy}.sha256").write_text(Path(f"{bundle_file}.sha256").read_text())

    result = shipper("bundle", "verify", str(copy))

    assert result.status != 0
    assert "site.tar does not match its checksum in site.tar.sha256" in result.stderr


def test_a_bundle_from_a_local_engine_is_read_from_its_store_and_loads_anywhere(
    shipper: ShipperRunner, on_a: Lab, local_inventory: str, tmp_path: Path
) -> None:
    path = tmp_path / "local.tar"

    made = shipper("bundle", "create", APP.name, BUSYBOX.name, "--from", "a", "-o", str(path), "--json", "-i", local_inventory)

    assert made.status == 0, made.stderr
    assert one(made.stdout, "created")["source_read"] == "store"
    assert shipper("bundle", "verify", str(path)).status == 0
    remove(on_a, "b,c", APP.name, BUSYBOX.name, image_id(APP), image_id(BUSYBOX))
    assert shipper("bundle", "load", str(path), "--to", "b", "-i", local_inventory).status == 0
    assert image_id_of(on_a, "b", APP.name) == image_id(APP)
    assert BUSYBOX.name in on_a.docker("c", "load", "-i", str(path)).stdout  # plain docker load, tags and all
    assert run(on_a, "c", BUSYBOX.name) == "from the bundle\n"


def _as_containerd_saves_a_pulled_image(saved: bytes, name: str) -> tuple[bytes, list[str]]:
    """A docker save turned into what a containerd store that pulled the image writes: an OCI layout
    whose layers are gzip blobs (named by their compressed digest). Also returns the diff IDs."""
    import gzip

    source = tarfile.open(fileobj=io.BytesIO(saved))
    entry = json.load(source.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
    config = source.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
    packed = [gzip.compress(source.extractfile(m).read(), compresslevel=1, mtime=0) for m in entry["Layers"]]  # type: ignore[union-attr]
    return oci_archive(config, packed, [name]), json.loads(config)["rootfs"]["diff_ids"]


def test_a_bundle_holding_gzip_layers_verifies_loads_and_pushes(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    # A bundle made from a containerd store keeps pulled layers gzip-compressed: each is checked by what it
    # unpacks to, loads as the same image, and goes up to a registry as a gzip layer under its own digest.
    from shipper.archive.savestream import SaveStreamFilter
    from shipper.bundle import BundleImage, BundleWriter
    from shipper.bundle.format import trailer_for

    name = "lab/gzipped-busybox:1"
    saved = subprocess.run(["docker", "-H", f"unix://{on_a.engine('a').socket}", "save", BUSYBOX.name], capture_output=True, check=True).stdout
    data, diff_ids = _as_containerd_saves_a_pulled_image(saved, name)
    path = tmp_path / "gzipped.tar"
    images = [BundleImage(image_id(BUSYBOX), (name,), len(data), tuple(diff_ids), "linux/amd64")]
    checker = SaveStreamFilter([image_id(BUSYBOX)], verify_content=True, keep_tags=True, trailer=trailer_for(images, "a", []))
    writer = BundleWriter(path)
    for piece in checker.run([data]):
        writer.write(bytes(piece))
    writer.commit()
    registry = on_a.plain_registry.host_port
    remove(on_a, "c", name, f"{registry}/{name}")

    verified = shipper("bundle", "verify", str(path))
    loaded = shipper("bundle", "load", str(path), "--to", "c", "-i", str(on_a.inventory_path))
    pushed = shipper("bundle", "push", str(path), "--registry", f"http://{registry}", "--json")

    assert verified.status == 0, verified.stderr
    assert loaded.status == 0, loaded.stderr
    assert image_id_of(on_a, "c", name) == image_id(BUSYBOX)
    assert pushed.status == 0, pushed.stderr
    with RegistryClient(Address(registry, plain_http=True)) as client:
        manifest = json.loads(client.manifest("lab/gzipped-busybox", "1").raw)
    assert {layer["mediaType"] for layer in manifest["layers"]} == {"application/vnd.oci.image.layer.v1.tar+gzip"}
    assert on_a.docker("c", "pull", f"{registry}/{name}").returncode == 0
    assert image_id_of(on_a, "c", f"{registry}/{name}") == image_id(BUSYBOX)
    assert run(on_a, "c", f"{registry}/{name}") == "from the bundle\n"
