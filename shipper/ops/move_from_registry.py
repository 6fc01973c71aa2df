"""``move --from-registry R``: images a registry holds (pushed there by a bundle, a CI, another site) into the
targets' engines, with no engine to push from. The large air-gapped site's recipe: ``bundle push`` into the
site's central registry, then this, each target pulling through its site cache (``registry_mirror``).

Each image is read from R first (its manifest for the targets' platform, and its config: the image's ID in the
classic store, its diff IDs, its content key), so that each target is planned as any move plans it (only
what it lacks, tags last) and each arrival is checked against the registry's own description of the image.
"""

from __future__ import annotations

import json
import time
from typing import Sequence

from shipper.engine.info import content_key
from shipper.engine.pool import EnginePool
from shipper.errors import RegistryError
from shipper.hostpool import for_each_host
from shipper.inventory.model import Host
from shipper.ops.bundle import one_platform
from shipper.ops.move_registry import Pushed, RegistryRoute, pull_everywhere
from shipper.ops.oci_bundle import split_reference
from shipper.platforms import Platform
from shipper.progress import NullReporter, Reporter
from shipper.registry import RegistryClient
from shipper.transfer.commit import TargetResult, finish_target, static_result
from shipper.transfer.plan import SourceImage, TargetPlan, target_plan
from shipper.transfer.survey import target_view, with_requested


def describe(client: RegistryClient, reference: str, platform: Platform) -> tuple[SourceImage, Pushed]:
    """``repository:tag`` in the registry, as a move's source image (``platform``'s manifest of an index), and
    the digest the targets pull it by."""
    repository, tag = split_reference(reference)
    manifest = client.manifest(repository, tag)
    if manifest.is_index:
        fits = [d for d in manifest.manifests if d.platform and platform.matches(*(d.platform.split("/") + ["", ""])[:3])]
        if not fits:
            held = ", ".join(d.platform for d in manifest.manifests if d.platform) or "none"
            raise RegistryError(f"{reference} in {client.address} has no {platform} manifest (it has {held})", hint="push that platform, or move it to engines of one it has")
        manifest = client.manifest(repository, fits[0].digest)
    if manifest.config is None:
        raise RegistryError(f"{reference} in {client.address} is not an image (its manifest names no config)")
    try:
        config = json.loads(client.blob_bytes(repository, manifest.config.digest))
        diff_ids = tuple(str(d) for d in config["rootfs"]["diff_ids"])
    except (ValueError, KeyError, TypeError):
        raise RegistryError(f"the config of {reference} in {client.address} is not an image config") from None
    if len(diff_ids) != len(manifest.layers):
        raise RegistryError(f"{reference} in {client.address} has {len(manifest.layers)} layers and {len(diff_ids)} diff IDs")
    raw = {"Config": config.get("config") or {}, "RootFS": {"Layers": list(diff_ids)}, "Created": config.get("created"),
           "Architecture": config.get("architecture"), "Os": config.get("os"), "Variant": config.get("variant")}  # fmt: skip
    name = f"{repository}:{tag}" if not tag.startswith("sha256:") else None
    image = SourceImage(
        reference, name, manifest.config.digest, sum(d.size for d in manifest.layers), diff_ids, tuple(d.size for d in manifest.layers),
        content_key(raw), "", str(config.get("os", "")), str(config.get("architecture", "")),
    )  # fmt: skip
    return image, Pushed(name or reference, image.id, f"{client.address.host}/{repository}", manifest.digest)


def move_from_registry(
    route: RegistryRoute, references: Sequence[str], targets: Sequence[Host], reporter: Reporter | None = None, force: bool = False,
) -> list[TargetResult]:  # fmt: skip
    """Every target that lacks the images pulls them by digest (through its site cache where it has one), checked
    against the registry's description of each, then tagged."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    with EnginePool() as engines, route.client() as client:
        platform = one_platform(targets, engines)
        described = [describe(client, reference, platform) for reference in references]
        images = [image for image, _ in described]
        for host in targets:
            reporter.phase(host.name, "surveying")

        def plan(host: Host) -> TargetPlan:
            view = target_view(host, engines)
            return target_plan(host, with_requested(view, host, images, engines), images, force, "registry")

        outcomes = for_each_host(list(targets), plan)
        plans = [o.value if o.value is not None else TargetPlan(o.host, "failed", error=o.error) for o in outcomes]
        senders = [t for t in plans if t.action == "send"]
        for target in senders:
            reporter.start(target.host.name, sum(i.size for i in images if i.id in target.send_ids))
        wanted = [pushed for image, pushed in described if any(image.id in t.send_ids for t in senders)]
        delivery = pull_everywhere([t.host for t in senders], wanted, route, reporter, engines) if senders else None
        layers = {image.id: image.layers for image in images}
        contents = {image.id: image.content for image in images}
        movers = {t.host.name: t for t in plans if t.action in ("send", "tag")}
        finished = {
            o.host.name: o.value
            for o in for_each_host([t.host for t in movers.values()], lambda h: finish_target(movers[h.name], delivery, started, reporter, engines, layers, contents))
        }  # fmt: skip
        return [finished.get(t.host.name) or static_result(t) for t in plans]
