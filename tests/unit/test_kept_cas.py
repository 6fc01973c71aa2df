"""The CAs registry up keeps on this machine (shipper/registry/kept_cas.py): per address, forgotten only when theirs."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.registry import kept_cas

CA, OTHER = b"-----BEGIN CERTIFICATE-----\nca\n", b"-----BEGIN CERTIFICATE-----\nother\n"


@pytest.fixture(autouse=True)
def config_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    return tmp_path


def test_a_ca_is_kept_per_address_readable_by_all_and_written_once(config_home: Path) -> None:
    assert kept_cas.keep("reg.example:5000", CA) is True
    assert kept_cas.keep("reg.example:5000", CA) is False  # already there: no change to report
    path = config_home / "shipper" / "certs.d" / "reg.example:5000" / "ca.crt"
    assert kept_cas.kept_ca("reg.example:5000") == path and path.read_bytes() == CA
    assert path.stat().st_mode & 0o777 == 0o644
    assert kept_cas.kept_ca("reg.example:5001") is None  # another port is another registry


def test_a_check_says_what_would_be_kept_and_writes_nothing() -> None:
    assert kept_cas.keep("reg.example:5000", CA, check=True) is True
    assert kept_cas.kept_ca("reg.example:5000") is None


def test_forgetting_a_registry_removes_its_ca_under_every_name_and_no_other_registrys() -> None:
    for address in ("reg.example:5000", "10.0.0.5:5000"):
        kept_cas.keep(address, CA)
    kept_cas.keep("other.example:5000", OTHER)  # another registry on the same port, elsewhere
    kept_cas.keep("reg.example:6000", CA)  # the same CA at another port: another registry of that host

    assert sorted(kept_cas.forget(5000, CA)) == ["10.0.0.5:5000", "reg.example:5000"]
    assert kept_cas.kept_ca("other.example:5000") is not None and kept_cas.kept_ca("reg.example:6000") is not None


@pytest.mark.parametrize("address", ["../../etc:5000", "a/b:5000", ".hidden:5000", "reg.example", "reg.example:5000/x", "reg..:5000\n"])
def test_what_is_no_host_and_port_is_never_kept_nor_read(config_home: Path, address: str) -> None:
    """A hostile inventory's host name must not name a file outside the directory."""
    assert kept_cas.keep(address, CA) is False
    assert kept_cas.kept_ca(address) is None
    assert not any(config_home.rglob("ca.crt"))


def test_ipv6_and_ipv4_addresses_are_kept() -> None:
    for address in ("[fd00::5]:5000", "10.0.0.5:5000"):
        assert kept_cas.keep(address, CA) is True and kept_cas.kept_ca(address) is not None
