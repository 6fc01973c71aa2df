"""Far links (#19): every lab host's sshd behind a relay that holds each byte 50 ms each way (the kernel here has
no netem), so a round trip costs 100 ms more, for shipper's sessions and for the source's SSH to its targets.
An unchanged target costs at most 3 requests after connecting; a move across such links arrives whole."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from shipper.lab import Lab, Layer, SyntheticImage, image_id
from shipper.lab.delay import DelayRelay, far_inventory, relays_for
from tests.conftest import ShipperRunner, one
from tests.integration.helpers import image_id_of, remove

RTT = 0.1
FAR = SyntheticImage("lab/far-link:1", (Layer(2 << 20, "far-link-base"), Layer(1 << 20, "far-link-top")))


@pytest.fixture
def far(lab: Lab) -> Iterator[tuple[str, list[DelayRelay]]]:
    relays = relays_for(lab, RTT)
    try:
        yield str(far_inventory(lab)), relays
    finally:
        for relay in relays:
            relay.stop()


def test_the_relay_adds_its_round_trip_and_passes_every_byte() -> None:
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]

    def echo() -> None:
        conn, _ = server.accept()
        while data := conn.recv(1 << 16):
            conn.sendall(data)
        conn.close()

    threading.Thread(target=echo, daemon=True).start()
    payload = bytes(range(256)) * 8192  # 2 MiB
    with DelayRelay(("127.0.0.1", 0), ("127.0.0.1", port), RTT / 2) as relay:
        assert relay.listen[1] == 0 and relay.bound is not None
        with socket.create_connection(relay.bound) as client:
            start = time.monotonic()
            client.sendall(b"x")
            assert client.recv(1) == b"x"
            round_trip = time.monotonic() - start
            threading.Thread(target=lambda: (client.sendall(payload), client.shutdown(socket.SHUT_WR)), daemon=True).start()
            received = bytearray()
            while data := client.recv(1 << 20):
                received += data
    server.close()

    assert RTT <= round_trip < RTT + 0.25  # the upper bound generous: a busy machine runs the relay late
    assert bytes(received) == payload


def test_an_unchanged_target_across_a_far_link_costs_at_most_3_requests_after_connecting(
    shipper: ShipperRunner, lab: Lab, far: tuple[str, list[DelayRelay]]
) -> None:  # fmt: skip
    inventory, _ = far
    lab.load_images("a", [FAR])
    lab.load_images("b", [FAR])

    pinged = one(shipper("ping", "b", "-i", inventory, "--json").stdout, "ping")
    result = shipper("move", FAR.name, "--from", "a", "--to", "b", "-i", inventory, "--json")

    assert pinged["ok"] and pinged["rtt_ms"] >= RTT * 1000  # the relay's delay is on the way
    assert result.status == 0, result.stderr
    unchanged = one(result.stdout, "result")
    assert unchanged["status"] == "unchanged" and unchanged["round_trips"] <= 3, unchanged


def test_a_move_across_far_links_arrives_whole_host_to_host(shipper: ShipperRunner, lab: Lab, far: tuple[str, list[DelayRelay]]) -> None:
    inventory, relays = far
    lab.load_images("a", [FAR])
    remove(lab, "b", FAR.name, image_id(FAR))
    a_relay, b_relay = relays[lab.names.index("a")], relays[lab.names.index("b")]
    before, source_before = b_relay.connections, a_relay.connections

    result = shipper("move", FAR.name, "--from", "a", "--to", "b", "-i", inventory, "--json")

    assert result.status == 0, result.stderr
    moved = one(result.stdout, "result")
    assert moved["status"] == "moved" and moved["route"] == "host-to-host"
    assert image_id_of(lab, "b", FAR.name) == image_id(FAR)
    assert b_relay.connections - before == 2  # shipper's session, and the source's SSH to b: both crossed the far link
    assert a_relay.connections - source_before == 1  # one login to the source: its engine and its program share it
