"""``shipper registry up|status|down|gc``: a registry container on lab host a, built from
Debian's docker-registry, reached at a non-loopback address (so the engines really check
its certificate through /etc/docker/certs.d), trusted by every engine, collected safely."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Iterator

import bcrypt
import pytest
import yaml

from shipper import htpasswd
from shipper.errors import RegistryAuthFailed, ShipperError
from shipper.lab import Lab, Layer, SyntheticImage, image_id, registry_image
from shipper.ops.move_registry import FILL_TIMEOUT
from shipper.provision import state_dir
from shipper.registry import Credentials, Manifest, RegistryClient, parse_address
from shipper.registry.client import DOCKER_MANIFEST, OCI_INDEX, digest_of
from tests.conftest import ShipperRunner, events, one
from tests.integration.helpers import image_id_of, remove
from tests.integration.test_registry_client import push

ADDRESS = "10.213.9.1"  # not loopback: engines verify TLS for it (127.0.0.0/8 would be "insecure")
PASSWORD = "bootstrap-Pa55"
APP = SyntheticImage("lab/boot:1", (Layer(2 << 20, "boot-base"), Layer(64 << 10, "boot-top")))
OTHER = SyntheticImage("lab/boot-other:1", (Layer(1 << 20, "boot-other"),))


@pytest.fixture(scope="module")
def routable(lab: Lab) -> Iterator[Lab]:
    """A non-loopback address on this machine for the registry; the registry images on a."""
    subprocess.run(["ip", "addr", "add", f"{ADDRESS}/32", "dev", "lo"], capture_output=True)
    lab.load_images("a", [registry_image("shipper-lab/registry:2", "2"), registry_image("shipper-lab/registry:3", "3"), APP, OTHER])
    yield lab
    subprocess.run(["ip", "addr", "del", f"{ADDRESS}/32", "dev", "lo"], capture_output=True)


@pytest.fixture
def secrets_dir(tmp_path: Path) -> Path:
    (tmp_path / "password").write_text(PASSWORD + "\n")
    return tmp_path


class Booted:
    """A registry shipper brought up on a for one test, and everything it leaves, cleaned after."""

    def __init__(self, shipper: ShipperRunner, lab: Lab, port: int, image: str, secrets: Path) -> None:
        self.shipper, self.lab, self.port, self.image, self.secrets = shipper, lab, port, image, secrets
        self.address = f"{ADDRESS}:{port}"

    def up(self, *extra: str, user: str = "admin") -> dict:
        result = self.shipper(
            "registry", "up", "a", "--port", str(self.port), "--address", ADDRESS, "--user", user,
            "--password-file", str(self.secrets / "password"), "--image", self.image, "--json", "-i", str(self.lab.inventory_path), *extra,
        )  # fmt: skip
        assert result.status == 0, result.stderr
        return one(result.stdout, "registry")

    def client(self, user: str = "admin", password: str = PASSWORD) -> RegistryClient:
        return RegistryClient(parse_address(self.address), Credentials(user, password, "test"))  # CA from /etc/docker/certs.d

    def inventory(self) -> str:
        data = yaml.safe_load(self.lab.inventory_path.read_text())
        data["registries"] = {"boot": {"address": self.address, "username": "admin", "password_file": str(self.secrets / "password")}}
        path = self.secrets / "hosts.yml"
        path.write_text(yaml.safe_dump(data))
        return str(path)

    def clean(self) -> None:
        self.shipper("registry", "down", "a", "--port", str(self.port), "--purge", "-i", str(self.lab.inventory_path))
        shutil.rmtree(f"/etc/docker/certs.d/{self.address}", ignore_errors=True)


@pytest.fixture
def booted(shipper: ShipperRunner, routable: Lab, secrets_dir: Path) -> Iterator[Booted]:
    registry = Booted(shipper, routable, 5443, "shipper-lab/registry:2", secrets_dir)
    registry.clean()
    yield registry
    registry.clean()


def test_up_makes_a_registry_every_engine_trusts_and_a_second_up_changes_nothing(booted: Booted) -> None:
    first = booted.up()
    second = booted.up()

    assert first["changed"] and "a registry container on a" in first["changes"]
    assert sorted(first["trusted"]) == ["a", "b", "c"]
    assert first["canary"] == "pushed from a, pulled on c"
    assert any(change.startswith("CA installed on") for change in first["changes"])
    assert second["changed"] is False and second["changes"] == [] and sorted(second["trusted"]) == ["a", "b", "c"]
    root = Path(state_dir(booted.port))
    assert htpasswd.is_bcrypt_file((root / "auth/htpasswd").read_text()) and htpasswd.at_current_cost((root / "auth/htpasswd").read_text())
    for secret in ("auth/htpasswd", "certs/ca.key", "certs/server.key", "http-secret"):
        assert stat.S_IMODE((root / secret).stat().st_mode) == 0o600, secret
    with booted.client() as client:
        assert client.ping() == "registry/2.0"


def test_engines_push_and_pull_through_it_with_the_ca_and_fail_clearly_without(shipper: ShipperRunner, booted: Booted) -> None:
    booted.up()
    remove(booted.lab, "c", APP.name, image_id(APP))

    moved = shipper("move", APP.name, "--from", "a", "--to", "c", "--via", "registry", "--registry", "boot", "-i", booted.inventory())
    assert moved.status == 0, moved.stderr
    assert image_id_of(booted.lab, "c", APP.name) == image_id(APP)

    ca = Path(f"/etc/docker/certs.d/{booted.address}/ca.crt")
    kept = ca.read_bytes()
    ca.unlink()
    try:
        remove(booted.lab, "c", APP.name, image_id(APP))
        inventory = booted.inventory()
        data = yaml.safe_load(Path(inventory).read_text())
        data["registries"]["boot"]["ca"] = str(Path(state_dir(booted.port)) / "certs/ca.crt")  # shipper itself still trusts it
        Path(inventory).write_text(yaml.safe_dump(data))
        refused = shipper("move", APP.name, "--from", "a", "--to", "c", "--via", "registry", "--registry", "boot", "-i", inventory)
    finally:
        ca.write_bytes(kept)

    assert refused.status != 0
    assert "does not trust the registry's certificate" in refused.stderr and "x509" in refused.stderr
    assert "/etc/docker/certs.d/" in refused.stderr
    assert image_id_of(booted.lab, "c", image_id(APP)) is None


def test_a_wrong_password_is_refused(booted: Booted) -> None:
    booted.up()

    with booted.client(password="wrong") as client, pytest.raises(RegistryAuthFailed, match="refused user 'admin'"):
        client.ping()


def test_changed_settings_replace_the_container_and_keep_the_stored_images(booted: Booted) -> None:
    booted.up()
    with booted.client() as client:
        stored = push(client, "boot/kept", "1", [b"kept across a new container"])

    changed = booted.up(user="deployer")

    assert changed["changed"] and "users: deployer" in changed["changes"]
    assert "the container, replaced (the stored images stay)" in changed["changes"]
    with booted.client(user="deployer") as client:
        assert client.manifest("boot/kept", "1").digest == stored.digest
    with booted.client(user="admin") as client, pytest.raises(RegistryAuthFailed):
        client.ping()


def test_status_and_down(shipper: ShipperRunner, booted: Booted) -> None:
    booted.up()

    status = shipper("registry", "status", "a", "--port", str(booted.port), "--json", "-i", str(booted.lab.inventory_path))
    down = shipper("registry", "down", "a", "--port", str(booted.port), "-i", str(booted.lab.inventory_path))

    found = one(status.stdout, "registry_status")
    assert (found["container"], found["image"], found["address"], found["users"]) == ("running", booted.image, booted.address, ["admin"])
    assert found["tls_expires"] and found["storage_bytes"] is not None
    assert down.status == 0 and "removed container" in down.stdout
    assert Path(state_dir(booted.port), "auth/htpasswd").exists()  # no --purge: the files and images stay


@pytest.mark.parametrize("flavour", ["2", "3"])
def test_gc_after_rm_reclaims_the_blobs_refuses_uploads_meanwhile_and_keeps_every_other_tag(
    shipper: ShipperRunner, routable: Lab, secrets_dir: Path, flavour: str
) -> None:
    booted = Booted(shipper, routable, 5450 + int(flavour), f"shipper-lab/registry:{flavour}", secrets_dir)
    booted.clean()
    try:
        booted.up("--trust", "a")
        with booted.client() as client:
            doomed = push(client, "boot/doomed", "1", [os.urandom(3 << 20)])
            push(client, "boot/kept", "1", [os.urandom(1 << 20)])
        removed = shipper("registry", "rm", f"{booted.address}/boot/doomed:1", "--username", "admin", "--password-file", str(secrets_dir / "password"))
        assert removed.status == 0, removed.stderr

        refusals: list[str] = []
        stop = threading.Event()

        def keep_pushing() -> None:  # an engine-like client pushing all through the collection
            with booted.client() as pusher:
                while not stop.is_set():
                    try:
                        push(pusher, "boot/during-gc", "1", [os.urandom(1000)])
                    except ShipperError as exc:  # refused (read-only), or not answering (restarting)
                        refusals.append(exc.message)

        thread = threading.Thread(target=keep_pushing)
        thread.start()
        try:
            gc = shipper("registry", "gc", "a", "--port", str(booted.port), "--username", "admin",
                         "--password-file", str(secrets_dir / "password"), "--json", "-i", str(routable.inventory_path))  # fmt: skip
        finally:
            stop.set()
            thread.join()

        assert gc.status == 0, gc.stderr
        result = one(gc.stdout, "gc")
        assert result["read_only_proven"] and result["reclaimed_bytes"] > 2 << 20  # the 3 MiB layer, less what was pushed meanwhile
        # boot/kept, and boot/during-gc where one of the pusher's pushes went in before the check (it may not have:
        # its repository then holds blobs and no tag, which is nothing to check)
        assert result["tags_checked"] >= 1
        assert any("UNSUPPORTED" in message for message in refusals), refusals  # refused while read-only, never half-written
        with booted.client() as client:
            assert client.blob_size("boot/doomed", doomed.layers[0].digest) is None
            kept = client.manifest("boot/kept", "1")
            assert sum(len(c) for c in client.blob("boot/kept", kept.layers[0].digest, kept.layers[0].size)) == 1 << 20
            assert client.manifest_head("boot/during-gc", "1") is not None
    finally:
        booted.clean()


def test_gc_passes_over_a_repository_whose_push_never_put_a_manifest(shipper: ShipperRunner, booted: Booted) -> None:
    """A push cut short (or refused while the registry was read-only) leaves a repository in the catalog with blobs
    and no tag: the registry answers NAME_UNKNOWN for its tags. That is no tag to check, not a failed collection
    (the gc test above met it now and then, when its pusher's blob went in just before read-only)."""
    from tests.integration.test_registry_client import blob_reader

    booted.up("--trust", "a")
    with booted.client() as client:
        push(client, "boot/whole", "1", [os.urandom(1000)])
        orphan = os.urandom(1000)
        client.upload_blob("boot/cut-short", digest_of(orphan), len(orphan), blob_reader(orphan))
        assert "boot/cut-short" in list(client.catalog())

    result = shipper("registry", "gc", "a", "--port", str(booted.port), "--username", "admin",
                     "--password-file", str(booted.secrets / "password"), "--json", "-i", str(booted.lab.inventory_path))  # fmt: skip

    assert result.status == 0, result.stderr
    assert one(result.stdout, "gc")["tags_checked"] == 1


def test_up_keeps_the_ca_on_this_machine_for_shippers_own_requests_from_a_machine_that_is_no_engine_host(
    shipper: ShipperRunner, booted: Booted, clean_environment: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """The machine shipper runs on is often none of the engines up hands the CA to (a laptop, a CI runner): here
    /etc/docker/certs.d is made to hold nothing for shipper. up keeps the CA under ~/.config/shipper/certs.d, for
    that address alone, and shipper's own requests verify the registry's certificate with it; without it they are
    refused, and say how to fix it."""
    monkeypatch.setattr("shipper.registry.http.CERTS_D", tmp_path / "no-certs.d")
    first = booted.up("--trust", "a")
    kept = clean_environment / ".config" / "shipper" / "certs.d" / booted.address / "ca.crt"
    assert any("CA kept on this machine" in change for change in first["changes"]), first["changes"]
    assert kept.read_bytes() == (Path(state_dir(booted.port)) / "certs" / "ca.crt").read_bytes()
    assert booted.up("--trust", "a")["changes"] == []
    ls = ("registry", "ls", booted.address, "--username", "admin", "--password-file", str(booted.secrets / "password"))

    listed = shipper(*ls)

    assert listed.status == 0, listed.stderr
    kept.unlink()
    refused = shipper(*ls)
    assert refused.status != 0 and "cannot be verified" in refused.stderr and "registry up keeps the CA" in refused.stderr

    # Kept for every name the certificate covers that means the registry from here ("localhost" would not), and
    # forgotten with the registry.
    booted.up("--trust", "a")
    kept_dir = kept.parent.parent
    names = {path.name for path in kept_dir.glob(f"*:{booted.port}")}
    assert names == {booted.address, f"{booted.lab.address('a')}:{booted.port}", f"a:{booted.port}"}, names
    gone = shipper("registry", "down", "a", "--port", str(booted.port), "--purge", "-i", str(booted.lab.inventory_path), "--json")
    assert gone.status == 0, gone.stderr
    assert not list(kept_dir.glob(f"*:{booted.port}"))


def test_delete_untagged_is_refused_on_2x_when_an_index_is_stored(shipper: ShipperRunner, booted: Booted) -> None:
    booted.up("--trust", "a")
    with booted.client() as client:
        child = push(client, "boot/multi", "amd64", [b"one platform"])
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": DOCKER_MANIFEST, "digest": child.digest, "size": len(child.raw), "platform": {"os": "linux", "architecture": "amd64"}}]}).encode()  # fmt: skip
        client.put_manifest("boot/multi", "1", Manifest(index, OCI_INDEX, digest_of(index)))

    result = shipper("registry", "gc", "a", "--port", str(booted.port), "--delete-untagged", "--username", "admin",
                     "--password-file", str(booted.secrets / "password"), "-i", str(booted.lab.inventory_path))  # fmt: skip

    assert result.status == 2
    assert "--delete-untagged is unsafe on registry 2.8" in result.stderr and "boot/multi:1" in result.stderr


def test_up_can_log_the_engines_in_with_the_password_on_stdin(booted: Booted) -> None:
    booted.lab.load_images("b", [APP])
    booted.up("--trust", "b", "--login")

    config = json.loads((booted.lab.root / "b" / "sshd" / "docker-config" / "config.json").read_text())
    assert booted.address in config["auths"]
    pushed = subprocess.run(
        ["ssh", "-F", str(booted.lab.ssh_config), "b", f"docker tag lab/boot:1 {booted.address}/boot/login:1 && docker push {booted.address}/boot/login:1"],
        capture_output=True, text=True,
    )
    assert pushed.returncode == 0, pushed.stderr


def test_a_replacement_that_does_not_come_up_gives_the_previous_container_back(booted: Booted) -> None:
    booted.up("--trust", "a")
    broken = SyntheticImage("shipper-lab/not-a-registry:1", (), cmd=("/bin/registry", "serve", "/etc/nowhere/config.yml"),
                            files=(("bin/registry", Path("/usr/bin/docker-registry")),))  # fmt: skip
    booted.lab.load_images("a", [broken])
    booted.image = broken.name

    result = booted.shipper(
        "registry", "up", "a", "--port", str(booted.port), "--address", ADDRESS, "--user", "admin",
        "--password-file", str(booted.secrets / "password"), "--image", broken.name, "--trust", "a", "-i", str(booted.lab.inventory_path),
    )  # fmt: skip

    assert result.status != 0
    assert "did not come up" in result.stderr and "the previous one runs again" in result.stderr
    with booted.client() as client:
        assert client.ping() == "registry/2.0"


@pytest.fixture
def tiers(shipper: ShipperRunner, booted: Booted, secrets_dir: Path) -> Iterator[tuple[Booted, Path]]:
    """The central registry: the lab's token registry (TLS, Bearer tokens: distribution's proxy mode logs in to an
    upstream with tokens only). A site cache of it on a (port 5444), and an inventory naming both: c's
    registry_mirror is the cache."""
    user, password = booted.lab.registry_credentials()
    (secrets_dir / "central-password").write_text(password)
    cache = Booted(shipper, booted.lab, 5444, "shipper-lab/registry:2", secrets_dir)
    cache.clean()
    data = yaml.safe_load(booted.lab.inventory_path.read_text())
    data["registries"] = {
        "central": {"address": booted.lab.token_registry.host_port, "ca": str(booted.lab.tls_file("ca.crt")), "username": user,
                    "password_file": str(secrets_dir / "central-password")},
        "site": {"address": cache.address, "username": "admin", "password_file": str(secrets_dir / "password")},
    }  # fmt: skip
    data["all"]["hosts"]["c"] = {**(data["all"]["hosts"].get("c") or {}), "registry_mirror": "site"}
    inventory = secrets_dir / "tiers.yml"
    inventory.write_text(yaml.safe_dump(data))
    yield cache, inventory
    cache.clean()


def test_a_site_cache_pulls_through_from_its_upstream_and_keeps_the_upstream_login_out_of_sight(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path], secrets_dir: Path
) -> None:  # fmt: skip
    """registry up --mirror-of central: a pull-through cache of the central registry; an engine pulls from the cache
    what only the central registry held; the upstream's password is neither in the container's environment (docker
    inspect shows it to anyone who may talk to the engine) nor in a file others can read."""
    cache, inventory = tiers
    user, password = booted.lab.registry_credentials()
    remove(booted.lab, "c", APP.name, image_id(APP))
    moved = shipper("move", APP.name, "--from", "a", "--to", "c", "--via", "registry", "--registry", "central", "-i", str(inventory))
    assert moved.status == 0, moved.stderr  # the central registry holds it now

    first = cache.up("--mirror-of", "central", "-i", str(inventory))
    again = cache.up("--mirror-of", "central", "-i", str(inventory))
    assert first["changed"] and f"a cache of https://{booted.lab.token_registry.host_port}" in first["changes"] and first["canary"] == ""
    assert again["changed"] is False

    through = f"{cache.address}/{APP.name}"
    remove(booted.lab, "c", through, APP.name, image_id(APP))
    docker = ["docker", "--config", str(secrets_dir / "docker-config"), "-H", f"unix://{booted.lab.engine('c').socket}"]
    login = subprocess.run([*docker, "login", "-u", "admin", "--password-stdin", cache.address], input=PASSWORD, capture_output=True, text=True)
    assert login.returncode == 0, login.stderr
    pulled = subprocess.run([*docker, "pull", through], capture_output=True, text=True)
    assert pulled.returncode == 0, pulled.stderr
    assert image_id_of(booted.lab, "c", through) == image_id(APP)

    container = json.loads(booted.lab.docker("a", "inspect", "shipper-registry-5444").stdout)[0]
    environment = "\n".join(container["Config"]["Env"])
    assert f"REGISTRY_PROXY_REMOTEURL=https://{booted.lab.token_registry.host_port}" in environment and password not in environment
    config = Path(state_dir(cache.port)) / "proxy/config.yml"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600 and password in config.read_text()
    status = one(shipper("registry", "status", "a", "--port", "5444", "--json", "-i", str(inventory)).stdout, "registry_status")
    assert status["mirror_of"] == f"https://{booted.lab.token_registry.host_port}" and status["upstream"] == "reachable (HTTP 401, Bearer)"


def test_a_cache_of_a_registry_that_asks_for_basic_auth_is_refused_before_anything_runs(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path], secrets_dir: Path
) -> None:  # fmt: skip
    """registry up makes htpasswd registries (Basic auth); distribution's proxy mode cannot log in to those."""
    cache, _ = tiers
    booted.up()
    refused = shipper("registry", "up", "a", "--port", "5444", "--address", ADDRESS, "--user", "admin", "--password-file",
                      str(secrets_dir / "password"), "--image", cache.image, "--mirror-of", booted.address, "--upstream-username", "admin",
                      "--upstream-password-file", str(secrets_dir / "password"), "--upstream-ca", str(Path(state_dir(booted.port)) / "certs/ca.crt"),
                      "-i", str(booted.lab.inventory_path))  # fmt: skip
    assert refused.status != 0 and "asks for Basic auth, which a registry cache cannot give it" in refused.stderr
    assert booted.lab.docker("a", "inspect", "shipper-registry-5444", check=False).returncode != 0


