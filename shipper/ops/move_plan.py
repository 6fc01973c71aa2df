"""What a move will do, decided before anything changes.

The plan is plain data: which images (by ID), which targets, what each
target lacks (images, and of those images' layers, the ones it does not hold
already), which tags will move, which route the bytes take. ``--dry-run``
prints it, ``--json`` emits it, and ``move_run`` walks it.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Mapping, Sequence

from shipper.errors import ShipperError, UsageError
from shipper.inventory.model import Host
from shipper.engine.pool import EnginePool
from shipper.hostpool import for_each_host, worker_pool
from shipper.platforms import Platform
from shipper.transfer.plan import SaveRequest
from shipper.transfer.limits import RateLimits
from shipper.transfer.resume import receiver_spec
from shipper.transfer.plan import Route, SourceImage, TargetPlan, streams_oci, target_plan
from shipper.transfer.survey import source_images, target_view, with_requested

if TYPE_CHECKING:  # a move through a registry, or of signed releases, brings their modules itself
    from shipper.ops.move_registry import RegistryRoute
    from shipper.releases import Release

RouteRequest = Literal["ssh", "relay", "direct", "registry"]  # the route asked for (--via); relay: over SSH, but never host to host


@dataclass(frozen=True)
class MovePlan:
    source: Host
    images: tuple[SourceImage, ...]
    targets: tuple[TargetPlan, ...]
    route: Route
    route_reason: str
    host_to_host: bool = False  # try sending from the source straight to the targets first
    store_read: bool = True  # host to host: the source may read its engine's layer store instead of running docker save
    registry: RegistryRoute | None = None  # --via registry: the registry the engines push to and pull from
    source_store: str = "classic"  # the source's image store: in the containerd store an image's ID is not its config digest
    limits: RateLimits = RateLimits()  # --limit-rate, --limit-total
    compress: str = "auto"  # --compress: host to host, chunks that shrink go zlib-compressed where the link is slow
    platform: Platform | None = None  # --platform, where the source saves that platform of multi-platform images
    resume: bool = True  # targets that can take the stream layer by layer do (a cut then keeps what arrived)
    releases: Mapping[str, Release] = field(default_factory=dict)  # --verify-key: source image ID -> its verified release

    @property
    def save(self) -> SaveRequest:
        """What the source's save is asked for: the images some target lacks (by the IDs their save takes)."""
        save_as = {img.id: img.save_as or img.id for img in self.images}
        return SaveRequest(tuple(dict.fromkeys(save_as[i] for i in self.send_ids)), self.platform)

    @property
    def send_ids(self) -> tuple[str, ...]:
        """Every image some target lacks, in the order asked for: one stream carries them all."""
        wanted = {i for t in self.targets for i in t.send_ids}
        return tuple(dict.fromkeys(img.id for img in self.images if img.id in wanted))

    @functools.cached_property
    def receivers(self) -> dict[str, dict[str, Any]]:
        """Per target that takes the stream layer by layer (resumable after a cut), what its receiver is told.
        Worked out once per plan: the plan's text and JSON ask it for every target."""
        specs = {t.host.name: receiver_spec(t, self.images) for t in self.targets} if self.route == "ssh" and self.resume else {}
        return {name: spec for name, spec in specs.items() if spec is not None}

    @property
    def contents(self) -> dict[str, str]:
        """image ID -> content key (engine.info.content_key), to find an image where IDs differ by store."""
        return {img.id: img.content for img in self.images if img.content}

    @property
    def check_ids(self) -> tuple[str, ...]:
        """The IDs the stream must hold: the images' IDs, unless the source names images by manifest digest
        (the containerd store): then each target checks what arrived by its layers instead."""
        return self.send_ids if self.source_store == "classic" else ()

    @property
    def layers(self) -> dict[str, tuple[str, ...]]:
        """image ID -> diff IDs, for every image the stream carries."""
        wanted = set(self.send_ids)
        return {img.id: img.layers for img in self.images if img.id in wanted}

    def _layer_sizes(self) -> dict[str, int]:
        sizes: dict[str, int] = {}
        for img in self.images:
            if img.id in self.send_ids:
                sizes.update(img.size_of_layers())
        return sizes

    def layers_for(self, target: TargetPlan) -> tuple[list[str], list[str]]:
        """(layers that will cross to ``target``, layers of the images it lacks that it holds already)."""
        if not target.send_ids:
            return [], []
        stream = list(dict.fromkeys(d for layers in self.layers.values() for d in layers))
        lacked = {d for img in self.images if img.id in target.send_ids for d in img.layers}
        return [d for d in stream if d not in target.skip_layers], [d for d in stream if d in lacked and d in target.skip_layers]

    def bytes_for(self, target: TargetPlan) -> int:
        """Estimated bytes to ``target``: the sizes of the layers that cross (the stream is a bit larger)."""
        sizes = self._layer_sizes()
        return sum(sizes.get(d, 0) for d in self.layers_for(target)[0])

    def present_bytes_for(self, target: TargetPlan) -> int:
        sizes = self._layer_sizes()
        return sum(sizes.get(d, 0) for d in self.layers_for(target)[1])

    def tiers(self) -> dict[str, Any]:
        """Through a registry, the bytes each tier carries (estimates: layer sizes, before the push compresses them):
        the source's push to the central registry once, the central registry to each site cache once, and each
        target's pull from its cache, or from the central registry where it has none."""
        assert self.registry is not None
        senders = [t for t in self.targets if t.action == "send"]
        pushed = sum(img.size for img in self.images if img.id in self.send_ids)
        caches: dict[str, int] = {}
        for target in senders:
            cache = self.registry.mirrors.get(target.host.name)
            if cache is not None:
                caches[str(cache.address)] = pushed
        return {
            "source_to_central": pushed, "central_to_caches": caches,
            "to_targets": {t.host.name: {"from": str((self.registry.mirrors.get(t.host.name) or self.registry).address), "bytes": self.bytes_for(t)}
                           for t in senders},
        }  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            "route": self.route,
            "route_reason": self.route_reason,
            "host_to_host": self.host_to_host,
            "store_read": self.store_read,
            **({"registry": str(self.registry.address)} if self.registry else {}),
            **({"caches": {t.host.name: str(self.registry.mirrors[t.host.name].address) for t in self.targets if t.host.name in self.registry.mirrors}}
               if self.registry and self.registry.mirrors else {}),  # fmt: skip
            **({"tiers": self.tiers()} if self.route == "registry" else {}),
            **({"limit_rate": self.limits.per_target, "limit_total": self.limits.total} if self.limits else {}),
            "compress": self.compress if self.route == "ssh" else "none",
            **({"platform": str(self.platform)} if self.platform is not None else {}),
            "images": [{k: v for k, v in vars(img).items()} for img in self.images],
            "targets": [
                {
                    "host": t.host.name,
                    "action": t.action,
                    "send": list(t.send_ids),
                    "layers": {"send": len(self.layers_for(t)[0]), "present": len(self.layers_for(t)[1])},
                    "bytes_estimate": self.bytes_for(t),
                    "present_bytes": self.present_bytes_for(t),
                    **({"thin_note": t.thin_note} if t.thin_note else {}),
                    **({"resumed_layers": t.resumed} if t.resumed else {}),
                    **({"resumable": True} if t.host.name in self.receivers else {}),
                    "tags": [{"name": n, "id": i, "before": t.before.get(n)} for n, i in t.tags],
                    "reason": t.reason,
                    **({"error": t.error.to_json()} if t.error else {}),
                }
                for t in self.targets
            ],
        }


