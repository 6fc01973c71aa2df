"""Signed releases for moves (releases.py holds the statement and its envelope): ``shipper sign`` writes them;
``move --verify-key`` checks the source's images against them before anything crosses (``vouch``); each target's
images are checked before its tags move (transfer/commit.py, with what ``vouch`` returned)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from cryptography.hazmat.primitives.asymmetric import ec

from shipper import releases
from shipper.engine.pool import EnginePool
from shipper.inventory.model import Host
from shipper.ops.release_policy import DEFAULT_DIRECTORY, ReleasePolicy, directory_for, policy_for, trusted_keys
from shipper.releases import Release
from shipper.signing import TrustError
from shipper.transfer.plan import SourceImage
from shipper.transfer.survey import source_images


@dataclass(frozen=True)
class Signed:
    image: SourceImage
    tags: tuple[str, ...]
    path: Path


def sign(source: Host, requested: Sequence[str], key: ec.EllipticCurvePrivateKey, directory: Path) -> list[Signed]:
    """A signed statement for each image asked for, under the names it was asked by (an image asked by ID: every
    tag it has there)."""
    with EnginePool() as engines:
        engine = engines.get(source)
        if engine.info().image_store == "containerd":
            raise TrustError(
                f"{source.describe()} keeps images in the containerd store, which names them by manifest, not by config digest",
                hint="sign the release where it was built on an engine of the classic store, or after moving it to one",
            )
        images = source_images(engine, requested)
        tags_there = {image.id: engine.inspect_image(image.id) for image in images}
    names: dict[str, list[str]] = {}
    for image in images:
        details = tags_there[image.id]
        found = [image.name] if image.name else list(details.tags if details is not None else ())
        names.setdefault(image.id, []).extend(t for t in found if t not in names.get(image.id, []))
    signed = []
    for image in {i.id: i for i in images}.values():
        release = Release(image.id, image.layers, image.content, tuple(names[image.id]), f"{image.os}/{image.architecture}")
        signed.append(Signed(image, release.tags, releases.write(directory, release, source.name, key)))
    return signed


def vouch(images: Sequence[SourceImage], where: str, source_store: str, policy: ReleasePolicy) -> dict[str, Release]:
    """source image ID -> its verified release; TrustError for the first image that is not a signed release, or
    not the one its statement names, or moved under a tag it was not released under. ``where``: the source, in
    messages (a host's description, or a registry)."""
    found: dict[str, Release] = {}
    for image in images:
        release = found.get(image.id)
        for keys in policy.key_sets if release is None else ():
            release = releases.read(policy.directory, image.content, keys, image.requested)
        assert release is not None
        config = image.id if source_store == "classic" else None  # the containerd store names images by manifest
        releases.check(release, f"{image.requested} on {where}", config, image.layers, image.content, image.name)
        found[image.id] = release
    return found


__all__ = ["DEFAULT_DIRECTORY", "ReleasePolicy", "Signed", "directory_for", "policy_for", "sign", "trusted_keys", "vouch"]
