"""Release keys and detached signatures (shipper/signing.py), checked by tools that are not shipper: openssl.
The format is cosign's sign-blob: base64 of a DER ECDSA-SHA256 signature."""

from __future__ import annotations

import base64
import os
import stat
import subprocess
from pathlib import Path

import pytest

from shipper import signing
from shipper.errors import UsageError
from tests.conftest import ShipperRunner, one

BLOB = b'{"images": ["sha256:..."], "members": {}}\n'


def test_a_generated_key_signs_what_openssl_verifies_with_the_public_key(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path / "release", b"correct horse")
    signature = signing.sign(signing.load_private(private, b"correct horse"), BLOB)
    (tmp_path / "blob").write_bytes(BLOB)
    (tmp_path / "sig.der").write_bytes(base64.b64decode(signature))

    checked = subprocess.run(
        ["openssl", "dgst", "-sha256", "-verify", str(public), "-signature", str(tmp_path / "sig.der"), str(tmp_path / "blob")],
        capture_output=True, text=True,
    )  # fmt: skip

    assert checked.returncode == 0 and "Verified OK" in checked.stdout
    assert stat.S_IMODE(os.stat(private).st_mode) == 0o600
    assert b"ENCRYPTED PRIVATE KEY" in private.read_bytes()
    signing.verify(signing.load_public(public), BLOB, signature, "the blob")


def test_a_signature_made_by_openssl_verifies_here(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path / "release", None)
    (tmp_path / "blob").write_bytes(BLOB)
    made = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(private), str(tmp_path / "blob")], capture_output=True, check=True).stdout

    signing.verify(signing.load_public(public), BLOB, base64.b64encode(made).decode(), "the blob")


@pytest.mark.parametrize("change", ["blob", "signature", "key"])
def test_a_changed_blob_signature_or_key_does_not_verify(tmp_path: Path, change: str) -> None:
    private, public = signing.generate(tmp_path / "one", None)
    _, other = signing.generate(tmp_path / "two", None)
    signature = signing.sign(signing.load_private(private, None), BLOB)
    blob, key = BLOB, public
    if change == "blob":
        blob = BLOB.replace(b"images", b"imageS")
    elif change == "signature":
        raw = bytearray(base64.b64decode(signature))
        raw[-1] ^= 1
        signature = base64.b64encode(bytes(raw)).decode()
    else:
        key = other

    with pytest.raises(signing.TrustError, match="does not verify"):
        signing.verify(signing.load_public(key), blob, signature, "the blob")


def test_keys_that_cannot_be_used_are_refused_by_name(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path / "release", b"right")
    (tmp_path / "notakey.pub").write_text("hello\n")
    (tmp_path / "huge.pub").write_bytes(b"x" * (signing.MAX_KEY_FILE + 1))
    rsa = tmp_path / "rsa.pub"
    subprocess.run(f"openssl genrsa 2048 2>/dev/null | openssl rsa -pubout -out {rsa} 2>/dev/null", shell=True, check=True)

    with pytest.raises(signing.TrustError, match="wrong passphrase"):
        signing.load_private(private, b"wrong")
    with pytest.raises(signing.TrustError, match="needs its passphrase"):
        signing.load_private(private, None)
    with pytest.raises(signing.TrustError, match="not a PEM public key"):
        signing.load_public(tmp_path / "notakey.pub")
    with pytest.raises(signing.TrustError, match="larger than any key file"):
        signing.load_public(tmp_path / "huge.pub")
    with pytest.raises(signing.TrustError, match="not an ECDSA P-256 public key"):
        signing.load_public(rsa)
    with pytest.raises(signing.TrustError, match="not base64"):
        signing.verify(signing.load_public(public), BLOB, "not base64!", "the blob")


def test_an_existing_key_file_or_a_planted_symlink_is_never_written_over(tmp_path: Path) -> None:
    (tmp_path / "taken.key").write_text("keep me")
    (tmp_path / "planted.pub").symlink_to(tmp_path / "elsewhere")

    with pytest.raises(UsageError, match="exists already"):
        signing.generate(tmp_path / "taken", None)
    with pytest.raises(UsageError, match="exists already"):
        signing.generate(tmp_path / "planted", None)
    assert (tmp_path / "taken.key").read_text() == "keep me" and not (tmp_path / "elsewhere").exists()
    assert not (tmp_path / "planted.key").exists()


def test_key_generate_takes_the_passphrase_from_a_file_never_from_argv(shipper: ShipperRunner, tmp_path: Path) -> None:
    (tmp_path / "pass").write_text("s3cret phrase\n")

    result = shipper("key", "generate", "-o", str(tmp_path / "release"), "--passphrase-file", str(tmp_path / "pass"), "--json")

    assert result.status == 0, result.stderr
    assert one(result.stdout, "key") == {"event": "key", "private": str(tmp_path / "release.key"), "public": str(tmp_path / "release.pub"), "encrypted": True}
    assert "s3cret" not in result.stdout + result.stderr
    signing.load_private(tmp_path / "release.key", b"s3cret phrase")


def test_key_generate_without_a_passphrase_or_a_terminal_is_refused(shipper: ShipperRunner, tmp_path: Path) -> None:
    result = shipper("key", "generate", "-o", str(tmp_path / "release"))

    assert result.status == 2 and "--passphrase-file FILE, or --no-passphrase" in result.stderr
    assert not list(tmp_path.iterdir())


def test_a_passphrase_file_without_a_first_line_of_sane_length_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not start with a line"):
        signing.read_passphrase("/dev/zero")
    (tmp_path / "empty").write_text("")
    with pytest.raises(UsageError, match="is empty"):
        signing.read_passphrase(str(tmp_path / "empty"))
