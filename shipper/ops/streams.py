"""Where a move's bytes come from and go to, per route.

- relay (``--via ssh`` through this machine): ``ssh SRC docker save`` feeds, through the
  checking pump here, one ``ssh DST docker load`` per target;
- host to host (``--via ssh``, the default when available): the same pump runs on the
  source host (archive/hostpipe.py) and feeds the targets over the source's ssh;
- direct: ``GET /images/get`` on the source engine, ``POST /images/load`` on each target.

On every route each target's stream leaves out the layers it holds (its
sink's ``skip``). Host to host, the source may also read only the needed
layers from its engine's store (archive/layerstore.py) instead of saving all.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from shipper.archive.fanout import Aborted, Chunk, ProcessResult, ProcessSink, QueueSink
from shipper.archive.hostpipe import LOADER, READY, STOP, UNREACHABLE, script
from shipper.engine import connect
from shipper.errors import EngineError, EngineUnreachable, ShipperError, SSHError
from shipper.inventory.model import Host
from shipper.progress import Reporter
from shipper.transport.agent import Agent
from shipper.transport.openssh import SSH_CONNECTION_ERROR, RemoteCommand, peer_argv, ssh_argv

_ENGINE_GONE = ("Cannot connect to the Docker daemon", "Is the docker daemon running", "error during connect")
COMMAND_NOT_FOUND = 127


def docker_failure(host: Host, stage: str, status: int, stderr: str) -> ShipperError:
    """A failed ``docker save``/``docker load`` (run over ssh) as a shipper error."""
    line = next((ln.strip() for ln in stderr.splitlines() if ln.strip()), "")
    where = f"{stage} on {host.describe()}"
    if status == SSH_CONNECTION_ERROR or status < 0:
        # ssh exits 255 both when the connection drops and when the remote command dies by a signal.
        return SSHError(
            f"the SSH session for {where} ended abnormally: {line or 'the connection broke or the remote command was killed'}",
            hint="check the network to that host and that nothing killed docker there, then run the same command again",
        )
    if any(marker in line for marker in _ENGINE_GONE):
        return EngineUnreachable(
            f"the engine stopped answering during {where}",
            hint=f"start dockerd on {host.name}, then run the same command again (docker said: {line[:200]})",
        )
    if "no space left" in line:
        return EngineError(f"{where} failed: engine said {line!r}", hint=f"free space under the engine's data root on {host.name}, then run again")
    return EngineError(f"{where} failed: {line or f'exit status {status}'}")


# -- relay and direct ---------------------------------------------------------------


class SSHSaveSource:
    """``docker save`` run on the source host, its stdout over OpenSSH to this machine."""

    def __init__(self, host: Host, image_ids: tuple[str, ...]) -> None:
        self.host = host
        self.proc = RemoteCommand(host.ssh, "docker save " + " ".join(shlex.quote(i) for i in image_ids), f"host {host.name}")
        self.aborted = False

    def chunks(self) -> Iterator[bytes]:
        return self.proc.chunks()

    def failure(self) -> ShipperError | None:
        """After the stream ended (or broke): the source's own account of what went wrong, if any
        (None when it only ended because shipper stopped it)."""
        status, _, stderr = self.proc.wait(timeout=30)
        if not status or (self.aborted and status < 0):
            return None
        return docker_failure(self.host, "save", status, stderr)

    def abort(self) -> None:
        self.aborted = True
        self.proc.kill()


class APISaveSource:
    """``GET /images/get`` on the source engine."""

    def __init__(self, host: Host, image_ids: tuple[str, ...]) -> None:
        self.host = host
        self.engine = connect(host, timeout=None)
        self._chunks = self.engine.save(image_ids)

    def chunks(self) -> Iterator[bytes]:
        return self._chunks

    def failure(self) -> ShipperError | None:
        self.engine.close()
        return None  # its errors surface from chunks() already, as ShipperErrors

    def abort(self) -> None:
        self.engine.close()


class APILoadSink(QueueSink):
    """``POST /images/load`` on the target engine."""

    def __init__(self, host: Host, skip: frozenset[str] = frozenset()) -> None:
        super().__init__(host.name, skip)
        self.host = host

    def consume(self, items: Iterator[Chunk]) -> object:
        with connect(self.host, timeout=None) as engine:
            return engine.load(items)


def make_source(route: str, host: Host, image_ids: tuple[str, ...]) -> SSHSaveSource | APISaveSource:
    return SSHSaveSource(host, image_ids) if route == "ssh" else APISaveSource(host, image_ids)


def make_sink(route: str, host: Host, skip: frozenset[str] = frozenset()) -> QueueSink:
    """A load on ``host`` that is not sent the layers in ``skip``."""
    sink = ProcessSink(host.name, ssh_argv(host.ssh, "docker load -q"), skip=skip) if route == "ssh" else APILoadSink(host, skip)
    return sink.start()


def sink_error(host: Host, sink: QueueSink) -> ShipperError | None:
    """What went wrong on one target, if anything."""
    if isinstance(sink.error, ShipperError):
        return sink.error
    if isinstance(sink.error, Aborted):
        return ShipperError(f"the stream to {host.name} was abandoned")
    if sink.error is not None:
        return ShipperError(f"loading on {host.name} failed unexpectedly: {sink.error!r}")
    if isinstance(sink.result, ProcessResult) and sink.result.status:
        return docker_failure(host, "load", sink.result.status, sink.result.stderr)
    return None


# -- host to host ---------------------------------------------------------------------


@dataclass
class Delivery:
    """What streaming gave each sending target: bytes sent, and an error (None: delivered)."""

    path: str  # host-to-host, relay, direct
    note: str = ""
    source_read: str = "save"  # store: the source's layer store was read directly; save: docker save
    target_notes: dict[str, str] = field(default_factory=dict)
    untag_after: dict[str, list[str]] = field(default_factory=dict)  # names to take off each target once its tags moved
    local_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> source image ID -> the ID it got there
    sent: dict[str, int] = field(default_factory=dict)
    errors: dict[str, ShipperError | None] = field(default_factory=dict)
    arrivals: dict[str, Any] = field(default_factory=dict)  # target -> its arrival check's outcome (arrival.py), made once


@dataclass
class HostToHost(Delivery):
    """A host-to-host attempt: a delivery, or unavailable (and why, so the relay takes over)."""

    available: bool = True
    reason: str = ""


def _unavailable(reason: str) -> HostToHost:
    return HostToHost("host-to-host", available=False, reason=reason)


class SourceProgram:
    """The host-to-host program, started on the source before planning ends.

    Its SSH login and python3's start-up then overlap the planning; ``send``
    gives it the work, ``cancel`` tells it there is none.
    """

    def __init__(self, source: Host, key_files: list[str], names: Sequence[str] = (), store_read: bool = True) -> None:
        """``names``: the images as the user named them, for the program to start saving at once.
        ``store_read``: the program may read the engine's layer store instead of running docker save."""
        self.source = source
        self.reporter: Reporter | None = None
        self.unavailable = ""
        self.command: RemoteCommand | None = None
        self._agent: Agent | None = Agent(key_files)
        socket = self._agent.__enter__()
        if socket is None:
            self.unavailable = "no SSH key to forward to the source (no key files and no agent)"
            return
        code = script().encode()
        loader = LOADER.format(size=len(code))
        self.command = RemoteCommand(
            source.ssh, f"python3 -c {shlex.quote(loader)} {shlex.quote(json.dumps({'names': list(names), 'store': store_read}))}",
            f"host {source.name}", stdin=True,
            agent_socket=socket, on_stderr_line=self._progress,
        )  # fmt: skip
        self._write(code)

    def _write(self, data: bytes) -> None:
        assert self.command is not None
        try:
            self.command.write(data)
        except BrokenPipeError:
            pass  # the program is gone (no python3, say): its exit status says so

    def _progress(self, line: str) -> bool:
        if not line.startswith('{"progress"'):
            return False
        if self.reporter is not None:
            for name, done in json.loads(line)["progress"].items():
                self.reporter.advance(name, done)
        return True

    def send(
        self, targets: list[Host], host_keys: dict[str, str], layers: dict[str, tuple[str, ...]], reporter: Reporter,
        skips: dict[str, frozenset[str]] | None = None, check_ids: Sequence[str] | None = None,
    ) -> HostToHost:  # fmt: skip
        """Send the images of ``layers`` (image ID -> diff IDs) from the source straight to ``targets``,
        each without the layers in its ``skips`` entry; unavailable when that cannot start."""
        try:
            if self.command is None:
                return _unavailable(self.unavailable)
            if any(t.ssh.proxy_command or t.ssh.proxy_jump for t in targets):
                self.cancel()
                return _unavailable("a target is reached through a proxy")
            if any(t.name not in host_keys for t in targets):
                self.cancel()
                return _unavailable("a target's host key is not known")
            spec = {
                "expected": list(layers),
                "check": list(layers) if check_ids is None else list(check_ids),
                "layers": {image_id: list(diff_ids) for image_id, diff_ids in layers.items()},
                "skip": {name: sorted(skip) for name, skip in (skips or {}).items()},
                "known_hosts": "".join(host_keys[t.name] for t in targets),
                "targets": {t.name: peer_argv(t.ssh, f"echo {READY} && exec docker load -q") for t in targets},
            }
            self.reporter = reporter
            self._write(json.dumps(spec).encode() + b"\n")
            status, out, err = self.command.wait(keep_stdin=True)  # stdin open while shipper lives: the program stops when it closes
            return _host_to_host_outcome(self.source, targets, status, out, err)
        finally:
            self.close()

    def cancel(self) -> None:
        """Nothing to send: let the program end."""
        if self.command is not None:
            self._write(STOP.encode() + b"\n")
            self.command.wait(timeout=30)
        self.close()

    def close(self) -> None:
        if self.command is not None and self.command.proc.poll() is None:
            self.command.kill()
        if self._agent is not None:
            self._agent.__exit__(None, None, None)
            self._agent = None


