"""Compression on the wire, chunk by chunk, only where it pays. Standard library only.

Sent as part of the program that runs on a source host (hostpipe.py), and used
by shipper itself for streams through this machine. The sender frames each
chunk of the stream: raw, or zlib (level 1) when a sample of the chunk
compresses well and the link is slow enough that compressing costs less time
than it saves. The receiver (``DECODER``, a few lines of Python run on the
target in front of ``docker load``) unframes. Already-compressed and random
layers go as they are; text layers shrink. Each frame says the length it
unpacks to, and the receiver holds the sender to it (a bound on what it will
inflate). Any fault (a cut frame, a bad header, a wrong length) ends the
receiver's output with an invalid tar block, so ``docker load`` fails and
creates nothing, never taking a stream that merely stopped for a shorter
complete one.

Frame: 1 byte kind (``R`` raw, ``Z`` zlib), 4 bytes stored length, 4 bytes
raw length (big-endian), then the stored bytes.
"""

from __future__ import annotations

import struct
import time
import zlib
from typing import List, Optional, Union

HEADER = struct.Struct(">cII")
SAMPLE = 64 << 10  # bytes of a chunk tried before compressing the rest
PAYS = 0.85  # a sample must shrink below this share of its size
LINK_FAST = 60e6  # bytes a second: on a link faster than this, zlib at level 1 costs more than it saves
MODES = ("auto", "zlib", "none")
MAX_FRAME = 4 << 20  # bytes a frame carries at most; the decoder refuses more (a bound on what it inflates and holds)
PACE = "SHIPPER-PACE"  # a line from the target's receiver: the share of the last half second it was backed up
BUSY = 0.5  # a target backed up this share of the time is the bottleneck, not the link: compressing cannot help
SAMPLE_EVERY_MAX = 8  # auto: after samples that did not shrink, one chunk in up to this many is sampled

Chunk = Union[bytes, memoryview]

# A target's end started before its command is known (host to host: its login goes on while shipper plans).
# It says LATE once logged in, then reads "SIZE\n" and SIZE bytes of a shell command from its input, exactly (the
# stream follows them), and becomes that command. Input that ends first (the target needs nothing): it ends, having
# done nothing. The source could run any command there already: it holds the move's agent while the move runs.
LATE = "SHIPPER-LATE"
LATE_COMMAND_LIMIT = 1 << 20
LATE_STUB = r"""
import os, sys
def take(n):
    data = b""
    while len(data) < n:
        more = os.read(0, n - len(data))
        if not more:
            sys.exit(0)
        data += more
    return data
head = b""
while not head.endswith(b"\n"):
    head += take(1)
    if len(head) > 12:
        sys.exit(2)
size = int(head)
if size > LIMIT:
    sys.exit(2)
os.execvp("sh", ["sh", "-c", take(size).decode()])
""".replace("LIMIT", str(LATE_COMMAND_LIMIT))

DECODER = r"""
import struct, sys, zlib
out, src = sys.stdout.buffer, sys.stdin.buffer
def fail():
    out.write(b"\xff" * 512); out.flush(); sys.exit(1)
def read(n):
    data = src.read(n)
    if len(data) != n:
        fail()
    return data
while True:
    head = src.read(9)
    if not head:
        break
    if len(head) != 9:
        fail()
    kind, stored, raw = struct.unpack(">cII", head)
    if stored > LIMIT or raw > LIMIT:
        fail()
    body = read(stored)
    try:
        data = body if kind == b"R" else zlib.decompressobj().decompress(body, raw + 1) if kind == b"Z" else None
    except zlib.error:
        data = None
    if data is None or len(data) != raw:
        fail()
    out.write(data)
out.flush()
""".replace("LIMIT", str(MAX_FRAME))


def receiver(command: str) -> str:
    """``command`` (``docker load -q``) fed by the decoder: a shell command line for the target."""
    import shlex

    from shipper.archive.boot import HOST_PYTHON  # here: the decoder's host has no boot module

    return f"{HOST_PYTHON} -c {shlex.quote(DECODER)} | {command}"


