"""One delivery loop for every route that streams through this process (relay, direct, a bundle file):
one read of the source feeds every target's load, checked on the way (archive/fanout.py's pump)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from shipper.archive.fanout import QueueSink, ended_early, pump
from shipper.archive.savestream import ArchiveError
from shipper.errors import ShipperError
from shipper.inventory.model import Host
from shipper.progress import Reporter
from shipper.transfer.sinks import sink_error
from shipper.transfer.sources import Source


@dataclass
class Delivery:
    """What streaming gave each sending target: bytes sent, and an error (None: delivered)."""

    route_taken: str  # the route the bytes took: host-to-host, relay, direct, registry, bundle
    note: str = ""
    source_read: str = "save"  # store: the source's layer store was read directly; save: docker save
    target_notes: dict[str, str] = field(default_factory=dict)
    untag_after: dict[str, list[str]] = field(default_factory=dict)  # names to take off each target once its tags moved
    local_ids: dict[str, dict[str, str]] = field(default_factory=dict)  # target -> source image ID -> the ID it got there
    sent: dict[str, int] = field(default_factory=dict)
    wire: dict[str, int] = field(default_factory=dict)  # bytes on each target's link, where compression made them fewer
    errors: dict[str, ShipperError | None] = field(default_factory=dict)
    stream_error: ShipperError | None = None  # the source's stream broke: every target failed with this
    arrivals: dict[str, Any] = field(default_factory=dict)  # target -> its arrival check's outcome (commit.py), made once
    resumable: set[str] = field(default_factory=set)  # targets whose receiver keeps what arrived after a cut (resume.py)


def deliver(
    route_taken: str, source: Source, sinks: Mapping[str, tuple[Host, QueueSink]], check_ids: Sequence[str], layers: Mapping[str, Sequence[str]],
    reporter: Reporter, absent: Iterable[str] = (),
) -> Delivery:  # fmt: skip
    """Stream ``source`` into every sink (target name -> (host, its load)); what each target got.

    A stream that is not sound fails every target with ``source.broken(exc)`` (each load then sees a
    broken stream and creates nothing); otherwise each target's own load decides, and the source's
    own failure (docker save's words) is every target's error when it has one."""
    loads = [sink for _, sink in sinks.values()]
    try:
        pump(source.chunks(), loads, check_ids, lambda sink: reporter.advance(sink.name, sink.passed), layers=layers, absent=absent)
    except (ArchiveError, ShipperError) as exc:
        source.abort()
        error = source.broken(exc)
        for load in loads:
            load.abort()
        return Delivery(route_taken, sent={n: s.sent for n, (_, s) in sinks.items()}, errors={n: error for n in sinks}, stream_error=error)
    if ended_early(loads):
        source.abort()  # every target quit: stop the source, or it blocks on a pipe nobody reads
        failure = None
    else:
        failure = source.failure()
    for load in loads:  # under a rate limit, the queued bytes are still going out
        load.wait_passed(lambda sink: reporter.advance(sink.name, sink.passed))
    for name in sinks:
        reporter.phase(name, "loading")  # the bytes are there; the engine finishes the load, which may take a while
    for load in loads:
        load.finish()
    delivery = Delivery(route_taken, sent={n: s.sent for n, (_, s) in sinks.items()})
    for name, (host, sink) in sinks.items():
        delivery.errors[name] = failure or sink_error(host, sink)
        framer = getattr(sink, "framer", None)  # a relay's target leg, compressed
        if framer is not None:
            delivery.wire[name] = framer.wire_bytes
    return delivery
