"""Certificates that Go and Python accept, and htpasswd files the registry accepts."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

import bcrypt
import pytest
from cryptography import x509

from shipper import htpasswd, pki


def test_a_server_certificate_names_every_address_and_chains_to_its_ca() -> None:
    ca = pki.new_ca("test CA")
    leaf = pki.issue(ca, "registry", ["10.0.0.5", "registry.example", "localhost"])

    san = leaf.cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address("10.0.0.5")]
    assert san.get_values_for_type(x509.DNSName) == ["registry.example", "localhost"]
    leaf.cert.verify_directly_issued_by(ca.cert)
    assert leaf.cert.extensions.get_extension_for_class(x509.BasicConstraints).critical
    assert ca.cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    ca_ski = ca.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    aki = leaf.cert.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    assert aki == ca_ski


def test_keys_are_written_readable_by_the_owner_only(tmp_path: Path) -> None:
    ca = pki.new_ca("test CA")
    ca.write(tmp_path / "ca.crt", tmp_path / "ca.key")

    assert stat.S_IMODE((tmp_path / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "ca.crt").stat().st_mode) & 0o044 == 0o044


def test_htpasswd_holds_only_bcrypt_entries_that_check() -> None:
    text = htpasswd.render({"alice": "s3cret", "bob": "hunter2"})

    assert htpasswd.is_bcrypt_file(text)
    assert "s3cret" not in text
    assert htpasswd.check(text, "alice", "s3cret")
    assert not htpasswd.check(text, "alice", "wrong")
    assert not htpasswd.is_bcrypt_file("alice:{SHA}abc\n")


def test_htpasswd_entries_are_hashed_at_cost_5_since_the_registry_checks_one_on_every_request() -> None:
    text = htpasswd.render({"alice": "s3cret"})
    older = "alice:" + bcrypt.hashpw(b"s3cret", bcrypt.gensalt(10)).decode() + "\n"

    assert text.startswith("alice:$2b$05$") and htpasswd.at_current_cost(text)
    assert htpasswd.holds(older, {"alice": "s3cret"}) and not htpasswd.at_current_cost(older)
    assert not htpasswd.holds(older, {"alice": "other"}) and not htpasswd.holds(older, {"alice": "s3cret", "bob": "x"})


def test_htpasswd_refuses_what_bcrypt_cannot_hold() -> None:
    with pytest.raises(htpasswd.HtpasswdError, match="73 bytes"):
        htpasswd.entry("alice", "x" * 73)
    with pytest.raises(htpasswd.HtpasswdError):
        htpasswd.entry("al:ice", "pw")
    with pytest.raises(htpasswd.HtpasswdError):
        htpasswd.entry("alice", "")
