"""An engine's images: list, inspect, tag, untag, remove, and what their history says of their layers.

Part of ``Engine`` (client.py), kept apart by subject: small requests, written at once on the quick channel
where there is one (``_pipelined``: one round trip for many), else one at a time through docker-py.
"""

from __future__ import annotations

from typing import Any, Protocol

from shipper.engine.containers import EngineCalls
from shipper.engine.info import EngineInfo, ImageDetails, ImageSummary, history_sizes, image_details, image_summary
from shipper.engine.quickget import BadAnswer, EngineRefused
from shipper.engine.transfers import PLATFORM_SAVE_API
from shipper.errors import EngineError
from shipper.platforms import Platform, normalized

# The first API version whose inspect takes a platform (save and load: 1.48, transfers.py). Asked for by that call
# alone: every other request keeps the version agreed at connect().
PLATFORM_INSPECT_API = "1.49"


class ImageEngine(EngineCalls, Protocol):
    """What the image calls use besides ``EngineCalls``."""

    def _get(self, url: str, params: dict[str, Any] | None = None, json_body: bool = True, shape: type = dict) -> tuple[int, Any]: ...

    def _pipelined(self, requests: list[tuple[str, str, dict[str, Any] | None]]) -> list[tuple[int, Any]] | None: ...

    def info(self) -> EngineInfo: ...

    def supports_api(self, version: str) -> bool: ...

    def require_api(self, version: str, action: str) -> None: ...

    def tag(self, image_id: str, name: str) -> None: ...

    def inspect_image(self, reference: str, platform: Platform | None = None) -> ImageDetails | None: ...

    def layer_sizes_of(self, images: list[tuple[str, int]]) -> list[tuple[int, ...]]: ...


def _lined_up(sizes: list[int], count: int) -> tuple[int, ...]:
    """A history's sizes (oldest first) as its image's ``count`` layers' sizes; () where they do not line up."""
    if len(sizes) == count:
        return tuple(sizes)
    made_layers = [size for size in sizes if size]
    return tuple(made_layers) if len(made_layers) == count else ()


