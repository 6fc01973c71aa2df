"""The receiver's input (receiver.py): the stream as it comes from the sender, unframed, read so that a signal
always ends the wait, and watched to tell the sender whether this end keeps up. Standard library only: sent to
the target with receiver.py (see ``RECEIVER_MODULES`` there)."""

from __future__ import annotations

import fcntl
import os
import select
import signal
import struct
import threading
import zlib
from typing import IO

F_GETPIPE_SZ = 1032
FIONREAD = 0x541B  # Linux's ioctl: bytes waiting in a pipe
PACE = "SHIPPER-PACE"  # wire.py's PACE: a line to the sender, "SHIPPER-PACE 0.80" (the share of samples backed up)
PACE_SAMPLE = 0.1  # seconds between looks at the input pipe
PACE_EVERY = 5  # samples to a report
FRAME_HEADER = struct.Struct(">cII")  # archive/wire.py's frames (this file runs alone): kind, stored length, raw length
MAX_FRAME = 4 << 20  # wire.py's bound on a frame


class Cut(Exception):
    """The stream ended before its end marker."""


class Failed(Exception):
    """A carrier could not be loaded, or a layer arrived corrupt."""


class Stream:
    """The incoming tar, read member by member from ``source``."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source

    def read(self, size: int) -> bytes:
        piece = self.source.read(size)
        if len(piece) == size:
            return piece
        # A pipe gives at most what it holds (64 KiB by default): gather the pieces and join them once (adding
        # each to the last copied the data again and again, several times over for every 1 MiB chunk).
        pieces, have = [piece], len(piece)
        while piece and have < size:
            piece = self.source.read(size - have)
            pieces.append(piece)
            have += len(piece)
        if have < size:
            raise Cut()
        return b"".join(pieces)

    def splice_into(self, fd: int, size: int) -> int:
        """Up to ``size`` bytes moved straight into the pipe ``fd`` (``SignalledInput.splice_into``); -1 where the
        source cannot (a file, an old Python, an inflated frame): read them instead. Raises Cut at the end."""
        splice = getattr(self.source, "splice_into", None) if SPLICE else None
        moved = -1 if splice is None else splice(fd, size)
        if moved == 0:
            raise Cut()
        return int(moved)


SPLICE = hasattr(os, "splice")  # Python 3.10+ on Linux; elsewhere every byte is read and written


class SignalledInput:
    """A pipe read so that a signal always ends the wait. Python runs signal handlers in the main thread only, and
    the kernel may give a signal to a helper thread (a carrier load's): a plain read of the stream then stays
    blocked, and SIGTERM would not end the receiver (seen in CI, and with the helpers' signals masked, every other
    run). Each read waits on the pipe and on the wakeup pipe Python writes to whatever thread got the signal."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.wakeup, writer = os.pipe()
        os.set_blocking(writer, False)
        signal.set_wakeup_fd(writer)

    def _wait(self) -> None:
        while True:
            ready, _, _ = select.select([self.fd, self.wakeup], [], [])
            if self.wakeup in ready:
                os.read(self.wakeup, 512)  # back in Python code, the handler runs (SIGTERM: SystemExit)
            if self.fd in ready:
                return

    def read(self, size: int) -> bytes:
        self._wait()
        return os.read(self.fd, size)

    def splice_into(self, fd: int, size: int) -> int:
        """Move up to ``size`` bytes straight into the pipe ``fd``, never through Python; 0 at the end."""
        self._wait()
        return os.splice(self.fd, fd, size)  # Python 3.10+ (see SPLICE)


class FramedInput:
    """The stream as the sender framed it (archive/wire.py: raw or zlib frames, each saying the length it unpacks
    to), unframed here rather than by a decoder process in front: one process and one pipe fewer for every byte.
    A raw frame's bytes are read straight from ``source``; a zlib frame is inflated to no more than it says. A
    frame cut short is the end of the stream (the tar's end marker missing then says Cut); a frame no sender
    makes is Failed."""

    def __init__(self, source: IO[bytes]) -> None:
        self.source = source
        self.left = 0  # bytes of the current raw frame not yet read
        self.inflated = b""  # the current zlib frame, unpacked
        self.taken = 0  # how much of it was read

    def _exactly(self, size: int) -> bytes:
        pieces, have = [], 0
        while have < size:
            piece = self.source.read(size - have)
            if not piece:
                break
            pieces.append(piece)
            have += len(piece)
        return b"".join(pieces)

    def _next_frame(self) -> bool:
        head = self._exactly(FRAME_HEADER.size)
        if len(head) < FRAME_HEADER.size:
            return False  # the end (or a cut in a header)
        kind, stored, raw = FRAME_HEADER.unpack(head)
        if stored > MAX_FRAME or raw > MAX_FRAME or kind not in (b"R", b"Z") or (kind == b"R" and stored != raw):
            raise Failed(f"the stream's framing is broken (a frame {kind!r} of {stored} bytes unpacking to {raw}): not what shipper sends")
        if kind == b"R":
            self.left = raw
            return True
        body = self._exactly(stored)
        if len(body) < stored:
            return False  # cut in its body
        try:
            self.inflated, self.taken = zlib.decompressobj().decompress(body, raw + 1), 0
        except zlib.error:
            self.inflated = b""
        if len(self.inflated) != raw:
            raise Failed("a compressed frame of the stream does not unpack to the length it says")
        return True

    def splice_into(self, fd: int, size: int) -> int:
        """A raw frame's bytes moved straight into the pipe ``fd``; 0 at the end; -1: an inflated frame's (read them)."""
        while not self.left and self.taken == len(self.inflated):
            if not self._next_frame():
                return 0
        if self.taken < len(self.inflated):
            return -1
        moved = self.source.splice_into(fd, min(size, self.left))  # type: ignore[attr-defined]
        self.left -= moved
        return int(moved)

    def read(self, size: int) -> bytes:
        if size <= 0:
            return b""
        while not self.left and self.taken == len(self.inflated):
            if not self._next_frame():
                return b""
        if self.taken < len(self.inflated):  # a tar header's 512 bytes at a time: slices, not what is left copied each time
            piece = self.inflated[self.taken : self.taken + size]
            self.taken += len(piece)
            return piece
        piece = self.source.read(min(size, self.left))
        self.left -= len(piece)
        return piece  # b"" mid-frame: the stream was cut


class Pace:
    """Tells the sender, every half second, how often this end's input pipe was at least half full: the share of
    the time the stream waited on this end (its engine, or the unpacking here) rather than on the link. The
    sender's link rate is how fast its writes are taken, which a slow engine holds back as much as a slow link;
    only here can the two be told apart, and compressing helps only with the link (wire.py's Framer). Lines
    on ``out`` (stdout) before the load's own output, which follows once the stream has ended."""

    def __init__(self, fd: int, out: int) -> None:
        self.fd, self.out = fd, out
        try:
            self.half = fcntl.fcntl(fd, F_GETPIPE_SZ) // 2
        except OSError:
            self.half = 32 << 10
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pace", daemon=True)

    def start(self) -> "Pace":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def waiting(self) -> int:
        """Bytes in the input pipe."""
        buf = bytearray(4)
        fcntl.ioctl(self.fd, FIONREAD, buf)
        return int(struct.unpack("i", buf)[0])

    def _run(self) -> None:
        full = samples = 0
        while not self._stop.wait(PACE_SAMPLE):
            try:
                full += self.waiting() >= self.half
            except OSError:  # not a pipe: one report that says nothing is known, so the sender goes by the link
                full, samples = 0, PACE_EVERY - 1
                self._stop.set()
            samples += 1
            if samples == PACE_EVERY:
                try:
                    os.write(self.out, f"{PACE} {full / samples:.2f}\n".encode())
                except OSError:
                    return  # the connection is gone
                full = samples = 0
