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


FRESH_SECONDS = 5.0  # a connection that answered this recently is used without a ping


class EnginePool:
    """``with EnginePool() as pool: pool.get(host)``; connections closed at the end."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, host: Host) -> Engine:
        """A live connection to ``host``'s engine (a kept one that has been quiet a while is checked with a ping
        first; one that just answered is taken as it is: on a far link every ping is a round trip)."""
        with self._lock:
            engine = self._engines.pop(host.name, None)
        if engine is not None and time.monotonic() - engine.last_answer > FRESH_SECONDS:
            try:
                engine.ping()
            except ShipperError:
                engine.close()  # the engine restarted or the connection dropped: open a new one
                engine = None
        engine = engine or connect(host)
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
