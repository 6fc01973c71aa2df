"""Where a delivery's bytes go: one load per target, each left without the layers that target holds."""

from __future__ import annotations

from typing import Any, Iterator

from shipper.archive.fanout import Aborted, Chunk, ProcessResult, ProcessSink, QueueSink
from shipper.engine import connect
from shipper.errors import ShipperError
from shipper.inventory.model import Host
from shipper.transfer.resume import load_command
from shipper.transfer.sources import docker_failure
from shipper.transport.openssh import ssh_argv


class APILoadSink(QueueSink):
    """``POST /images/load`` on the target engine."""

    def __init__(self, host: Host, skip: frozenset[str] = frozenset()) -> None:
        super().__init__(host.name, skip)
        self.host = host

    def consume(self, items: Iterator[Chunk]) -> object:
        with connect(self.host, timeout=None) as engine:
            return engine.load(items)




def make_sink(route: str, host: Host, skip: frozenset[str] = frozenset(), receiver: dict[str, Any] | None = None) -> QueueSink:
    """A load on ``host`` that is not sent the layers in ``skip``; over SSH, through the resumable receiver where
    ``receiver`` (its spec) says so (transfer/resume.py)."""
    if route == "ssh":
        sink: QueueSink = ProcessSink(host.name, ssh_argv(host.ssh, load_command(receiver)), skip=skip)
    else:
        sink = APILoadSink(host, skip)
    return sink.start()


def sink_error(host: Host, sink: QueueSink) -> ShipperError | None:
    """What went wrong on one target, if anything."""
    if isinstance(sink.error, ShipperError):
        return sink.error
    if isinstance(sink.error, Aborted):
        return ShipperError(f"the stream to {host.name} was abandoned")
    if sink.error is not None:
        return ShipperError(f"loading on {host.name} failed unexpectedly: {sink.error!r}")
    if isinstance(sink.result, ProcessResult) and sink.result.status:
        return docker_failure(host, "load", sink.result.status, sink.result.stderr)
    return None
