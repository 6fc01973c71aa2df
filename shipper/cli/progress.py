"""Progress for people (bars on a terminal's stderr) and for programs (JSON lines)."""

from __future__ import annotations

import time
from typing import IO, Any
from collections.abc import Callable

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn

JSON_INTERVAL = 0.5  # seconds between progress lines per host


class BarsReporter:
    """A bar per target on stderr: bytes, rate, time left."""

    def __init__(self, stream: IO[str]) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>12}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
            console=Console(file=stream), transient=False,
        )  # fmt: skip
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> "BarsReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, host: str, total: int | None) -> None:
        self.tasks[host] = self.progress.add_task(host, total=total)

    def advance(self, host: str, done: int) -> None:
        task = self.tasks.get(host)
        if task is not None:
            # The estimate is the images' size; the stream is a little larger.
            total = self.progress.tasks[task].total
            self.progress.update(task, completed=done, total=max(total or 0, done))

    def finish(self, host: str, status: str) -> None:
        task = self.tasks.get(host)
        if task is not None:
            self.progress.update(task, description=f"{host} {status}")


class JSONLinesReporter:
    """``{"event": "progress", ...}`` lines on stdout, at most one per host every half second."""

    def __init__(self, write: Callable[[dict[str, Any]], None]) -> None:
        self.write = write  # the command's JSON-lines writer (one lock for every thread's lines)
        self.last: dict[str, float] = {}
        self.totals: dict[str, int | None] = {}

    def emit(self, event: dict[str, Any]) -> None:
        self.write(event)

    def start(self, host: str, total: int | None) -> None:
        self.totals[host] = total
        self.emit({"event": "start", "host": host, "bytes_estimate": total})

    def advance(self, host: str, done: int) -> None:
        now = time.monotonic()
        if now - self.last.get(host, 0.0) >= JSON_INTERVAL:
            self.last[host] = now
            self.emit({"event": "progress", "host": host, "bytes": done, "bytes_estimate": self.totals.get(host)})

    def finish(self, host: str, status: str) -> None:
        self.emit({"event": "finish", "host": host, "status": status})
