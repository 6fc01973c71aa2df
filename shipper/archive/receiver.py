"""The target's end of a resumable move: ``docker load``, layer by layer. Standard library only.

Run on the target (``python3 -c "$(this file)" SPEC``) in front of the engine.
A plain ``docker load`` registers nothing until the whole archive is in, so a
link cut at 90% loses everything. This program reads the same docker-save
stream and, as each layer arrives whole, loads it at once as part of a
*carrier*: an untagged image whose config lists the image's
layers up to that one (label ``io.shipper.carrier``). A layer named by its
digest that is next on its image's chain is fed to its carrier's ``docker
load`` while it arrives (the engine unpacks it as it comes; the carrier's
config and manifest, the end of its archive, follow once the carriers below
are in); a base layer's carrier is an import instead (``docker import``: the
engine registers the layer while it comes, where a load registers it only
after its archive's end); either is not spooled when no other carrier needs it; other layers are
spooled under /var/tmp and loaded from there. Carriers are registered one
after another in the background while the stream goes on; each checks its
layer against the carrier's config, as every ``docker load`` does (a layer
named by its digest is not hashed here a second time). When the stream ends
whole, the image itself is loaded from the rest of the stream (its config,
manifest.json, any member that is not a known layer): a thin load, its layers
already held. Then the carriers are removed (their layers belong to the image).

A cut leaves the carriers: the next move's survey finds their layers on the
target and sends only the rest. Nothing is ever tagged here: tags are set by
shipper once it has checked the image.

The receiver is this module and four of its own (``RECEIVER_MODULES``):
receiver_input.py (the stream as it comes: unframed, read so that a signal
ends the wait, watched for the sender's pace), receiver_loads.py (the loads
and imports, on the engine's socket or through the CLI), receiver_answers.py
(the engine's answers to them, read within bounds) and receiver_carriers.py (the
carriers, and a member as kept for them). They run alone on the target, sent
as one script (``script()``, archive/boot.py) with the two standard-library
modules they share with the source's program: layers.py (``chain_ids``) and
tarheader.py (``pad``, ``ustar_header``).

SPEC: {"images": [{"layers": [diff IDs, base first], "os": "linux", "architecture": "amd64"}],
       "held": [diff IDs whose whole chain the target holds: not in the stream],
       "carriers": [IDs of carriers an interrupted move left, whose layers these images hold: removed at the end],
       "frames": true when the stream comes framed (archive/wire.py; unframed here),
       "pace": true to tell the sender on stdout, while the stream comes, whether this end keeps up (Pace)}

Exit status: that of the final ``docker load`` (its output passed through);
1 when the stream was cut or a carrier could not be loaded (said on stderr).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import sys
import tempfile
import time
from typing import IO, Dict, Iterator, List, Optional, Sequence

from shipper.archive import receiver_loads
from shipper.archive.receiver_input import Cut, Failed, FramedInput, Pace, SignalledInput, Stream
from shipper.archive.receiver_loads import Load, engine_socket, load_stream, remove_images, start_load
from shipper.archive.receiver_carriers import CARRIER_LAYER, Carriers, Member, carrier_ids
from shipper.archive.tarheader import BLOCK, pad, ustar_header

CHUNK = 1 << 20
IN_MEMORY = 64 << 10  # members up to this size are held in memory (configs, manifests), larger ones spooled to disk
MAX_IN_MEMORY = 16 << 20  # in all
MAX_EXTENDED = 1 << 20  # a PAX or GNU long-name header (the source's check refuses more already)
LOCK_WAIT = 600.0  # seconds a receiver waits for another of the same images on its engine (a cut one loading carriers)
F_SETPIPE_SZ = 1031  # Linux's fcntl to size a pipe
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_LAYER_NAME = re.compile(r"(blobs/sha256/[0-9a-f]{64}|[0-9a-f]{64}/layer\.tar)")


class _NoHash:
    def update(self, data: bytes) -> None:
        pass

    def hexdigest(self) -> str:
        return ""


def _octal(field: bytes) -> int:
    text = field.rstrip(b"\0 ").strip() or b"0"
    try:
        return int(text, 8)
    except ValueError:  # the source's check refuses such headers: this stream did not come from it
        raise Failed(f"a tar header with a size that is not an octal number ({text[:12]!r})") from None


def _pax(records: bytes) -> Dict[str, str]:
    """A PAX extended header's records (``"%d %s=%s\\n"``)."""
    found: Dict[str, str] = {}
    rest = records
    while rest:
        length_text, _, _ = rest.partition(b" ")
        try:
            length = int(length_text)
        except ValueError:
            break
        record, rest = rest[:length], rest[length:]
        key, _, value = record.partition(b" ")[2].rstrip(b"\n").partition(b"=")
        found[key.decode(errors="replace")] = value.decode(errors="replace")
    return found


