"""Where a delivery's bytes go: one load per target, each left without the layers that target holds."""

from __future__ import annotations

from typing import Any, Iterator

from shipper.archive.fanout import Aborted, Chunk, ProcessResult, ProcessSink, QueueSink
from shipper.archive.hostpipe import READY
from shipper.archive.wire import Framer
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




def make_sink(
    route: str, host: Host, skip: frozenset[str] = frozenset(), receiver: dict[str, Any] | None = None, compress: str = "none",
) -> QueueSink:  # fmt: skip
    """A load on ``host`` that is not sent the layers in ``skip``. Over SSH: through the resumable receiver where
    ``receiver`` (its spec) says so (transfer/resume.py), and framed by ``compress`` where the target unframes (it
    says so once logged in: the sink waits for that line)."""
    if route == "ssh":
        frames = compress != "none"
        process = ProcessSink(host.name, ssh_argv(host.ssh, load_command(receiver, READY, frames)), handshake=READY, skip=skip)
        if frames and process.unframes:
            process.framer = Framer(compress, paced=process.paced)
        sink: QueueSink = process
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
