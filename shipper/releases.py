"""Signed releases: an in-toto statement about an image, in a DSSE envelope signed with the release key.

``shipper sign IMAGE --from HOST --key release.key`` writes one envelope per
image into the release directory (``--releases DIR``, ``$SHIPPER_RELEASES``,
else ``releases/`` in the current directory), named by shipper's content key of the image (the same
whatever ID an engine's store gives it, so that any engine finds it)::

    releases/<content key>.dsse.json

The statement's subject is what stays the same when an image is saved and
loaded on any engine: the digest of its config (which names every layer by
its diff ID), its diff IDs, shipper's content key (engine/info.py: layers, run
configuration, creation time, platform, the same in the classic and the
containerd store), and the tags it is released under. ``move --verify-key``
checks the source's image against it before anything crosses, and each
target's image against it before any tag moves there.

The envelope is DSSE (github.com/secure-systems-lab/dsse): the signature is
over ``PAE(payloadType, payload)``, ECDSA P-256 with SHA-256 as signing.py
makes it, so any DSSE verifier with the public key checks it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from shipper import signing
from shipper.signing import TrustError

PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://shipper.dev/release/v1"
MAX_ENVELOPE = 1 << 20  # a statement names one image: a few KiB


@dataclass(frozen=True)
class Release:
    """What a statement vouches for: one image, under some tags."""

    config: str  # sha256:… of the image's config
    diff_ids: tuple[str, ...]
    content: str  # engine.info.content_key
    tags: tuple[str, ...]
    platform: str = ""
    signed_by: str = ""  # the public key that verified it (set when read back)


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE's pre-authentication encoding: what the signature covers."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def statement(release: Release, source: str) -> dict[str, Any]:
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": tag, "digest": {"sha256": release.config.removeprefix("sha256:")}} for tag in release.tags]
        or [{"name": release.config, "digest": {"sha256": release.config.removeprefix("sha256:")}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "config": release.config, "diff_ids": list(release.diff_ids), "content": release.content, "tags": list(release.tags),
            "platform": release.platform, "source": source, "signed": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        },  # fmt: skip
    }


def key_id(key: ec.EllipticCurvePublicKey) -> str:
    """The sha256 of the public key's DER (SubjectPublicKeyInfo): which key signed, without trusting the envelope's word."""
    der = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def envelope(release: Release, source: str, key: ec.EllipticCurvePrivateKey) -> bytes:
    payload = json.dumps(statement(release, source), sort_keys=True, separators=(",", ":")).encode()
    signature = signing.sign(key, pae(PAYLOAD_TYPE, payload))
    document = {
        "payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(),
        "signatures": [{"keyid": key_id(key.public_key()), "sig": signature}],
    }  # fmt: skip
    return json.dumps(document, indent=1).encode() + b"\n"


def path_for(directory: Path, content: str) -> Path:
    return directory / f"{content}.dsse.json"


def write(directory: Path, release: Release, source: str, key: ec.EllipticCurvePrivateKey) -> Path:
    """The envelope for ``release`` in ``directory`` (replacing an older one for the same image), written whole."""
    directory.mkdir(parents=True, exist_ok=True)
    final = path_for(directory, release.content)
    partial = final.with_name(final.name + ".partial")
    partial.unlink(missing_ok=True)
    fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as out:
        out.write(envelope(release, source, key))
    os.replace(partial, final)
    return final


def read(directory: Path, content: str, keys: Sequence[Path], image: str) -> Release:
    """The release statement for the image whose content key is ``content``, its signature verified by one of
    ``keys``; TrustError when there is none, it does not verify, or it is not a statement about that image."""
    path = path_for(directory, content)
    try:
        with open(path, "rb") as source:
            data = source.read(MAX_ENVELOPE + 1)
    except FileNotFoundError:
        raise TrustError(
            f"{image} is not a signed release: no statement {path.name} in {directory}",
            hint=f"sign it where releases are made (shipper sign {image} --from HOST --key release.key) and carry {path.name} here, "
            "or give --releases DIR where the statements are",
        ) from None
    except OSError as exc:
        raise TrustError(f"cannot read the release statement {path}: {exc.strerror}") from None
    if len(data) > MAX_ENVELOPE:
        raise TrustError(f"{path} is not a release statement: over {MAX_ENVELOPE} bytes")
    payload = _verified_payload(path, data, keys)
    return _release_of(path, payload, content)


def _verified_payload(path: Path, data: bytes, keys: Sequence[Path]) -> tuple[bytes, str]:
    try:
        document = json.loads(data)
        payload_type, payload = str(document["payloadType"]), base64.b64decode(document["payload"], validate=True)
        signatures = [str(s["sig"]) for s in document["signatures"]][:16]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise TrustError(f"{path} is not a DSSE envelope (payloadType, payload, signatures)") from None
    if payload_type != PAYLOAD_TYPE:
        raise TrustError(f"{path} holds a {payload_type[:60]!r}, not an in-toto statement")
    message = pae(payload_type, payload)
    for key_path in keys:
        key = signing.load_public(key_path)
        for signature in signatures:
            try:
                signing.verify(key, message, signature, path.name)
            except TrustError:
                continue
            return payload, str(key_path)
    raise TrustError(
        f"the release statement {path.name} verifies with none of the keys given ({', '.join(str(k) for k in keys)}): "
        "signed with another key, or changed since",
        hint="check that --verify-key names the release key's .pub; do not move what does not verify",
    )


def _release_of(path: Path, verified: tuple[bytes, str], content: str) -> Release:
    payload, signed_by = verified
    try:
        document = json.loads(payload)
        predicate = document["predicate"]
        if document.get("_type") != STATEMENT_TYPE or document.get("predicateType") != PREDICATE_TYPE:
            raise ValueError("another kind of statement")
        release = Release(
            str(predicate["config"]), tuple(str(d) for d in predicate["diff_ids"]), str(predicate["content"]),
            tuple(str(t) for t in predicate["tags"]), str(predicate.get("platform", "")), signed_by,
        )  # fmt: skip
        subjects = {str(s["digest"]["sha256"]) for s in document["subject"]}
    except (ValueError, KeyError, TypeError):
        raise TrustError(f"{path.name} is signed but is not a shipper release statement") from None
    if release.content != content or subjects != {release.config.removeprefix("sha256:")}:
        raise TrustError(f"{path.name} is signed but speaks of another image ({release.config[:19]}…): it was renamed")
    return release


def check(release: Release, where: str, config: str | None, diff_ids: Sequence[str], content: str, tag: str | None) -> None:
    """TrustError unless the image found ``where`` is the one ``release`` vouches for (``config``: None where the
    engine does not say it, the containerd store), and ``tag`` is one it was released under."""
    if config is not None and config != release.config:
        raise TrustError(f"the image {where} is not the signed release: its config is {config[:19]}…, the release's {release.config[:19]}…")
    if tuple(diff_ids) != release.diff_ids:
        raise TrustError(f"the image {where} is not the signed release: its layers differ from the statement's")
    if content != release.content:
        raise TrustError(f"the image {where} is not the signed release: its configuration differs from the statement's")
    if tag is not None and tag not in release.tags:
        raise TrustError(
            f"{tag} is not a tag the release was signed under ({', '.join(release.tags) or 'none'})",
            hint="move it under a signed tag, or sign it under this one too",
        )
