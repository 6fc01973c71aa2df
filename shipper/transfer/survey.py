"""The surveys: what the source holds (the images asked for, pinned by ID) and what each target holds.

Everything here reads engines and nothing else does in planning; the planner
(plan.py) decides from what these return.
"""

from __future__ import annotations

import difflib
from dataclasses import replace
from typing import Sequence

from shipper.archive.layers import chain_ids
from shipper.engine import Engine
from shipper.engine.images import PLATFORM_INSPECT_API
from shipper.engine.info import ImageDetails
from shipper.engine.pool import EnginePool
from shipper.errors import EngineError
from shipper.imageref import parse
from shipper.inventory.model import Host
from shipper.platforms import Platform
from shipper.transfer.plan import SourceImage, TargetView, store_of


class ImageNotFound(EngineError, LookupError):
    """The source engine has no image by that name."""


def source_images(engine: Engine, requested: Sequence[str], platform: Platform | None = None) -> tuple[SourceImage, ...]:
    """The images asked for, pinned by ID. ``platform`` (``--platform``): each must be that platform's image;
    in the containerd store, that platform of a multi-platform image is chosen (and saved by its image's ID)."""
    refs = [parse(text) for text in requested]
    found = engine.inspect_images([str(ref) for ref in refs], info=True)  # all at once, the engine's info with them
    images = []
    for text, ref, details in zip(requested, refs, found):
        if details is None:
            raise _not_found(engine, str(ref))
        save_as = ""
        if platform is not None and _selects_platforms(engine):
            save_as, details = details.id, _platform_of(engine, text, details, platform)
        elif platform is not None and not platform.matches(details.os, details.architecture, details.variant):
            details = _platform_of(engine, text, details, platform)
        _check_whole(engine, text, details, by_platform=bool(save_as))
        images.append(
            SourceImage(text, ref.tag_name, details.id, details.size, details.layers, (), details.content, save_as, details.os, details.architecture)
        )  # fmt: skip
    sized = [image for image in images if not image.save_as]  # each layer's size, from the histories, read at once
    sizes = engine.layer_sizes_of([(image.id, len(image.layers)) for image in sized])
    by_id = {image.id: layer_sizes for image, layer_sizes in zip(sized, sizes)}
    return tuple(replace(image, layer_sizes=by_id[image.id]) if image.id in by_id else image for image in images)


def _selects_platforms(engine: Engine) -> bool:
    """Whether the engine saves one platform of a multi-platform image: the containerd store, API 1.49+."""
    return engine.info().image_store == "containerd" and engine.supports_api(PLATFORM_INSPECT_API)


def _platform_of(engine: Engine, requested: str, details: ImageDetails, platform: Platform) -> ImageDetails:
    """``platform``'s image of ``requested``, whose default platform is another. Only a multi-platform image in the
    containerd store holds several; a classic store holds one platform per image."""
    held = f"{details.os}/{details.architecture}" + (f"/{details.variant}" if details.variant else "")
    where = f"{requested} on {engine.host.describe()}"
    if engine.info().image_store != "containerd":
        raise EngineError(
            f"{where} is {held}, not {platform}: its classic image store holds one platform per image",
            hint=f"pull or build the {platform} image on {engine.host.name} under that name, or move it without --platform",
        )
    listed = engine.image_platforms(requested)
    chosen = engine.inspect_image(requested, platform)
    held_there = chosen is not None and chosen.layers and platform.matches(chosen.os, chosen.architecture, chosen.variant)
    if not held_there or (listed and not any(ok and p.matches(chosen.os, chosen.architecture, chosen.variant) for p, ok in listed)):  # type: ignore[union-attr]
        available = [str(p) for p, ok in listed if ok]
        said = f"it holds {', '.join(available)}" if available else f"it is {held}"
        raise EngineError(
            f"{where} has no {platform} content ({said})",
            hint=f"pull it there for that platform first (docker pull --platform {platform} {requested}), or choose one it holds",
        )
    assert chosen is not None
    return chosen


