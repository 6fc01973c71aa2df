"""What one target needs, decided from what it holds: plain data in, plain data out, no engine.

``target_plan(host, view, images, …)`` is the planner: the target's view (its
images, tags, the layer chains they stand on, its image store; see survey.py)
and the source's images in, a ``TargetPlan`` out: which images it lacks, which
tags will move, which layers its stream can leave out and why not. Tested from
data files (tests/unit/plans/).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from shipper.archive.layers import chain_ids, needed_layers
from shipper.engine.info import EngineInfo
from shipper.errors import ShipperError
from shipper.inventory.model import Host
from shipper.platforms import Platform

Action = Literal["send", "tag", "unchanged", "skip", "failed"]
Route = Literal["ssh", "direct", "registry"]


@dataclass(frozen=True)
class SaveRequest:
    """What a save is asked for: image names or IDs and, for multi-platform images, one platform (--platform)."""

    refs: tuple[str, ...]
    platform: Platform | None = None

    def command(self) -> str:
        """``docker save`` on a host's shell (the names were checked before they reach it; quoted all the same)."""
        chosen = f"--platform {shlex.quote(str(self.platform))} " if self.platform is not None else ""
        return "docker save " + chosen + " ".join(shlex.quote(ref) for ref in self.refs)

    def to_spec(self) -> dict[str, Any]:
        """For the host-to-host program (hostpipe.py's SPEC)."""
        return {"save": list(self.refs), "platform": str(self.platform) if self.platform is not None else ""}


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
    save_as: str = ""  # what to save: the multi-platform image's ID, when ``id`` is one of its platforms (--platform)
    os: str = ""
    architecture: str = ""

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
    resumed: int = 0  # of ``skip_layers``, how many an interrupted move left there (its carriers)
    carriers: tuple[str, ...] = ()  # carriers there whose layers the moved images hold: removed once the images are in


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
    layers_read: bool = True  # chains and content_of were read (the survey reads them only where an image is missing)
    carried: frozenset[str] = frozenset()  # chain IDs only carriers hold: what an interrupted move left (archive/receiver.py)
    listed_carriers: frozenset[str] = frozenset()  # carriers' IDs, from the image list (their layers read only when wanted)
    carrier_tops: dict[str, str] = field(default_factory=dict)  # carrier image ID -> the chain ID of its top layer


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
        resumed = sum(1 for img in images for d, c in zip(img.layers, chain_ids(img.layers)) if d in skip and c in view.carried)
        sent_chains = {c for img in images if img.id in send for c in chain_ids(img.layers)}
        leftovers = tuple(sorted(i for i, top in view.carrier_tops.items() if top in sent_chains))
        return TargetPlan(
            host, "send", send, tags, before, present, reason, host_key=host_key, skip_layers=skip, thin_note=note, aliases=aliases,
            held_before=view.ids, store=view.store, resumed=resumed, carriers=leftovers,
        )  # fmt: skip
    chains = {c for img in images for c in chain_ids(img.layers)}
    leftovers = tuple(sorted(i for i, top in view.carrier_tops.items() if top in chains))  # the image holds their layers
    if tags:
        return TargetPlan(host, "tag", (), tags, before, present, "has the image(s); only tags move", host_key=host_key, aliases=aliases,
                          carriers=leftovers)  # fmt: skip
    return TargetPlan(host, "unchanged", (), (), before, present, "already has the image(s) under those tags", host_key=host_key, carriers=leftovers)
