"""Host to host: the program shipper starts on the source host (archive/hostpipe.py), which reads the
images there and sends them straight to each target's ``docker load`` over the source's own ``ssh``."""

from __future__ import annotations

import json
import shlex
import threading
from dataclasses import dataclass
from typing import Any, Sequence

from shipper.archive.boot import HOST_PYTHON
from shipper.archive.hostpipe import LOADER, READY, STOP, UNREACHABLE, script
from shipper.errors import EngineError, ShipperError
from shipper.inventory.model import Host
from shipper.progress import Reporter
from shipper.transfer.delivery import Delivery
from shipper.transfer.limits import RateLimits
from shipper.transfer.resume import late_command, load_command
from shipper.transfer.sources import SaveRequest, docker_failure
from shipper.transport.agent import Agent
from shipper.transport.openssh import SSH_CONNECTION_ERROR, peer_argv
from shipper.transport.session_command import SessionCommand, StartingCommand
from shipper.transport.ssh import SSHSession, known_host_lines

COMMAND_NOT_FOUND = 127


@dataclass
class HostToHost(Delivery):
    """A host-to-host attempt: a delivery, or unavailable (and why, so the relay takes over)."""

    available: bool = True
    reason: str = ""


def _unavailable(reason: str) -> HostToHost:
    return HostToHost("host-to-host", available=False, reason=reason)


class SourceProgram:
    """The host-to-host program, started on the source before planning ends.

    It runs on a channel of a paramiko session to the source, opened in the
    background at once (and shared with the source's engine connection where
    that is behind SSH: ``session``): that login and python3's start-up overlap
    the planning (an OpenSSH login of its own cost twice the time, see
    session_command.py). Up to EARLY_LOGINS targets' logins start with it.
    ``send`` gives it the work, ``cancel`` tells it there is none.
    """

    def __init__(
        self, source: Host, key_files: list[str], names: Sequence[str] = (), store_read: bool = True, platform: str = "",
        early: Sequence[Host] = (),
    ) -> None:  # fmt: skip
        """``names``: the images as the user named them, for the program to start saving at once.
        ``store_read``: the program may read the engine's layer store instead of running docker save.
        ``platform``: --platform, for that early save (used only if the plan saves that platform).
        ``early``: the targets whose logins the program starts at once, before the plan (``early_logins``)."""
        self.source = source
        self.reporter: Reporter | None = None
        self.unavailable = ""
        self.command: SessionCommand | None = None
        self._agent: Agent | None = Agent(key_files)
        self._agent_socket: str | None = None
        # The agent's start (a guard, ssh-agent, ssh-add) and the login both go on in the background: shipper's
        # planning waits for neither; the program starts once both are done.
        self._agent_starting = threading.Thread(target=self._start_agent, daemon=True)
        self._agent_starting.start()
        code = script().encode()
        self._early, known_hosts = early_logins(early)
        start = json.dumps({"names": list(names), "store": store_read, "platform": platform, **({"early": self._early, "known_hosts": known_hosts} if self._early else {})})
        self.session = SSHSession(source.ssh, source.name)  # its engine's connection may share it (EnginePool.share)
        self.session_owned = True  # False once shared: the pool closes it
        self._starting = StartingCommand(
            self.session, f"{HOST_PYTHON} -c {shlex.quote(LOADER.format(size=len(code)))} {shlex.quote(start)}",
            f"host {source.name}", code, on_stderr_line=self._progress, agent=self._agent_started,
            no_agent="no SSH key to forward to the source (no key files and no agent)",
        )  # fmt: skip

    def _start_agent(self) -> None:
        assert self._agent is not None
        self._agent_socket = self._agent.__enter__()

    def _agent_started(self) -> str | None:
        self._agent_starting.join()
        return self._agent_socket

    def _started(self) -> SessionCommand | None:
        """The running program, once its start has ended (None where it could not start: ``unavailable`` says why)."""
        self.command = self._starting.result()
        self._agent_starting.join()
        if self.command is None:
            self.unavailable = self._starting.failure
        return self.command

    def _write(self, data: bytes) -> None:
        assert self.command is not None
        try:
            self.command.write(data)
        except BrokenPipeError:
            pass  # the program is gone (no python3, say): its exit status says so

    def _progress(self, line: str) -> bool:
        if line.startswith('{"phase"'):
            if self.reporter is not None:
                for name, phase in json.loads(line)["phase"].items():
                    if phase == "loading":
                        self.reporter.phase(name, "loading")
            return True
        if not line.startswith('{"progress"'):
            return False
        if self.reporter is not None:
            for name, done in json.loads(line)["progress"].items():
                self.reporter.advance(name, done)
        return True

    def send(
        self, targets: list[Host], host_keys: dict[str, str], layers: dict[str, tuple[str, ...]], reporter: Reporter,
        skips: dict[str, frozenset[str]] | None = None, check_ids: Sequence[str] | None = None, limits: RateLimits = RateLimits(),
        compress: str = "none", save: SaveRequest | None = None, receivers: dict[str, dict[str, Any]] | None = None,
    ) -> HostToHost:  # fmt: skip
        """Send the images of ``layers`` (image ID -> diff IDs) from the source straight to ``targets``,
        each without the layers in its ``skips`` entry; unavailable when that cannot start.
        ``save``: what docker save is given, when not the images' IDs (one platform of multi-platform images).
        ``receivers``: per target, the spec of its resumable receiver (transfer/resume.py), where it takes one."""
        try:
            command = self._started()
            if command is None:
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
                "targets": {t.name: peer_argv(t.ssh, load_command((receivers or {}).get(t.name), READY, compress != "none")) for t in targets},
                "late": {t.name: load_command((receivers or {}).get(t.name), READY, compress != "none") for t in targets if t.name in self._early},
                "limits": limits.to_spec(),
                "compress": compress,
                **(save.to_spec() if save is not None else {}),
            }
            self.reporter = reporter
            self._write(json.dumps(spec).encode() + b"\n")
            status, out, err = command.wait(keep_stdin=True)  # stdin open while shipper lives: the program stops when it closes
            return _host_to_host_outcome(self.source, targets, status, out, err)
        finally:
            self.close()

    def cancel(self) -> None:
        """Nothing to send: let the program end."""
        command = self._started()
        if command is not None:
            self._write(STOP.encode() + b"\n")
            command.wait(timeout=30)
        self.close()

    def close(self) -> None:
        self._starting.close(session_too=self.session_owned)
        self._agent_starting.join()
        if self._agent is not None:
            self._agent.__exit__(None, None, None)
            self._agent = None


