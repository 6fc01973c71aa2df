"""What an engine says about itself and its images, as plain values."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal
from collections.abc import Mapping

from shipper.archive.receiver import CARRIER_LABEL

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


def image_details(raw: Mapping[str, Any]) -> ImageDetails:
    return ImageDetails(
        id=str(raw["Id"]),
        tags=tuple(short_name(t) for t in raw.get("RepoTags") or ()),
        size=int(raw.get("Size", 0)),
        layers=tuple((raw.get("RootFS") or {}).get("Layers") or ()),
        architecture=str(raw.get("Architecture", "")),
        os=str(raw.get("Os", "")),
        digests=tuple(raw.get("RepoDigests") or ()),
        command=tuple((raw.get("Config") or {}).get("Entrypoint") or ()) + tuple((raw.get("Config") or {}).get("Cmd") or ()),
        content=content_key(raw),
        variant=str(raw.get("Variant") or ""),
        carrier=CARRIER_LABEL in ((raw.get("Config") or {}).get("Labels") or {}),
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
        if len(entry) == 2 and entry[0] == "driver-type" and entry[1] == _CONTAINERD_SNAPSHOTTER:
            return "containerd"
    return "classic"


def _product(version: Mapping[str, Any]) -> str:
    names = " ".join(str(c.get("Name", "")) for c in version.get("Components") or [])
    return "podman" if "Podman" in names else "docker"


def engine_info(version: Mapping[str, Any], info: Mapping[str, Any], client_api_version: str) -> EngineInfo:
    """Combine ``GET /version`` and ``GET /info`` answers."""
    return EngineInfo(
        product=_product(version),
        version=str(version.get("Version", "?")),
        api_version=str(version.get("ApiVersion", "?")),
        client_api_version=client_api_version,
        os=str(version.get("Os", info.get("OSType", "?"))),
        arch=str(version.get("Arch", info.get("Architecture", "?"))),
        kernel=str(version.get("KernelVersion", info.get("KernelVersion", "?"))),
        storage_driver=str(info.get("Driver", "?")),
        image_store=_image_store(info),
        name=str(info.get("Name", "?")),
        images=int(info.get("Images", 0)),
        containers=int(info.get("Containers", 0)),
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
    tags = tuple(short_name(t) for t in raw.get("RepoTags") or [] if t != "<none>:<none>")
    digests = tuple(d for d in raw.get("RepoDigests") or [] if not d.startswith("<none>@"))
    return ImageSummary(
        id=str(raw["Id"]), tags=tags, digests=digests, size=int(raw.get("Size", 0)), created=int(raw.get("Created", 0))
    )