def choose_route(source: Host, targets: Sequence[Host], via: RouteRequest | None, registry: RegistryRoute | None = None) -> tuple[Route, str, bool]:
    """``ssh`` when every engine sits behind SSH (the docker CLI runs there), else ``direct``.

    Over SSH, host to host is tried first (measured faster: the bytes cross once, with
    one encryption); the relay through this machine is the fallback.
    """
    if via == "registry":
        if registry is None:
            raise UsageError("--via registry needs a registry", hint="add --registry NAME|HOST:PORT (or name one in the inventory's registries:)")
        return "registry", f"asked for: {source.name} pushes to {registry.address}, each target pulls", False
    not_ssh = [h for h in (source, *targets) if h.engine.scheme != "ssh"]
    if via in ("ssh", "relay") and not_ssh:
        host = not_ssh[0]
        raise UsageError(
            f"--via {via} needs every engine behind SSH, but host {host.name}'s is {host.engine.url}",
            hint="use --via direct, or remove docker_host for that host so its engine is reached over SSH",
        )
    if via == "relay":
        return "ssh", "asked for: OpenSSH pipes through this machine", False
    if via == "direct":
        return "direct", "asked for: Docker API to Docker API through this machine", False
    if not not_ssh:
        why = "asked for" if via == "ssh" else "every engine is behind SSH"
        return "ssh", f"{why}: host to host over SSH where the source can reach the targets, else through this machine", True
    return "direct", f"host {not_ssh[0].name}'s engine is not behind SSH ({not_ssh[0].engine.url}): Docker API to Docker API", False


