"""One checked stream, fed to several loads at once. Standard library only.

Used by shipper itself (bytes through this machine) and, unchanged, by the
program shipper runs on a source host (bytes host to host): see hostpipe.py.

Each sink is fed from a bounded queue by a thread of its own, so a slow
target slows the stream (memory stays flat) while a failed one drops out
without stopping the others. Each sink may leave out layers (``skip``, diff
IDs): the layers its target already holds. An aborted sink sends an invalid tar block
before it lets go: a tar stream that merely stops on a member boundary reads
as a complete, shorter archive, and must never be loaded as one.
"""

from __future__ import annotations

import os
import queue
import subprocess
import threading
import time
from typing import AbstractSet, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from shipper.archive.savestream import SaveStreamFilter, StreamStats
from shipper.archive.wire import LATE, PACE, Framer, timed_write

Chunk = Union[bytes, memoryview]
QUEUE_DEPTH = 8  # chunks of about 1 MiB per target
COALESCE = 1 << 20  # headers and small members are gathered into chunks of about this size
POISON = b"\xff" * 512  # fails a tar header checksum: the load fails and creates nothing
PIPE_SIZE = 1 << 20  # 1 MiB pipes: reads come in whole chunks that pass through without copies
F_SETPIPE_SZ = 1031  # Linux


def grow_pipe(stream: object) -> None:
    """Enlarge a pipe (Linux; silently left as it is elsewhere)."""
    try:
        import fcntl

        fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)  # type: ignore[attr-defined]
    except (ImportError, OSError, AttributeError, ValueError):
        pass
PACE_PREFIX = PACE.encode() + b" "
_END = object()
_ABORT = object()
LIMITED_PIECE = 1 << 18  # under a rate limit, bytes go out in pieces of at most 256 KiB: a limit is a rate, not bursts