def host_to_host(
    source: Host, targets: list[Host], host_keys: dict[str, str], layers: dict[str, tuple[str, ...]], reporter: Reporter,
    skips: dict[str, frozenset[str]] | None = None, store_read: bool = True, check_ids: Sequence[str] | None = None,
) -> HostToHost:  # fmt: skip
    """Send from ``source`` straight to ``targets`` (starting the program now)."""
    program = SourceProgram(source, [k for t in targets for k in t.ssh.identity_files], store_read=store_read)
    return program.send(targets, host_keys, layers, reporter, skips, check_ids)


def _host_to_host_outcome(source: Host, targets: list[Host], status: int, out: str, err: str) -> HostToHost:
    if status == COMMAND_NOT_FOUND:
        return _unavailable(f"no python3 on {source.name}")
    if status == UNREACHABLE:
        detail = json.loads(out).get("unreachable", {})
        names = ", ".join(f"{n} ({why.splitlines()[-1] if why else 'no answer'})" for n, why in detail.items())
        return _unavailable(f"{source.name} cannot reach {names}")
    try:
        outcome: dict[str, Any] = json.loads(out)
    except ValueError:
        if status == SSH_CONNECTION_ERROR or status < 0:
            error = docker_failure(source, "host-to-host send", status, err)
            return HostToHost("host-to-host", errors={t.name: error for t in targets})
        return _unavailable(f"the sending program failed on {source.name}: {(err.strip().splitlines() or ['?'])[-1]}")
    return _per_target(source, targets, outcome)