def receive(source: IO[bytes], spool: str, carriers: Carriers) -> List[Member]:
    """Read the stream to its end marker; each layer that arrives whole goes to the carriers, and every member is
    kept, in order, with its own header blocks, for the final load. Raises Cut, or Failed for a corrupt blob."""
    stream = Stream(source)
    kept: List[Member] = []
    in_memory = serial = 0
    extended = b""  # the header blocks (PAX, GNU long name) that belong to the next member
    long_name: Optional[str] = None
    size_override: Optional[int] = None
    while True:
        header = stream.read(BLOCK)
        if header == bytes(BLOCK):
            stream.read(BLOCK)  # the end marker's second block
            return kept
        kind, size = header[156:157], _octal(header[124:136])
        if kind in (b"x", b"g", b"L"):
            if size > MAX_EXTENDED:
                raise Failed(f"an extended tar header of {size} bytes (at most {MAX_EXTENDED})")
            body = stream.read(size + pad(size))
            if kind == b"g":  # global: applies to nothing shipper needs; kept for the final load as it came
                kept.append(Member(header + body, "", 0))
                continue
            extended += header + body
            if kind == b"L":
                long_name = body[:size].rstrip(b"\0").decode(errors="replace")
            else:
                records = _pax(body[:size])
                long_name = records.get("path", long_name)
                size_override = int(records["size"]) if "size" in records else size_override
            continue
        if size_override is not None:
            size = size_override
        prefix = header[345:500].rstrip(b"\0")
        name = long_name or ((prefix + b"/" if prefix else b"") + header[0:100].rstrip(b"\0")).decode(errors="replace")
        member = Member(extended + header, name, size)
        extended, long_name, size_override = b"", None, None
        # A blob named by its digest is not hashed here: the engine's load checks every layer against its config
        # anyway (a corrupt one fails its carrier's load). Layers named otherwise (docker save's legacy layout) are
        # hashed: only their digest says which layer they are.
        named = name.startswith("blobs/sha256/") and bool(_DIGEST.fullmatch("sha256:" + name[len("blobs/sha256/") :]))
        sha = _NoHash() if named and size > IN_MEMORY else hashlib.sha256()
        if size <= IN_MEMORY and in_memory + size <= MAX_IN_MEMORY:
            member.data = stream.read(size)
            in_memory += size
            sha.update(member.data)
        else:
            serial += 1
            # A layer named by its digest that is next on its image's chain: its carrier's load is fed as it comes,
            # and, when no other carrier will need it, it is not spooled as well.
            digest = "sha256:" + name[-64:]
            feed: Optional[Load] = None
            if named and kind in (b"0", b"\0", b"7") and carriers.next_on_a_chain(digest):
                # A base layer goes into the engine's store as it comes (an import); any other to its carrier's load.
                feed = carriers.start_base(digest) if carriers.starts_a_chain(digest) else None
                if feed is None:
                    # "-i /dev/stdin" (for the CLI): the same as reading stdin, and tells a carrier's load from the
                    # image's own in a process list
                    feed = start_load(("-i", "/dev/stdin"))
                    feed.write(ustar_header(CARRIER_LAYER, size))
            member.path = None if feed is not None and carriers.only_once(digest) else os.path.join(spool, f"member-{serial}")
            try:
                with open(member.path or os.devnull, "wb") as out:
                    out.write(ustar_header(CARRIER_LAYER, size))  # the file is the start of a carrier's archive, if a layer
                    left = size
                    if feed is not None and member.path is None and isinstance(sha, _NoHash):
                        feed.take(stream, left)  # needed nowhere else: the kernel moves it on
                        left = 0
                    while left:
                        piece = stream.read(min(CHUNK, left))
                        sha.update(piece)
                        if member.path is not None:
                            out.write(piece)
                        if feed is not None:
                            feed.write(piece)
                        left -= len(piece)
            except BaseException:
                if feed is not None:
                    feed.abort()  # no end to its archive: it creates nothing
                raise
            member.streamed = feed
        stream.read(pad(size))
        kept.append(member)
        if carriers.error is not None:  # the engine refused a carrier (a full disk, say): no use taking the rest
            raise Failed(carriers.error)
        if kind not in (b"0", b"\0", b"7") or not size:
            continue
        member.digest = "sha256:" + (sha.hexdigest() or name[-64:])
        streamed, member.streamed = member.streamed, None
        if named and member.digest != "sha256:" + member.name[-64:]:
            if streamed is not None:
                streamed.abort()
            raise Failed(f"{member.name} arrived corrupt: its content has digest {member.digest}")
        member.streamed = streamed  # before the carrier is queued: the worker takes it from there
        queued = _LAYER_NAME.fullmatch(member.name) is not None and carriers.expects(member.digest) and carriers.add(member)
        if streamed is not None and not queued:  # no carrier of it now (its chain below is not all in): from the spool later
            member.streamed = None
            streamed.abort()


