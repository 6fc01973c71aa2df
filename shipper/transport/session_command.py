"""A long-running command on a host over a channel of shipper's own SSH session, with an agent forwarded to it.

The host-to-host program runs this way. Over OpenSSH it cost a login of its
own beside shipper's session: 0.3 s on the lab's hosts, half of it OpenSSH's
default sntrup761 key exchange. A paramiko session is up in 0.12 s, and it
is opened while shipper's own start-up goes on. The interface is
``RemoteCommand``'s (openssh.py): write, wait, kill, stderr lines seen as they come.

Agent forwarding: the host's ``ssh`` asks for the agent by opening an
``auth-agent@openssh.com`` channel back to us; each is joined to the agent's
socket (the move's private agent) for as long as both ends are open.
"""

from __future__ import annotations

import select
import socket
import threading
from typing import Callable, Iterator

import paramiko

from shipper.errors import SSHError
from shipper.transport.openssh import SSH_CONNECTION_ERROR, StderrTail
from shipper.transport.ssh import SSHSession

CHUNK = 1 << 16
AGENT_CHANNELS = 32  # open at once: a host's ssh opens one per login; a host opening more is refused the rest
OUTPUT_LIMIT = 16 << 20  # a program's report on stdout (its outcome): kilobytes; more is not read


class _AgentBridge:
    """Joins each agent channel the host opens to a new connection to ``socket_path``."""

    def __init__(self, socket_path: str) -> None:
        self.socket_path = socket_path
        self._open: list[tuple[paramiko.Channel, socket.socket]] = []
        self._lock = threading.Lock()

    def __call__(self, channel: paramiko.Channel) -> None:
        """paramiko's transport thread hands each new agent channel here."""
        with self._lock:
            crowded = len(self._open) >= AGENT_CHANNELS
        if crowded:
            channel.close()
            return
        agent = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            agent.connect(self.socket_path)
        except OSError:
            agent.close()
            channel.close()  # the host's ssh is told there is no agent, and says so
            return
        with self._lock:
            self._open.append((channel, agent))
        threading.Thread(target=self._pump, args=(channel, agent), daemon=True).start()

    def _pump(self, channel: paramiko.Channel, agent: socket.socket) -> None:
        try:
            while True:
                ready, _, _ = select.select([channel.fileno(), agent.fileno()], [], [])
                if channel.fileno() in ready:
                    data = channel.recv(CHUNK)
                    if not data:
                        return
                    agent.sendall(data)
                if agent.fileno() in ready:
                    data = agent.recv(CHUNK)
                    if not data:
                        return
                    channel.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            return
        finally:
            agent.close()
            _close(channel)
            with self._lock:
                if (channel, agent) in self._open:
                    self._open.remove((channel, agent))

    def close(self) -> None:
        with self._lock:
            pairs, self._open = self._open, []
        for channel, agent in pairs:
            agent.close()
            _close(channel)


def _close(channel: paramiko.Channel) -> None:
    """Close an agent channel whose session may have died meanwhile (paramiko then raises as it says goodbye)."""
    try:
        channel.close()
    except (OSError, EOFError, paramiko.SSHException):
        pass


