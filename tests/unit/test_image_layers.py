"""Layers: chain IDs, what a target needs, and which layer a save member holds."""

from __future__ import annotations

import hashlib

from shipper.archive.layers import LayerIndex, chain_ids, needed_layers

# A five-layer image as Docker 20.10 saved it (lab layers m-base-0..2, m-app-0..1):
# its diff IDs, and three of its v1 layer directories with their json members.
DIFF_IDS = [
    "sha256:d87e0d246a547e5e99991272159746b35bafb16562799883a3557413a63ad099",
    "sha256:e3b2a555c8098438c6fb38d98f281fd0e0e438088c90e9c0ef6d6afcb29456d4",
    "sha256:6cdd844d1df7e3c45e7dc671ba3ab657c6ce40fa776ededb8d42978d6874fe99",
    "sha256:4342de0147aaf688089abb8ea704be851892a789291a642b762029ddf9d72c12",
    "sha256:20330103baddd07b6a8b14146c6ef03f69d370785889dfd6310b583c364efccd",
]
V1_JSON = {  # directory -> (its json member, the layer's index)
    "1edf71262f345d98b636d9388aea32382b1547eb96bb8250bcb7b5c0eb61c45b": (
        '{"id":"1edf71262f345d98b636d9388aea32382b1547eb96bb8250bcb7b5c0eb61c45b","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}',
        0,
    ),
    "4e50a463ace6f4066ab59104c8fd66af31a8bbf68d86727a898c701b06e3867d": (
        '{"id":"4e50a463ace6f4066ab59104c8fd66af31a8bbf68d86727a898c701b06e3867d","parent":"1edf71262f345d98b636d9388aea32382b1547eb96bb8250bcb7b5c0eb61c45b","created":"1970-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"os":"linux"}',
        1,
    ),
    "66e489e65c51e333654a4ea539a1b159af9dea1ee3f5fc0c442f3cc14211c03a": (
        '{"id":"66e489e65c51e333654a4ea539a1b159af9dea1ee3f5fc0c442f3cc14211c03a","parent":"568d2bc85a0aa2161830613fab97053e0ac3e3f6c73d14fde0ef535a4a33ac09","created":"2026-01-01T00:00:00Z","container_config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":null,"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"config":{"Hostname":"","Domainname":"","User":"","AttachStdin":false,"AttachStdout":false,"AttachStderr":false,"Tty":false,"OpenStdin":false,"StdinOnce":false,"Env":["PATH=/bin"],"Cmd":null,"Image":"","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null},"architecture":"amd64","os":"linux"}',
        4,
    ),
}


def sha(text: str) -> str:
    return "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def test_a_chain_id_is_the_first_layer_then_the_digest_of_parent_chain_and_layer() -> None:
    chains = chain_ids(DIFF_IDS[:3])

    assert chains[0] == DIFF_IDS[0]
    assert chains[1] == sha(f"{DIFF_IDS[0]} {DIFF_IDS[1]}")
    assert chains[2] == sha(f"{chains[1]} {DIFF_IDS[2]}")


def test_a_target_needs_the_layers_above_the_chain_it_holds() -> None:
    held = set(chain_ids(DIFF_IDS[:3]))

    assert needed_layers([DIFF_IDS], held) == set(DIFF_IDS[3:])
    assert needed_layers([DIFF_IDS], set()) == set(DIFF_IDS)


def test_the_same_layer_on_another_base_is_still_needed() -> None:
    # A target holding layer 1 on top of some other layer does not hold chain 1 of this image.
    held = set(chain_ids(["sha256:" + "0" * 64, DIFF_IDS[1]]))

    assert needed_layers([DIFF_IDS[:2]], held) == set(DIFF_IDS[:2])


def test_docker_20_10_layer_directories_are_recognised_from_their_json_member() -> None:
    index = LayerIndex({"sha256:" + "1" * 64: DIFF_IDS})

    for directory, (text, position) in V1_JSON.items():
        assert index.identify_v1(directory, text.encode()) == DIFF_IDS[position]
        assert index.layer_of(f"{directory}/layer.tar") == DIFF_IDS[position]


def test_a_v1_directory_of_an_unknown_image_or_a_garbled_json_is_not_guessed() -> None:
    other = LayerIndex({"sha256:" + "1" * 64: DIFF_IDS[:2]})  # the top layers are not among these
    first, last = list(V1_JSON)[0], list(V1_JSON)[-1]

    assert other.identify_v1(last, V1_JSON[last][0].encode()) is None
    assert other.identify_v1(first, b"{not json") is None
    assert other.layer_of(f"{last}/layer.tar") is None


def test_layers_named_by_their_digest_are_recognised_by_name() -> None:
    index = LayerIndex({"sha256:" + "1" * 64: DIFF_IDS})
    hexpart = DIFF_IDS[2].split(":")[1]

    assert index.layer_of(f"{hexpart}/layer.tar") == DIFF_IDS[2]
    assert index.layer_of(f"blobs/sha256/{hexpart}") == DIFF_IDS[2]
    assert index.layer_of("blobs/sha256/" + "2" * 64) is None
    assert index.layer_of("manifest.json") is None


def test_podman_names_its_layers_by_digest_at_the_top() -> None:
    index = LayerIndex({"sha256:" + "1" * 64: DIFF_IDS})

    assert index.layer_of(DIFF_IDS[1].split(":")[1] + ".tar") == DIFF_IDS[1]
    assert index.layer_of("3" * 64 + ".tar") is None


def test_an_images_content_key_tells_apart_images_with_the_same_layers_and_another_command() -> None:
    from shipper.engine.info import content_key

    one = {"RootFS": {"Layers": DIFF_IDS}, "Config": {"Cmd": ["sh"]}, "Created": "2026-01-01T00:00:00Z", "Architecture": "amd64", "Os": "linux"}
    other = {**one, "Config": {"Cmd": ["sh", "-c", "other"]}}
    same_but_nulls = {**one, "Config": {"Cmd": ["sh"], "Env": None, "Labels": {}}}

    assert content_key(one) != content_key(other)
    assert content_key(one) == content_key(same_but_nulls)  # engines differ in null against empty


def test_an_image_made_without_a_creation_time_has_one_content_key_in_every_store() -> None:
    """The classic store says Go's zero time where the containerd store says nothing (an image whose config
    has no ``created``, as multi-platform images built by other tools may have)."""
    from shipper.engine.info import content_key

    containerd = {"RootFS": {"Layers": DIFF_IDS}, "Config": {}, "Architecture": "arm64", "Os": "linux"}
    classic = {**containerd, "Created": "0001-01-01T00:00:00Z", "Config": None, "Variant": None}

    assert content_key(classic) == content_key(containerd)
