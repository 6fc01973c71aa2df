"""What a move will do, decided before anything changes.

The plan is plain data: which images (by ID), which targets, what each
target lacks (images, and of those images' layers, the ones it does not hold
already), which tags will move, which route the bytes take. ``--dry-run``
prints it, ``--json`` emits it, and ``move_run`` walks it.
"""

from __future__ import annotations

import contextlib
import difflib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, Sequence

from shipper.archive.layers import chain_ids, needed_layers
from shipper.engine import Engine
from shipper.engine.info import EngineInfo, ImageDetails
from shipper.errors import EngineError, ShipperError, UsageError
from shipper.imageref import parse
from shipper.inventory.model import Host
from shipper.ops.engines import EnginePool
from shipper.hostpool import for_each_host
from shipper.ops.move_registry import RegistryRoute, check_movable

Route = Literal["ssh", "direct", "registry"]
Via = Literal["ssh", "relay", "direct", "registry"]  # relay: over SSH, but never host to host
Action = Literal["send", "tag", "unchanged", "skip", "failed"]


class ImageNotFound(EngineError, LookupError):
    """The source engine has no image by that name."""


@dataclass(frozen=True)
class SourceImage:
    """One image to move, pinned to its ID on the source."""

    requested: str
    name: str | None  # repo:tag to set on targets; None when moved by ID
    id: str
    size: int
    layers: tuple[str, ...] = ()  # diff IDs, base first
    layer_sizes: tuple[int, ...] = ()  # bytes per layer, as the engine counts them; () when unknown
    content: str = ""  # see engine.info.content_key: the same image where IDs differ by store

    def size_of_layers(self) -> dict[str, int]:
        """diff ID -> estimated bytes (even shares of the image's size when the engine did not say)."""
        if len(self.layer_sizes) == len(self.layers):
            return dict(zip(self.layers, self.layer_sizes))
        share = self.size // max(len(self.layers), 1)
        return {layer: share for layer in self.layers}


@dataclass(frozen=True)
class TargetPlan:
    """What one target needs."""

    host: Host
    action: Action
    send_ids: tuple[str, ...] = ()
    tags: tuple[tuple[str, str], ...] = ()  # (name, image ID) to point
    before: dict[str, str | None] = field(default_factory=dict)  # name -> ID it pointed at before
    present_ids: frozenset[str] = frozenset()
    reason: str = ""
    error: ShipperError | None = None
    host_key: str | None = None  # known_hosts line of the key verified while planning (for host to host)
    skip_layers: frozenset[str] = frozenset()  # diff IDs the target holds (whole chain): left out of its stream
    thin_note: str = ""  # why the target gets every layer, when it cannot take a stream without some
    aliases: dict[str, str] = field(default_factory=dict)  # source image ID -> the ID the same content has there (containerd store)
    held_before: frozenset[str] = frozenset()  # the target's image IDs when planned: what a load made is not among them
    store: str = "classic"  # the target's image store: "classic", "containerd" or "podman"


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

    @property
    def send_ids(self) -> tuple[str, ...]:
        """Every image some target lacks, in the order asked for: one stream carries them all."""
        wanted = {i for t in self.targets for i in t.send_ids}
        return tuple(dict.fromkeys(img.id for img in self.images if img.id in wanted))

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

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source.name,
            "route": self.route,
            "route_reason": self.route_reason,
            "host_to_host": self.host_to_host,
            "store_read": self.store_read,
            **({"registry": str(self.registry.address)} if self.registry else {}),
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
                    "tags": [{"name": n, "id": i, "before": t.before.get(n)} for n, i in t.tags],
                    "reason": t.reason,
                    **({"error": t.error.to_json()} if t.error else {}),
                }
                for t in self.targets
            ],
        }


def choose_route(source: Host, targets: Sequence[Host], via: Via | None, registry: RegistryRoute | None = None) -> tuple[Route, str, bool]:
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


def source_images(engine: Engine, requested: Sequence[str]) -> tuple[SourceImage, ...]:
    images = []
    for text in requested:
        ref = parse(text)
        details = engine.inspect_image(str(ref))
        if details is None:
            raise _not_found(engine, str(ref))
        _check_whole(engine, text, details)
        sizes = engine.layer_sizes(details.id, len(details.layers))
        images.append(SourceImage(text, None if ref.is_id else str(ref), details.id, details.size, details.layers, sizes, details.content))
    return tuple(images)


