"""Moving bytes from a source to targets' loads: sources, sinks, one delivery loop, and the host-to-host
program. ``ops/`` plans and decides; this carries out a delivery, for moves and bundle loads alike."""

from shipper.transfer.delivery import Delivery, deliver
from shipper.transfer.program import HostToHost, SourceProgram, host_to_host
from shipper.transfer.sinks import make_sink, sink_error
from shipper.transfer.sources import FileSource, SaveRequest, Source, SourceFailed, make_source

__all__ = ["Delivery", "FileSource", "HostToHost", "SaveRequest", "Source", "SourceFailed", "SourceProgram", "deliver", "host_to_host", "make_sink", "make_source", "sink_error"]