class RateLimit:
    """At most ``rate`` bytes a second through all ``take`` calls on it: one per target (--limit-rate),
    or one shared by every target (--limit-total). Idle time earns no credit for a later burst."""

    def __init__(self, rate: float) -> None:
        if rate <= 0:
            raise ValueError("a rate limit must be more than 0 bytes a second")
        self.rate = float(rate)
        self._lock = threading.Lock()
        self._free_at = 0.0

    def take(self, size: int) -> None:
        """Wait until ``size`` more bytes may go."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._free_at)
            self._free_at = start + size / self.rate
        if start > now:
            time.sleep(start - now)


class Aborted(Exception):
    """The stream to a target was abandoned on purpose."""


class QueueSink:
    """A consumer of the stream in its own thread; subclasses define ``consume``."""

    def __init__(self, name: str, skip: AbstractSet[str] = frozenset()) -> None:
        self.name = name
        self.skip = skip  # diff IDs of layers this consumer's target holds: not sent to it
        self.sent = 0  # bytes queued for the consumer
        self.passed = 0  # bytes handed to the consumer: what progress counts (a rate limit holds the rest back)
        self.error: Optional[BaseException] = None
        self.result: object = None
        self._queue: "queue.Queue[object]" = queue.Queue(maxsize=QUEUE_DEPTH)
        self._thread = threading.Thread(target=self._main, name=f"sink-{name}", daemon=True)
        self._stopped = threading.Event()
        self.limits: List[RateLimit] = []  # every limit this target's bytes pass through

    @property
    def stopped(self) -> bool:
        """The consumer has ended (failed, or its command quit): nothing more is taken."""
        return self._stopped.is_set()

    def start(self) -> "QueueSink":
        self._thread.start()
        return self

    def put(self, chunk: Chunk) -> bool:
        """Queue ``chunk``; False (and nothing queued) once this sink has failed."""
        while not self.stopped:
            try:
                self._queue.put(chunk, timeout=0.2)
                self.sent += len(chunk)
                return True
            except queue.Full:
                continue
        return False

    def wait_passed(self, on_progress: Optional[Callable[["QueueSink"], None]] = None) -> None:
        """Under a rate limit, until the consumer has been handed every queued byte (the limit holds them back a
        while), or it stopped; ``on_progress`` is called every tenth of a second meanwhile. Without a limit the
        consumer takes them as fast as its target does: nothing to wait for before the end is queued."""
        while self.limits and self.passed < self.sent and not self.stopped:
            if on_progress is not None:
                on_progress(self)
            time.sleep(0.1)

    def finish(self) -> None:
        """The stream is complete: let the consumer end, and wait for it."""
        self._close(_END)

    def abort(self) -> None:
        """The stream is bad: make the consumer fail, and wait for it."""
        self._close(_ABORT)

    def _close(self, marker: object) -> None:
        while self._thread.is_alive():
            try:
                self._queue.put(marker, timeout=0.2)
                break
            except queue.Full:
                continue
        self._thread.join()

    def items(self) -> Iterator[Chunk]:
        """What the consumer reads: chunks then the end, or a poison block then ``Aborted``."""
        while True:
            item = self._queue.get()
            if item is _END:
                return
            if item is _ABORT:
                yield POISON
                raise Aborted()
            if not self.limits:
                self.passed += len(item)  # type: ignore[arg-type]
                yield item  # type: ignore[misc]
                continue
            view = memoryview(item)  # type: ignore[arg-type]
            # A tenth of a second's worth at the slowest limit: no wait is long, so an abort is heard at once.
            size = max(4096, min(LIMITED_PIECE, int(min(limit.rate for limit in self.limits) / 10)))
            for offset in range(0, len(view), size):
                piece = view[offset : offset + size]
                for limit in self.limits:
                    limit.take(len(piece))
                self.passed += len(piece)
                yield piece

    def _main(self) -> None:
        try:
            self.result = self.consume(self.items())
        except BaseException as exc:  # kept for the caller; a sink must never hang the others
            self.error = exc
        finally:
            self._stopped.set()
            while True:  # unblock a producer waiting on a full queue
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    break

    def consume(self, items: Iterator[Chunk]) -> object:
        raise NotImplementedError


class ProcessResult:
    def __init__(self, status: int, stdout: str, stderr: str) -> None:
        self.status, self.stdout, self.stderr = status, stdout, stderr


class ProcessSink(QueueSink):
    """Writes the stream to a command's stdin (``docker load``, or ``ssh host docker load``).

    ``handshake``: a first line the command prints on stdout once it is ready
    (connected and authenticated), so nothing is sent to a target that cannot take it.
    """

    def __init__(
        self, name: str, argv: Sequence[str], handshake: Optional[str] = None, env: Optional[dict] = None,
        skip: AbstractSet[str] = frozenset(),
    ) -> None:  # fmt: skip
        super().__init__(name, skip)
        self.proc = subprocess.Popen(
            list(argv), stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0, env=env
        )
        grow_pipe(self.proc.stdin)
        self.framer: Optional[Framer] = None  # set when the target's end unframes (it said so in its handshake)
        self.unframes = False
        self.paced = False
        self._stderr: List[bytes] = []
        self._stderr_thread = threading.Thread(target=self._read_stderr, daemon=True)
        self._stderr_thread.start()
        self.late = False  # started before its command was known: ``bind`` gives it one (see LATE)
        self.ready = self._await(handshake) if handshake else True
        self._stdout: List[bytes] = []
        self._stdout_thread = threading.Thread(target=self._read_stdout, daemon=True)
        if not self.late:
            self._stdout_thread.start()

    def bind(self, command: str, handshake: str) -> bool:
        """A sink started early (its login done while shipper planned) is given the command it runs now; its
        first line then is ``handshake``, as for a sink started with that command. False where it cannot take it."""
        assert self.late and self.proc.stdin is not None
        view = memoryview(f"{len(command.encode())}\n".encode() + command.encode())
        try:
            while view:  # a pipe may take part of a large write (a signal meanwhile)
                view = view[os.write(self.proc.stdin.fileno(), view) :]
        except BrokenPipeError:
            return False
        self.late = False
        self.ready = self._await(handshake)
        self._stdout_thread.start()
        return self.ready

    def _read_stderr(self) -> None:
        assert self.proc.stderr is not None
        kept = 0
        while True:
            chunk = self.proc.stderr.read(8192)
            if not chunk:
                return
            if kept < 65536:
                self._stderr.append(chunk)
                kept += len(chunk)

    def _read_stdout(self) -> None:
        """The command's output, kept for its result (at most 64 KiB: a load says a line per image); the target's
        pace reports (wire.py) go to the framer as they come."""
        assert self.proc.stdout is not None
        fd, rest = self.proc.stdout.fileno(), b""
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                self._keep(rest)
                return
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                if line.startswith(PACE_PREFIX) and self.framer is not None:
                    self.framer.pace(line.decode(errors="replace"))
                elif not line.startswith(PACE_PREFIX):
                    self._keep(line + b"\n")
            if len(rest) > 65536:  # no line ends: kept as it is, not gathered without end
                self._keep(rest)
                rest = b""

    def _keep(self, data: bytes) -> None:
        room = 65536 - sum(len(piece) for piece in self._stdout)
        if data and room > 0:
            self._stdout.append(data[:room])

    def _await(self, handshake: str) -> bool:
        """The first line is ``handshake``; or ``handshake`` + ``-FRAMES``: the target's end unframes; or
        ``-FRAMES-PACED``: it also says whether it keeps up (wire.py's PACE)."""
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().decode(errors="replace").strip()
        if line == LATE:
            self.late = True
            return True
        self.unframes = line in (handshake + "-FRAMES", handshake + "-FRAMES-PACED")
        self.paced = line == handshake + "-FRAMES-PACED"
        return line == handshake or self.unframes

    def consume(self, items: Iterator[Chunk]) -> ProcessResult:
        assert self.proc.stdin is not None
        fd = self.proc.stdin.fileno()
        framer = self.framer

        def write(view: memoryview) -> int:
            return os.write(fd, view)

        try:
            for chunk in items:
                for piece in framer.pieces(chunk) if framer is not None else (chunk,):
                    view = memoryview(piece)
                    while view:
                        view = view[timed_write(write, view, framer) :]
        except BrokenPipeError:
            pass  # the command quit early: its exit status says why
        except Aborted:
            self.wait()
            raise
        return self.wait()

    def wait(self) -> ProcessResult:
        if self.proc.stdin is not None and not self.proc.stdin.closed:
            try:
                self.proc.stdin.close()
            except BrokenPipeError:
                pass
        status = self.proc.wait()
        self._stdout_thread.join(timeout=5)
        self._stderr_thread.join(timeout=5)
        out = b"".join(self._stdout)
        return ProcessResult(status, out.decode(errors="replace"), b"".join(self._stderr).decode(errors="replace"))

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()


def apply_limits(sinks: Sequence[QueueSink], per_target: Optional[float], total: Optional[float]) -> None:
    """Hold each sink to ``per_target`` bytes a second, and all of them together to ``total``."""
    shared = RateLimit(total) if total else None
    for sink in sinks:
        sink.limits = [RateLimit(per_target)] if per_target else []
        if shared is not None:
            sink.limits.append(shared)


def pump(
    chunks: Iterable[bytes], sinks: Sequence[QueueSink], expected_ids: Sequence[str] = (),
    on_progress: Optional[Callable[[QueueSink], None]] = None, verify_content: bool = False,
    layers: Optional[Mapping[str, Sequence[str]]] = None, absent: Iterable[str] = (),
) -> StreamStats:  # fmt: skip
    """Check ``chunks`` (a docker-save stream) and deliver it to every live sink.

    The sinks are engines' loads, which check each layer's digest themselves:
    layer hashing is off unless ``verify_content`` (see SaveStreamFilter).
    ``layers`` (image ID -> diff IDs) lets the sinks' ``skip`` sets work;
    ``absent``: layers the stream itself leaves out.

    Raises ``ArchiveError`` (the stream is bad) or whatever reading ``chunks``
    raises; the caller then aborts the sinks. Returns early when every sink has
    stopped: the caller must then stop the source too (see ``ended_early``).
    """
    check = SaveStreamFilter(expected_ids, verify_content, layers, absent)
    pending = bytearray()
    pending_tag: Optional[str] = None

    def deliver(tag: Optional[str], chunk: Chunk) -> None:
        for sink in sinks:
            if (tag is None or tag not in sink.skip) and sink.put(chunk) and on_progress is not None:
                on_progress(sink)

    for tag, piece in check.run_tagged(chunks):
        if pending and tag != pending_tag:
            deliver(pending_tag, bytes(pending))
            pending = bytearray()
        if len(piece) < COALESCE // 4:
            pending += piece
            pending_tag = tag
            if len(pending) < COALESCE:
                continue
            piece, pending = bytes(pending), bytearray()
        elif pending:
            deliver(pending_tag, bytes(pending))
            pending = bytearray()
        deliver(tag, piece)
        if all(s.stopped for s in sinks):
            return check.stats
    if pending:
        deliver(pending_tag, bytes(pending))
    return check.stats


def ended_early(sinks: Sequence[QueueSink]) -> bool:
    """After ``pump``: True when it gave up because no sink was taking the stream any more."""
    return bool(sinks) and all(s.stopped for s in sinks)