def _check_whole(engine: Engine, requested: str, details: ImageDetails) -> None:
    """In the containerd image store, an image whose content is incomplete (pulled while its layers were
    already unpacked: moby/moby#49784) cannot be saved: 28.5 inspects it without platform or layers, 26.1
    leaves it out of the image list (and its save leaves it out of the archive)."""
    if engine.info().image_store != "containerd":
        return
    if (not details.layers and not details.architecture) or details.id not in {image.id for image in engine.images()}:
        raise EngineError(
            f"{requested} on {engine.host.describe()} is incomplete: its containerd image store lacks some of its content "
            "(pulled while its layers were already unpacked there: moby/moby#49784), so it cannot be saved or pushed",
            hint=f"remove it on {engine.host.name} and pull it again, or bring it there whole with shipper move --via ssh",
        )  # fmt: skip


def _not_found(engine: Engine, name: str) -> ImageNotFound:
    names = [t for image in engine.images() for t in image.tags]
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    repository = name.rsplit(":", 1)[0]
    same_repo = [n for n in names if n.rsplit(":", 1)[0] == repository]
    suggestions = list(dict.fromkeys(same_repo + close))[:5]
    hint = f"did you mean {', '.join(suggestions)}?" if suggestions else f"shipper images {engine.host.name} lists what it has"
    return ImageNotFound(f"image {name} is not on {engine.host.describe()}", hint=hint)


@dataclass(frozen=True)
class TargetView:
    """What a target holds, read before the source is resolved (so both are read at once)."""

    tags: dict[str, str]  # name -> image ID
    ids: frozenset[str]
    host_key: str | None
    chains: frozenset[str]  # chain IDs of every layer the engine's images stand on
    store: str  # "classic", "containerd" (IDs are manifest digests) or "podman"
    content_of: dict[str, str] = field(default_factory=dict)  # image ID -> content key (engine.info.content_key)
    unlisted: frozenset[str] = frozenset()  # requested IDs the engine holds though its list leaves them out (see with_requested)


def same_content(view: TargetView, image: SourceImage) -> str | None:
    """The target's image that is this one by content (the containerd store names images by their manifest)."""
    if not image.content:
        return None
    return next((image_id for image_id, held in view.content_of.items() if held == image.content), None)


def store_of(info: EngineInfo) -> str:
    return "podman" if info.product == "podman" else info.image_store


def thin_note(store: str, stream_oci: bool) -> str:
    """Why an engine must get every layer (see ../shared/design.md §7), or "" when it can do without the ones it holds."""
    if store == "podman":
        return "podman loads a stream only with every layer in it"
    if store == "containerd" and not stream_oci:
        return "the containerd image store takes a stream without some layers only as an OCI layout, which this source does not write"
    return ""


def writes_oci(info: EngineInfo) -> bool:
    """Docker 25+ (API 1.44) saves an OCI image layout (with manifest.json beside it)."""
    try:
        major, minor = (int(x) for x in info.api_version.split(".")[:2])
    except ValueError:
        return False
    return info.product == "docker" and (major, minor) >= (1, 44)


def streams_oci(source: EngineInfo, host_to_host: bool, store_read: bool) -> bool:
    """Whether the source's stream will be an OCI layout: its layer store read host to host gives one;
    so does Docker 25+'s docker save."""
    store = host_to_host and store_read and source.image_store == "classic" and source.storage_driver == "overlay2"
    return writes_oci(source) or store


def thin_skip(view: TargetView, images: Sequence[SourceImage], stream_oci: bool) -> frozenset[str]:
    """The layers ``images`` need that the target holds (whole chain) and can do without in its stream."""
    if thin_note(view.store, stream_oci):
        return frozenset()
    every = {d for img in images for d in img.layers}
    return frozenset(every - needed_layers([img.layers for img in images], view.chains))


def target_view(host: Host, engines: EnginePool) -> TargetView:
    engine = engines.get(host)
    images = engine.images()
    tags = {tag: image.id for image in images for tag in image.tags}
    host_key = engine.session.known_hosts_line() if engine.session is not None else None
    store = store_of(engine.info())
    chains: set[str] = set()
    content_of: dict[str, str] = {}
    for image in images:
        details = engine.inspect_image(image.id)
        if details is not None:
            chains.update(chain_ids(details.layers))
            content_of[image.id] = details.content
    usable = frozenset(chains) if store != "podman" else frozenset()  # podman loads only whole streams: what it holds never counts
    return TargetView(tags, frozenset(image.id for image in images), host_key, usable, store, content_of)


