"""Look at a set of hosts: are their engines up, and what images do they hold."""

from __future__ import annotations

import fnmatch

from dataclasses import dataclass, field
from collections.abc import Sequence

from shipper.engine import EngineInfo, ImageSummary, connect
from shipper.inventory.model import Host
from shipper.hostpool import Outcome, for_each_host


@dataclass(frozen=True)
class PingReport:
    """An engine's facts and the round trip of one ``/_ping``."""

    info: EngineInfo
    rtt_seconds: float
    channel: str = ""  # behind SSH: "streamlocal" (a channel to the engine's socket) or "dial-stdio"


def _ping(host: Host) -> PingReport:
    with connect(host) as engine:
        rtt = engine.ping()  # the connection is already open: this is the engine's round trip alone
        return PingReport(engine.info(), rtt, engine.channel)


def ping(hosts: Sequence[Host]) -> list[Outcome[PingReport]]:
    """Reach every host's engine at once; one outcome per host."""
    return for_each_host(hosts, _ping)


@dataclass
class ImageRow:
    """One image (one ID under one name) and which hosts hold it."""

    name: str  # repo:tag, or "<none>" for an untagged image
    id: str
    size: int
    hosts: list[str] = field(default_factory=list)


def _list(host: Host) -> list[ImageSummary]:
    with connect(host) as engine:
        return engine.images()


def matches_reference(name: str, patterns: Sequence[str]) -> bool:
    """Docker's ``--filter reference=PATTERN``: a glob over ``repo:tag`` or ``repo`` (any pattern may match)."""
    if not patterns:
        return True
    repo = name.rsplit(":", 1)[0] if ":" in name.rsplit("/", 1)[-1] else name
    return any(fnmatch.fnmatchcase(name, p) or fnmatch.fnmatchcase(repo, p) for p in patterns)


def images(hosts: Sequence[Host], untagged: bool = False, references: Sequence[str] = ()) -> tuple[list[ImageRow], list[Outcome[list[ImageSummary]]]]:
    """Images across hosts, one row per (name, ID), sorted by name; ``references``: Docker's reference filters."""
    outcomes = for_each_host(hosts, _list)
    rows: dict[tuple[str, str], ImageRow] = {}
    for outcome in outcomes:
        for image in outcome.value or []:
            names = image.tags or (("<none>",) if untagged else ())
            for name in (n for n in names if matches_reference(n, references)):
                row = rows.setdefault((name, image.id), ImageRow(name, image.id, image.size))
                row.hosts.append(outcome.host.name)
    return sorted(rows.values(), key=lambda r: (r.name == "<none>", r.name, r.id)), outcomes
