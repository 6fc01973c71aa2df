"""An ssh-agent a source host may use, through agent forwarding, to reach the targets.

Host-to-host moves need the source host to log in to each target. shipper
forwards an agent for the duration of the move: a private one, started for
the move and holding only the targets' key files, when the inventory names
key files; else the user's own agent (``SSH_AUTH_SOCK``). Forwarding lets
root on the source host use the agent's keys while the move runs; a private
agent limits that to the keys the targets need, and to those minutes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Sequence

AGENT_START_TIMEOUT = 5.0


class Agent:
    """``with Agent(key_files) as socket:`` the agent to forward, or None if there is none to use."""

    def __init__(self, key_files: Sequence[str]) -> None:
        self.key_files = [k for k in dict.fromkeys(key_files) if os.path.isfile(k)]
        self._proc: subprocess.Popen[bytes] | None = None
        self._dir: str | None = None

    def __enter__(self) -> str | None:
        if not self.key_files:
            return os.environ.get("SSH_AUTH_SOCK") or None
        if not (shutil.which("ssh-agent") and shutil.which("ssh-add")):
            return None
        self._dir = tempfile.mkdtemp(prefix="shipper-agent-")
        socket = os.path.join(self._dir, "agent.sock")
        self._proc = subprocess.Popen(["ssh-agent", "-D", "-a", socket], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + AGENT_START_TIMEOUT
        while not os.path.exists(socket) and time.monotonic() < deadline:
            time.sleep(0.02)
        env = dict(os.environ, SSH_AUTH_SOCK=socket, SSH_ASKPASS="", DISPLAY="")
        added = subprocess.run(["ssh-add", "-q", *self.key_files], env=env, stdin=subprocess.DEVNULL, capture_output=True)
        if added.returncode != 0 or not os.path.exists(socket):
            return None  # a key with a passphrase and no agent of the user's: no host to host
        return socket

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