def with_requested(view: TargetView, host: Host, images: Sequence[SourceImage], engines: EnginePool) -> TargetView:
    """The survey's last question, once the source's images are known: the list shows tagged and dangling
    images; an ID it lacks is asked for directly, to be sure."""
    engine = engines.get(host)
    unlisted = frozenset(img.id for img in images if img.id not in view.ids and engine.inspect_image(img.id) is not None)
    return replace(view, unlisted=unlisted)


def target_plan(
    host: Host, view: TargetView, images: Sequence[SourceImage], force: bool, route: Route, stream_oci: bool = False,
    source_store: str = "classic",
) -> TargetPlan:  # fmt: skip
    """What one target needs, from what it holds (``view``, surveyed before: nothing is read here).

    ``stream_oci``: the stream will be an OCI layout (the containerd store can then do without layers it holds).
    ``source_store``: where the source keeps its images; when either side is the containerd store, the same
    image has other IDs on each, and is recognised by its content."""
    by_content = "containerd" in (view.store, source_store)
    aliases = {img.id: alias for img in images if img.id not in view.ids and (alias := same_content(view, img)) is not None} if by_content else {}
    present = frozenset(img.id for img in images if img.id in view.ids or img.id in aliases or img.id in view.unlisted)
    before = {img.name: view.tags.get(img.name) for img in images if img.name}
    host_key = view.host_key
    send = tuple(img.id for img in images if force or img.id not in present)
    tags = tuple((img.name, img.id) for img in images if img.name and (force or before[img.name] not in {img.id, aliases.get(img.id, img.id)}))
    if send:
        reason = "forced" if force else f"lacks {len(send)} of {len(images)} image(s)"
        note = thin_note(view.store, stream_oci) or ("forced: every layer is sent" if force else "")
        skip = frozenset() if force else thin_skip(view, images, stream_oci)
        if route == "registry":  # the engine decides what it pulls
            note = "the engine pulls the layers it does not know from earlier pulls or pushes"
            held = {d for img in images for d in img.layers} - needed_layers([img.layers for img in images], view.chains)
            if view.store == "containerd" and held:
                note += (
                    f"; it holds {len(held)} of them already, and if they came by docker load its pull comes out incomplete"
                    " (moby/moby#49784): shipper then sends the image over SSH instead, where --via ssh would go at once"
                )  # fmt: skip
            skip = frozenset()
        return TargetPlan(
            host, "send", send, tags, before, present, reason, host_key=host_key, skip_layers=skip, thin_note=note, aliases=aliases,
            held_before=view.ids, store=view.store,
        )  # fmt: skip
    if tags:
        return TargetPlan(host, "tag", (), tags, before, present, "has the image(s); only tags move", host_key=host_key, aliases=aliases)
    return TargetPlan(host, "unchanged", (), (), before, present, "already has the image(s) under those tags", host_key=host_key)


def plan_move(
    source: Host, targets: Sequence[Host], requested: Sequence[str], via: Via | None = None, force: bool = False,
    engines: EnginePool | None = None, store_read: bool = True, registry: RegistryRoute | None = None,
) -> MovePlan:  # fmt: skip
    """Look at the source and every target (reading only) and decide what will cross.

    ``engines``: connections to keep for the run that follows (else they are closed).
    ``store_read``: host to host, let the source read its engine's layer store (else docker save).
    """
    if not requested:
        raise UsageError("name at least one image to move")
    route, reason, host_to_host = choose_route(source, [t for t in targets if t.name != source.name], via, registry)
    others = [t for t in targets if t.name != source.name]
    with contextlib.ExitStack() as stack:
        pool = engines or stack.enter_context(EnginePool())
        with ThreadPoolExecutor(max_workers=1) as background:
            views = background.submit(for_each_host, others, lambda host: target_view(host, pool))
            images = source_images(pool.get(source), requested)
            source_info = pool.get(source).info()
            seen = {o.host.name: o for o in views.result()}
        source_store = source_info.image_store
        stream_oci = streams_oci(source_info, host_to_host, store_read)
        plans = []
        for host in targets:
            outcome = seen.get(host.name)
            if outcome is None:
                plans.append(TargetPlan(host, "skip", reason="it is the source"))
            elif outcome.value is None:
                plans.append(TargetPlan(host, "failed", error=outcome.error))
            else:
                try:
                    view = with_requested(outcome.value, host, images, pool)
                    plans.append(target_plan(host, view, images, force, route, stream_oci, source_store))
                except ShipperError as exc:
                    plans.append(TargetPlan(host, "failed", error=exc))
    if route == "registry":
        check_movable([img.name for img in images])
        assert registry is not None
        registry.check()
    return MovePlan(source, images, tuple(plans), route, reason, host_to_host, store_read, registry, source_store)