def test_a_tiered_move_pulls_through_a_hosts_site_cache_and_falls_back_to_the_central_registry_when_it_is_down(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path]
) -> None:  # fmt: skip
    """c's inventory says registry_mirror: site (a cache of the central registry); b has none. The source pushes
    once to the central registry; b pulls from it, c from its cache, which fetches from the central registry. With
    the cache gone, c pulls from the central registry, and its result says so."""
    cache, inventory = tiers
    cache.up("--mirror-of", "central", "-i", str(inventory))
    args = ("move", APP.name, "--from", "a", "--to", "b,c", "--via", "registry", "--registry", "central", "--json", "-i", str(inventory))
    remove(booted.lab, "b,c", APP.name, image_id(APP))

    tiered = shipper(*args)

    assert tiered.status == 0, tiered.stderr
    plan = one(tiered.stdout, "plan")
    assert plan["caches"] == {"c": cache.address}
    tiers, size = plan["tiers"], plan["images"][0]["size"]
    assert tiers["source_to_central"] == size and tiers["central_to_caches"] == {cache.address: size}
    assert tiers["to_targets"] == {"b": {"from": booted.lab.token_registry.host_port, "bytes": size}, "c": {"from": cache.address, "bytes": size}}
    notes = {r["host"]: r.get("note", "") for r in events(tiered.stdout, "result")}
    assert f"pulled from its site cache {cache.address}" in notes["c"] and "site cache" not in notes["b"]
    assert image_id_of(booted.lab, "b", APP.name) == image_id(APP) == image_id_of(booted.lab, "c", APP.name)
    with RegistryClient(parse_address(cache.address), Credentials("admin", PASSWORD, "test")) as client:
        assert "lab/boot" in list(client.catalog())  # the cache kept what it fetched for its site

    cache.clean()  # the site's cache is gone
    remove(booted.lab, "c", APP.name, image_id(APP))
    fallback = shipper(*args)

    assert fallback.status == 0, fallback.stderr
    note = {r["host"]: r.get("note", "") for r in events(fallback.stdout, "result")}["c"]
    assert f"its site cache {cache.address} did not answer" in note and "connection refused" in note
    assert f"pulled from {booted.lab.token_registry.host_port}" in note
    assert image_id_of(booted.lab, "c", APP.name) == image_id(APP)


