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
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from shipper.engine.info import content_key
from shipper.engine.pool import EnginePool
from shipper.errors import RegistryError
from shipper.hostpool import for_each_host
from shipper.inventory.model import Host
from shipper.ops.bundle import one_platform
from shipper.ops.move_registry import Pushed, RegistryRoute, pull_everywhere
from shipper.ops.oci_bundle import split_reference
from shipper.ops.release import ReleasePolicy, vouch
from shipper.releases import Release
from shipper.platforms import Platform
from shipper.progress import NullReporter, Reporter
from shipper.registry import RegistryClient
from shipper.transfer.commit import TargetResult, finish_target, results_in_order
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
    made_for = (str(config.get("os", "")), str(config.get("architecture", "")), str(config.get("variant") or ""))
    if not platform.matches(*made_for):
        raise RegistryError(
            f"{reference} in {client.address} is a {'/'.join(p for p in made_for if p)} image, not {platform}",
            hint="move it to engines of its platform, or name the platform with --platform",
        )
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


@dataclass(frozen=True)
class RegistryPlan:
    """What each target will pull from the registry (through its site cache where it has one), before anything is."""

    route: RegistryRoute
    platform: Platform
    images: tuple[SourceImage, ...]
    pulls: tuple[Pushed, ...]  # per image: the manifest digest the targets pull it by
    targets: tuple[TargetPlan, ...]
    releases: Mapping[str, Release] = field(default_factory=dict)  # --verify-key: image ID -> its verified release

    def crossing(self, target: TargetPlan) -> tuple[list[str], list[str], int, int]:
        """Layers that will cross to ``target``, layers of what it lacks that it holds, and their sizes
        (estimates: an engine skips a layer on a pull only where it knows its compressed digest)."""
        sizes: dict[str, int] = {}
        for image in self.images:
            sizes.update(image.size_of_layers())
        lacked = list(dict.fromkeys(d for image in self.images if image.id in target.send_ids for d in image.layers))
        send = [d for d in lacked if d not in target.skip_layers]
        present = [d for d in lacked if d in target.skip_layers]
        return send, present, sum(sizes.get(d, 0) for d in send), sum(sizes.get(d, 0) for d in present)

    def to_json(self) -> dict[str, Any]:
        mirrors = self.route.mirrors
        targets = []
        for t in self.targets:
            send, present, size, there = self.crossing(t)
            targets.append({
                "host": t.host.name, "action": t.action, "send": list(t.send_ids), "layers": {"send": len(send), "present": len(present)},
                "bytes_estimate": size, "present_bytes": there, "tags": [{"name": n, "id": i, "before": t.before.get(n)} for n, i in t.tags],
                "reason": t.reason, **({"from": str(mirrors[t.host.name].address)} if t.host.name in mirrors else {}),
                **({"error": t.error.to_json()} if t.error else {}),
            })  # fmt: skip
        return {
            "source": f"registry {self.route.address}", "route": "registry", "route_reason": "--from-registry: each target pulls by digest",
            "registry": str(self.route.address), "platform": str(self.platform),
            **({"caches": {t.host.name: str(mirrors[t.host.name].address) for t in self.targets if t.host.name in mirrors}} if mirrors else {}),
            "images": [{**vars(image), "digest": pull.digest} for image, pull in zip(self.images, self.pulls)],
            "targets": targets,
        }  # fmt: skip


def plan_from_registry(
    route: RegistryRoute, references: Sequence[str], targets: Sequence[Host], engines: EnginePool, force: bool = False,
    platform: Platform | None = None, policy: ReleasePolicy | None = None,
) -> RegistryPlan:  # fmt: skip
    """Read each image from the registry (``platform``'s, else the targets' one platform), check it against its
    signed release where ``policy`` asks, and plan each target as any move plans it: only what it lacks."""
    with route.client() as client:
        chosen = platform or one_platform(targets, engines)
        described = [describe(client, reference, chosen) for reference in references]
    images = tuple(image for image, _ in described)
    releases = vouch(images, f"registry {route.address}", "classic", policy) if policy is not None else {}

    def plan(host: Host) -> TargetPlan:
        view = target_view(host, engines)
        return target_plan(host, with_requested(view, host, list(images), engines), list(images), force, "registry")

    outcomes = for_each_host(list(targets), plan)
    plans = tuple(o.value if o.value is not None else TargetPlan(o.host, "failed", error=o.error) for o in outcomes)
    return RegistryPlan(route, chosen, images, tuple(pushed for _, pushed in described), plans, releases)


def run_from_registry(plan: RegistryPlan, engines: EnginePool, reporter: Reporter | None = None) -> list[TargetResult]:
    """Every target that lacks the images pulls them by digest, checked against the registry's description of each
    (and its signed release), then tagged."""
    reporter = reporter or NullReporter()
    started = time.monotonic()
    senders = [t for t in plan.targets if t.action == "send"]
    for target in senders:
        reporter.start(target.host.name, plan.crossing(target)[2])
    wanted = [pushed for image, pushed in zip(plan.images, plan.pulls) if any(image.id in t.send_ids for t in senders)]
    delivery = pull_everywhere([t.host for t in senders], wanted, plan.route, reporter, engines) if senders else None
    layers = {image.id: image.layers for image in plan.images}
    contents = {image.id: image.content for image in plan.images}
    movers = {t.host.name: t for t in plan.targets if t.action in ("send", "tag")}
    finished = {
        o.host.name: o.value
        for o in for_each_host(
            [t.host for t in movers.values()], lambda h: finish_target(movers[h.name], delivery, started, reporter, engines, layers, contents, plan.releases)
        )
    }  # fmt: skip
    return results_in_order(plan.targets, finished, engines)
