"""How shipper's paramiko sessions are set up: known_hosts read once per version, gateways' tokens expanded."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import paramiko

from shipper.inventory.model import SSHSettings
from shipper.transport.gateway import Gateway, open_gateway
from shipper.transport.ssh import PREFERRED_CIPHERS, _transport, known_host_keys


def key_line(host: str) -> str:
    key = paramiko.ECDSAKey.generate()
    return f"{host} {key.get_name()} {key.get_base64()}\n"


def test_known_hosts_files_are_parsed_once_and_shared_by_every_session(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(key_line("10.0.0.5"))
    first = known_host_keys((str(known), str(tmp_path / "missing")))
    assert known_host_keys((str(known), str(tmp_path / "missing"))) is first
    assert first.lookup("10.0.0.5") is not None


def test_a_known_hosts_file_that_changed_is_read_again(tmp_path: Path) -> None:
    known = tmp_path / "known_hosts"
    known.write_text(key_line("10.0.0.5"))
    before = known_host_keys([str(known)])
    with known.open("a") as out:  # as accept-new appends a host it met
        out.write(key_line("10.0.0.6"))
    os.utime(known, ns=(0, before_mtime := os.stat(known).st_mtime_ns + 1))
    after = known_host_keys([str(known)])
    assert after is not before and os.stat(known).st_mtime_ns == before_mtime
    assert after.lookup("10.0.0.6") is not None and before.lookup("10.0.0.6") is None


def test_a_directory_or_missing_file_in_known_hosts_is_skipped(tmp_path: Path) -> None:
    assert len(known_host_keys((str(tmp_path), str(tmp_path / "none")))) == 0


def test_sessions_offer_aes_gcm_first_and_keep_the_rest_for_older_servers() -> None:
    left, right = socket.socketpair()
    try:
        ciphers = _transport(left).get_security_options().ciphers
    finally:
        left.close()
        right.close()
    assert ciphers[: len(PREFERRED_CIPHERS)] == PREFERRED_CIPHERS
    assert "aes128-ctr" in ciphers


def test_a_gateway_command_gets_the_hosts_address_port_and_user(tmp_path: Path) -> None:
    settings = SSHSettings(alias="web1", hostname="10.0.0.5", port=2222, user="deploy")
    proxy = open_gateway("printf %s %h:%p:%r", settings)
    proxy.settimeout(10)
    try:
        assert proxy.recv(len("10.0.0.5:2222:deploy")) == b"10.0.0.5:2222:deploy"
    finally:
        proxy.close()


def test_a_gateway_that_exits_reads_as_an_end_of_file_at_once_and_says_why() -> None:
    # paramiko's own ProxyCommand spun on the closed pipe until the connect timeout (10 s of a core per host).
    gateway = Gateway("sh -c 'echo ssh: Could not resolve hostname jump >&2; exit 255'")
    gateway.settimeout(10)
    started = time.monotonic()
    try:
        assert gateway.recv(4) == b""
        assert time.monotonic() - started < 2
        assert gateway.said() == "ssh: Could not resolve hostname jump"
    finally:
        gateway.close()
    assert gateway.process.returncode == 255  # reaped
    gateway.close()  # twice is fine: no kill of a reaped pid


def test_hosts_that_name_different_known_hosts_files_each_keep_theirs_parsed(tmp_path: Path) -> None:
    # Two sites, each its own known_hosts: sessions alternating between them must not parse again each time.
    site1, site2 = tmp_path / "site1", tmp_path / "site2"
    site1.write_text(key_line("10.0.1.5"))
    site2.write_text(key_line("10.0.2.5"))
    first1, first2 = known_host_keys([str(site1)]), known_host_keys([str(site2)])
    assert known_host_keys([str(site1)]) is first1 and known_host_keys([str(site2)]) is first2
