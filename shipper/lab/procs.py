"""Starting and stopping the lab's daemons, and only the lab's.

A daemon counts as ours when its pidfile names a live process whose command
line mentions the lab's directory: a stale pidfile, or a pid reused by some
other program, is never signalled.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path
from collections.abc import Callable, Sequence

from shipper.errors import ShipperError


class LabError(ShipperError):
    """The lab could not be set up."""


def our_pid(pidfile: Path, marker: str) -> int | None:
    """The pid in ``pidfile`` if that process is alive and its command line contains ``marker``."""
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, ValueError):
        return None
    return pid if marker in cmdline else None


def spawn(argv: Sequence[str], log: Path, pidfile: Path | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start ``argv`` in its own session, its output appended to ``log``."""
    with log.open("ab") as out:
        proc = subprocess.Popen(
            list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    if pidfile is not None:
        pidfile.write_text(f"{proc.pid}\n")
    return proc


def tail(log: Path, lines: int = 8) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def wait_until(ready: Callable[[], bool], what: str, log: Path, timeout: float = 60.0, alive: Callable[[], bool] = lambda: True) -> None:
    """Poll ``ready`` until it is true; a clear error with the log's tail if it never is."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if not alive():
            raise LabError(f"{what} exited while starting; last lines of {log}:\n{tail(log)}")
        time.sleep(0.1)
    raise LabError(f"{what} did not become ready within {timeout:.0f} s; last lines of {log}:\n{tail(log)}")


def port_open(address: str, port: int) -> bool:
    try:
        with socket.create_connection((address, port), timeout=0.5):
            return True
    except OSError:
        return False


def unix_ping(path: str) -> bool:
    """Whether a Docker engine answers ``/_ping`` on the unix socket ``path``."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(path)
            sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            status_line = sock.recv(64).split(b"\r\n", 1)[0]
            return b" 200 " in status_line + b" "
    except OSError:
        return False


def stop(pidfile: Path, marker: str, timeout: float = 30.0) -> bool:
    """SIGTERM our process, then SIGKILL after ``timeout``; True if one was running."""
    pid = our_pid(pidfile, marker)
    if pid is None:
        pidfile.unlink(missing_ok=True)
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and our_pid(pidfile, marker) == pid:
        time.sleep(0.1)
    if our_pid(pidfile, marker) == pid:
        os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    pidfile.unlink(missing_ok=True)
    return True
