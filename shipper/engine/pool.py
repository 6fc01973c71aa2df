"""Engine connections kept for the length of one operation.

Planning a move reads every engine; committing it (checking IDs, moving
tags) talks to them again. Opening an SSH engine connection costs a key
exchange and a login (a few hundred milliseconds); the pool opens each once.
"""

from __future__ import annotations

import threading

from shipper.engine import Engine, connect
from shipper.errors import ShipperError
from shipper.inventory.model import Host


class EnginePool:
    """``with EnginePool() as pool: pool.get(host)``; connections closed at the end."""

    def __init__(self) -> None:
        self._engines: dict[str, Engine] = {}
        self._lock = threading.Lock()

    def get(self, host: Host) -> Engine:
        """A live connection to ``host``'s engine (a kept one is checked with a ping first)."""
        with self._lock:
            engine = self._engines.pop(host.name, None)
        if engine is not None:
            try:
                engine.ping()
            except ShipperError:
                engine.close()  # the engine restarted or the connection dropped: open a new one
                engine = None
        engine = engine or connect(host)
        with self._lock:
            self._engines[host.name] = engine
        return engine

    def close(self) -> None:
        with self._lock:
            engines, self._engines = list(self._engines.values()), {}
        for engine in engines:
            engine.close()

    def __enter__(self) -> "EnginePool":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