def _check_whole(engine: Engine, requested: str, details: ImageDetails, by_platform: bool = False) -> None:
    """In the containerd image store, an image whose content is incomplete (pulled while its layers were
    already unpacked: moby/moby#49784) cannot be saved: 28.5 inspects it without platform or layers, 26.1
    leaves it out of the image list (and its save leaves it out of the archive)."""
    if engine.info().image_store != "containerd":
        return
    listed = by_platform or details.id in {image.id for image in engine.images()}  # one platform's ID is not listed
    if (not details.layers and not details.architecture) or not listed:
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


def target_view(host: Host, engines: EnginePool, layers: bool = True) -> TargetView:
    """What the target holds. ``layers=False``: from its image list alone (one request), leaving the layers to
    ``with_requested``, which reads them only if an image is missing."""
    engine = engines.get(host)
    images = engine.images_and_info()  # one round trip for both on a far link
    tags = {tag: image.id for image in images for tag in image.tags}
    host_key = engine.session.known_hosts_line() if engine.session is not None else None
    store = store_of(engine.info())
    carriers = frozenset(image.id for image in images if image.carrier)
    view = TargetView(tags, frozenset(image.id for image in images), host_key, frozenset(), store, layers_read=False, listed_carriers=carriers)
    return _with_layers(view, engine) if layers else view


def _with_layers(view: TargetView, engine: Engine) -> TargetView:
    """``view`` with the layers and content of every image the target holds (a request per image, written at once)."""
    ids = sorted(view.ids)
    return _with_details(view, ids, engine.inspect_images(ids))


def _with_carrier_tops(view: TargetView, engine: Engine) -> TargetView:
    """``view`` with the top layer of each carrier an interrupted move left (a round trip only where there are
    some): a carrier whose layers the images hold is removed once the move is through."""
    if view.layers_read or not view.listed_carriers:
        return view
    ids = sorted(view.listed_carriers)
    tops = {i: chain_ids(d.layers)[-1] for i, d in zip(ids, engine.inspect_images(ids)) if d is not None and d.carrier and d.layers}
    return replace(view, carrier_tops=tops)


def _with_details(view: TargetView, ids: Sequence[str], held: Sequence[ImageDetails | None]) -> TargetView:
    """``view`` with the layers and content of the images ``ids`` it holds, as ``held`` describes each."""
    chains: set[str] = set()
    carried: set[str] = set()  # chains of carriers: what an interrupted move left
    content_of: dict[str, str] = {}
    tops: dict[str, str] = {}  # carrier -> its top chain
    for image_id, details in zip(ids, held):
        if details is not None:
            (carried if details.carrier else chains).update(chain_ids(details.layers))
            if not details.carrier:
                content_of[image_id] = details.content
            elif details.layers:
                tops[image_id] = chain_ids(details.layers)[-1]
    usable = frozenset(chains | carried) if view.store != "podman" else frozenset()  # podman loads only whole streams: what it holds never counts
    return replace(view, chains=usable, content_of=content_of, layers_read=True, carried=frozenset(carried - chains), carrier_tops=tops)


def with_requested(view: TargetView, host: Host, images: Sequence[SourceImage], engines: EnginePool) -> TargetView:
    """The survey's last questions, once the source's images are known. The list shows tagged and dangling
    images; an ID it lacks is asked for directly, to be sure. Where the target lacks one, every image it
    holds is read for its layers (what need not cross) and its content (the same image under another ID, in
    the containerd store); where it holds them all, nothing more is asked: on a far link each is a round trip."""
    engine = engines.get(host)
    missing = [img.id for img in images if img.id not in view.ids]
    if not missing:
        return _with_carrier_tops(view, engine)
    # Where one is not listed, the target most likely lacks it and its layers are wanted too: asked together,
    # one round trip on a far link (if it was there after all, the layers were read for nothing).
    held = [] if view.layers_read else sorted(view.ids)
    found = engine.inspect_images(missing + held)
    view = replace(view, unlisted=frozenset(image_id for image_id, details in zip(missing, found) if details is not None))
    if view.layers_read or len(view.unlisted) == len(missing):
        return view
    return _with_details(view, held, found[len(missing) :])
