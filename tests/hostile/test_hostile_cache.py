"""A site cache that does not answer as distribution's does: filling it ahead of its site (ops/cache_fill.py) gives
up in bounded time, with a reason, never reads the blobs it is sent, and the move then pulls the old way."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shipper.errors import ShipperError
from shipper.ops import cache_fill
from shipper.registry import Address, Credentials, RegistryClient
from tests.hostile.server import HostileServer, Reply, endless

CONFIG = "sha256:" + "c" * 64
LAYER = "sha256:" + "1" * 64
MANIFEST = json.dumps({
    "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": CONFIG, "size": 900},
    "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": LAYER, "size": 100 << 20}],
}).encode()  # fmt: skip
MANIFEST_DIGEST = "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def cache() -> Iterator[HostileServer]:
    """Answers the manifest, and every blob whole and without end (200), whatever range is asked for."""
    with HostileServer() as server:
        server.route("GET", "/v2/app/manifests/", lambda r: Reply(200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, MANIFEST))
        server.route("GET", "/v2/app/blobs/", lambda r: Reply(200, {"Content-Type": "application/octet-stream"}, endless(), chunked=True))
        yield server


def test_a_cache_that_serves_no_byte_ranges_is_given_up_on_soon_without_reading_what_it_sends(cache: HostileServer) -> None:
    clock = Clock()
    with RegistryClient(Address(cache.address, plain_http=True), Credentials("site", "pw", "test"), timeout=5.0) as client:
        filled = cache_fill.fill(client, [("app", MANIFEST_DIGEST)], clock=lambda: clock.now, sleep=clock.sleep)

    assert f"it answered no byte range of blob {CONFIG}" in filled.error
    assert clock.now <= cache_fill.SMALL_BLOB_SECONDS + cache_fill.MAX_PAUSE
    blob_requests = [s for s in cache.seen if "/blobs/" in s.path]
    assert blob_requests and all(s.headers.get("range") == "bytes=0-0" for s in blob_requests)


def test_a_filling_waiting_on_a_cache_that_never_answers_ends_at_once_when_stopped() -> None:
    """Stop() (the move is being interrupted): the question in flight fails at once, not after its timeout, no
    other question is sent, and the pauses between questions end."""
    with socket.create_server(("127.0.0.1", 0)) as silent:  # the kernel accepts; nothing ever answers
        stop = cache_fill.Stop()
        address = Address(f"127.0.0.1:{silent.getsockname()[1]}", plain_http=True)
        with RegistryClient(address, Credentials("site", "pw", "test"), timeout=30.0) as client:
            threading.Timer(0.5, stop).start()
            began = time.monotonic()
            filled = cache_fill.fill(stop.watch(client), [("app", MANIFEST_DIGEST)], sleep=stop.sleep)
            ended = time.monotonic() - began
            with pytest.raises(ShipperError, match="stopped"):
                client.ping()

    assert filled.error and ended < 2, (ended, filled)
