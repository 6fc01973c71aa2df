"""The move's stream filter: tags out, everything checked, nothing bad gets to look complete."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from shipper.archive.savestream import ArchiveError, SaveStreamFilter
from shipper.lab.images import Layer, SyntheticImage, as_file, busybox_image, image_id, oci_archive

IMAGES = [SyntheticImage("lab/x:1", (Layer(70_000, "x-base"), Layer(3_000, "x-top", "text"))), busybox_image()]
SAVED = as_file(IMAGES).getvalue()


def run(data: bytes, expected: list[str] | None = None, chunk: int = 4096) -> bytes:
    pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    return b"".join(bytes(p) for p in SaveStreamFilter(expected or []).run(pieces))


def members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive.getmembers() if m.isfile()}  # type: ignore[union-attr]


def test_a_sound_archive_passes_with_its_content_intact_and_its_tags_removed() -> None:
    out = run(SAVED, [image_id(i) for i in IMAGES])

    before, after = members(SAVED), members(out)
    assert set(after) == set(before)
    assert all(after[name] == before[name] for name in before if name != "manifest.json")
    assert [entry["RepoTags"] for entry in json.loads(after["manifest.json"])] == [None, None]


def test_it_reads_any_chunking_of_the_stream() -> None:
    assert run(SAVED, chunk=1) == run(SAVED, chunk=1 << 20)


def test_the_repositories_file_is_dropped_and_oci_index_names_removed() -> None:
    index = {"manifests": [{"digest": "sha256:" + "0" * 64, "annotations": {"io.containerd.image.name": "x:1", "keep": "y"}}]}
    data = append(SAVED, {"repositories": b'{"x":{"1":"abc"}}', "index.json": json.dumps(index).encode()})

    after = members(run(data))

    assert "repositories" not in after
    assert json.loads(after["index.json"])["manifests"][0]["annotations"] == {"keep": "y"}


def member_ends(data: bytes) -> list[int]:
    ends = []
    with tarfile.open(fileobj=io.BytesIO(data)) as archive:
        for member in archive.getmembers():
            ends.append(member.offset_data + member.size + (-member.size % 512))
    return ends


def test_a_stream_cut_anywhere_is_refused_even_on_a_member_boundary() -> None:
    for cut in member_ends(SAVED)[:-1] + [len(SAVED) - 1024, len(SAVED) - 512, 10_000]:
        with pytest.raises(ArchiveError, match="ends early"):
            run(SAVED[:cut])


def test_nothing_past_the_last_member_comes_out_before_the_checks_pass() -> None:
    flipped = bytearray(SAVED)
    flipped[2000] ^= 0x01  # inside the first layer
    produced = bytearray()

    with pytest.raises(ArchiveError, match="does not match its config"):
        for piece in SaveStreamFilter().run([bytes(flipped)]):
            produced += piece

    assert not produced.endswith(bytes(1024))  # no end-of-archive marker was emitted


def test_a_config_whose_content_does_not_match_its_name_is_refused() -> None:
    before = members(SAVED)
    config = next(n for n in before if n.endswith(".json") and n != "manifest.json")
    position = SAVED.index(before[config])
    corrupt = SAVED[:position] + before[config].replace(b'"os":"linux"', b'"os":"Linux"') + SAVED[position + len(before[config]) :]

    with pytest.raises(ArchiveError, match=f"{config} is corrupt"):
        run(corrupt)


def test_an_image_the_plan_expects_but_the_archive_lacks_is_refused() -> None:
    with pytest.raises(ArchiveError, match="lacks image"):
        run(SAVED, ["sha256:" + "1" * 64])


def tar_of(*entries: tarfile.TarInfo, data: bytes = b"") -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for entry in entries:
            archive.addfile(entry, io.BytesIO(data) if entry.isreg() else None)
    return out.getvalue()


def entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.size = kind, link, size
    return info


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (entry("/etc/passwd"), "outside the archive"),
        (entry("../escape"), "outside the archive"),
        (entry("a/../../escape"), "outside the archive"),
        (entry("link", tarfile.SYMTYPE, "../../etc/shadow"), "points outside"),
        (entry("hard", tarfile.LNKTYPE, "manifest.json"), "hard link"),
        (entry("dev", tarfile.CHRTYPE), "device"),
        (entry("fifo", tarfile.FIFOTYPE), "fifo"),
    ],
)
def test_members_a_docker_save_never_holds_are_refused(bad: tarfile.TarInfo, message: str) -> None:
    with pytest.raises(ArchiveError, match=message):
        run(tar_of(bad))


def test_a_member_given_twice_is_refused() -> None:
    with pytest.raises(ArchiveError, match="appears twice"):
        run(tar_of(entry("a/layer.tar", size=1), entry("a/layer.tar", size=1), data=b"x"))


def test_oversized_metadata_is_refused() -> None:
    with pytest.raises(ArchiveError, match="metadata over"):
        run(tar_of(entry("manifest.json", size=5 << 20), data=b" " * (5 << 20)))


def test_garbage_is_not_a_tar() -> None:
    with pytest.raises(ArchiveError, match="not a tar archive"):
        run(b"\xff" * 2048)


def test_long_names_in_pax_headers_are_followed() -> None:
    long_name = "blobs/sha256/" + hashlib.sha256(b"x").hexdigest() + "/" + "n" * 120
    out = run(append(SAVED, {long_name: b"x"}))

    assert members(out)[long_name] == b"x"


def append(data: bytes, extra: dict[str, bytes]) -> bytes:
    """``data`` (a tar) with more members before its end marker."""
    body = data[: len(data) - 1024]  # the lab's writer ends with exactly the two zero blocks
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name, content in extra.items():
            info = tarfile.TarInfo(name)
            info.size = len(content)
            archive.addfile(info, io.BytesIO(content))
    return body + out.getvalue()


def _oci_save(layers: list[bytes]) -> tuple[bytes, str]:
    """An OCI-layout save whose layers are stored as given (gzip, as the containerd store keeps pulled ones)."""
    import gzip as _gzip

    diff_ids = ["sha256:" + hashlib.sha256(_gzip.decompress(b) if b[:2] == b"\x1f\x8b" else b).hexdigest() for b in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    return oci_archive(config, layers), "sha256:" + hashlib.sha256(config).hexdigest()


def test_a_gzip_layer_is_checked_by_what_it_unpacks_to() -> None:
    import gzip as _gzip

    tar_bytes = members(SAVED)[next(n for n in members(SAVED) if n.endswith("layer.tar"))]
    data, config = _oci_save([_gzip.compress(tar_bytes)])
    check = SaveStreamFilter([config])
    b"".join(bytes(p) for p in check.run([data[i : i + 1000] for i in range(0, len(data), 1000)]))

    assert check.stats.images[config] == ["sha256:" + hashlib.sha256(tar_bytes).hexdigest()]


def test_a_gzip_layer_that_unpacks_to_other_bytes_is_refused() -> None:
    import gzip as _gzip

    data, config = _oci_save([_gzip.compress(b"a" * 5000)])
    wrong = data.replace(_gzip.compress(b"a" * 5000), _gzip.compress(b"b" * 5000))  # same length, other content
    # The blob's name no longer matches either: whichever check comes first, the stream is refused.
    with pytest.raises(ArchiveError):
        b"".join(bytes(p) for p in SaveStreamFilter([config]).run([wrong]))


def test_a_small_gzip_layer_is_checked_by_what_it_unpacks_to_too() -> None:
    """A gzip layer under the size at which blobs are held as metadata (configs are among them): a pulled
    one-file layer of a multi-platform image saved with --platform is one."""
    import gzip as _gzip

    layer = _gzip.compress(b"arm64\n".ljust(1024, b"\0"), mtime=0)
    data, config = _oci_save([layer])
    check = SaveStreamFilter([config])
    b"".join(bytes(p) for p in check.run([data]))

    assert check.stats.images[config] == ["sha256:" + hashlib.sha256(_gzip.decompress(layer)).hexdigest()]
