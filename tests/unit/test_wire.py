"""Compression on the wire: chunks that shrink go compressed where it pays, the rest raw; the target's
decoder gives back the stream byte for byte, and turns any fault into a stream docker load refuses."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shipper.archive.wire import DECODER, LINK_FAST, PACE, Framer, unframe

TEXT = b"".join(b"line %d of a package tree, quite repetitive\n" % i for i in range(40000))  # ~1.8 MB that shrinks
RANDOM = os.urandom(1 << 20)


def decode(frames: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", DECODER], input=frames, capture_output=True, timeout=60)


def test_zlib_mode_compresses_what_shrinks_and_sends_random_bytes_as_they_are() -> None:
    framer = Framer("zlib")
    frames = framer.frame(TEXT) + framer.frame(RANDOM)

    assert framer.compressed_chunks == 1
    assert framer.wire_bytes < len(TEXT) // 4 + len(RANDOM) + 64
    assert unframe(frames) == TEXT + RANDOM


def test_auto_compresses_only_once_the_link_is_known_to_be_slow() -> None:
    framer = Framer("auto")
    assert unframe(framer.frame(TEXT)) == TEXT and framer.compressed_chunks == 0  # nothing known: raw

    framer.observe(8 << 20, (8 << 20) / (LINK_FAST / 10))  # a link at a tenth of the threshold
    framer.frame(TEXT)
    assert framer.compressed_chunks == 1

    fast = Framer("auto")
    fast.observe(64 << 20, 0.05)  # over a gigabyte a second
    fast.frame(TEXT)
    assert fast.compressed_chunks == 0


def test_the_targets_decoder_gives_back_the_stream() -> None:
    framer = Framer("zlib")
    done = decode(framer.frame(TEXT) + framer.frame(RANDOM) + framer.frame(b"tail"))

    assert done.returncode == 0 and done.stdout == TEXT + RANDOM + b"tail"


@pytest.mark.parametrize("cut", [3, 9 + 100, -1])
def test_a_cut_or_bad_frame_ends_in_a_block_docker_load_refuses(cut: int) -> None:
    frames = Framer("zlib").frame(TEXT)
    broken = frames[:cut] if cut > 0 else frames[:9] + b"\x00" * (len(frames) - 9)  # cut in the header, in the body; garbage body

    done = decode(broken)

    assert done.returncode == 1 and done.stdout.endswith(b"\xff" * 512)


def test_a_frame_claiming_more_than_any_sender_makes_is_refused_before_anything_is_inflated() -> None:
    import struct
    import zlib

    bomb = zlib.compress(b"\0" * (64 << 20), 9)  # 64 MiB of zeros in about 64 KB
    done = decode(struct.pack(">cII", b"Z", len(bomb), 64 << 20) + bomb)

    assert done.returncode == 1 and done.stdout == b"\xff" * 512


def test_a_chunk_larger_than_a_frame_goes_as_several() -> None:
    framer = Framer("none")
    big = os.urandom(9 << 20)

    frames = framer.frame(big)

    assert unframe(frames) == big and decode(frames).stdout == big


def test_auto_sends_raw_while_the_target_says_it_cannot_keep_up_even_on_a_link_that_seems_slow() -> None:
    """A target whose engine loads slower than the link makes the pipe slow to take bytes, as a slow link does:
    compressing would only cost both ends CPU. Its pace report decides, and a busy stretch is not counted as the
    link's rate."""
    framer = Framer("auto", paced=True)
    framer.observe(8 << 20, (8 << 20) / (LINK_FAST / 10))  # the pipe took bytes at a tenth of the threshold
    framer.frame(TEXT)
    assert framer.compressed_chunks == 0  # not before the target has said whether it keeps up

    assert framer.pace(f"{PACE} 0.80")  # the target's input was backed up four looks in five
    framer.frame(TEXT)
    framer.observe(64 << 20, 60.0)  # while busy: not the link's rate
    assert framer.compressed_chunks == 0

    assert framer.pace(f"{PACE} 0.00")  # the target waits on the link again
    framer.frame(TEXT)
    assert framer.compressed_chunks == 1 and framer.link_rate() == LINK_FAST / 10


def test_a_line_that_is_not_a_pace_report_is_left_to_the_loads_output() -> None:
    framer = Framer("auto")

    assert not framer.pace("Loaded image ID: sha256:0123")
    assert framer.pace(f"{PACE} garbage") and not framer.target_busy


def test_auto_samples_random_data_less_and_less_and_text_after_it_within_a_few_chunks() -> None:
    framer = Framer("auto")
    framer.observe(8 << 20, (8 << 20) / (LINK_FAST / 10))  # a slow link: auto compresses what shrinks
    chunk = RANDOM[: 1 << 20]

    frames = b"".join(framer.frame(chunk) for _ in range(64))
    sampled_random = framer.samples
    text_frames = b"".join(framer.frame(TEXT[: 1 << 20]) for _ in range(16))

    assert sampled_random <= 64 // 8 + 4  # one in 2, 4, then 8: not one a chunk
    assert framer.compressed_chunks >= 16 - 8  # text after it is found within 8 chunks, and compressed from then on
    assert unframe(frames + text_frames) == chunk * 64 + TEXT[: 1 << 20] * 16
