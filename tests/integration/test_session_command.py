"""A program on a host over a channel of shipper's own session (the host-to-host and upload programs run this
way): the move's agent forwarded to it, its exit status and stderr passed on, its output bounded, and stopped
when shipper lets go of it."""

from __future__ import annotations

import subprocess
import time

import pytest

from shipper.errors import SSHError
from shipper.inventory import load_inventory
from shipper.lab import Lab
from shipper.transport.agent import Agent
from shipper.transport.session_command import OUTPUT_LIMIT, SessionCommand, StartingCommand
from shipper.transport.ssh import SSHSession


def test_the_moves_agent_is_forwarded_and_holds_only_the_moves_keys(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    key = host.ssh.identity_files[0]
    fingerprint = subprocess.run(["ssh-keygen", "-lf", key], capture_output=True, text=True, check=True).stdout.split()[1]

    with Agent([key]) as socket, SSHSession(host.ssh, "a") as session:
        command = SessionCommand(session, "ssh-add -l", "host a", agent_socket=socket)
        status, out, err = command.wait(timeout=30)

    assert status == 0, err
    assert [line.split()[1] for line in out.splitlines()] == [fingerprint]


def test_without_an_agent_the_host_has_none(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    with SSHSession(host.ssh, "a") as session:
        status, out, _ = SessionCommand(session, 'test -z "$SSH_AUTH_SOCK" && echo none', "host a").wait(timeout=30)
    assert (status, out) == (0, "none\n")


def test_exit_status_and_stderr_lines_come_back(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    seen: list[str] = []
    with SSHSession(host.ssh, "a") as session:
        command = SessionCommand(
            session, 'echo \'{"progress": 1}\' >&2; echo "docker: no space left" >&2; exit 7', "host a",
            on_stderr_line=lambda line: seen.append(line) or line.startswith('{"progress"'),
        )  # fmt: skip
        status, _, err = command.wait(timeout=30)
    assert status == 7
    assert seen == ['{"progress": 1}', "docker: no space left"]
    assert err == "docker: no space left\n"  # a consumed line is not kept


def test_a_host_writing_without_end_is_stopped_at_the_output_limit(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    with SSHSession(host.ssh, "a") as session:
        command = SessionCommand(session, "exec cat /dev/zero", "host a")
        with pytest.raises(SSHError, match=f"more than {OUTPUT_LIMIT >> 20} MiB"):
            command.wait(timeout=60)


def test_a_program_let_go_of_sees_its_input_end_and_stops(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    marker = f"shipper-let-go-{time.monotonic_ns()}"
    starting = StartingCommand(SSHSession(host.ssh, "a"), f"cat >/dev/null; echo {marker}", "host a", b"some input")
    assert starting.result() is not None
    assert _running(marker[:20])

    starting.close()  # the channel and the session closed, as when shipper ends

    deadline = time.monotonic() + 10
    while _running(marker[:20]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _running(marker[:20])


def test_a_program_that_cannot_log_in_says_why(lab: Lab, ssh_inventory: str) -> None:
    host = load_inventory(ssh_inventory).host("a")
    from dataclasses import replace

    wrong = replace(host.ssh, port=1)
    starting = StartingCommand(SSHSession(wrong, "a"), "true", "host a")

    assert starting.result() is None
    assert starting.failure.startswith("the program could not start on host a: cannot connect to")


def _running(text: str) -> bool:
    return text in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout


def test_a_session_sends_small_requests_at_once(lab: Lab, ssh_inventory: str) -> None:
    """Nagle's algorithm off: a channel's open and its request, written one after the other, each leave at once
    instead of the second waiting for the server's delayed ACK (40 ms; 50 ms a command before, 14 ms after)."""
    import socket

    host = load_inventory(ssh_inventory).host("a")
    with SSHSession(host.ssh, "a") as session:
        transport = session.client.get_transport()
        assert transport is not None
        assert transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0  # type: ignore[union-attr]
        assert session.run("echo hi").stdout == b"hi\n"


def test_a_host_writing_a_line_without_end_to_stderr_is_kept_within_bounds(lab: Lab, ssh_inventory: str) -> None:
    """Progress lines are read a line at a time; a line that never ends is read in pieces, and only the last
    64 KiB of what is not progress is kept."""
    from shipper.transport.openssh import STDERR_KEPT

    host = load_inventory(ssh_inventory).host("a")
    seen: list[int] = []
    with SSHSession(host.ssh, "a") as session:
        command = SessionCommand(
            session, "head -c 4000000 /dev/zero | tr '\\0' x >&2", "host a",
            on_stderr_line=lambda line: seen.append(len(line)) or False,
        )  # fmt: skip
        status, _, err = command.wait(timeout=60)
    assert status == 0
    assert max(seen) <= STDERR_KEPT and sum(seen) == 4000000
    assert len(err) <= 2 * STDERR_KEPT
