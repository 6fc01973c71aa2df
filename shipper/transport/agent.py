"""An ssh-agent a source host may use, through agent forwarding, to reach the targets.

Host-to-host moves need the source host to log in to each target. shipper
forwards an agent for the duration of the move: a private one, started for
the move and holding only the targets' key files, when the inventory names
key files; else the user's own agent (``SSH_AUTH_SOCK``). Forwarding lets
root on the source host use the agent's keys while the move runs; a private
agent limits that to the keys the targets need, and to those minutes.

A private agent never outlives shipper: it runs under a small guard process
that holds a pipe from shipper and, when that pipe closes (shipper ended, even
by SIGKILL, since the kernel closes its files), kills the agent and removes its
socket directory. Should the guard itself be killed with it, the next run
removes directories whose guard is gone.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Sequence

AGENT_START_TIMEOUT = 5.0
DEFAULT_IDENTITIES = ("id_rsa", "id_ecdsa", "id_ecdsa_sk", "id_ed25519", "id_ed25519_sk")  # OpenSSH's, in its order
PREFIX = "shipper-agent-"
GUARD_PID = "guard.pid"

# argv: socket directory, then the agent's command. Runs the agent until stdin closes, then removes both.
_GUARD = """
import os, shutil, signal, subprocess, sys
directory = sys.argv[1]
agent = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL)
with open(os.path.join(directory, "agent.pid"), "w") as out:
    out.write(str(agent.pid))
def end(*_):
    raise SystemExit(0)
signal.signal(signal.SIGTERM, end)
signal.signal(signal.SIGHUP, end)
signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches shipper, which then closes the pipe
try:
    while sys.stdin.buffer.read(65536):
        pass
finally:
    agent.kill()
    agent.wait()
    shutil.rmtree(directory, ignore_errors=True)
"""


def sweep_stale(tmp: str | None = None) -> list[str]:
    """Remove private agent directories whose guard is gone (it was killed along with shipper); what was removed."""
    removed = []
    for directory in glob.glob(os.path.join(tmp or tempfile.gettempdir(), PREFIX + "*")):
        try:
            pid = int(open(os.path.join(directory, GUARD_PID)).read().strip())
        except (OSError, ValueError):
            pid = 0
        if pid and _alive(pid):
            continue
        if pid == 0 and time.time() - os.stat(directory).st_mtime < 60:
            continue  # being set up right now by another shipper
        _kill_agent(os.path.join(directory, "agent.pid"))
        shutil.rmtree(directory, ignore_errors=True)
        removed.append(directory)
    return removed


def _kill_agent(pid_file: str) -> None:
    """The agent a dead guard left behind, if it still runs (and is an ssh-agent: pids are reused)."""
    try:
        pid = int(open(pid_file).read().strip())
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            if b"ssh-agent" in cmdline.read():
                os.kill(pid, 9)
    except (OSError, ValueError):
        pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Agent:
    """``with Agent(key_files) as socket:`` the agent to forward, or None if there is none to use."""

    def __init__(self, key_files: Sequence[str]) -> None:
        self.key_files = [k for k in dict.fromkeys(key_files) if os.path.isfile(k)]
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    def __enter__(self) -> str | None:
        if not self.key_files:
            if os.environ.get("SSH_AUTH_SOCK"):
                return os.environ["SSH_AUTH_SOCK"]
            # No key named and no agent of the user's: the keys OpenSSH itself would try (~/.ssh/id_*).
            self.key_files = [k for k in (os.path.expanduser(f"~/.ssh/{n}") for n in DEFAULT_IDENTITIES) if os.path.isfile(k)]
            if not self.key_files:
                return None
        if not (shutil.which("ssh-agent") and shutil.which("ssh-add")):
            return None
        sweep_stale()
        self._dir = tempfile.mkdtemp(prefix=PREFIX)
        socket = os.path.join(self._dir, "agent.sock")
        self._proc = subprocess.Popen(
            # -I -S: the guard is standard library only; a site's .pth files only slow its start.
            [sys.executable, "-I", "-S", "-c", _GUARD, self._dir, "ssh-agent", "-D", "-a", socket],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C or a terminal hang-up reaches shipper, which cleans up; the guard waits for it
        )  # fmt: skip
        with open(os.path.join(self._dir, GUARD_PID), "w") as out:
            out.write(str(self._proc.pid))
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while not os.path.exists(socket) and time.monotonic() < deadline:
            time.sleep(0.005)  # it is up within a few tens of milliseconds, and a move's program waits for it
        env = dict(os.environ, SSH_AUTH_SOCK=socket, SSH_ASKPASS="", DISPLAY="")
        added = subprocess.run(["ssh-add", "-q", *self.key_files], env=env, stdin=subprocess.DEVNULL, capture_output=True)
        if added.returncode != 0 or not os.path.exists(socket):
            return None  # a key with a passphrase and no agent of the user's: no host to host
        return socket

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()  # the guard kills the agent and removes the directory
            try:
                self._proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None