class Framer:
    """Frames one target's stream: ``mode`` auto (compress where it pays), zlib (wherever a sample shrinks), none."""

    def __init__(self, mode: str = "auto", paced: bool = False) -> None:
        """``paced``: the target's end reports whether it keeps up (``pace``); auto then compresses nothing before
        its first report (a pipe is slow to take the first bytes while the target's load starts)."""
        if mode not in MODES:
            raise ValueError(f"compression must be one of {', '.join(MODES)}, not {mode!r}")
        self.mode = mode
        self.raw_bytes = 0  # the stream's bytes
        self.wire_bytes = 0  # what went on the wire, headers included
        self.compressed_chunks = 0
        self._written = 0  # for the link's rate: bytes the pipe took, and the time it took them
        self._writing = 0.0
        self.target_busy = False  # the target's end says it cannot keep up (receiver.py's Pace)
        self.paced = paced
        self.pace_reports = 0
        self.samples = 0  # chunks tried (a 64 KiB sample compressed): 1.5 ms each for random data here
        self._misses = 0  # samples in a row that did not shrink
        self._unsampled = 0  # chunks to send raw before the next sample

    def observe(self, size: int, seconds: float) -> None:
        """The pipe to the target took ``size`` bytes in ``seconds``: how fast the link drains (not counted while
        the target says it is the one holding the stream back)."""
        if self.target_busy:
            return
        self._written += size
        self._writing += seconds

    def pace(self, line: str) -> bool:
        """A line from the target's end: True when it was a pace report (and is taken in), else False.

        The pipe to the target is slow to take bytes when the link is slow, and equally when the target's engine
        loads slower than the link carries: only the target can tell, and compressing helps only the link."""
        kind, _, share = line.partition(" ")
        if kind != PACE:
            return False
        try:
            self.target_busy = float(share) >= BUSY
        except ValueError:
            return True
        self.pace_reports += 1
        return True

    def link_rate(self) -> Optional[float]:
        """Bytes a second the link has taken so far (None until a few MiB have gone)."""
        if self._written < (4 << 20) or self._writing <= 0:
            return None
        return self._written / self._writing

    def _wanted(self) -> bool:
        if self.mode == "none":
            return False
        if self.mode == "zlib":
            return True
        rate = self.link_rate()
        heard = self.pace_reports > 0 or not self.paced
        return rate is not None and rate < LINK_FAST and heard and not self.target_busy

    def frame(self, chunk: Chunk) -> bytes:
        """``chunk`` framed, in one piece (see ``pieces``)."""
        return b"".join(self.pieces(chunk))

    def pieces(self, chunk: Chunk) -> List[Chunk]:
        """``chunk`` framed, as pieces to write one after another: each frame's header, then its body, which for
        a raw frame is the chunk itself (not copied: a raw 1 MiB frame used to cost two copies in Python)."""
        view = memoryview(chunk)
        pieces: List[Chunk] = []
        for start in range(0, len(view), MAX_FRAME):  # a large chunk goes as several frames: none passes the decoder's bound
            data = view[start : start + MAX_FRAME]
            self.raw_bytes += len(data)
            kind, body = b"R", data
            if self._wanted() and len(data) >= 1024 and self._sampled(data):
                packed = zlib.compress(data, 1)
                if len(packed) < len(data):
                    self.compressed_chunks += 1
                    kind, body = b"Z", memoryview(packed)
            pieces += [HEADER.pack(kind, len(body), len(data)), body]
            self.wire_bytes += HEADER.size + len(body)
        return pieces


    def _sampled(self, data: Chunk) -> bool:
        """Whether ``data``'s sample shrinks. In auto mode a run of samples that did not shrink (random or already
        compressed layers) spaces the next ones out, up to one chunk in SAMPLE_EVERY_MAX: a 500 MB random image
        cost 0.76 s of the source's CPU in samples, a chunk each, on a machine where ssh's encryption wants it."""
        if self.mode != "auto":
            return _shrinks(data)
        if self._unsampled > 0:
            self._unsampled -= 1
            return False
        self.samples += 1
        if _shrinks(data):
            self._misses = 0
            return True
        self._misses += 1
        self._unsampled = min(2 ** self._misses, SAMPLE_EVERY_MAX) - 1
        return False


def _shrinks(data: Chunk) -> bool:
    sample = data[:SAMPLE]
    return len(zlib.compress(sample, 1)) < len(sample) * PAYS


def unframe(frames: bytes) -> bytes:
    """The stream ``frames`` carries (the decoder's work, for tests and for shipper's own use)."""
    out = []
    offset = 0
    while offset < len(frames):
        kind, stored, raw = HEADER.unpack_from(frames, offset)
        if stored > MAX_FRAME or raw > MAX_FRAME:
            raise ValueError("a frame larger than any sender makes")
        offset += HEADER.size
        body = frames[offset : offset + stored]
        offset += stored
        data = body if kind == b"R" else zlib.decompressobj().decompress(body, raw + 1)
        if len(data) != raw:
            raise ValueError("a frame unpacks to another length than it says")
        out.append(data)
    return b"".join(out)


def timed_write(write, view: memoryview, framer: Optional[Framer]) -> int:  # type: ignore[no-untyped-def]
    """``write`` once (os.write's way: returns the count taken), telling ``framer`` how fast the pipe took it."""
    started = time.monotonic()
    taken = write(view)
    if framer is not None:
        framer.observe(taken, time.monotonic() - started)
    return taken
