"""Engine connections kept for the length of one operation.

Planning a move reads every engine; committing it (checking IDs, moving
tags) talks to them again. Opening an SSH engine connection costs a key
exchange and a login (a few hundred milliseconds); the pool opens each once.
"""

from __future__ import annotations

import threading
import time

from shipper.engine import Engine, connect
from shipper.errors import ShipperError
from shipper.inventory.model import Host
from shipper.transport.ssh import SSHSession


FRESH_SECONDS = 5.0  # a connection that answered this recently is used without a ping


class EnginePool:
    """``with EnginePool() as pool: pool.get(host)``; connections closed at the end."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._sessions: dict[str, SSHSession] = {}
        self._lock = threading.Lock()

    def share(self, host: Host, session: SSHSession) -> bool:
        """Reach ``host``'s engine, where it is behind SSH, over ``session`` (which a program on the host uses
        too): one login to the host, not two at once (each key exchange and login costs the control machine's
        CPU while it plans). True where it will; the pool then closes it."""
        if host.engine.scheme != "ssh":
            return False
        with self._lock:
            self._sessions[host.name] = session
        return True

    def get(self, host: Host, check: bool = False) -> Engine:
        """A live connection to ``host``'s engine. A kept one that has been quiet a while is checked with a ping
        first, unless its SSH session is up: then a request on it that finds the engine's end closed opens a
        new channel by itself (quickget.py), and on a far link every ping is a round trip. ``check``: pinged
        whenever it has been quiet (is the engine still there?)."""
        with self._lock:
            engine = self._engines.pop(host.name, None)
        quiet = engine is not None and time.monotonic() - engine.last_answer > FRESH_SECONDS
        if quiet and not check and engine is not None and engine.session is not None and engine.session.connected:
            quiet = False
        if engine is not None and quiet:
            try:
                engine.ping()
            except ShipperError:
                engine.close()  # the engine restarted or the connection dropped: open a new one
                engine = None
        engine = engine or connect(host, session=self._sessions.get(host.name))
        with self._lock:
            self._engines[host.name] = engine
        return engine

    def peek(self, host: Host) -> Engine | None:
        """The kept connection to ``host``'s engine, if there is one (nothing is opened or checked)."""
        with self._lock:
            return self._engines.get(host.name)

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