def _final(kept: Sequence[Member], carriers: Carriers) -> Iterator[bytes]:
    """The stream again without the layers the carriers registered: the image's own load."""
    for member in kept:
        if not carriers.carried(member):
            yield from member.chunks()
    yield bytes(2 * BLOCK)


def _say(text: str) -> None:
    try:
        sys.stderr.write(text + "\n")
        sys.stderr.flush()
    except OSError:
        pass  # the connection is gone: nobody to tell


class Exclusive:
    """A lock on the images a receiver takes while it finishes the carriers of a cut stream, and while it removes
    carriers after a whole one: a cut receiver goes on loading carriers after its connection died, and the
    retry's receiver must not remove them before the cut one has made them all (they would be left behind).
    Never held while a stream is read (two receivers of one fan-out must not wait on each other). Waits at most ``wait`` seconds (a stuck holder, or another user's file
    in a shared /var/tmp, cannot stop a move), then goes on without it. The file goes with the lock; a waiter
    that got the lock of a file already removed tries again."""

    def __init__(self, path: str, wait: float = LOCK_WAIT) -> None:
        self.path, self.fd = path, -1
        deadline = time.monotonic() + wait
        while self.fd < 0 and time.monotonic() < deadline:
            try:
                fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            except OSError:
                return  # not ours to create (a symlink planted there, a read-only directory): go on unlocked
            while time.monotonic() < deadline:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    time.sleep(0.2)
                    continue
                try:
                    if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                        self.fd, fd = fd, -1
                except OSError:
                    pass  # removed by the holder as it released it
                break
            if fd >= 0:
                os.close(fd)

    def __enter__(self) -> "Exclusive":
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.fd >= 0:
            try:
                os.unlink(self.path)
            except OSError:
                pass
            os.close(self.fd)
            self.fd = -1


def _lock_path(base: Optional[str], images: Sequence[dict]) -> str:
    """One lock per engine (several may share a machine, each named by DOCKER_HOST) and set of images."""
    engine = os.environ.get("DOCKER_HOST", "") + "\0" + os.environ.get("DOCKER_CONTEXT", "")
    key = hashlib.sha256(json.dumps([engine, sorted(carrier_ids(images))]).encode()).hexdigest()[:24]
    return os.path.join(base or tempfile.gettempdir(), f"shipper-receiver-{key}.lock")


