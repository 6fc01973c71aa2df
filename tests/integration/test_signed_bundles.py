"""Signed bundles: ``bundle create --sign`` signs the bundle's manifest (which holds the digest of every member)
with a release key; ``bundle verify|load|push --key`` (or a host's ``trusted_keys``) refuses an unsigned bundle,
another key's signature, or any changed byte, before any engine or registry is touched, and says which. The
signature beside the bundle is checked by openssl, without shipper."""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import yaml

from shipper import signing
from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.registry import Address, RegistryClient
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import image_id_of, remove

SIGNED = SyntheticImage("lab/signed:1", (Layer(2 << 20, "signed-base"), Layer(256 << 10, "signed-top", "text")))
PASSPHRASE = "a long release passphrase"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """release.key (encrypted) / release.pub, and other.pub: a key that did not sign anything here."""
    where = tmp_path_factory.mktemp("keys")
    signing.generate(where / "release", PASSPHRASE.encode())
    signing.generate(where / "other", None)
    (where / "passphrase").write_text(PASSPHRASE + "\n")
    return where


@pytest.fixture(scope="module")
def made(lab: Lab, keys: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The same image bundled twice: signed with the release key, and unsigned."""
    lab.load_images("a", [SIGNED])
    where = tmp_path_factory.mktemp("signed-bundles")
    run = ShipperRunner()
    signed, unsigned = where / "signed.tar", where / "unsigned.tar"
    result = run("bundle", "create", SIGNED.name, "--from", "a", "-o", str(signed), "--sign", str(keys / "release.key"),
                 "--passphrase-file", str(keys / "passphrase"), "--json", "-i", str(lab.inventory_path))  # fmt: skip
    assert result.status == 0, result.stderr
    assert one(result.stdout, "created")["signature"] == f"{signed}.sig"
    result = run("bundle", "create", SIGNED.name, "--from", "a", "-o", str(unsigned), "-i", str(lab.inventory_path))
    assert result.status == 0, result.stderr
    return {"signed": signed, "unsigned": unsigned}


def member(path: Path, name: str) -> tarfile.TarInfo:
    with tarfile.open(path) as archive:
        return archive.getmember(name)


def read_member(path: Path, name: str) -> bytes:
    with tarfile.open(path) as archive:
        found = archive.extractfile(name)
        assert found is not None
        return found.read()


def test_a_signed_bundle_verifies_with_its_key_and_openssl_checks_the_signature_beside_it(
    shipper: ShipperRunner, made: dict[str, Path], keys: Path, tmp_path: Path
) -> None:  # fmt: skip
    bundle = made["signed"]
    result = shipper("bundle", "verify", str(bundle), "--key", str(keys / "other.pub"), "--key", str(keys / "release.pub"), "--json")

    assert result.status == 0, result.stderr
    report = one(result.stdout, "verified")
    assert report["signed"] and report["signed_by"] == str(keys / "release.pub")
    beside = Path(f"{bundle}.sig").read_text()
    assert read_member(bundle, "shipper-bundle.sig").decode() == beside  # the same signature inside and beside
    (tmp_path / "manifest.json").write_bytes(read_member(bundle, "shipper-bundle.json"))
    (tmp_path / "sig.der").write_bytes(base64.b64decode(beside))
    checked = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(keys / "release.pub"), "-signature", str(tmp_path / "sig.der"), str(tmp_path / "manifest.json")],
        capture_output=True, text=True,
    )  # fmt: skip
    assert checked.returncode == 0 and "Verified OK" in checked.stdout, checked.stderr
    listed = json.loads((tmp_path / "manifest.json").read_bytes())["members"]
    layer = next(name for name, entry in listed.items() if entry["size"] == 2 << 20 or name.endswith("layer.tar"))
    assert listed[layer]["sha256"] == "sha256:" + hashlib.sha256(read_member(bundle, layer)).hexdigest()  # what the signature vouches for


def test_a_signed_bundle_loads_where_its_key_is_required(shipper: ShipperRunner, lab: Lab, made: dict[str, Path], keys: Path) -> None:
    remove(lab, "b", SIGNED.name, image_id(SIGNED))

    result = shipper("bundle", "load", str(made["signed"]), "--to", "b", "--key", str(keys / "release.pub"), "--json", "-i", str(lab.inventory_path))

    assert result.status == 0, result.stderr
    assert one(result.stdout, "verified")["signed_by"] == str(keys / "release.pub")
    assert image_id_of(lab, "b", SIGNED.name) == image_id(SIGNED)


def tampered(bundle: Path, tmp_path: Path, how: str) -> Path:
    """A copy of the signed bundle changed as someone on the way could change it (without its .sig beside it,
    so that the signature inside is the one checked)."""
    data = bytearray(bundle.read_bytes())
    if how == "a byte of a layer":
        with tarfile.open(bundle) as archive:
            layer = max((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.size)
        data[layer.offset_data + layer.size // 2] ^= 0x01
    elif how == "the manifest, its digest made to match":
        manifest, digest = member(bundle, "shipper-bundle.json"), member(bundle, "shipper-bundle-sha256.json")
        text = bytes(data[manifest.offset_data : manifest.offset_data + manifest.size])
        changed = text.replace(b'"source": "a"', b'"source": "z"')
        assert changed != text
        data[manifest.offset_data : manifest.offset_data + manifest.size] = changed
        new_digest = json.dumps({"sha256": hashlib.sha256(changed).hexdigest()}).encode()
        assert len(new_digest) == digest.size
        data[digest.offset_data : digest.offset_data + digest.size] = new_digest
    elif how == "a byte of the signature":
        sig = member(bundle, "shipper-bundle.sig")
        position = sig.offset_data + 20
        data[position] = ord("A") if data[position] != ord("A") else ord("B")
    else:
        raise ValueError(how)
    out = tmp_path / "tampered.tar"
    out.write_bytes(bytes(data))
    return out


REFUSALS = {
    "unsigned": "is not signed, and a signature is required",
    "another key": "does not verify with this key",
    "a byte of a layer": "does not match",
    "the manifest, its digest made to match": "does not verify with this key",
    "a byte of the signature": "does not verify with this key",
    "a key file that is not a key": "is not a PEM public key",
}


@pytest.mark.parametrize("how", list(REFUSALS))
def test_a_bundle_that_is_not_what_the_key_signed_is_refused_and_the_target_is_untouched(
    shipper: ShipperRunner, lab: Lab, made: dict[str, Path], keys: Path, tmp_path: Path, how: str
) -> None:  # fmt: skip
    remove(lab, "b", SIGNED.name, image_id(SIGNED))
    key = keys / ("other.pub" if how == "another key" else "release.pub")
    if how == "a key file that is not a key":
        key = tmp_path / "release.pub"
        key.write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB not a PEM key\n")
    bundle = made["unsigned"] if how == "unsigned" else made["signed"]
    if how in ("a byte of a layer", "the manifest, its digest made to match", "a byte of the signature"):
        bundle = tampered(bundle, tmp_path, how)

    verify = shipper("bundle", "verify", str(bundle), "--key", str(key))
    load = shipper("bundle", "load", str(bundle), "--to", "b", "--key", str(key), "--json", "-i", str(lab.inventory_path))

    assert verify.status != 0 and load.status != 0
    assert REFUSALS[how] in verify.stderr, verify.stderr
    said = one(load.stdout, "error")["error"]
    assert REFUSALS[how] in said["message"] and said["type"] in ("TrustError", "BundleError")
    assert image_id_of(lab, "b", image_id(SIGNED)) is None


def test_a_host_whose_inventory_trusts_a_key_takes_only_bundles_it_signed(
    shipper: ShipperRunner, lab: Lab, made: dict[str, Path], keys: Path, tmp_path: Path
) -> None:  # fmt: skip
    """The user's own inventory (host_vars/b.yml sets trusted_keys), no --key on the command line."""
    inventory = tmp_path / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    shutil.copy(lab.inventory_path, inventory / "hosts.yml")
    (inventory / "host_vars" / "b.yml").write_text(yaml.safe_dump({"trusted_keys": [str(keys / "release.pub")]}))
    remove(lab, "b,c", SIGNED.name, image_id(SIGNED))

    unsigned = shipper("bundle", "load", str(made["unsigned"]), "--to", "b,c", "-i", str(inventory))
    assert unsigned.status != 0
    assert "is not signed, and a signature is required" in unsigned.stderr
    assert image_id_of(lab, "c", image_id(SIGNED)) is None  # refused for every target before any engine is touched

    signed = shipper("bundle", "load", str(made["signed"]), "--to", "b,c", "-i", str(inventory))
    assert signed.status == 0, signed.stderr
    assert image_id_of(lab, "b", SIGNED.name) == image_id(SIGNED) == image_id_of(lab, "c", SIGNED.name)


def test_an_unsigned_bundle_is_not_pushed_where_a_key_is_required(shipper: ShipperRunner, lab: Lab, made: dict[str, Path], keys: Path) -> None:
    registry = lab.plain_registry.host_port

    refused = shipper("bundle", "push", str(made["unsigned"]), "--registry", f"http://{registry}", "--key", str(keys / "release.pub"))
    assert refused.status != 0 and "is not signed" in refused.stderr
    with RegistryClient(Address(registry, plain_http=True)) as client:
        assert "lab/signed" not in list(client.catalog())

    pushed = shipper("bundle", "push", str(made["signed"]), "--registry", f"http://{registry}", "--key", str(keys / "release.pub"))
    assert pushed.status == 0, pushed.stderr
    with RegistryClient(Address(registry, plain_http=True)) as client:
        assert "1" in list(client.tags("lab/signed"))


def test_a_signing_key_with_a_wrong_passphrase_is_refused_before_the_source_is_asked(
    shipper: ShipperRunner, lab: Lab, keys: Path, tmp_path: Path
) -> None:  # fmt: skip
    wrong = tmp_path / "wrong"
    wrong.write_text("not the passphrase\n")
    output = tmp_path / "x.tar"

    result = shipper("bundle", "create", SIGNED.name, "--from", "a", "-o", str(output), "--sign", str(keys / "release.key"),
                     "--passphrase-file", str(wrong), "-i", str(lab.inventory_path))  # fmt: skip

    assert result.status != 0
    assert "a wrong passphrase" in result.stderr
    assert not any(tmp_path.glob("x.tar*"))
    assert "not the passphrase" not in result.stdout + result.stderr


def test_a_signature_inside_the_bundle_survives_a_plain_docker_load(lab: Lab, made: dict[str, Path]) -> None:
    """The extra member does not disturb docker: the file stays a standard image archive."""
    remove(lab, "c", SIGNED.name, image_id(SIGNED))
    loaded = lab.docker("c", "load", "-i", str(made["signed"]))
    assert SIGNED.name in loaded.stdout


def test_the_airgap_playbook_loads_only_a_bundle_its_release_key_signed(shipper: ShipperRunner, lab: Lab, made: dict[str, Path], keys: Path) -> None:
    playbook = Path(__file__).parents[2] / "playbooks" / "airgap.yml"
    remove(lab, "b", SIGNED.name, image_id(SIGNED))

    def play(bundle: Path) -> tuple[int, dict[str, str]]:
        result = shipper("play", str(playbook), "--json", "-i", str(lab.inventory_path), "-e", f"bundle={bundle}", "-e", "web=b",
                         "-e", f"release={SIGNED.name}", "-e", f"release_key={keys / 'release.pub'}", "--check")  # fmt: skip
        found = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
        return result.status, {e["step"]: e for e in found if e["event"] == "result" and e["step"] == "load the bundle"}

    status, unsigned = play(made["unsigned"])
    assert status != 0
    assert "is not signed" in json.dumps(unsigned)
    status, signed = play(made["signed"])
    assert status == 0 and signed["load the bundle"]["status"] == "changed"