def test_a_tiered_move_from_an_ansible_users_ini_inventory_and_plain_ssh_goes_through_the_sites_cache(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path], plain_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """The setup a user has, not the lab's: ~/.ssh with the key and known_hosts, no ssh_config; an Ansible
    inventory directory (INI hosts; group_vars/site.yml puts the group behind its cache) with shipper's registries:
    in a YAML file beside it; shipper run from a machine that is no engine host (no /etc/docker/certs.d for it: the
    cache's CA is the one registry up kept). b and c, both of the site, pull from the cache, filled ahead from the
    central one."""
    monkeypatch.setattr("shipper.registry.http.CERTS_D", tmp_path / "no-certs.d")
    cache, lab_inventory = tiers
    lab = booted.lab
    cache.up("--mirror-of", "central", "-i", str(lab_inventory))
    inventory = tmp_path / "inventory"
    (inventory / "group_vars").mkdir(parents=True)

    def line(name: str, extra: str = "") -> str:
        return f"{name} ansible_host={lab.address(name)} ansible_port=2222 ansible_user=root {extra}".rstrip()

    (inventory / "hosts").write_text(f"[build]\n{line('a')}\n\n[site]\n{line('b')}\n{line('c', 'ssh_strict_host_key_checking=accept-new')}\n")
    (inventory / "group_vars" / "site.yml").write_text("registry_mirror: site\n")
    (inventory / "shipper.yml").write_text(yaml.safe_dump({"registries": yaml.safe_load(lab_inventory.read_text())["registries"]}))
    remove(lab, "b,c", APP.name, image_id(APP))

    moved = shipper("move", APP.name, "--from", "build", "--to", "site", "--via", "registry", "--registry", "central", "--json",
                    "-i", str(inventory))  # fmt: skip

    assert moved.status == 0, moved.stderr
    assert one(moved.stdout, "plan")["caches"] == {"b": cache.address, "c": cache.address}
    notes = {r["host"]: r.get("note", "") for r in events(moved.stdout, "result")}
    for host in ("b", "c"):
        assert f"pulled from its site cache {cache.address} (filled from" in notes[host], notes
    assert image_id_of(lab, "b", APP.name) == image_id(APP) == image_id_of(lab, "c", APP.name)
    _, central_password = lab.registry_credentials()
    assert central_password not in moved.stdout + moved.stderr and PASSWORD not in moved.stdout + moved.stderr