def run(spec: dict, source: IO[bytes], out: IO[bytes]) -> int:
    images = [image for image in spec.get("images", []) if all(_DIGEST.fullmatch(d) for d in image.get("layers", []))]
    base = spec.get("spool") or ("/var/tmp" if os.access("/var/tmp", os.W_OK) else None)
    spool = tempfile.mkdtemp(prefix="shipper-receive-", dir=base)
    carriers = Carriers(images, set(spec.get("held", [])), spool)
    _phase(spool, "receiving")
    lock = _lock_path(base, images)
    pace = Pace(sys.stdin.fileno(), sys.stdout.fileno()).start() if spec.get("pace") else None
    try:
        try:
            kept = receive(source, spool, carriers)
        except (Cut, Failed, OSError) as exc:
            if pace is not None:
                pace.stop()
            with Exclusive(lock):  # a retry's receiver removes no carrier while this one still makes them
                carriers.finish()  # what arrived whole is kept: the next move sends the rest
            if isinstance(exc, Cut):
                _say(f"the stream was cut: {carriers.loaded} layer(s) kept for the next move" + (f" ({carriers.error})" if carriers.error else ""))
            elif isinstance(exc, Failed):
                _say(str(exc))
            else:  # spooling: a full /var/tmp, say
                _say(f"cannot keep the stream under {spool}: {str(exc.strerror or exc).lower()}")  # "no space left …", as docker says it
            return 1
        if pace is not None:
            pace.stop()  # before anything else goes to stdout
        carriers.finish()
        if carriers.error is not None:
            _say(carriers.error)
            return 1
        _phase(spool, "loading the image")
        failed = load_stream(_final(kept, carriers), out)
        if failed is not None:
            _say(failed)
            return 1
        _phase(spool, "removing the carriers")
        with Exclusive(lock):  # ours, and those an interrupted move left of these images (shipper found them)
            left = [c for c in spec.get("carriers", []) if _DIGEST.fullmatch(str(c))]
            remove_images(list(dict.fromkeys(carrier_ids(images) + carriers.imported + left)))
        return 0
    finally:
        if pace is not None:
            pace.stop()
        shutil.rmtree(spool, ignore_errors=True)


def _phase(spool: str, what: str) -> None:
    """What the receiver does now, in its spool's ``phase`` file: for whoever looks at a receiver on a host (and
    for the tests, which no longer see a ``docker load`` process for each step)."""
    try:
        with open(os.path.join(spool, "phase"), "w") as phase:
            phase.write(what + "\n")
    except OSError:
        pass  # a full spool is found (and said) where it matters


def main() -> None:
    # A dropped connection must not stop the carrier loads under way: what arrived whole is kept.
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    # Stopped on purpose: end through ``run``'s cleanup (the spool under /var/tmp goes), exit status 143.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    spec = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    receiver_loads.ENGINE_SOCKET = engine_socket(dict(os.environ))
    try:  # a 1 MiB pipe in front of us (Linux): whole chunks per read, not 64 KiB pieces
        fcntl.fcntl(sys.stdin.fileno(), F_SETPIPE_SZ, 1 << 20)
    except OSError:
        pass
    source: IO[bytes] = SignalledInput(sys.stdin.fileno())  # type: ignore[assignment]
    if spec.get("frames"):
        source = FramedInput(source)  # type: ignore[assignment]
    sys.exit(run(spec, source, sys.stdout.buffer))


# The modules the receiver is made of, in an order that imports only what came before (archive/boot.py).
RECEIVER_MODULES = ("layers", "tarheader", "receiver_input", "receiver_answers", "receiver_loads", "receiver_carriers", "receiver")


def script() -> str:
    """The receiver and the modules it needs, as one self-contained script (standard library only)."""
    from shipper.archive.boot import program_script  # here, not at the top: the program as sent has no boot module

    return program_script(RECEIVER_MODULES, "receiver")


if __name__ == "__main__":
    main()
