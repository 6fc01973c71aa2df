"""Moving bytes from a source to targets' loads: sources, sinks, one delivery loop, and the host-to-host
program. ``ops/`` plans and decides; this carries out a delivery, for moves and bundle loads alike.

The names below are imported when first used: planning (``transfer.plan``, ``transfer.survey``) does not pay for
the delivery's machinery (archives, bundles, compression), which a dry-run never runs."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shipper.transfer.delivery import Delivery, deliver
    from shipper.transfer.plan import SaveRequest
    from shipper.transfer.program import HostToHost, SourceProgram, host_to_host
    from shipper.transfer.sinks import make_sink, sink_error
    from shipper.transfer.sources import FileSource, Source, SourceFailed, make_source

_HOMES = {
    "Delivery": "delivery", "deliver": "delivery",
    "SaveRequest": "plan",
    "HostToHost": "program", "SourceProgram": "program", "host_to_host": "program",
    "make_sink": "sinks", "sink_error": "sinks",
    "FileSource": "sources", "Source": "sources", "SourceFailed": "sources", "make_source": "sources",
}  # fmt: skip

__all__ = ["Delivery", "FileSource", "HostToHost", "SaveRequest", "Source", "SourceFailed", "SourceProgram", "deliver", "host_to_host", "make_sink", "make_source", "sink_error"]


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"shipper.transfer.{home}"), name)