class ImageCalls:
    def tag_and_inspect(self: "ImageEngine", tags: list[tuple[str, str]]) -> list[ImageDetails | None]:
        """Point each ``(image_id, name)``'s name at its image (as ``tag``), then inspect every name: one round trip
        where the channel allows (the engine takes a connection's requests in order: each inspection sees the tags)."""
        requests: list[tuple[str, str, dict[str, Any] | None]] = []
        for image_id, name in tags:
            repository, _, tag = name.rpartition(":")
            requests.append(("POST", self._url("/images/{0}/tag", image_id), {"repo": repository, "tag": tag, "force": 1}))
        requests += [("GET", self._url("/images/{0}/json", name), None) for _, name in tags]
        with self.errors(f"tag {len(tags)} image(s)"):
            answers = self._pipelined(requests)
        if answers is None:
            for image_id, name in tags:
                self.tag(image_id, name)
            return [self.inspect_image(name) for _, name in tags]
        for (image_id, name), (status, _) in zip(tags, answers):
            if status != 201:
                raise EngineError(f"cannot tag {image_id[:19]} as {name} on {self.host.describe()} (the engine answered {status})")
        return [image_details(found) if status == 200 and isinstance(found, dict) else None for status, found in answers[len(tags) :]]

    def images(self: "ImageEngine") -> list[ImageSummary]:
        """Every image the engine holds, tagged or not."""
        with self.errors("list images"):
            _, found = self._get(self._url("/images/json"), params={"only_ids": 0, "all": 0}, shape=list)
            return [image_summary(raw) for raw in found or []]

    def inspect_image(self: "ImageEngine", reference: str, platform: Platform | None = None) -> ImageDetails | None:
        """The image ``reference`` names (tag or ID), or None if the engine has none.
        ``platform``: that platform's image of a multi-platform one (containerd store, API 1.49+); None when absent."""
        with self.errors(f"inspect image {reference}"):
            if platform is None:
                status, found = self._get(self._url("/images/{0}/json", reference))
            else:
                self.require_api(PLATFORM_INSPECT_API, f"inspect one platform ({platform}) of {reference}")
                status, found = self._get(self._url("/images/{0}/json", reference, version=PLATFORM_INSPECT_API), params={"platform": platform.to_api()})
            return image_details(found) if status == 200 and found else None

    def image_platforms(self: "ImageEngine", reference: str) -> list[tuple[Platform, bool]]:
        """The platforms a multi-platform image lists, each with whether the engine holds its content
        (``GET /images/{name}/json?manifests=1``, API 1.48+; [] where the engine cannot say)."""
        if not self.supports_api(PLATFORM_SAVE_API):
            return []
        with self.errors(f"list the platforms of {reference}"):
            status, described_image = self._get(self._url("/images/{0}/json", reference, version=PLATFORM_SAVE_API), params={"manifests": "1"})
            if status != 200 or not described_image:
                return []
            manifests = described_image.get("Manifests") or []
            if not isinstance(manifests, list):
                raise BadAnswer(f"the engine's description of {reference}'s platforms is not what the API says")
            found = []
            for manifest in manifests:
                data = manifest.get("ImageData") if isinstance(manifest, dict) else None
                described = (data.get("Platform") if isinstance(data, dict) else None) or {}
                if not isinstance(manifest, dict) or not isinstance(described, dict) or not all(
                    isinstance(described.get(k, ""), str) for k in ("os", "architecture", "variant")
                ):
                    raise BadAnswer(f"the engine's description of {reference}'s platforms is not what the API says")
                if manifest.get("Kind") == "image" and described.get("os"):
                    found.append((normalized(described["os"], described.get("architecture", ""), described.get("variant", "")), bool(manifest.get("Available"))))
            return found

    def layer_sizes(self: "ImageEngine", image_id: str, count: int) -> tuple[int, ...]:
        """Each of an image's ``count`` layers' size (its content; its tar is a little larger), oldest first.

        Read from the image's history, where each entry that made a layer
        carries its size; () when the history does not line up with the layers.
        """
        (sizes,) = self.layer_sizes_of([(image_id, count)])
        return sizes

    def layer_sizes_of(self: "ImageEngine", images: list[tuple[str, int]]) -> list[tuple[int, ...]]:
        """``layer_sizes`` of each ``(image_id, count)``, in one round trip where the channel allows."""
        if not images:
            return []
        with self.errors(f"read the history of image {images[0][0][:19]}" + (f" and {len(images) - 1} more" if len(images) > 1 else "")):
            urls = [self._url("/images/{0}/history", image_id) for image_id, _ in images]
            answers = self._pipelined([("GET", url, None) for url in urls]) or [self._get(url, shape=list) for url in urls]
            histories = []
            for (image_id, _), (status, history) in zip(images, answers):
                if status != 200:
                    raise EngineRefused(f"{status} for the history of {image_id[:19]}", f"no such image: {image_id}")
                if not isinstance(history, list):
                    raise BadAnswer(f"the engine's answer to /images/{image_id[:19]}/history is not a JSON list")
                histories.append(history_sizes(history)[::-1])
        return [_lined_up(sizes, count) for sizes, (_, count) in zip(histories, images)]

    def tag(self: "ImageEngine", image_id: str, name: str) -> None:
        """Point ``name`` (repo:tag) at ``image_id``, replacing whatever it pointed at."""
        repository, _, tag = name.rpartition(":")
        with self.errors(f"tag {image_id[:19]} as {name}"):
            if not self.api.tag(image_id, repository, tag, force=True):
                raise EngineError(f"cannot tag {image_id[:19]} as {name} on {self.host.describe()}")

    def remove_image(self: "ImageEngine", image_id: str) -> None:
        """Remove an image by ID; never forced (an image in use stays)."""
        with self.errors(f"remove image {image_id[:19]}"):
            self.api.remove_image(image_id, force=False, noprune=False)

    def untag(self: "ImageEngine", reference: str) -> None:
        """Take one name (repo:tag or repo@digest) off an image that keeps another; never deletes an image."""
        details = self.inspect_image(reference)
        if details is None:
            return
        if len(details.tags) + len(details.digests) < 2:
            raise EngineError(f"{reference} is the only name of image {details.id[:19]} on {self.host.describe()}: left in place")
        with self.errors(f"remove the name {reference}"):
            self.api.remove_image(reference, force=False, noprune=True)

