"""Signed releases for moves: ``shipper sign IMAGE --from HOST --key release.key`` writes an in-toto statement
(config digest, diff IDs, content key, tags) in a DSSE envelope; ``move --verify-key release.pub`` (or a target's
``trusted_keys``) moves only what a statement vouches for, checked on the source before anything crosses."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from shipper import signing
from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.releases import pae
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import image_id_of, remove

RELEASE = SyntheticImage("lab/release:1", (Layer(1 << 20, "release-base"), Layer(64 << 10, "release-top", "text")))
UNSIGNED = SyntheticImage("lab/release:2", (Layer(1 << 20, "release-base"), Layer(64 << 10, "release-other", "text")))


@pytest.fixture(scope="module")
def signed(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """RELEASE signed with the release key into a release directory; UNSIGNED on the source too."""
    where = tmp_path_factory.mktemp("releases")
    signing.generate(where / "release", b"release passphrase")
    signing.generate(where / "other", None)
    (where / "passphrase").write_text("release passphrase\n")
    lab.load_images("a", [RELEASE, UNSIGNED])
    result = ShipperRunner()("sign", RELEASE.name, "--from", "a", "--key", str(where / "release.key"), "--passphrase-file",
                             str(where / "passphrase"), "--releases", str(where / "statements"), "--json", "-i", str(lab.inventory_path))  # fmt: skip
    assert result.status == 0, result.stderr
    statement = Path(one(result.stdout, "signed")["statement"])
    return {"dir": where, "statements": where / "statements", "statement": statement, "pub": where / "release.pub", "other": where / "other.pub"}


def move(shipper: ShipperRunner, lab: Lab, signed: dict[str, Path], image: str, key: Path, *more: str) -> object:
    return shipper("move", image, "--from", "a", "--to", "b", "--verify-key", str(key), "--releases", str(signed["statements"]),
                   "--json", "-i", str(lab.inventory_path), *more)  # fmt: skip


def test_a_signed_release_moves_and_its_envelope_verifies_without_shipper(shipper: ShipperRunner, lab: Lab, signed: dict[str, Path], tmp_path: Path) -> None:
    remove(lab, "b", RELEASE.name, image_id(RELEASE))

    result = move(shipper, lab, signed, RELEASE.name, signed["pub"])

    assert result.status == 0, result.stderr  # type: ignore[attr-defined]
    assert image_id_of(lab, "b", RELEASE.name) == image_id(RELEASE)
    envelope = json.loads(signed["statement"].read_text())
    payload = base64.b64decode(envelope["payload"])
    statement = json.loads(payload)
    assert envelope["payloadType"] == "application/vnd.in-toto+json" and statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["subject"] == [{"name": RELEASE.name, "digest": {"sha256": image_id(RELEASE).removeprefix("sha256:")}}]
    assert statement["predicate"]["diff_ids"] == [json.loads(lab.docker("a", "inspect", RELEASE.name).stdout)[0]["RootFS"]["Layers"]][0]
    (tmp_path / "pae").write_bytes(pae(envelope["payloadType"], payload))  # DSSE: the signature covers PAE(type, payload)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(envelope["signatures"][0]["sig"]))
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(signed["pub"]), "-signature", str(tmp_path / "sig.der"), str(tmp_path / "pae")],
                             capture_output=True, text=True)  # fmt: skip
    assert checked.returncode == 0 and "Verified OK" in checked.stdout


def renamed_statement(signed: dict[str, Path], tmp_path: Path, lab: Lab) -> Path:
    """RELEASE's statement copied to the name UNSIGNED's would have: a signed file that speaks of another image."""
    from shipper.engine.info import content_key

    copy = tmp_path / "statements"
    copy.mkdir()
    raw = json.loads(lab.docker("a", "inspect", UNSIGNED.name).stdout)[0]
    shutil.copy(signed["statement"], copy / f"{content_key(raw)}.dsse.json")
    return copy


def tampered_statement(signed: dict[str, Path], tmp_path: Path) -> Path:
    """RELEASE's statement with one more tag written into its payload (the signature left as it was)."""
    copy = tmp_path / "statements"
    copy.mkdir()
    envelope = json.loads(signed["statement"].read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    statement["predicate"]["tags"].append("lab/release:latest")
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    (copy / signed["statement"].name).write_text(json.dumps(envelope))
    return copy


REFUSED = {
    "an unsigned image": (UNSIGNED.name, "pub", "is not a signed release: no statement"),
    "another key": (RELEASE.name, "other", "verifies with none of the keys given"),
    "a statement changed after signing": (RELEASE.name, "pub", "verifies with none of the keys given"),
    "a statement renamed to another image": (UNSIGNED.name, "pub", "speaks of another image"),
    "a tag it was not signed under": ("lab/release:latest", "pub", "is not a tag the release was signed under"),
}


@pytest.mark.parametrize("how", list(REFUSED))
def test_what_is_not_a_signed_release_is_refused_before_anything_crosses(
    shipper: ShipperRunner, lab: Lab, signed: dict[str, Path], tmp_path: Path, how: str
) -> None:  # fmt: skip
    image, key, expected = REFUSED[how]
    lab.docker("a", "tag", RELEASE.name, "lab/release:latest")
    remove(lab, "b", RELEASE.name, UNSIGNED.name, "lab/release:latest", image_id(RELEASE), image_id(UNSIGNED))
    statements = signed["statements"]
    if how == "a statement changed after signing":
        statements = tampered_statement(signed, tmp_path)
    elif how == "a statement renamed to another image":
        statements = renamed_statement(signed, tmp_path, lab)

    result = shipper("move", image, "--from", "a", "--to", "b", "--verify-key", str(signed[key]), "--releases", str(statements),
                     "--json", "-i", str(lab.inventory_path))  # fmt: skip

    assert result.status != 0
    error = one(result.stdout, "error")["error"]
    assert error["type"] == "TrustError" and expected in error["message"], error
    assert image_id_of(lab, "b", image_id(RELEASE)) is None and image_id_of(lab, "b", image_id(UNSIGNED)) is None


def test_a_target_whose_inventory_trusts_a_key_takes_only_signed_releases(
    shipper: ShipperRunner, lab: Lab, signed: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # fmt: skip
    """A user's project: inventory/ (hosts.yml, host_vars/b.yml with trusted_keys) and releases/ beside it, shipper
    run from the project's directory with neither --verify-key nor --releases."""
    inventory = tmp_path / "inventory"
    (inventory / "host_vars").mkdir(parents=True)
    shutil.copy(lab.inventory_path, inventory / "hosts.yml")
    (inventory / "host_vars" / "b.yml").write_text(yaml.safe_dump({"trusted_keys": str(signed["pub"])}))
    shutil.copytree(signed["statements"], tmp_path / "releases")
    remove(lab, "b", RELEASE.name, UNSIGNED.name, image_id(RELEASE), image_id(UNSIGNED))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SHIPPER_RELEASES", raising=False)

    unsigned = shipper("move", UNSIGNED.name, "--from", "a", "--to", "b", "-i", str(inventory))
    assert unsigned.status != 0 and "is not a signed release" in unsigned.stderr
    assert image_id_of(lab, "b", image_id(UNSIGNED)) is None

    released = shipper("move", RELEASE.name, "--from", "a", "--to", "b", "-i", str(inventory))
    assert released.status == 0, released.stderr
    assert image_id_of(lab, "b", RELEASE.name) == image_id(RELEASE)


def test_sign_with_a_wrong_passphrase_is_refused_and_writes_nothing(shipper: ShipperRunner, lab: Lab, signed: dict[str, Path], tmp_path: Path) -> None:
    (tmp_path / "wrong").write_text("not it\n")

    result = shipper("sign", RELEASE.name, "--from", "a", "--key", str(signed["dir"] / "release.key"), "--passphrase-file", str(tmp_path / "wrong"),
                     "--releases", str(tmp_path / "out"), "-i", str(lab.inventory_path))  # fmt: skip

    assert result.status != 0 and "a wrong passphrase" in result.stderr
    assert not (tmp_path / "out").exists()


def test_from_a_registry_only_a_signed_release_is_pulled_and_the_plan_says_so_first(
    shipper: ShipperRunner, lab: Lab, signed: dict[str, Path]
) -> None:  # fmt: skip
    """``move --from-registry`` with --verify-key: the image as the registry describes it must be the one the
    statement names; --dry-run shows what each target would pull; an unsigned image is refused before any pull."""
    registry = lab.plain_registry.host_port
    for image in (RELEASE, UNSIGNED):
        lab.docker("a", "tag", image.name, f"{registry}/{image.name}")
        assert lab.docker("a", "push", "-q", f"{registry}/{image.name}").returncode == 0
    remove(lab, "c", RELEASE.name, UNSIGNED.name, image_id(RELEASE), image_id(UNSIGNED))
    common = ("--from-registry", f"http://{registry}", "--to", "c", "--verify-key", str(signed["pub"]), "--releases", str(signed["statements"]),
              "--json", "-i", str(lab.inventory_path))  # fmt: skip

    planned = shipper("move", RELEASE.name, *common, "--dry-run")
    shown = shipper("move", RELEASE.name, *[a for a in common if a != "--json"], "--dry-run")
    refused = shipper("move", UNSIGNED.name, *common)
    moved = shipper("move", RELEASE.name, *common)

    assert planned.status == 0, planned.stderr
    plan = one(planned.stdout, "plan")
    assert plan["source"] == f"registry {registry}" and plan["dry_run"] is True
    assert [(t["host"], t["action"]) for t in plan["targets"]] == [("c", "send")]
    assert plan["images"][0]["id"] == image_id(RELEASE) and plan["images"][0]["digest"].startswith("sha256:")
    assert shown.status == 0 and f"from registry {registry}" in shown.stdout and "c " in shown.stdout and "send" in shown.stdout, shown.stdout
    assert refused.status != 0 and "signed release" in refused.stdout + refused.stderr
    assert image_id_of(lab, "c", image_id(UNSIGNED)) is None
    assert moved.status == 0, moved.stderr
    assert image_id_of(lab, "c", RELEASE.name) == image_id(RELEASE)


def test_from_a_registry_an_image_of_another_platform_is_refused_before_any_pull(shipper: ShipperRunner, lab: Lab) -> None:
    registry = lab.plain_registry.host_port
    lab.docker("a", "tag", RELEASE.name, f"{registry}/{RELEASE.name}")
    assert lab.docker("a", "push", "-q", f"{registry}/{RELEASE.name}").returncode == 0

    result = shipper("move", RELEASE.name, "--from-registry", f"http://{registry}", "--to", "c", "--platform", "linux/arm64", "-i", str(lab.inventory_path))

    assert result.status != 0
    assert f"{RELEASE.name} in {registry} is a linux/amd64 image, not linux/arm64" in result.stderr, result.stderr
