"""Hostile archives and bundles: every header parsed strictly, every link resolved against the tree
the archive builds, decompression bounded, and nothing but the layers' own digests trusted.

Each crafted input changes one thing in a sound archive or bundle; each must be
refused with a one-line reason, quickly, without a traceback.
"""

from __future__ import annotations

import os
import resource
import tarfile
import time
from pathlib import Path

import pytest

from shipper.archive.savestream import ArchiveError
from shipper.bundle import BundleWriter, read_verified
from tests.conftest import ShipperRunner
from tests.hostile.crafter import (
    archive_with,
    check,
    layer_offset,
    member,
    pax_member,
    pax_records,
    raw_header,
    rewrite_sums,
    sound_archive,
    sound_bundle,
    zstd_bomb,
)

# -- the crafted inputs are sound until changed ---------------------------------------------------


def test_the_sound_archive_and_bundle_pass(tmp_path: Path) -> None:
    check(archive_with())
    verified = read_verified(sound_bundle(tmp_path / "b.tar"))
    assert verified.checksum_file
    verified = read_verified(sound_bundle(tmp_path / "b.tar.zst", compress=True))
    assert verified.checksum_file


# -- tar headers ----------------------------------------------------------------------------------


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (pax_records({"size": "-1"}), "'-1', which is not a size"),
        (pax_records({"size": "abc"}), "'abc', which is not a size"),
        (pax_records({"size": "1e3"}), "which is not a size"),
        (b"0 size=1\n", "length does not match"),  # a zero length would never move on
        (b"9999 size=1\n", "length does not match"),
        (b"x size=1\n", "without a length"),
        (b"8 size1\n", "without a key"),
        (pax_records({"GNU.sparse.size": "10"}), "sparse"),
        (b"10 \xff\xfe=abc\n", "not UTF-8"),
    ],
)
def test_a_malformed_pax_header_is_refused(records: bytes, expected: str) -> None:
    with pytest.raises(ArchiveError, match=expected):
        check(archive_with(pax_member("extra.bin", b"data", records)))


@pytest.mark.timeout(10)
def test_a_negative_base256_size_is_refused() -> None:
    with pytest.raises(ArchiveError, match="which is not a size"):
        check(archive_with(raw_header("extra.bin", b"\xff" * 12)))


def test_an_oversized_extended_header_is_refused_before_it_is_read() -> None:
    huge = raw_header("PaxHeaders/x", b"\x80" + (1 << 40).to_bytes(11, "big"), tarfile.XHDTYPE)
    with pytest.raises(ArchiveError, match="extended tar header"):
        check([sound_archive(), huge])


def test_a_global_pax_header_that_sets_a_path_is_refused() -> None:
    records = pax_records({"path": "manifest.json"})
    block = member("GlobalHead", records, tarfile.XGLTYPE)
    with pytest.raises(ArchiveError, match="global PAX header"):
        check(archive_with(block))


def test_a_pax_path_is_checked_like_a_ustar_name() -> None:
    with pytest.raises(ArchiveError, match="points outside the archive"):
        check(archive_with(pax_member("harmless", b"x", pax_records({"path": "../../etc/cron.d/x"}))))


# -- symlinks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/etc/shadow", "../../..", "../x", ""])
def test_a_pax_linkpath_outside_the_archive_is_refused(target: str) -> None:
    link = pax_member("evil", b"", pax_records({"linkpath": target}), tarfile.SYMTYPE, linkname="harmless")
    with pytest.raises(ArchiveError, match="points outside the archive"):
        check(archive_with(link))


def test_a_link_that_climbs_out_through_a_symlinked_directory_is_refused() -> None:
    """a/b/c -> ../../x puts c's target one level up; y -> a/b/c/../.. then climbs above the root,
    though read as text it stays inside (a/b/c/../.. = a)."""
    with pytest.raises(ArchiveError, match="through symlink"):
        check(archive_with(
            member("a/", kind=tarfile.DIRTYPE), member("a/b/", kind=tarfile.DIRTYPE), member("x", b"x"),
            member("a/b/c", kind=tarfile.SYMTYPE, linkname="../../x"),
            member("y", kind=tarfile.SYMTYPE, linkname="a/b/c/../.."),
        ))  # fmt: skip


def test_a_link_through_a_symlink_declared_later_is_refused() -> None:
    with pytest.raises(ArchiveError, match="through symlink"):
        check(archive_with(
            member("x", b"x"), member("y", kind=tarfile.SYMTYPE, linkname="d/../x"), member("d", kind=tarfile.SYMTYPE, linkname="x"),
        ))  # fmt: skip


def test_a_member_below_a_symlink_is_refused() -> None:
    with pytest.raises(ArchiveError, match="lies below symlink"):
        check(archive_with(member("x/", kind=tarfile.DIRTYPE), member("d", kind=tarfile.SYMTYPE, linkname="x"), member("d/file", b"data")))


@pytest.mark.parametrize("target", ["nowhere", "dir"])
def test_a_symlink_must_lead_to_a_file_of_the_archive(target: str) -> None:
    with pytest.raises(ArchiveError, match="does not lead to a file"):
        check(archive_with(member("dir/", kind=tarfile.DIRTYPE), member("l", kind=tarfile.SYMTYPE, linkname=target)))


