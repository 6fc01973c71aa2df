"""The lab's image writer produces a valid docker-save archive, deterministically."""

from __future__ import annotations

import hashlib
import json
import tarfile

from shipper.lab.images import Layer, SyntheticImage, as_file, image_id

BASE = (Layer(4096, "base"), Layer(3000, "text-base", "text"))


def read(images: list[SyntheticImage]) -> dict[str, bytes]:
    with tarfile.open(fileobj=as_file(images), mode="r:") as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_the_archive_holds_a_manifest_configs_and_layers_whose_digests_match() -> None:
    image = SyntheticImage("lab/x:1", BASE + (Layer(100, "top"),))
    members = read([image])

    [entry] = json.loads(members["manifest.json"])
    config = members[entry["Config"]]
    assert entry["RepoTags"] == ["lab/x:1"]
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    assert diff_ids == ["sha256:" + hashlib.sha256(members[p]).hexdigest() for p in entry["Layers"]]
    assert image_id(image) == "sha256:" + hashlib.sha256(config).hexdigest()


def test_a_layer_shared_by_two_images_is_written_once_and_has_one_digest() -> None:
    one = SyntheticImage("lab/one:1", BASE + (Layer(10, "one"),))
    two = SyntheticImage("lab/two:1", BASE + (Layer(10, "two"),))
    members = read([one, two])

    layers = [name for name in members if name.endswith("layer.tar")]
    assert len(layers) == 4
    manifest = json.loads(members["manifest.json"])
    assert manifest[0]["Layers"][:2] == manifest[1]["Layers"][:2]


def test_the_same_image_is_the_same_bytes_every_time_and_text_layers_compress() -> None:
    image = SyntheticImage("lab/x:1", (Layer(200_000, "t", "text"),))

    assert as_file([image]).getvalue() == as_file([image]).getvalue()
    import zlib

    assert len(zlib.compress(as_file([image]).getvalue(), 1)) < 200_000 / 3