def plan_move(
    source: Host, targets: Sequence[Host], requested: Sequence[str], via: RouteRequest | None = None, force: bool = False,
    engines: EnginePool | None = None, store_read: bool = True, registry: RegistryRoute | None = None, platform: Platform | None = None,
) -> MovePlan:  # fmt: skip
    """Look at the source and every target (reading only) and decide what will cross.

    ``engines``: connections to keep for the run that follows (else they are closed).
    ``store_read``: host to host, let the source read its engine's layer store (else docker save).
    ``platform``: each image must be that platform's, chosen from multi-platform images where the source holds several.
    """
    if not requested:
        raise UsageError("name at least one image to move")
    route, reason, host_to_host = choose_route(source, [t for t in targets if t.name != source.name], via, registry)
    others = [t for t in targets if t.name != source.name]
    with contextlib.ExitStack() as stack:
        pool = engines or stack.enter_context(EnginePool())
        with worker_pool(1) as background:
            views = background.submit(for_each_host, others, lambda host: target_view(host, pool, layers=False))
            images = source_images(pool.get(source), requested, platform)
            source_info = pool.get(source).info()
            seen = {o.host.name: o for o in views.result()}
        source_store = source_info.image_store
        stream_oci = streams_oci(source_info, host_to_host, store_read)
        views_of = {name: o.value for name, o in seen.items() if o.value is not None}
        surveyed = [h for h in others if h.name in views_of]
        finished = {o.host.name: o for o in for_each_host(surveyed, lambda host: with_requested(views_of[host.name], host, images, pool))}
        plans = []
        for host in targets:
            outcome = finished.get(host.name) or seen.get(host.name)
            if outcome is None:
                plans.append(TargetPlan(host, "skip", reason="it is the source"))
            elif outcome.value is None:
                plans.append(TargetPlan(host, "failed", error=outcome.error))
            else:
                try:
                    plans.append(target_plan(host, outcome.value, images, force, route, stream_oci, source_store))
                except ShipperError as exc:
                    plans.append(TargetPlan(host, "failed", error=exc))
    chosen = platform if any(img.save_as for img in images) else None
    if route == "registry":
        if chosen is not None:
            raise UsageError(
                f"--platform {chosen} cannot go through a registry yet: the source's engine would push every platform it holds",
                hint="move it over SSH (--via ssh, the default), or push that platform yourself and pull it by digest",
            )  # fmt: skip
        check_movable([img.name for img in images])
        assert registry is not None
        registry.check()
    return MovePlan(source, images, tuple(plans), route, reason, host_to_host, store_read, registry, source_store, platform=chosen)


def check_movable(names: Sequence[str | None]) -> None:
    """A registry stores names: every image through one must have a name, not only an ID."""
    if any(name is None for name in names):
        raise UsageError(
            "an image named only by its ID cannot go through a registry (a registry stores names)",
            hint="name the image (repo:tag), or move it --via ssh",
        )