def test_a_symlink_loop_is_refused() -> None:
    with pytest.raises(ArchiveError, match="does not lead to a file"):
        check(archive_with(member("l1", kind=tarfile.SYMTYPE, linkname="l2"), member("l2", kind=tarfile.SYMTYPE, linkname="l1")))


def test_a_symlink_to_a_file_of_the_archive_is_fine() -> None:
    check(archive_with(member("data.bin", b"data"), member("alias", kind=tarfile.SYMTYPE, linkname="data.bin")))


# -- bundles --------------------------------------------------------------------------------------


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.timeout(60)
def test_a_zstd_bomb_is_refused_in_bounded_memory(shipper: ShipperRunner, tmp_path: Path) -> None:
    bomb = zstd_bomb(tmp_path / "bomb.tar.zst", 600 << 20)
    assert bomb.stat().st_size < 100 << 10
    before = _peak_rss_mb()

    result = shipper("bundle", "verify", str(bomb))

    assert result.status == 1
    assert "decompression bomb" in result.stderr
    assert _peak_rss_mb() - before < 100


@pytest.mark.timeout(20)
def test_a_bundle_member_with_pax_size_minus_one_is_refused_not_spun_on(shipper: ShipperRunner, tmp_path: Path) -> None:
    path = sound_bundle(tmp_path / "b.tar")
    data = path.read_bytes()
    path.write_bytes(data[:-1024] + pax_member("extra", b"x", pax_records({"size": "-1"})) + bytes(1024))
    rewrite_sums(path)

    result = shipper("bundle", "verify", str(path))

    assert result.status == 1
    assert "which is not a size" in result.stderr


def test_a_layer_changed_with_its_checksum_file_rewritten_is_refused(shipper: ShipperRunner, tmp_path: Path) -> None:
    """The checksum file travels with the bundle: whoever changes a layer can rewrite it."""
    path = sound_bundle(tmp_path / "b.tar")
    data = bytearray(path.read_bytes())
    offset, size = layer_offset(bytes(data))
    data[offset + size // 2] ^= 0x01
    path.write_bytes(bytes(data))
    rewrite_sums(path)

    result = shipper("bundle", "verify", str(path))

    assert result.status == 1
    assert "does not match its config" in result.stderr


@pytest.mark.parametrize(("digest_member", "expected"), [(b"not json", "is not JSON"), (b"[1, 2]", "holds no sha256")])
def test_a_bundle_digest_member_that_is_not_a_json_object_is_a_clear_error(
    shipper: ShipperRunner, tmp_path: Path, digest_member: bytes, expected: str
) -> None:
    path = sound_bundle(tmp_path / "b.tar")
    data = path.read_bytes()
    found = {m.name: m for m in tarfile.open(path).getmembers()}
    digest = found["shipper-bundle-sha256.json"]
    replaced = data[: digest.offset] + member("shipper-bundle-sha256.json", digest_member) + bytes(1024)
    path.write_bytes(replaced)
    Path(f"{path}.sha256").unlink()

    result = shipper("bundle", "verify", str(path))

    assert result.status == 1, result.stderr
    assert expected in result.stderr and "Traceback" not in result.stderr


def test_garbage_after_a_compressed_bundle_is_refused(shipper: ShipperRunner, tmp_path: Path) -> None:
    path = sound_bundle(tmp_path / "b.tar.zst", compress=True)
    path.write_bytes(path.read_bytes() + b"garbage")
    Path(f"{path}.sha256").unlink()

    result = shipper("bundle", "verify", str(path))

    assert result.status == 1
    assert "appended garbage" in result.stderr


def test_a_compressed_bundle_cut_short_is_refused(shipper: ShipperRunner, tmp_path: Path) -> None:
    path = sound_bundle(tmp_path / "b.tar.zst", compress=True)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    Path(f"{path}.sha256").unlink()

    result = shipper("bundle", "verify", str(path))

    assert result.status == 1
    assert "ends early" in result.stderr


# -- writing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("planted", ["out.tar.partial", "out.tar.sha256", "out.tar.sha256.partial"])
def test_the_writer_never_follows_a_symlink_planted_at_its_file_names(tmp_path: Path, planted: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    os.symlink(victim, tmp_path / planted)

    writer = BundleWriter(tmp_path / "out.tar")
    writer.write(b"bundle bytes")
    writer.commit()

    assert victim.read_text() == "precious\n"
    assert (tmp_path / "out.tar").read_bytes() == b"bundle bytes"
    assert not (tmp_path / "out.tar.sha256").is_symlink()


# -- fuzzed: whatever the bytes, a clear refusal or a pass, never a hang or a crash -------------


def test_random_damage_to_a_sound_archive_gives_archive_errors_only() -> None:
    import random

    sound = archive_with()
    rng = random.Random(14)
    started = time.monotonic()
    for _ in range(300):
        data = bytearray(sound)
        for _ in range(rng.randint(1, 8)):
            # headers are where parsers break: aim there most of the time
            position = rng.randrange(0, len(data)) if rng.random() < 0.3 else rng.randrange(0, len(data) // 512) * 512 + rng.randrange(0, 512)
            data[position] = rng.randrange(256)
        try:
            check(bytes(data))
        except ArchiveError:
            pass
    assert time.monotonic() - started < 60
