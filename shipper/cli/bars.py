"""Progress bars and the survey's spinner, on a terminal: rich, imported only where one is drawn.

rich costs a tenth of a command's start-up (119M instructions): a log, a pipe
or ``--json`` never pays for it (see ``progress.py`` for those).
"""

from __future__ import annotations

from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, ProgressColumn, Task, TaskID, TextColumn, TimeRemainingColumn
from rich.text import Text

from shipper.cli.output import human_size
from shipper.progress import Phase


def spinner(stream: IO[str], text: str) -> Any:
    """A spinner saying ``text`` while the ``with`` block runs."""
    return Console(file=stream).status(text, spinner="dots")


class AverageRateColumn(ProgressColumn):
    """Bytes per second since the task started (rich's own column shows a recent average that ends elsewhere)."""

    def render(self, task: Task) -> Text:
        elapsed = task.elapsed or 0.0
        if not task.completed or elapsed <= 0:
            return Text("", style="progress.data.speed")
        return Text(f"{human_size(task.completed / elapsed)}/s", style="progress.data.speed")


class BarsReporter:
    """A bar per target on a terminal's stderr: phase, bytes, average rate, time left."""

    def __init__(self, stream: IO[str]) -> None:
        self.progress = Progress(
            TextColumn("{task.description:>20}"), BarColumn(), DownloadColumn(), AverageRateColumn(), TimeRemainingColumn(),
            console=Console(file=stream), transient=False,
        )  # fmt: skip
        self.tasks: dict[str, TaskID] = {}
        self.reading: set[str] = set()  # started, no byte yet

    def __enter__(self) -> "BarsReporter":
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, host: str, total: int | None) -> None:
        self.reading.add(host)
        self.tasks[host] = self.progress.add_task(f"{host} reading", total=total)

    def advance(self, host: str, done: int) -> None:
        task = self.tasks.get(host)
        if task is not None and done and host in self.reading:
            self.reading.discard(host)
            self.progress.reset(task, total=self.progress.tasks[task].total, description=f"{host} sending")  # the rate counts from here
        if task is not None:
            # The estimate is the images' size; the stream is a little larger.
            total = self.progress.tasks[task].total
            self.progress.update(task, completed=done, total=max(total or 0, done))

    def phase(self, host: str, phase: Phase) -> None:
        self.reading.discard(host)
        task = self.tasks.get(host)
        if task is not None:
            self.progress.update(task, description=f"{host} {phase}")

    def finish(self, host: str, status: str) -> None:
        self.reading.discard(host)
        task = self.tasks.get(host)
        if task is not None:
            done = self.progress.tasks[task].completed
            self.progress.update(task, description=f"{host} {status}", total=max(done, 1), completed=max(done, 1))
