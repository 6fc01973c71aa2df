"""Site caches filled before their sites pull, so that each blob crosses from the central registry to a cache once.

Distribution's proxy mode (a site cache, ``registry up --mirror-of``) serves a
blob it does not hold by fetching it from its upstream for that request, and,
for the first such request, fetches it a second time to keep: the first pull
through a cold cache costs the central registry's uplink two copies, and each
pull that asks while the blob is still on its way in one more
(distribution 2.8, registry/proxy/proxyblobstore.go).

So shipper fills each cache itself before any target pulls: it reads each
image's manifest through the cache (kept at once), asks for each blob's first
byte and hangs up on the answer (``RegistryClient.holds_blob``): the cache
goes on keeping the blob, one copy from the upstream, while almost nothing is
served. Then it asks again, smallest blob first, until the cache answers each
from its own storage. A question about a blob still on its way in costs the
upstream what crosses before the cache notices the hang-up (~200 KB); the
pauses between questions grow with the time waited, so there are few.

A cache that cannot be reached from here, serves no byte ranges (so the
questions cannot tell), or stops filling, is not an error:
its targets pull the way they did before (one of them first, the rest from
the warm cache), and the move goes on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from shipper.errors import RegistryNoAnswer, ShipperError
from shipper.registry import RegistryClient

SMALL_BLOB, SMALL_BLOB_SECONDS = 64 << 10, 15.0  # a config this small not kept in this long: the cache answers no ranges
STALL_SECONDS = 120.0  # no blob newly kept for this long (or a slow blob's share of it): the cache is left to fill by pulls
SLOW_RATE = 256 << 10  # bytes/s: a cache filling slower than this from its upstream is stalled
# Pauses between questions: a fifth of the time waited so far, within these bounds. Each question about a blob still
# on its way in costs its upstream ~200 KB (what crosses before the cache notices the hang-up): at 100 Mbit/s a 100 MB
# fill is asked about ~12 times (~2%), and is seen complete at most a fifth of its time late.
FIRST_PAUSE, MAX_PAUSE, PAUSE_SHARE = 1.0, 10.0, 0.2


@dataclass(frozen=True)
class Blob:
    repository: str
    digest: str
    size: int


@dataclass(frozen=True)
class Filled:
    """How a cache's filling went: ``error`` empty when it holds every blob; ``unreachable`` when the cache did
    not answer at all (its site had better not wait on it a second time)."""

    blobs: int
    bytes: int
    seconds: float
    error: str = ""
    unreachable: bool = False


class Stop:
    """Ends every filling at once, from another thread (the move is being interrupted): their pauses end, and
    their clients' requests fail at once, so that no filling holds shipper up for its timeouts on the way out."""

    def __init__(self) -> None:
        self.event = threading.Event()
        self._clients: list[RegistryClient] = []
        self._lock = threading.Lock()

    def watch(self, client: RegistryClient) -> RegistryClient:
        with self._lock:
            self._clients.append(client)
            if self.event.is_set():
                client.abort()
        return client

    def __call__(self) -> None:
        with self._lock:
            self.event.set()
            for client in self._clients:
                client.abort()

    def sleep(self, seconds: float) -> None:
        self.event.wait(seconds)


def blobs_of(client: RegistryClient, images: Sequence[tuple[str, str]]) -> list[Blob]:
    """Every blob of ``images`` ((repository, manifest digest)), read through the cache (which keeps the manifests)."""
    found: dict[str, Blob] = {}
    for repository, digest in images:
        manifest = client.manifest(repository, digest)
        if manifest.is_index:
            raise ShipperError(f"{repository}@{digest} is an index: its platforms' manifests are not filled ahead")
        for descriptor in [manifest.config, *manifest.layers]:
            if descriptor is not None:
                found.setdefault(descriptor.digest, Blob(repository, descriptor.digest, descriptor.size))
    return sorted(found.values(), key=lambda blob: blob.size)


def fill(client: RegistryClient, images: Sequence[tuple[str, str]], clock: Callable[[], float] = time.monotonic,
         sleep: Callable[[float], None] = time.sleep) -> Filled:  # fmt: skip
    """Have the cache ``client`` talks to keep every blob of ``images``; how it went (never raises ShipperError)."""
    started = clock()
    try:
        blobs = blobs_of(client, images)
        pending = [blob for blob in blobs if not client.holds_blob(blob.repository, blob.digest)]  # asking starts each
        progress = clock()
        while pending:
            waited = clock() - started
            sleep(min(max(FIRST_PAUSE, waited * PAUSE_SHARE), MAX_PAUSE))
            while pending and client.holds_blob(pending[0].repository, pending[0].digest):
                pending.pop(0)
                progress = clock()
            if pending and pending[0].size <= SMALL_BLOB and clock() - started > SMALL_BLOB_SECONDS:
                # Kept in well under a second on any link: a cache that still answers it whole serves no byte
                # ranges (another registry than distribution), and would be waited for in vain.
                return Filled(len(blobs), sum(b.size for b in blobs), clock() - started,
                              f"it answered no byte range of blob {pending[0].digest} in {clock() - started:.0f} s")  # fmt: skip
            if pending and clock() - progress > max(STALL_SECONDS, pending[0].size / SLOW_RATE):
                return Filled(len(blobs), sum(b.size for b in blobs), clock() - started,
                              f"it kept no blob for {clock() - progress:.0f} s ({len(pending)} of {len(blobs)} still missing)")  # fmt: skip
        return Filled(len(blobs), sum(b.size for b in blobs), clock() - started)
    except RegistryNoAnswer as exc:
        return Filled(0, 0, clock() - started, exc.message[:200], unreachable=True)
    except ShipperError as exc:
        return Filled(0, 0, clock() - started, exc.message[:200])