@pytest.fixture
def silent_cache(tiers: tuple[Booted, Path], secrets_dir: Path) -> Iterator[tuple[socket.socket, Path]]:
    """b behind a site cache that takes connections and never answers (a host that hangs): its listening socket
    (the kernel accepts; nothing ever reads or answers) and an inventory that says so."""
    _, inventory = tiers
    data = yaml.safe_load(inventory.read_text())
    data["registries"]["silent"] = {"address": f"{ADDRESS}:5445", "username": "admin", "password_file": str(secrets_dir / "password")}
    data["all"]["hosts"]["b"] = {**(data["all"]["hosts"].get("b") or {}), "registry_mirror": "silent"}
    hung = secrets_dir / "hung.yml"
    hung.write_text(yaml.safe_dump(data))
    with socket.create_server((ADDRESS, 5445), backlog=16) as silent:
        yield silent, hung


def test_a_site_whose_cache_does_not_answer_holds_back_no_other_site(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path], silent_cache: tuple[socket.socket, Path]
) -> None:  # fmt: skip
    """b's site cache takes connections and never answers (a host that hangs); c's is well. c pulls from its cache
    as soon as that is filled, while b's filling still waits on its silent cache; b then pulls from the central
    registry without its engine waiting on the silent cache again, and says why. Before, every site waited for
    every cache to be filled (43 s here: four tries of 10 s), and b's engine then waited on it too."""
    cache, inventory = tiers
    cache.up("--mirror-of", "central", "-i", str(inventory))
    _, hung = silent_cache
    remove(booted.lab, "b,c", APP.name, image_id(APP))
    started, seen = time.monotonic(), {}  # event -> seconds after the command started, first time seen
    with subprocess.Popen([sys.executable, "-m", "shipper", "move", APP.name, "--from", "a", "--to", "b,c", "--via", "registry",
                           "--registry", "central", "--json", "-i", str(hung)], stdout=subprocess.PIPE, text=True) as moving:  # fmt: skip
        assert moving.stdout is not None
        lines = []
        for line in moving.stdout:
            lines.append(line)
            event = json.loads(line)
            key = f"{event['event']}:{event.get('host', '')}:{event.get('status') or event.get('phase') or ''}"
            seen.setdefault(key, time.monotonic() - started)

    assert moving.returncode == 0, "".join(lines)
    pushed, c_pulling = seen["finish:a:pushed"], seen["phase:c:sending"]
    assert c_pulling - pushed < FILL_TIMEOUT / 2, seen  # b's cache is asked for its first answer for FILL_TIMEOUT
    notes = {r["host"]: r.get("note", "") for r in events("".join(lines), "result")}
    assert "silent" not in notes["c"] and f"pulled from its site cache {cache.address} (filled from" in notes["c"]
    assert f"its site cache {ADDRESS}:5445 did not answer" in notes["b"] and f"pulled from {booted.lab.token_registry.host_port}" in notes["b"], notes
    assert seen["summary::"] - pushed < 2 * FILL_TIMEOUT + 10, seen  # two tries of the fill's first question, then b's pull
    assert image_id_of(booted.lab, "b", APP.name) == image_id(APP) == image_id_of(booted.lab, "c", APP.name)


