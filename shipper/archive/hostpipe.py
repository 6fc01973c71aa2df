"""The program shipper runs on a source host to send images host to host.

    python3 -c "$(LOADER)" '{"names": ["name:tag", ...], "store": true, "early": {"name": [ssh argv]}, "known_hosts": "lines"}'
    then, on its stdin: this program (``script()``), then SPEC_JSON on one line

The images are read there, the stream is checked there (SaveStreamFilter)
and goes from there straight to each target's ``docker load`` over the
source's own ``ssh``: the bytes cross the network once, and not through the
machine running shipper. Each target gets only the layers it lacks. Standard
library only.

SPEC: {"expected": [image IDs to save], "check": [the IDs the stream must hold, if not those], "known_hosts": "lines",
       "layers": {image ID: [diff IDs]}, "skip": {"name": [diff IDs it holds]},
       "targets": {"name": [ssh argv, with {known_hosts} for the file]},
       "late": {"name": "the command a target whose login started early runs"},
       "save": [what docker save names, if not "expected"], "platform": "os/arch" (docker save --platform)}

Where the bytes come from: the engine's layer store read directly
(layerstore.py: only the layers some target needs, no export step) when
``store`` is allowed and the store is readable here, else ``docker save``.

shipper starts it before it has planned, with the names of the images. When
the store cannot be read, it resolves the names to IDs and starts
``docker save`` at once: the save's export (seconds, before its first byte)
overlaps shipper's planning. SPEC then names the IDs shipper planned; the
early save is used only if it holds exactly those, else a new one starts.
That early work runs beside the wait for SPEC, and the targets' logins start
as soon as SPEC comes, beside finding the source: where shipper planned
before the program was up, the logins wait for nothing else.
STOP (nothing to send) ends it. Progress goes to stderr as JSON lines ({"progress": {"b": bytes}}); the
outcome goes to stdout as one JSON document. Exit status 0 when the program
itself worked (each target's own outcome is in the document), 3 when some
target could not be reached from here (nothing was sent anywhere).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from typing import Callable, Dict, Generic, Iterator, List, Optional, Set, TypeVar

from shipper.archive.wire import Framer
from shipper.archive.fanout import ProcessResult, ProcessSink, QueueSink, apply_limits, ended_early, grow_pipe, pump
from shipper.archive.layerstore import LayerStore
from shipper.archive.lifeline import stop_when_shipper_is_gone
from shipper.archive.savestream import ArchiveError

READY = "SHIPPER-READY"
STOP = "STOP"
# Read exactly the script's bytes from stdin and run it; the rest of stdin is the spec line.
LOADER = "import sys; exec(compile(sys.stdin.buffer.read({size}), 'shipper-hostpipe', 'exec'))"
PROGRESS_INTERVAL = 0.5
UNREACHABLE = 3
T = TypeVar("T")


def _report(progress: Dict[str, int]) -> None:
    sys.stderr.write(json.dumps({"progress": progress}) + "\n")
    sys.stderr.flush()


def _outcome(sinks: List[ProcessSink], extra: dict) -> dict:
    targets = {}
    for sink in sinks:
        result = sink.result if isinstance(sink.result, ProcessResult) else None
        targets[sink.name] = {
            "sent": sink.sent,
            "wire": sink.framer.wire_bytes if sink.framer is not None else sink.sent,
            "compressed_chunks": sink.framer.compressed_chunks if sink.framer is not None else 0,
            "status": result.status if result else None,
            "stdout": result.stdout if result else "",
            "stderr": result.stderr[-4000:] if result else "",
            "error": None if sink.error is None or type(sink.error).__name__ == "Aborted" else repr(sink.error),
        }
    return dict(extra, targets=targets)


class Early:
    """What the program did before it knew its work: found the store, or started a save."""

    def __init__(self, names: List[str], store_allowed: bool, platform: str = "") -> None:
        self.store: Optional[LayerStore] = None
        self.store_note = "not asked to" if not store_allowed else ""
        self.ids: List[str] = []
        self.platform = platform
        self.save: "Optional[subprocess.Popen[bytes]]" = None
        if store_allowed:  # read only where the plan chooses no platform (a classic store holds one per image)
            self.store, self.store_note = LayerStore.of_local_engine()
        if self.store is None:
            self.ids, self.save = early_save(names, platform)

    def stop(self) -> None:
        if self.save is not None:
            self.save.kill()
            self.save.wait()
            self.save = None


def _known_hosts_file(lines: str) -> str:
    fd, path = tempfile.mkstemp(prefix="shipper-known-hosts-")
    with os.fdopen(fd, "w") as out:
        out.write(lines)
    return path


def run(spec: dict, early: "Optional[_Later[Early]]" = None, legs: "Optional[_Later[Dict[str, ProcessSink]]]" = None) -> int:
    known_hosts = _known_hosts_file(spec.get("known_hosts", ""))
    try:
        return _run(spec, known_hosts, early, legs)
    finally:
        os.unlink(known_hosts)


def _connect(spec: dict, known_hosts: str, legs: "Optional[_Later[Dict[str, ProcessSink]]]" = None) -> List[ProcessSink]:
    """Every target's ssh, at once; each says READY once logged in and running docker load. A target whose login
    was started early (``legs``) is given its command (SPEC's "late"); where that fails, it is started anew."""
    started = dict(legs.result()) if legs is not None else {}
    late = spec.get("late") or {}
    sinks: List[ProcessSink] = []
    threads = []
    for name, argv in spec["targets"].items():
        args = [a.replace("{known_hosts}", known_hosts) for a in argv]
        skip = frozenset(spec.get("skip", {}).get(name, ()))
        leg = started.pop(name, None)

        def connect(n: str = name, a: List[str] = args, k: "frozenset[str]" = skip, leg: Optional[ProcessSink] = leg) -> None:
            sink = _bound(leg, late.get(n))
            if sink is None:
                sink = ProcessSink(n, a, handshake=READY, skip=k)
            sink.skip = k
            sinks.append(sink)

        thread = threading.Thread(target=connect)
        thread.start()
        threads.append(thread)
    for leg in started.values():  # an early login to a target the plan left out: it ends, having done nothing
        leg.kill()
    for thread in threads:
        thread.join()
    order = list(spec["targets"])
    ordered = sorted(sinks, key=lambda s: order.index(s.name))
    mode = spec.get("compress", "none")
    for sink in ordered:
        if mode != "none" and getattr(sink, "unframes", False):
            sink.framer = Framer(mode, paced=sink.paced)
    limits = spec.get("limits") or {}
    apply_limits(ordered, limits.get("target"), limits.get("total"))
    return ordered


def _bound(leg: Optional[ProcessSink], command: Optional[str]) -> Optional[ProcessSink]:
    """An early login made the target's sink: given ``command`` where it waits for one; as it is where it runs a
    plain docker load already (no python3 there, so no other command could run); None where it cannot serve."""
    if leg is None:
        return None
    if leg.ready and not leg.late:
        return leg
    if leg.ready and command is not None and leg.bind(command, READY):
        return leg
    leg.kill()
    return None


def _early_legs(argvs: Dict[str, List[str]], known_hosts: str) -> Dict[str, ProcessSink]:
    """The targets' logins, started before SPEC: each waits (wire.py's LATE) for the command SPEC gives it."""
    legs: Dict[str, ProcessSink] = {}

    def start(name: str, argv: List[str]) -> None:
        legs[name] = ProcessSink(name, [a.replace("{known_hosts}", known_hosts) for a in argv], handshake=READY)

    threads = [threading.Thread(target=start, args=item) for item in argvs.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return legs


def _start_save(ids: List[str], platform: str = "") -> "subprocess.Popen[bytes]":
    chosen = ["--platform", platform] if platform else []
    save = subprocess.Popen(["docker", "save", *chosen, *ids], stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)
    grow_pipe(save.stdout)
    return save


def early_save(names: List[str], platform: str = "") -> "tuple[List[str], Optional[subprocess.Popen[bytes]]]":
    """Resolve ``names`` here and start saving them, before shipper has finished planning."""
    if not names:
        return [], None
    found = subprocess.run(["docker", "image", "inspect", "--format", "{{.Id}}", *names], capture_output=True)
    ids = found.stdout.decode().split()
    if found.returncode != 0 or len(ids) != len(names):
        return [], None
    return ids, _start_save(list(dict.fromkeys(ids)), platform)


class _Source:
    """The stream's origin: the layer store, or a ``docker save`` process."""

    def __init__(self, spec: dict, early: Early) -> None:
        self.save: "Optional[subprocess.Popen[bytes]]" = None
        self.stderr: List[bytes] = []
        self.layers: Dict[str, List[str]] = spec.get("layers") or {}
        every = {d for diff_ids in self.layers.values() for d in diff_ids}
        skips = [set(spec.get("skip", {}).get(name, ())) for name in spec["targets"]]
        needed = set().union(*(every - skip for skip in skips)) if skips else every
        self.absent: Set[str] = set()
        self.read, self.note = "save", early.store_note
        if early.store is not None and set(self.layers) == set(spec["expected"]) and not spec.get("platform"):
            self.note = early.store.unreadable(self.layers, needed)
            if not self.note:
                self.read, self.absent = "store", every - needed
                # Every reader is a target's load, which hashes each layer against its config: not hashed twice.
                self._chunks: Iterator[bytes] = early.store.save_stream(self.layers, needed, verify=False)
                early.stop()
                return
        self._use_save(spec.get("save") or spec["expected"], early, spec.get("platform") or "")

    def _use_save(self, expected: List[str], early: Early, platform: str) -> None:
        save = early.save
        if save is None or sorted(set(early.ids)) != sorted(expected) or early.platform != platform:
            early.stop()
            save = _start_save(expected, platform)
        early.save = None
        self.save = save
        threading.Thread(target=lambda: self.stderr.append(save.stderr.read()), daemon=True).start()  # type: ignore[union-attr]

        def chunks() -> Iterator[bytes]:
            fd = save.stdout.fileno()  # type: ignore[union-attr]
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    return
                yield chunk

        self._chunks = chunks()

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def kill(self) -> bool:
        """Stop reading; True when a running save was killed (its exit status is then ours, not its own)."""
        if self.save is None:
            return False
        running = self.save.poll() is None
        self.save.kill()  # else docker save blocks forever on a pipe nobody reads
        self.save.wait()
        return running

    def status(self) -> int:
        return self.save.wait() if self.save is not None else 0

    def report(self, status: int, stream_error: Optional[str]) -> dict:
        time.sleep(0.05 if self.save is not None else 0)  # let the stderr reader finish
        stderr = b"".join(self.stderr).decode(errors="replace")[-4000:]
        return {"status": status, "stderr": stderr, "stream_error": stream_error, "read": self.read, "read_note": self.note}


class _Later(Generic[T]):
    """``work()`` in a thread of its own; ``result()`` waits for it (and raises what it raised)."""

    def __init__(self, work: "Callable[[], T]") -> None:
        self.value: List[T] = []
        self.error: List[BaseException] = []

        def run() -> None:
            try:
                self.value.append(work())
            except BaseException as exc:  # given to whoever waits
                self.error.append(exc)

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()

    def result(self) -> T:
        self.thread.join()
        if self.error:
            raise self.error[0]
        return self.value[0]


def _run(spec: dict, known_hosts: str, early: "Optional[_Later[Early]]" = None, legs: "Optional[_Later[Dict[str, ProcessSink]]]" = None) -> int:
    # Every target's login (the longest wait before the first byte) goes on while the source is found: the
    # layer store read, or docker save's export, which takes a while before its first byte.
    connecting = _Later(lambda: _connect(spec, known_hosts, legs))
    try:
        source = _Source(spec, early.result() if early is not None else Early([], False))
    except BaseException:
        for sink in connecting.result():
            sink.kill()
        raise
    sinks = connecting.result()
    unready = [s for s in sinks if not s.ready]
    if unready:
        source.kill()
        for sink in sinks:
            sink.kill()
        details = {s.name: s.wait().stderr.strip()[-1000:] for s in unready}
        print(json.dumps({"unreachable": details}))
        return UNREACHABLE
    for sink in sinks:
        sink.start()
    last = [0.0]
    started: Set[str] = set()  # targets whose first bytes have been reported

    def progress(_sink: QueueSink) -> None:
        now = time.monotonic()
        first = any(s.passed and s.name not in started for s in sinks)  # said at once: a target has begun to take bytes
        if first or now - last[0] >= PROGRESS_INTERVAL:
            last[0] = now
            started.update(s.name for s in sinks if s.passed)
            _report({s.name: s.passed for s in sinks})

    stream_error = None
    try:
        pump(source.chunks(), sinks, spec.get("check", spec.get("expected", ())), progress, layers=source.layers, absent=source.absent)
    except ArchiveError as exc:
        stream_error = str(exc)
    except BaseException:
        # Interrupted (shipper's connection to this host dropped: SIGHUP): a target
        # must see a broken stream, never one that merely stops.
        source.kill()
        for sink in sinks:
            sink.abort()
        raise
    stopped_early = stream_error is None and ended_early(sinks)
    killed_by_us = False
    if stream_error is not None or stopped_early:
        killed_by_us = source.kill()
        for sink in sinks:
            sink.abort()
    else:
        for sink in sinks:  # under a rate limit, the queued bytes are still going out
            sink.wait_passed(progress)
        _report({s.name: s.sent for s in sinks})
        sys.stderr.write(json.dumps({"phase": {s.name: "loading" for s in sinks}}) + "\n")  # each engine finishes its load now
        sys.stderr.flush()
        for sink in sinks:
            sink.finish()
    status = 0 if killed_by_us or stopped_early else source.status()
    _report({s.name: s.sent for s in sinks})
    print(json.dumps(_outcome(sinks, {"source": source.report(status, stream_error)})))
    return 0


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main() -> None:
    import signal

    for signum in (signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, _interrupted)
    start = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    # The targets' logins named here start at once, while shipper plans; each gets its command from SPEC.
    legs_known_hosts = _known_hosts_file(start.get("known_hosts", "")) if start.get("early") else ""
    legs = _Later(lambda: _early_legs(start["early"], legs_known_hosts)) if start.get("early") else None
    # Found while the spec comes: where shipper planned first, the targets' logins wait for nothing but the spec.
    early = _Later(lambda: Early(list(start.get("names", ())), bool(start.get("store")), str(start.get("platform") or "")))
    try:
        line = sys.stdin.buffer.readline().decode().strip()
        if not line or line == STOP:
            early.result().stop()
            sys.exit(0)  # early logins are not waited for: their input closes with this program, and they end
        stop_when_shipper_is_gone()
        sys.exit(run(json.loads(line), early, legs))
    finally:
        if legs_known_hosts:
            os.unlink(legs_known_hosts)


# The modules the program is made of, in an order that imports only what came before.
PROGRAM_MODULES = ("layers", "tarheader", "savestream", "layerstore", "lifeline", "wire", "fanout", "hostpipe")


def script() -> str:
    """This program and the modules it needs, as one self-contained script (standard library only)."""
    from shipper.archive.boot import program_script  # here, not at the top: the program as sent has no boot module

    return program_script(PROGRAM_MODULES, "hostpipe")


if __name__ == "__main__":
    main()