def _source_failure(source: Host, report: dict[str, Any]) -> ShipperError | None:
    """What went wrong with ``docker save`` on the source, as the program there saw it (no SSH in between)."""
    status, stderr, stream_error = report["status"], report["stderr"], report["stream_error"]
    if status and status < 0:
        return EngineError(
            f"docker save on {source.describe()} was killed (signal {-status})",
            hint=f"check what killed it on {source.name} (out of memory?), then run the same command again",
        )
    if status:
        return docker_failure(source, "save", status, stderr)
    if stream_error:
        return EngineError(f"the stream from {source.describe()} is not sound: {stream_error}")
    return None


def _per_target(source: Host, targets: list[Host], outcome: dict[str, Any]) -> HostToHost:
    read = outcome["source"].get("read", "save")
    note = outcome["source"].get("read_note", "")
    result = HostToHost("host-to-host", source_read=read)
    if read == "save" and note and note != "not asked to":
        result.note = f"docker save on {source.name} (its layer store could not be read: {note})"
    source_error = _source_failure(source, outcome["source"])
    for target in targets:
        report = outcome["targets"][target.name]
        result.sent[target.name] = report["sent"]
        if source_error is not None:
            result.errors[target.name] = source_error
        elif report["error"]:
            result.errors[target.name] = ShipperError(f"sending to {target.name} from {source.name} failed: {report['error']}")
        elif report["status"]:
            result.errors[target.name] = docker_failure(target, f"load (from {source.name})", report["status"], report["stderr"])
        else:
            result.errors[target.name] = None
    return result
