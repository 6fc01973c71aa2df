"""``move --via registry``: the source pushes to the real registry (TLS + htpasswd), each
target pulls, and the images end up under their own names, with nothing of the registry left."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image, image_id
from tests.conftest import CLIResult, ShipperRunner
from shipper.registry import Credentials, RegistryClient, parse_address
from tests.integration.helpers import file_in_store, flip_byte, image_id_of, layers_of, remove, tags_of

APP = SyntheticImage("lab/viareg:1", (Layer(3 << 20, "viareg-base"), Layer(256 << 10, "viareg-top", "text")))
BUSYBOX = busybox_image("lab/viareg-busybox:1")


def registry_inventory(lab: Lab, tmp_path: Path, password: str | None = None) -> str:
    """The lab inventory plus ``registries:`` main (TLS + htpasswd), plain (HTTP, no auth), token (TLS + Bearer tokens)."""
    user, real = lab.registry_credentials()
    (tmp_path / "registry-password").write_text(real if password is None else password)
    data = yaml.safe_load(lab.inventory_path.read_text())
    data["registries"] = {
        "main": {"address": lab.registry.host_port, "ca": str(lab.tls_file("ca.crt")), "username": user, "password_file": "registry-password"},
        "plain": {"address": f"http://{lab.plain_registry.host_port}"},
        "token": {"address": lab.token_registry.host_port, "ca": str(lab.tls_file("ca.crt")), "username": user, "password_file": "registry-password"},
    }
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.fixture(scope="module")
def on_a(lab: Lab) -> Lab:
    lab.load_images("a", [APP, BUSYBOX])
    return lab


def no_registry_names(lab: Lab, host: str, registry: str) -> None:
    listing = lab.docker(host, "images", "--digests", "--format", "{{.Repository}}").stdout
    assert registry not in listing, listing


@pytest.mark.parametrize("registry", ["main", "plain", "token"])
def test_images_go_through_a_registry_and_arrive_under_their_own_names(
    shipper: ShipperRunner, on_a: Lab, tmp_path: Path, registry: str
) -> None:
    remove(on_a, "b,c", APP.name, BUSYBOX.name, image_id(APP), image_id(BUSYBOX))
    inventory = registry_inventory(on_a, tmp_path)

    result = shipper("move", APP.name, BUSYBOX.name, "--from", "a", "--to", "b,c", "--via", "registry", "--registry", registry, "-i", inventory, "--json")

    assert result.status == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert {e["host"]: e["status"] for e in events if e["event"] == "result"} == {"b": "moved", "c": "moved"}
    assert {e["source_read"] for e in events if e["event"] == "result"} == {"store"}  # uploaded from a's layer store, no docker push
    address = {"main": on_a.registry, "plain": on_a.plain_registry, "token": on_a.token_registry}[registry].host_port
    for host in ("b", "c"):
        assert image_id_of(on_a, host, APP.name) == image_id(APP)
        assert tags_of(on_a, host, image_id(BUSYBOX)) == [BUSYBOX.name]
        assert on_a.docker(host, "run", "--rm", "--network", "none", BUSYBOX.name, "echo", "pulled").stdout == "pulled\n"
        no_registry_names(on_a, host, address)
    no_registry_names(on_a, "a", address)
    assert on_a.registry_credentials()[1] not in result.stdout + result.stderr


def test_a_wrong_registry_password_fails_before_any_target_changes(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    remove(on_a, "b", APP.name, image_id(APP))
    inventory = registry_inventory(on_a, tmp_path, password="not-the-password")

    result = shipper("move", APP.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "-i", inventory)

    assert result.status != 0
    assert "refused the credentials" in result.stderr or "refused user" in result.stderr
    assert "not-the-password" not in result.stdout + result.stderr
    assert image_id_of(on_a, "b", image_id(APP)) is None
    no_registry_names(on_a, "a", on_a.registry.host_port)


def test_an_image_moved_by_id_alone_is_refused_for_the_registry_route(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    result = shipper("move", image_id(APP), "--from", "a", "--to", "b", "--via", "registry", "--registry", "plain", "-i", registry_inventory(on_a, tmp_path))

    assert result.status == 2
    assert "cannot go through a registry" in result.stderr


def test_layers_a_target_pulled_before_are_not_pulled_again(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    base = (Layer(4 << 20, "viareg-shared-base"),)
    first = SyntheticImage("lab/viareg-first:1", base)
    second = SyntheticImage("lab/viareg-second:1", (*base, Layer(64 << 10, "viareg-second-top")))
    on_a.load_images("a", [first, second])
    remove(on_a, "b", first.name, second.name, image_id(first), image_id(second))
    inventory = registry_inventory(on_a, tmp_path)

    moves = [
        shipper("move", image.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "plain", "-i", inventory, "--json")
        for image in (first, second)
    ]

    pulled = [next(json.loads(line) for line in m.stdout.splitlines() if '"result"' in line)["bytes_sent"] for m in moves]
    assert pulled[0] > 4 << 20  # the base (random data: gzip does not shrink it)
    assert pulled[1] < 1 << 20  # only the new top layer
    assert image_id_of(on_a, "b", second.name) == image_id(second)


def test_moving_one_platform_of_a_multi_platform_image_keeps_the_registry_index(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    # An engine holds one platform of a multi-platform image it pulled. Moving that image through the registry
    # makes the engine push its platform under the tag, in the index's place: shipper puts the index back.
    from shipper.lab.multiplatform import push_index, tag_holds

    registry = on_a.plain_registry.host_port
    name = f"{registry}/lab/multi:1"
    on_a.docker("a", "tag", BUSYBOX.name, f"{registry}/lab/multi-amd:1")
    assert on_a.docker("a", "push", "-q", f"{registry}/lab/multi-amd:1").returncode == 0
    index = push_index(registry, ("lab/multi-amd", "1"), "lab/multi", "1")
    remove(on_a, "a", name)
    remove(on_a, "b", name, image_id(BUSYBOX))  # b lacks it: the source pushes
    assert on_a.docker("a", "pull", "-q", name).returncode == 0  # the engine picks linux/amd64 out of the index

    result = shipper("move", name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "plain", "-i", registry_inventory(on_a, tmp_path), "--json")

    assert result.status == 0, result.stderr
    assert image_id_of(on_a, "b", name) == image_id(BUSYBOX)
    assert tag_holds(registry, "lab/multi", "1").digest == index.digest
    assert "still names the multi-platform index" in result.stdout


STORED = SyntheticImage("lab/viareg-store:1", (Layer(2 << 20, "viareg-store-base"), Layer(128 << 10, "viareg-store-top", "text")))


def results(run: CLIResult) -> list[dict[str, object]]:
    return [json.loads(line) for line in run.stdout.splitlines() if '"event": "result"' in line]


def registry_client(lab: Lab) -> RegistryClient:
    user, password = lab.registry_credentials()
    return RegistryClient(parse_address(lab.registry.host_port), Credentials(user, password), ca_file=str(lab.tls_file("ca.crt")))


def test_the_registry_gets_the_source_stores_layers_uncompressed_under_their_diff_ids(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    on_a.load_images("a", [STORED])
    remove(on_a, "b", STORED.name, image_id(STORED))

    result = shipper("move", STORED.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "-i", registry_inventory(on_a, tmp_path), "--json")

    assert result.status == 0, result.stderr
    [moved] = results(result)
    assert moved["status"] == "moved" and moved["source_read"] == "store"
    assert "uploaded from a's layer store: 3 blobs" in str(moved["note"])
    with registry_client(on_a) as client:
        manifest = client.manifest("lab/viareg-store", "1")
    assert manifest.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert manifest.config is not None and manifest.config.digest == image_id(STORED)
    assert [layer["digest"] for layer in manifest.document["layers"]] == layers_of(on_a, "a", STORED.name)
    assert image_id_of(on_a, "b", STORED.name) == image_id(STORED)
    assert on_a.registry_credentials()[1] not in result.stdout + result.stderr


def test_an_image_the_registry_holds_already_is_not_uploaded_again(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    on_a.load_images("a", [STORED])
    inventory = registry_inventory(on_a, tmp_path)
    remove(on_a, "b", STORED.name, image_id(STORED))
    assert shipper("move", STORED.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "-i", inventory).status == 0
    remove(on_a, "c", STORED.name, image_id(STORED))

    again = shipper("move", STORED.name, "--from", "a", "--to", "c", "--via", "registry", "--registry", "main", "-i", inventory, "--json")

    assert again.status == 0, again.stderr
    [moved] = results(again)
    assert moved["status"] == "moved" and "held it already: nothing uploaded" in str(moved["note"])
    assert image_id_of(on_a, "c", STORED.name) == image_id(STORED)


def test_without_store_reads_the_source_engine_pushes(shipper: ShipperRunner, on_a: Lab, tmp_path: Path) -> None:
    image = SyntheticImage("lab/viareg-pushed:1", (Layer(1 << 20, "viareg-pushed"),))
    on_a.load_images("a", [image])
    remove(on_a, "b", image.name, image_id(image))

    result = shipper(
        "move", image.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "--no-store-read",
        "-i", registry_inventory(on_a, tmp_path), "--json",
    )  # fmt: skip

    assert result.status == 0, result.stderr
    assert [r["source_read"] for r in results(result)] == ["push"]
    assert image_id_of(on_a, "b", image.name) == image_id(image)


def test_a_layer_changed_in_the_source_store_is_refused_by_the_registry_and_nothing_is_named(
    shipper: ShipperRunner, on_a: Lab, tmp_path: Path
) -> None:
    image = SyntheticImage("lab/viareg-corrupt:1", (Layer(1 << 20, "viareg-corrupt-base"), Layer(1 << 20, "viareg-corrupt-top")))
    on_a.load_images("a", [image])
    remove(on_a, "b", image.name, image_id(image))
    diff_ids = layers_of(on_a, "a", image.name)
    changed = file_in_store(on_a, "a", image.name, 1, image.layers[1].path)
    flip_byte(changed)
    try:
        result = shipper("move", image.name, "--from", "a", "--to", "b", "--via", "registry", "--registry", "main", "-i", registry_inventory(on_a, tmp_path))
    finally:
        flip_byte(changed)

    assert result.status != 0
    assert f"layer {diff_ids[1][:19]}… read from a's layer store is not what its image says" in result.stderr, result.stderr
    assert "--no-store-read" in result.stderr
    with registry_client(on_a) as client:
        assert client.manifest_head("lab/viareg-corrupt", "1") is None  # no name points at it
        assert client.blob_size("lab/viareg-corrupt", diff_ids[1]) is None
    assert image_id_of(on_a, "b", image.name) is None and image_id_of(on_a, "b", image_id(image)) is None