def test_a_move_terminated_while_a_silent_cache_is_being_filled_ends_at_once_and_changes_no_target(
    booted: Booted, silent_cache: tuple[socket.socket, Path]
) -> None:  # fmt: skip
    """SIGTERM while the filling waits on a site cache that never answers (up to two tries of FILL_TIMEOUT): shipper
    ends within seconds, not when the filling gives up, and b has neither the image nor the registry's names."""
    silent, hung = silent_cache
    remove(booted.lab, "b", APP.name, image_id(APP))
    with subprocess.Popen([sys.executable, "-m", "shipper", "move", APP.name, "--from", "a", "--to", "b", "--via", "registry",
                           "--registry", "central", "-i", str(hung)], stdout=subprocess.PIPE, stderr=subprocess.PIPE) as moving:  # fmt: skip
        silent.settimeout(60)
        asked, _ = silent.accept()  # the filling's first question
        moving.send_signal(signal.SIGTERM)
        signalled = time.monotonic()
        _, stderr = moving.communicate(timeout=60)
        ended = time.monotonic() - signalled
        asked.close()

    assert moving.returncode == 128 + signal.SIGTERM, stderr
    assert b"interrupted by SIGTERM" in stderr
    assert ended < 3, f"shipper took {ended:.1f} s to end after SIGTERM: {stderr!r}"  # 0.01-0.04 s here; 5 s: a thread held the exit
    assert image_id_of(booted.lab, "b", APP.name) is None and image_id_of(booted.lab, "b", image_id(APP)) is None
    listing = booted.lab.docker("b", "images", "--digests", "--format", "{{.Repository}}").stdout
    assert booted.lab.token_registry.host_port not in listing and "5445" not in listing