EARLY_LOGINS = 4  # targets at most whose logins start before the plan


def early_logins(targets: Sequence[Host]) -> tuple[dict[str, list[str]], str]:
    """The ssh command lines the program starts at once, before the plan, and the known_hosts lines they check
    against: a target's login from the source (0.3 s here, 9 round trips over a WAN) then goes on while shipper
    plans, and the plan gives it its command (wire.py's LATE). Only for a handful of targets (a login to a target
    that turns out to need nothing is wasted; for a fleet the transfer outweighs it) whose host keys are known
    before connecting (strict checking) and which the source reaches without a proxy."""
    if not 0 < len(targets) <= EARLY_LOGINS or any(t.ssh.proxy_command or t.ssh.proxy_jump for t in targets):
        return {}, ""
    lines = {t.name: known_host_lines(t.ssh) for t in targets}
    argvs = {t.name: peer_argv(t.ssh, late_command(READY)) for t in targets if lines[t.name]}
    return argvs, "".join(lines[name] for name in argvs)


def host_to_host(
    source: Host, targets: list[Host], host_keys: dict[str, str], layers: dict[str, tuple[str, ...]], reporter: Reporter,
    skips: dict[str, frozenset[str]] | None = None, store_read: bool = True, check_ids: Sequence[str] | None = None,
    limits: RateLimits = RateLimits(), compress: str = "none", save: SaveRequest | None = None,
    receivers: dict[str, dict[str, Any]] | None = None,
) -> HostToHost:  # fmt: skip
    """Send from ``source`` straight to ``targets`` (starting the program now)."""
    program = SourceProgram(source, [k for t in targets for k in t.ssh.identity_files], store_read=store_read)
    return program.send(targets, host_keys, layers, reporter, skips, check_ids, limits, compress, save, receivers)


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
        if report.get("wire") is not None and report.get("wire") != report["sent"]:
            result.wire[target.name] = report["wire"]
        if source_error is not None:
            result.errors[target.name] = source_error
        elif report["error"]:
            result.errors[target.name] = ShipperError(f"sending to {target.name} from {source.name} failed: {report['error']}")
        elif report["status"]:
            result.errors[target.name] = docker_failure(target, f"load (from {source.name})", report["status"], report["stderr"])
        else:
            result.errors[target.name] = None
    return result
