"""Progress for people (plain lines in a log; bars on a terminal, in ``bars.py``) and for programs (JSON lines).

Each target goes through the phases of ``shipper.progress.Phase``; every
reporter shows the phase, so the long wait after the last byte (the engine
loading, shipper checking) says what it is. Rates are bytes over the time
since the target started, the same figure the result table shows.
"""

from __future__ import annotations

import os
import time
from typing import IO, Any
from collections.abc import Callable

from shipper.cli.output import human_size
from shipper.progress import Phase

JSON_INTERVAL = 0.5  # seconds between progress lines per host, in JSON
PLAIN_INTERVAL = 5.0  # seconds between progress lines per host, in a log ($SHIPPER_PROGRESS_INTERVAL)


class PlainLinesReporter:
    """Without a terminal (a CI log, a pipe): a line per host at each phase and every few seconds while bytes flow."""

    def __init__(self, stream: IO[str], interval: float | None = None) -> None:
        self.stream, self.interval = stream, interval if interval is not None else _interval()
        self.started: dict[str, float] = {}
        self.last: dict[str, float] = {}
        self.totals: dict[str, int | None] = {}
        self.done: dict[str, int] = {}
        self.phases: dict[str, str] = {}

    def _line(self, host: str, text: str) -> None:
        now = time.monotonic()
        elapsed = now - self.started.get(host, now)
        print(f"{host}: {text} [{elapsed:.0f}s]", file=self.stream, flush=True)

    def start(self, host: str, total: int | None) -> None:
        self.started[host] = self.last[host] = time.monotonic()
        self.totals[host] = total
        self.phases[host] = "reading"
        self._line(host, "reading" + (f" (about {human_size(total)} to send)" if total else ""))

    def advance(self, host: str, done: int) -> None:
        self.done[host] = done
        now = time.monotonic()
        if done and self.phases.get(host) == "reading":
            self.phases[host], self.last[host] = "sending", now
            self._line(host, f"sending {self._bytes(host)}")
        elif self.phases.get(host) == "sending" and now - self.last.get(host, 0.0) >= self.interval:
            self.last[host] = now
            self._line(host, f"sending {self._bytes(host)}")

    def phase(self, host: str, phase: Phase) -> None:
        self.phases[host] = phase  # past sending, a late byte count is no news
        self._line(host, phase + (f" ({self._bytes(host)} sent)" if phase == "loading" else ""))

    def finish(self, host: str, status: str) -> None:
        self._line(host, status + (f", {self._bytes(host)}" if self.done.get(host) else ""))

    def _bytes(self, host: str) -> str:
        done, total = self.done.get(host, 0), self.totals.get(host)
        now = time.monotonic()
        elapsed = max(now - self.started.get(host, now), 1e-6)
        of = f" of about {human_size(total)}" if total and total >= done else ""
        return f"{human_size(done)}{of} at {human_size(done / elapsed)}/s"


def _interval() -> float:
    try:
        return max(0.0, float(os.environ.get("SHIPPER_PROGRESS_INTERVAL", PLAIN_INTERVAL)))
    except ValueError:
        return PLAIN_INTERVAL


class JSONLinesReporter:
    """``start``, ``progress`` (at most one per host every half second), ``phase`` and ``finish`` events."""

    def __init__(self, write: Callable[[dict[str, Any]], None]) -> None:
        self.write = write  # the command's JSON-lines writer (one lock for every thread's lines)
        self.last: dict[str, float] = {}
        self.totals: dict[str, int | None] = {}
        self.reading: set[str] = set()  # started, no byte yet

    def emit(self, event: dict[str, Any]) -> None:
        self.write(event)

    def start(self, host: str, total: int | None) -> None:
        self.totals[host] = total
        self.emit({"event": "start", "host": host, "bytes_estimate": total})
        self.phase(host, "reading")
        self.reading.add(host)

    def advance(self, host: str, done: int) -> None:
        now = time.monotonic()
        if host in self.reading:
            if not done:
                return
            self.phase(host, "sending")
            self.last[host] = 0.0  # the first bytes are news at once
        if now - self.last.get(host, 0.0) >= JSON_INTERVAL:
            self.last[host] = now
            self.emit({"event": "progress", "host": host, "bytes": done, "bytes_estimate": self.totals.get(host)})

    def phase(self, host: str, phase: Phase) -> None:
        self.reading.discard(host)
        self.emit({"event": "phase", "host": host, "phase": phase})

    def finish(self, host: str, status: str) -> None:
        self.reading.discard(host)
        self.emit({"event": "finish", "host": host, "status": status})
