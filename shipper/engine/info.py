"""What an engine says about itself and its images, as plain values."""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Mapping

from shipper.archive.receiver_carriers import CARRIER_LABEL
from shipper.engine.quickget import BadAnswer

ImageStore = Literal["classic", "containerd"]

# Docker reports the containerd image store as a DriverStatus entry, not as the driver name.
_CONTAINERD_SNAPSHOTTER = "io.containerd.snapshotter.v1"


@dataclass(frozen=True)
class EngineInfo:
    """An engine's identity and capabilities."""

    product: str  # "docker" or "podman"
    version: str
    api_version: str  # what the engine offers
    client_api_version: str  # what shipper speaks to it
    os: str
    arch: str
    kernel: str
    storage_driver: str
    image_store: ImageStore
    name: str
    images: int
    containers: int
    data_root: str = ""  # DockerRootDir: where the engine keeps its store (on the engine's host)


@dataclass(frozen=True)
class ImageSummary:
    """One image of an engine's image list."""

    id: str
    tags: tuple[str, ...]
    digests: tuple[str, ...]
    size: int
    created: int
    carrier: bool = False  # labelled as a resumable move's carrier (archive/receiver.py)


@dataclass(frozen=True)
class ImageDetails:
    """What ``docker image inspect`` says of one image that matters for moving it."""

    id: str
    tags: tuple[str, ...]
    size: int
    layers: tuple[str, ...]  # RootFS diff IDs
    architecture: str
    os: str
    digests: tuple[str, ...] = ()  # repo@sha256:… references (from pulls and pushes)
    command: tuple[str, ...] = ()  # Entrypoint then Cmd
    content: str = ""  # a digest of layers and config as the engine reports them: the same image under another ID
    variant: str = ""  # of the architecture (arm/v7); "" for most
    carrier: bool = False  # a resumable move's carrier: its layers arrived before a cut (archive/receiver.py)


# An engine's JSON is read field by field, each checked for its kind: a field of another kind is a BadAnswer (the
# engine is "unreachable" in a way it can name), never a KeyError or TypeError traceback, nor a string taken for a
# list of its characters ("sha256:aa" as 9 layers).


