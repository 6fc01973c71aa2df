"""``shipper registry ls|tags|inspect|rm|login`` against the real registry (TLS + htpasswd)."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from shipper.lab import Lab
from shipper.registry import Credentials, RegistryClient, parse_address
from tests.conftest import ShipperRunner, one
from tests.integration.test_registry_client import push


@pytest.fixture
def registry(lab: Lab, tmp_path: Path) -> dict[str, str]:
    """Options that reach the lab's TLS registry with a password file."""
    user, password = lab.registry_credentials()
    (tmp_path / "password").write_text(password + "\n")
    return {"address": lab.registry.host_port, "ca": str(lab.tls_file("ca.crt")), "user": user, "password_file": str(tmp_path / "password")}


def access(registry: dict[str, str]) -> list[str]:
    return ["--ca", registry["ca"], "--username", registry["user"], "--password-file", registry["password_file"]]


@pytest.fixture
def client(lab: Lab) -> RegistryClient:
    user, password = lab.registry_credentials()
    return RegistryClient(parse_address(lab.registry.host_port), Credentials(user, password), ca_file=str(lab.tls_file("ca.crt")))


def test_ls_and_tags_list_what_the_registry_holds(shipper: ShipperRunner, registry: dict[str, str], client: RegistryClient) -> None:
    push(client, "cmd/listed", "1", [b"one"])
    push(client, "cmd/listed", "2", [b"two"])

    repositories = shipper("registry", "ls", registry["address"], *access(registry), "--json")
    tags = shipper("registry", "tags", f"{registry['address']}/cmd/listed", *access(registry))

    assert repositories.status == 0, repositories.stderr
    assert "cmd/listed" in one(repositories.stdout, "repositories")["repositories"]
    assert tags.stdout.split() == ["1", "2"]


def test_inspect_shows_digest_layers_and_sizes(shipper: ShipperRunner, registry: dict[str, str], client: RegistryClient) -> None:
    manifest = push(client, "cmd/inspected", "1", [os.urandom(2000), os.urandom(3000)])

    result = shipper("registry", "inspect", f"{registry['address']}/cmd/inspected:1", *access(registry), "--json")

    assert result.status == 0, result.stderr
    found = one(result.stdout, "manifest")
    assert found["digest"] == manifest.digest
    [platform] = found["platforms"]
    assert platform["platform"] == "linux/amd64"
    assert [layer["size"] for layer in platform["layers"]] == [2000, 3000]
    assert found["total_size"] == platform["size"]  # one platform: its layers and its config


def test_rm_lists_the_other_tags_it_would_take_and_needs_yes(shipper: ShipperRunner, registry: dict[str, str], client: RegistryClient) -> None:
    manifest = push(client, "cmd/removed", "1", [b"shared"])
    client.put_manifest("cmd/removed", "also", manifest)
    push(client, "cmd/removed", "other", [b"different"])
    ref = f"{registry['address']}/cmd/removed:1"

    refused = shipper("registry", "rm", ref, *access(registry))
    assert refused.status == 2
    assert "also deletes tags also" in refused.stderr and "--yes" in refused.stderr
    assert client.manifest_head("cmd/removed", "1") is not None

    done = shipper("registry", "rm", ref, *access(registry), "--yes", "--json")

    assert done.status == 0, done.stderr
    assert one(done.stdout, "deleted")["tags"] == ["1", "also"]
    assert client.manifest_head("cmd/removed", "1") is None and client.manifest_head("cmd/removed", "also") is None
    assert client.manifest_head("cmd/removed", "other") is not None


def test_login_checks_the_password_then_keeps_it_like_docker_login(
    shipper: ShipperRunner, registry: dict[str, str], tmp_path: Path
) -> None:
    config_dir = Path(os.environ["HOME"]) / ".docker"

    result = shipper("registry", "login", registry["address"], *access(registry))

    assert result.status == 0, result.stderr
    config = config_dir / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert registry["address"] in json.loads(config.read_text())["auths"]
    # Now the stored credentials are found without naming them.
    listed = shipper("registry", "ls", registry["address"], "--ca", registry["ca"])
    assert listed.status == 0, listed.stderr


def test_login_with_a_wrong_password_stores_nothing(shipper: ShipperRunner, registry: dict[str, str], tmp_path: Path) -> None:
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")

    result = shipper("registry", "login", registry["address"], "--ca", registry["ca"], "--username", registry["user"], "--password-file", str(wrong))

    assert result.status == 3
    assert "refused user 'shipper'" in result.stderr
    assert not (Path(os.environ["HOME"]) / ".docker" / "config.json").exists()


def test_a_registry_named_in_the_inventory_is_used_by_name(shipper: ShipperRunner, registry: dict[str, str], tmp_path: Path, client: RegistryClient) -> None:
    push(client, "cmd/named", "1", [b"named"])
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(
        "all:\n  hosts:\n    x:\n"
        f"registries:\n  main:\n    address: {registry['address']}\n    ca: {registry['ca']}\n"
        f"    username: {registry['user']}\n    password_file: {registry['password_file']}\n"
    )

    result = shipper("registry", "tags", "main/cmd/named", "-i", str(inventory))

    assert result.status == 0, result.stderr
    assert result.stdout.split() == ["1"]


def test_a_password_is_never_taken_from_the_command_line(shipper: ShipperRunner, registry: dict[str, str]) -> None:
    result = shipper("registry", "ls", registry["address"], "--username", "shipper")

    assert result.status == 2
    assert "--username needs --password-file" in result.stderr