def test_a_site_cache_reads_each_blob_from_the_central_registry_at_most_twice_for_all_its_hosts(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path]
) -> None:  # fmt: skip
    """b and c both behind the cache: shipper fills the cache before either pulls, then both pull from it.
    Counted in the central registry's own log: each blob is read whole from it at most twice, however many hosts
    the site has: once to keep, and, for a blob this small (under the 4 MiB the cache's HTTP/2 client reads ahead),
    once more by the question that started the fill (bench/fleet.py and test_fleet_links.py count the bytes of
    large ones: about one copy)."""
    cache, inventory = tiers
    data = yaml.safe_load(inventory.read_text())
    data["all"]["hosts"]["b"] = {**(data["all"]["hosts"].get("b") or {}), "registry_mirror": "site"}
    inventory.write_text(yaml.safe_dump(data))
    cache.up("--mirror-of", "central", "-i", str(inventory))
    remove(booted.lab, "b,c", APP.name, image_id(APP))
    log = booted.lab.root / "registry-token" / "registry.log"
    before = log.stat().st_size

    moved = shipper("move", APP.name, "--from", "a", "--to", "b,c", "--via", "registry", "--registry", "central", "--json", "-i", str(inventory))

    assert moved.status == 0, moved.stderr
    assert all("pulled from its site cache" in r.get("note", "") for r in events(moved.stdout, "result"))
    with log.open("rb") as lines:
        lines.seek(before)
        reads = [line for line in lines.read().decode(errors="replace").splitlines()
                 if "response completed" in line and "http.request.method=GET" in line and "/v2/lab/boot/blobs/" in line]  # fmt: skip
    blobs = [line.split("http.request.uri=")[1].split()[0] for line in reads]
    assert blobs and max(blobs.count(b) for b in blobs) <= 2, "\n".join(reads)


