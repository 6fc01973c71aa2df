"""The fan-out: every sink gets the whole stream, a dead one never blocks the rest,
and an aborted one ends in a poison block, never in a clean end of file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from shipper.archive.fanout import POISON, ProcessResult, ProcessSink, ended_early, pump
from shipper.archive.savestream import ArchiveError
from shipper.archive.wire import Framer
from shipper.lab.images import Layer, SyntheticImage, as_file, image_id

IMAGE = SyntheticImage("lab/fan:1", (Layer(3 << 20, "fan-base"), Layer(10_000, "fan-top")))
SAVED = as_file([IMAGE]).getvalue()


def chunks(data: bytes, size: int = 1 << 16) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def cat_to(path: Path) -> ProcessSink:
    return ProcessSink(path.name, ["sh", "-c", f"cat > {path}"]).start()


def test_every_sink_receives_the_same_whole_stream(tmp_path: Path) -> None:
    sinks = [cat_to(tmp_path / "one"), cat_to(tmp_path / "two")]

    pump(chunks(SAVED), sinks, [image_id(IMAGE)])
    for sink in sinks:
        sink.finish()

    one, two = (tmp_path / "one").read_bytes(), (tmp_path / "two").read_bytes()
    assert one == two and len(one) == len(SAVED)
    assert all(s.sent == len(SAVED) for s in sinks)


def test_a_sink_whose_command_dies_does_not_block_the_others(tmp_path: Path) -> None:
    dead = ProcessSink("dead", ["sh", "-c", "head -c 1000 > /dev/null"]).start()
    alive = cat_to(tmp_path / "alive")

    pump(chunks(SAVED), [dead, alive])
    assert not ended_early([dead, alive])  # the live one took it all
    dead.finish()
    alive.finish()

    assert dead.stopped
    assert len((tmp_path / "alive").read_bytes()) == len(SAVED)


def test_when_every_sink_is_gone_the_pump_stops_early_and_says_so() -> None:
    bigger = as_file([SyntheticImage("lab/fan-big:1", (Layer(24 << 20, "fan-big"),))]).getvalue()  # more than the queue holds
    sinks = [ProcessSink("dead", ["true"]).start()]

    pump(chunks(bigger), sinks)

    assert ended_early(sinks)
    assert sinks[0].sent < len(bigger)


def test_an_aborted_stream_ends_in_a_poison_block(tmp_path: Path) -> None:
    sink = cat_to(tmp_path / "out")
    cut = SAVED[: len(SAVED) // 2]

    with pytest.raises(ArchiveError):
        pump(chunks(cut), [sink])
    sink.abort()

    received = (tmp_path / "out").read_bytes()
    assert received.endswith(POISON)
    assert len(received) < len(SAVED)


def test_a_handshake_that_never_comes_means_not_ready() -> None:
    sink = ProcessSink("silent", [sys.executable, "-c", "print('hello')"], handshake="READY")

    assert not sink.ready


def test_the_targets_pace_reports_reach_the_framer_and_stay_out_of_the_loads_output() -> None:
    """The target's end says on stdout, while the stream comes, whether it keeps up; what the load says is its
    result, whole and without them."""
    said = "print('READY-FRAMES-PACED', flush=True); import sys; sys.stdin.read(); print('SHIPPER-PACE 0.80'); print('Loaded image ID: sha256:ab')"
    sink = ProcessSink("target", [sys.executable, "-c", said], handshake="READY")
    sink.framer = Framer("auto")
    sink.start()

    sink.finish()

    assert sink.ready and sink.unframes and sink.paced and sink.framer.target_busy
    assert isinstance(sink.result, ProcessResult) and sink.result.stdout == "Loaded image ID: sha256:ab\n"


def test_a_target_that_talks_without_end_is_kept_to_64_kib_of_output() -> None:
    sink = ProcessSink("chatty", [sys.executable, "-c", "import sys; sys.stdout.write('x' * (8 << 20))"]).start()

    sink.finish()

    assert isinstance(sink.result, ProcessResult) and len(sink.result.stdout) == 65536


def digest_named_stream(layers: list[bytes], leave_out: int | None = None) -> tuple[bytes, str, list[str]]:
    """A save stream whose layers are named by their digests (shipper's own form), and its image ID and diff IDs."""
    import hashlib
    import io
    import json
    import tarfile

    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_name = hashlib.sha256(config).hexdigest() + ".json"
    manifest = json.dumps([{"Config": config_name, "RepoTags": None, "Layers": [d[7:] + "/layer.tar" for d in diff_ids]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        members = [(d[7:] + "/layer.tar", layer) for i, (d, layer) in enumerate(zip(diff_ids, layers)) if i != leave_out]
        for name, data in [*members, (config_name, config), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue(), "sha256:" + hashlib.sha256(config).hexdigest(), diff_ids


def names_in(path: Path) -> list[str]:
    import tarfile

    with tarfile.open(path) as archive:
        return archive.getnames()


def test_each_sink_is_sent_the_stream_without_the_layers_its_target_holds(tmp_path: Path) -> None:
    data, image, diff_ids = digest_named_stream([b"base" * 40_000, b"top" * 1000])
    holds_base = ProcessSink("b", ["sh", "-c", f"cat > {tmp_path / 'b'}"], skip=frozenset(diff_ids[:1])).start()
    holds_nothing = cat_to(tmp_path / "c")

    pump(chunks(data, 4096), [holds_base, holds_nothing], [image], layers={image: diff_ids})
    holds_base.finish()
    holds_nothing.finish()

    base_member = diff_ids[0][7:] + "/layer.tar"
    assert base_member not in names_in(tmp_path / "b") and diff_ids[1][7:] + "/layer.tar" in names_in(tmp_path / "b")
    assert base_member in names_in(tmp_path / "c")
    assert holds_base.sent < 10_000 < 160_000 < holds_nothing.sent
    assert (tmp_path / "b").read_bytes().endswith(bytes(1024))  # a complete archive, end marker and all


def test_a_stream_may_lack_only_the_layers_it_was_told_no_target_needs(tmp_path: Path) -> None:
    data, image, diff_ids = digest_named_stream([b"base" * 40_000, b"top" * 1000], leave_out=0)

    with pytest.raises(ArchiveError, match="does not hold"):
        pump(chunks(data), [cat_to(tmp_path / "refused")], [image], layers={image: diff_ids})
    pump(chunks(data), [cat_to(tmp_path / "taken")], [image], layers={image: diff_ids}, absent=diff_ids[:1])


def oci_layout_stream(layers: list[bytes]) -> tuple[bytes, str, list[str]]:
    """A save stream as Docker 25+ writes it: every blob under blobs/sha256/, configs among them."""
    import hashlib
    import io
    import json
    import tarfile

    diff_ids = ["sha256:" + hashlib.sha256(layer).hexdigest() for layer in layers]
    config = json.dumps({"rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    config_id = "sha256:" + hashlib.sha256(config).hexdigest()
    blobs = [(d, layer) for d, layer in zip(diff_ids, layers)] + [(config_id, config)]
    manifest = json.dumps([{"Config": f"blobs/sha256/{config_id[7:]}", "RepoTags": ["x:1"], "Layers": [f"blobs/sha256/{d[7:]}" for d in diff_ids]}]).encode()
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for name, data in [*((f"blobs/sha256/{d[7:]}", b) for d, b in sorted(blobs)), ("manifest.json", manifest)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
    return out.getvalue(), config_id, diff_ids


def test_a_docker_25_oci_layout_save_is_read_and_its_layers_skipped_per_target(tmp_path: Path) -> None:
    data, image, diff_ids = oci_layout_stream([b"base" * 40_000, b"top" * 1000])
    holds_base = ProcessSink("b", ["sh", "-c", f"cat > {tmp_path / 'b'}"], skip=frozenset(diff_ids[:1])).start()

    stats = pump(chunks(data, 4096), [holds_base], [image], layers={image: diff_ids})  # configs are blobs here
    holds_base.finish()

    assert stats.images == {image: diff_ids}
    assert f"blobs/sha256/{diff_ids[0][7:]}" not in names_in(tmp_path / "b")
    assert f"blobs/sha256/{diff_ids[1][7:]}" in names_in(tmp_path / "b")
