"""The setup most users have, not the lab's: no ssh_config at all, host keys in ~/.ssh/known_hosts
(hashed and plain entries, ``[host]:port`` form), the key in ~/.ssh/id_ed25519, an inventory of
addresses and ports. ``ping``, a host-to-host ``move`` and ``accept-new`` must work there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from shipper.lab import Lab, Layer, SyntheticImage, image_id
from tests.conftest import ShipperRunner
from tests.integration.helpers import image_id_of, remove, write_inventory

APP = SyntheticImage("lab/plain-user:1", (Layer(1 << 20, "plain-user"),))


@pytest.fixture
def plain_inventory(lab: Lab, tmp_path: Path) -> str:
    hosts = {n: {"ansible_host": lab.address(n), "ansible_port": "2222", "ansible_user": "root"} for n in ("a", "b", "c")}
    hosts["c"]["ssh_strict_host_key_checking"] = "accept-new"
    return write_inventory(tmp_path / "hosts.yml", hosts)


def test_ping_reads_the_users_own_known_hosts_hashed_or_plain(shipper: ShipperRunner, plain_home: Path, plain_inventory: str) -> None:
    result = shipper("ping", "a,b", "-i", plain_inventory, "--json")

    assert result.status == 0, result.stderr
    assert "HostKeyUnknown" not in result.stderr


def test_accept_new_records_a_first_seen_host_in_the_users_known_hosts(
    shipper: ShipperRunner, lab: Lab, plain_home: Path, plain_inventory: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    result = shipper("ping", "c", "-i", plain_inventory)

    assert result.status == 0, result.stderr
    assert lab.address("c") in (plain_home / ".ssh" / "known_hosts").read_text()
    assert not (tmp_path / "~").exists()


def test_a_host_to_host_move_works_with_the_default_key_and_no_agent(
    shipper: ShipperRunner, lab: Lab, plain_home: Path, plain_inventory: str
) -> None:
    lab.load_images("a", [APP])
    remove(lab, "b", APP.name, image_id(APP))

    result = shipper("move", APP.name, "--from", "a", "--to", "b", "--via", "ssh", "-i", plain_inventory, "--json")

    assert result.status == 0, result.stderr
    outcome = [json.loads(line) for line in result.stdout.splitlines() if '"event": "result"' in line]
    assert outcome and outcome[0]["route"] == "host-to-host", outcome
    assert image_id_of(lab, "b", APP.name) == image_id(APP)


APP2 = SyntheticImage("lab/plain-user-ini:1", (Layer(1 << 20, "plain-user-ini"),))


def test_an_ini_inventory_found_through_ansible_inventory_moves_to_an_ssh_url_target(
    shipper: ShipperRunner, lab: Lab, plain_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An Ansible user's setup: an INI inventory named by $ANSIBLE_INVENTORY, no -i, a target given as a URL.
    ini = tmp_path / "hosts"
    ini.write_text(f"[build]\na ansible_host={lab.address('a')} ansible_port=2222 ansible_user=root\n")
    monkeypatch.setenv("ANSIBLE_INVENTORY", str(ini))
    monkeypatch.chdir(tmp_path)
    lab.load_images("a", [APP2])
    remove(lab, "b", APP2.name, image_id(APP2))

    result = shipper("move", APP2.name, "--from", "build", "--to", f"ssh://root@{lab.address('b')}:2222", "--via", "ssh", "--json")

    assert result.status == 0, result.stderr
    outcome = [json.loads(line) for line in result.stdout.splitlines() if '"event": "result"' in line]
    assert outcome and outcome[0]["route"] == "host-to-host", outcome
    assert image_id_of(lab, "b", APP2.name) == image_id(APP2)


APP3 = SyntheticImage("lab/plain-user-registry:1", (Layer(1 << 20, "plain-user-registry"),))


def test_a_move_through_a_registry_uploads_from_the_sources_store_with_the_users_own_ssh(
    shipper: ShipperRunner, lab: Lab, plain_home: Path, plain_inventory: str, tmp_path: Path
) -> None:
    user, password = lab.registry_credentials()
    (tmp_path / "registry-password").write_text(password)
    data = yaml.safe_load(Path(plain_inventory).read_text())
    data["registries"] = {
        "main": {"address": lab.registry.host_port, "ca": str(lab.tls_file("ca.crt")), "username": user, "password_file": str(tmp_path / "registry-password")}
    }
    Path(plain_inventory).write_text(yaml.safe_dump(data))
    lab.load_images("a", [APP3])
    remove(lab, "b", APP3.name, image_id(APP3))

    result = shipper("move", APP3.name, "--from", "a", "--to", "b", "--via", "registry", "-i", plain_inventory, "--json")

    assert result.status == 0, result.stdout
    outcome = [json.loads(line) for line in result.stdout.splitlines() if '"event": "result"' in line]
    assert outcome and outcome[0]["source_read"] == "store", outcome
    assert image_id_of(lab, "b", APP3.name) == image_id(APP3)
    assert password not in result.stdout + result.stderr
