"""The ``ssh`` command lines shipper runs: OpenSSH must find the same keys shipper (and paramiko) finds."""

from __future__ import annotations

import os
import pwd
from pathlib import Path

import pytest

from shipper.inventory.model import SSHSettings
from shipper.transport.openssh import ssh_argv


def settings(identity_files: tuple[str, ...] = ()) -> SSHSettings:
    return SSHSettings(alias="web1", hostname="10.0.0.5", port=22, user="deploy", identity_files=identity_files)


def keys_in(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "-i"]


def test_the_default_keys_of_home_are_named_when_home_is_not_the_password_databases(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # OpenSSH finds ~/.ssh through the password database, shipper through $HOME (sudo -E, a service's HOME, a CI job).
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("key")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert pwd.getpwuid(os.getuid()).pw_dir != str(tmp_path)

    assert keys_in(ssh_argv(settings(), "true")) == [str(tmp_path / ".ssh" / "id_ed25519")]


def test_keys_named_by_the_inventory_are_the_only_ones_given(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519").write_text("key")
    monkeypatch.setenv("HOME", str(tmp_path))

    assert keys_in(ssh_argv(settings(identity_files=("/keys/deploy",)), "true")) == ["/keys/deploy"]


def test_no_key_is_added_where_home_is_the_password_databases(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", pwd.getpwuid(os.getuid()).pw_dir)

    assert keys_in(ssh_argv(settings(), "true")) == []


def test_the_users_server_alive_settings_reach_every_ssh_leg_and_bad_ones_are_refused(tmp_path: Path) -> None:
    """ssh_config's ServerAliveInterval/CountMax decide when a silent peer is gone, for the ssh shipper runs here
    and for the one a source host runs to a target (host to host); the default is OpenSSH-like, 15 s x 4."""
    from shipper.errors import InventoryError
    from shipper.inventory.resolve import resolve_ssh
    from shipper.transport.openssh import peer_argv

    config = tmp_path / "config"
    config.write_text("Host web1\n  HostName 10.0.0.5\n  ServerAliveInterval 5\n  ServerAliveCountMax 3\n")
    impatient = resolve_ssh("web1", {"ssh_config_file": str(config)})
    plain = resolve_ssh("web2", {"ssh_config_file": str(config)})

    assert (impatient.alive_interval, impatient.alive_count, impatient.dead_after) == (5, 3, 15)
    assert plain.dead_after == 60
    for argv in (ssh_argv(impatient, "true"), peer_argv(impatient, "true")):
        assert "ServerAliveInterval=5" in argv and "ServerAliveCountMax=3" in argv
    config.write_text("Host web1\n  ServerAliveInterval soon\n")
    with pytest.raises(InventoryError, match="ServerAliveInterval 'soon'"):
        resolve_ssh("web1", {"ssh_config_file": str(config)})
