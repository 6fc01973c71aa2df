"""Release keys and detached signatures, in the form the air-gap tools already check.

Keys are ECDSA P-256 in PEM: the private key PKCS#8, encrypted with a
passphrase (never on the command line); the public key SubjectPublicKeyInfo.
A signature is what ``cosign sign-blob --key`` writes: the base64 of an ASN.1
DER ECDSA signature over the SHA-256 of the blob. So ``cosign verify-blob``
and ``openssl dgst -sha256 -verify release.pub -signature SIG.der BLOB`` check
it without shipper.
"""

from __future__ import annotations

import base64
import binascii
import os
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shipper.errors import ShipperError, UsageError
from shipper.secretfile import first_line

MAX_KEY_FILE = 64 << 10  # a PEM key is well under 1 KiB
MAX_SIGNATURE = 4 << 10  # base64 of a DER P-256 signature: under 100 bytes


class TrustError(ShipperError):
    """A key cannot be used, or a signature does not verify."""

    default_hint = "check that the key is the release key's (shipper key generate writes NAME.key and NAME.pub)"


def generate(prefix: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """Write ``prefix.key`` (mode 0600, encrypted with ``passphrase`` unless None) and ``prefix.pub``; neither may
    exist already. Their paths."""
    private, public = prefix.with_name(prefix.name + ".key"), prefix.with_name(prefix.name + ".pub")
    for path in (private, public):
        if path.exists() or path.is_symlink():
            raise UsageError(f"{path} exists already", hint="choose another name with -o, or move the old key away first")
    key = ec.generate_private_key(ec.SECP256R1())
    encryption = serialization.BestAvailableEncryption(passphrase) if passphrase else serialization.NoEncryption()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, encryption)
    pub = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    _write_new(private, pem, 0o600)
    try:
        _write_new(public, pub, 0o644)
    except BaseException:
        private.unlink()
        raise
    return private, public


def _write_new(path: Path, data: bytes, mode: int) -> None:
    """Create ``path`` anew (never through a planted symlink or over a file), then write ``data``."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, mode)
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "wb") as out:
        out.write(data)


def _read(path: Path, what: str) -> bytes:
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise TrustError(f"cannot read the {what} {path}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise TrustError(f"{path} is not a {what}: larger than any key file ({MAX_KEY_FILE} bytes)")
    return data


def load_private(path: Path, passphrase: bytes | None) -> ec.EllipticCurvePrivateKey:
    data = _read(path, "private key")
    try:
        key = serialization.load_pem_private_key(data, passphrase or None)
    except TypeError:  # encrypted and no passphrase given, or a passphrase for a key that has none
        raise TrustError(
            f"{path} is encrypted: it needs its passphrase" if not passphrase else f"{path} is not encrypted: give no passphrase",
            hint="--passphrase-file FILE (its first line), or the prompt on a terminal",
        ) from None
    except ValueError:
        raise TrustError(f"cannot open the private key {path}: a wrong passphrase, or not a PEM private key") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustError(f"{path} is not an ECDSA P-256 private key (shipper key generate writes one)")
    return key


def is_encrypted(path: Path) -> bool:
    """Whether the PEM private key at ``path`` is encrypted (it needs a passphrase)."""
    return b"-----BEGIN ENCRYPTED PRIVATE KEY-----" in _read(path, "private key")


def load_public(path: Path) -> ec.EllipticCurvePublicKey:
    data = _read(path, "public key")
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise TrustError(f"{path} is not a PEM public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise TrustError(f"{path} is not an ECDSA P-256 public key (shipper key generate writes one)")
    return key


def sign(key: ec.EllipticCurvePrivateKey, blob: bytes) -> str:
    """The base64 signature of ``blob``, as ``cosign sign-blob --key`` writes it."""
    return base64.b64encode(key.sign(blob, ec.ECDSA(hashes.SHA256()))).decode()


def verify(key: ec.EllipticCurvePublicKey, blob: bytes, signature: str, what: str) -> None:
    """TrustError unless ``signature`` (base64, as cosign writes it) is the key's over ``blob``."""
    text = signature.strip()
    if len(text) > MAX_SIGNATURE:
        raise TrustError(f"the signature of {what} is not a signature: {len(text)} characters")
    try:
        der = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise TrustError(f"the signature of {what} is not base64") from None
    try:
        key.verify(der, blob, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        raise TrustError(
            f"the signature of {what} does not verify with this key: signed with another key, or changed since",
            hint="check that --key names the release key's .pub; do not load what does not verify",
        ) from None


def read_passphrase(path: str) -> bytes:
    """The first line of ``path`` (``-``: stdin), as a passphrase."""
    return first_line(path, "passphrase").encode()
