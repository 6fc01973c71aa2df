"""Which engine socket a channel goes straight to: the one ``docker system dial-stdio`` would reach, else none."""

from __future__ import annotations

import pytest

from shipper.engine.streamlocal import DEFAULT_SOCKET, socket_from_probe


@pytest.mark.parametrize(
    ("output", "socket"),
    [
        ("shipper-probe|||\n", None),  # not the probe's shape: dial-stdio
        ("shipper-probe||||\n", DEFAULT_SOCKET),  # nothing set: the default socket, as docker's CLI
        ("shipper-probe|unix:///run/user/1000/docker.sock|||\n", "/run/user/1000/docker.sock"),  # rootless, DOCKER_HOST in .bashrc
        ("welcome banner\nshipper-probe||||\n", DEFAULT_SOCKET),  # a chatty shell start: the last line counts
        ("shipper-probe|tcp://10.0.0.5:2376|||\n", None),  # only dial-stdio knows how to go on from there
        ("shipper-probe|unix://relative.sock|||\n", None),
        ("shipper-probe||remote||\n", None),  # DOCKER_CONTEXT
        ("shipper-probe|||context|\n", None),  # docker context use
        ("fish: Unsupported use of '$'\n", None),  # a shell that is not POSIX sh
        ("", None),
    ],
)
def test_the_socket_is_the_one_dial_stdio_would_reach_or_none(output: str, socket: str | None) -> None:
    assert socket_from_probe(output) == socket