def _object(raw: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise BadAnswer(f"the engine's {key} is not an object")
    return value


def _texts(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or ()
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise BadAnswer(f"the engine's {key} is not a list of text")
    return tuple(value)


def _number(raw: Mapping[str, Any], key: str) -> int:
    value = raw.get(key) or 0
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadAnswer(f"the engine's {key} {repr(value)[:40]} is not a number")
    return int(value)


def _text(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    return value if isinstance(value, str) else ""


def _image_id(raw: Any) -> str:
    if not isinstance(raw, dict):
        raise BadAnswer("the engine's answer holds an image that is not an object")
    if "Id" not in raw:
        raise BadAnswer("the engine's answer holds an image without an Id")
    if not isinstance(raw["Id"], str):
        raise BadAnswer("the engine's answer holds an image with an Id that is not text")
    return raw["Id"]


def history_sizes(history: list[Any]) -> list[int]:
    """Each entry's Size of an image's history (``GET /images/{id}/history``), newest first as the engine lists them."""
    if not all(isinstance(entry, dict) for entry in history):
        raise BadAnswer("the engine's history holds an entry that is not an object")
    return [_number(entry, "Size") for entry in history]


def image_details(raw: Mapping[str, Any]) -> ImageDetails:
    config = _object(raw, "Config")
    return ImageDetails(
        id=_image_id(raw),
        tags=tuple(short_name(t) for t in _texts(raw, "RepoTags")),
        size=_number(raw, "Size"),
        layers=_texts(_object(raw, "RootFS"), "Layers"),
        architecture=_text(raw, "Architecture"),
        os=_text(raw, "Os"),
        digests=_texts(raw, "RepoDigests"),
        command=_texts(config, "Entrypoint") + _texts(config, "Cmd"),
        content=content_key(raw),
        variant=_text(raw, "Variant"),
        carrier=CARRIER_LABEL in _object(config, "Labels"),
    )


_GO_ZERO_TIME = "0001-01-01T00:00:00Z"  # the classic store's "Created" of an image made without a time; the containerd store omits it
_CONFIG_FIELDS = ("Cmd", "Entrypoint", "Env", "WorkingDir", "User", "Labels", "ExposedPorts", "Volumes", "StopSignal")


def content_key(raw: Mapping[str, Any]) -> str:
    """What makes an image the image it is, whatever ID its store gives it (the containerd store names
    images by manifest digest): its layers, its run configuration, when it was made, for what platform.
    Strict on purpose: two images with the same layers and another command are different images."""
    config = raw.get("Config") or {}
    document = {
        "layers": list((raw.get("RootFS") or {}).get("Layers") or ()),
        "config": {k: config.get(k) or None for k in _CONFIG_FIELDS},
        "created": None if raw.get("Created") == _GO_ZERO_TIME else raw.get("Created"), "architecture": raw.get("Architecture"), "os": raw.get("Os"), "variant": raw.get("Variant"),
    }  # fmt: skip
    return hashlib.sha256(json.dumps(document, sort_keys=True).encode()).hexdigest()


def _image_store(info: Mapping[str, Any]) -> ImageStore:
    for entry in info.get("DriverStatus") or []:
        if isinstance(entry, list) and len(entry) == 2 and entry[0] == "driver-type" and entry[1] == _CONTAINERD_SNAPSHOTTER:
            return "containerd"
    return "classic"


def _product(version: Mapping[str, Any]) -> str:
    names = " ".join(str(c.get("Name", "")) for c in version.get("Components") or [])
    return "podman" if "Podman" in names else "docker"


def engine_info(version: Mapping[str, Any], info: Mapping[str, Any], client_api_version: str, handshake: tuple[str, str] | None = None) -> EngineInfo:
    """Combine ``GET /version`` and ``GET /info`` answers; or, where ``/_ping`` said the API version and the
    product (``handshake``) and ``/version`` was not asked, ``/info``'s alone."""
    return EngineInfo(
        product=handshake[1] if handshake is not None else _product(version),
        version=str(version.get("Version") or info.get("ServerVersion") or "?"),
        api_version=handshake[0] if handshake is not None else str(version.get("ApiVersion", "?")),
        client_api_version=client_api_version,
        os=str(version.get("Os") or info.get("OSType") or "?"),
        arch=str(version.get("Arch") or info.get("Architecture") or "?"),
        kernel=str(version.get("KernelVersion") or info.get("KernelVersion") or "?"),
        storage_driver=str(info.get("Driver", "?")),
        image_store=_image_store(info),
        name=str(info.get("Name", "?")),
        images=_number(info, "Images"),
        containers=_number(info, "Containers"),
        data_root=str(info.get("DockerRootDir", "")),
    )


def short_name(name: str) -> str:
    """A name as Docker writes it: podman says ``docker.io/library/busybox:1`` for ``busybox:1``."""
    for prefix in ("docker.io/library/", "docker.io/"):
        if name.startswith(prefix):
            return name[len(prefix) :]
    return name


def image_summary(raw: Mapping[str, Any]) -> ImageSummary:
    """One entry of ``GET /images/json``; ``<none>`` placeholders dropped, names as Docker writes them."""
    image_id = _image_id(raw)
    tags = tuple(short_name(t) for t in _texts(raw, "RepoTags") if t != "<none>:<none>")
    digests = tuple(d for d in _texts(raw, "RepoDigests") if not d.startswith("<none>@"))
    return ImageSummary(
        id=image_id, tags=tags, digests=digests, size=_number(raw, "Size"), created=_number(raw, "Created"),
        carrier=CARRIER_LABEL in _object(raw, "Labels"),
    )  # fmt: skip