def test_up_hashes_again_a_password_kept_at_a_costlier_bcrypt_cost_and_the_registry_takes_it(booted: Booted) -> None:
    """A registry made by an older shipper (bcrypt cost 10: 75 ms of the registry's CPU for every request) is
    brought to today's cost by the next up, with the same password."""
    booted.up()
    path = Path(state_dir(booted.port)) / "auth/htpasswd"
    path.write_text("admin:" + bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(10)).decode() + "\n")

    again = booted.up()
    after = booted.up()

    assert again["changed"] and "users: admin (hashed again at bcrypt cost 5)" in again["changes"]
    assert htpasswd.at_current_cost(path.read_text()) and htpasswd.holds(path.read_text(), {"admin": PASSWORD})
    assert after["changed"] is False
    with booted.client() as client:
        assert client.ping() == "registry/2.0"


def test_the_large_site_recipe_bundle_push_into_the_sites_registry_then_targets_pull_through_their_caches(
    shipper: ShipperRunner, booted: Booted, tiers: tuple[Booted, Path], tmp_path: Path
) -> None:  # fmt: skip
    """No engine at the site holds the image: the bundle goes into the site's central registry, then each target
    pulls it (c through its cache), checked against the registry's description, tags last; a rerun changes nothing."""
    cache, inventory = tiers
    cache.up("--mirror-of", "central", "-i", str(inventory))
    bundle = tmp_path / "site.tar"
    assert shipper("bundle", "create", OTHER.name, "--from", "a", "-o", str(bundle), "-i", str(inventory)).status == 0
    pushed = shipper("bundle", "push", str(bundle), "--registry", "central", "-i", str(inventory))
    assert pushed.status == 0, pushed.stderr
    remove(booted.lab, "b,c", OTHER.name, image_id(OTHER))
    args = ("move", OTHER.name, "--from-registry", "central", "--to", "b,c", "--json", "-i", str(inventory))

    first = shipper(*args)
    again = shipper(*args)

    assert first.status == 0, first.stderr
    results = {r["host"]: r for r in events(first.stdout, "result")}
    assert {r["status"] for r in results.values()} == {"moved"}
    assert f"pulled from its site cache {cache.address}" in results["c"].get("note", "")
    assert image_id_of(booted.lab, "b", OTHER.name) == image_id(OTHER) == image_id_of(booted.lab, "c", OTHER.name)
    assert {r["status"] for r in events(again.stdout, "result")} == {"unchanged"}