class SessionCommand:
    """``command`` running on the host of ``session`` (opened here), its stderr collected on the side.

    ``agent_socket``: forward this agent. ``on_stderr_line``: sees each stderr line; True means consumed."""

    def __init__(
        self, session: SSHSession, command: str, where: str, agent_socket: str | None = None,
        on_stderr_line: Callable[[str], bool] | None = None,
    ) -> None:  # fmt: skip
        self.session = session
        self.where = where
        self.command = command
        self._bridge = _AgentBridge(agent_socket) if agent_socket else None
        transport = session.client.get_transport()
        if transport is None:
            raise SSHError(f"the session to {session.where} closed before {where}'s program could start")
        try:
            self.channel = transport.open_session()
            if self._bridge is not None:
                self.channel.request_forward_agent(self._bridge)
            self.channel.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise SSHError(f"cannot start the program on {session.where}: {exc or type(exc).__name__}") from None
        self._stderr = StderrTail(on_stderr_line)
        self._stderr_thread = threading.Thread(target=self._drain_stderr, daemon=True)
        self._stderr_thread.start()

    def _drain_stderr(self) -> None:
        try:
            self._stderr.drain(self.channel.makefile_stderr("rb"))
        except (OSError, EOFError, paramiko.SSHException):
            return

    def write(self, data: bytes | memoryview) -> None:
        """Write to the command's stdin; ``BrokenPipeError`` when the far end is gone."""
        try:
            self.channel.sendall(bytes(data))
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise BrokenPipeError(str(exc)) from None

    def close_stdin(self) -> None:
        try:
            self.channel.shutdown_write()
        except (OSError, EOFError, paramiko.SSHException):
            pass

    def running(self) -> bool:
        return not self.channel.closed and not self.channel.exit_status_ready()

    def wait(self, timeout: float | None = None, keep_stdin: bool = False) -> tuple[int, str, str]:
        """Exit status (ssh's 255 when the session broke first), stdout left unread, and stderr (its last 64 KiB).

        ``keep_stdin``: leave stdin open until the command has ended (see RemoteCommand.wait)."""
        if not keep_stdin:
            self.close_stdin()
        self.channel.settimeout(timeout)
        out = bytearray()
        try:
            while len(out) <= OUTPUT_LIMIT and (chunk := self.channel.recv(CHUNK)):
                out += chunk
        except (OSError, EOFError, paramiko.SSHException):
            pass  # timed out, or the session broke: the exit status says which
        if len(out) > OUTPUT_LIMIT:
            self.kill()
            raise SSHError(
                f"the program on {self.session.where} wrote more than {OUTPUT_LIMIT >> 20} MiB to its output: stopped",
                hint="its report is a few kilobytes; see what runs as python3 on that host",
            )
        ended = self.channel.status_event.wait(timeout)
        status = self.channel.exit_status if ended else -1
        if status == -1:  # closed without a status: the connection broke, as ssh reports it
            status = SSH_CONNECTION_ERROR
            if not self._stderr.kept:
                self._stderr.keep(f"the SSH session to {self.session.where} broke".encode())
        self._stderr_thread.join(timeout=5)
        return status, out.decode(errors="replace"), self._stderr.text()

    def chunks(self) -> Iterator[bytes]:
        """The command's stdout, as it comes."""
        while chunk := self.channel.recv(CHUNK):
            yield chunk

    def kill(self) -> None:
        """Close the channel: the program takes the end of its stdin for shipper's end, and stops."""
        self.channel.close()
        if self._bridge is not None:
            self._bridge.close()


class StartingCommand:
    """A ``SessionCommand`` started in the background: the login, then the command, then ``first_input`` written
    to it; the caller goes on meanwhile (shipper plans while a source's program starts).

    ``agent``: called in the background once logged in; the agent socket to forward, or None to give up
    (``failure`` then says ``no_agent``)."""

    def __init__(
        self, session: SSHSession, command: str, where: str, first_input: bytes = b"",
        on_stderr_line: Callable[[str], bool] | None = None, agent: Callable[[], str | None] | None = None,
        no_agent: str = "",
    ) -> None:  # fmt: skip
        self.session = session
        self.command: SessionCommand | None = None
        self.failure = ""
        self._thread = threading.Thread(
            target=self._start, args=(command, where, first_input, on_stderr_line, agent, no_agent), daemon=True
        )  # fmt: skip
        self._thread.start()

    def _start(
        self, command: str, where: str, first_input: bytes, on_stderr_line: Callable[[str], bool] | None,
        agent: Callable[[], str | None] | None, no_agent: str,
    ) -> None:  # fmt: skip
        try:
            self.session.open()
            socket_path = agent() if agent is not None else None
            if agent is not None and socket_path is None:
                self.failure = no_agent
                return
            self.command = SessionCommand(self.session, command, where, agent_socket=socket_path, on_stderr_line=on_stderr_line)
        except Exception as exc:  # in a thread of its own: said through ``failure``
            self.failure = f"the program could not start on {where}: {getattr(exc, 'message', None) or exc or type(exc).__name__}"
            return
        try:
            self.command.write(first_input)
        except BrokenPipeError:
            pass  # gone already (no python3, say): its exit status says so

    def result(self) -> SessionCommand | None:
        """The running command once its start has ended; None where it could not start (``failure`` says why)."""
        self._thread.join()
        return self.command

    def close(self, session_too: bool = True) -> None:
        """Stop the command (if it started) and close the session, unless another user of it keeps it."""
        self._thread.join()
        if self.command is not None:
            self.command.kill()
        if session_too:
            self.session.close()
