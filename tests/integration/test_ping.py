"""``shipper ping``: every engine's facts, and a clear error for each way reaching one fails."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from shipper.lab import Lab
from tests.conftest import ShipperRunner, events


def test_ping_reaches_every_engine_over_ssh_and_reports_its_facts(shipper: ShipperRunner, ssh_inventory: str) -> None:
    result = shipper("ping", "-i", ssh_inventory, "all", "--json")

    assert result.status == 0, result.stderr
    reports = events(result.stdout, "ping")
    assert [r["host"] for r in reports] == ["a", "b", "c"]
    for report in reports:
        assert report["ok"] and report["engine_url"].startswith("ssh://root@127.0.9.")
        engine = report["engine"]
        assert engine["product"] == "docker" and engine["version"].startswith("20.10")
        assert (engine["image_store"], engine["os"]) == ("classic", "linux")
        assert report["rtt_ms"] > 0
        assert report["channel"] == "streamlocal"  # a channel to the engine's socket, no process started on the host


def test_ping_prints_a_table_on_a_terminal_workflow(shipper: ShipperRunner, ssh_inventory: str) -> None:
    result = shipper("ping", "-i", ssh_inventory, "web")

    assert result.status == 0
    assert [line.split()[:2] for line in result.stdout.splitlines()] == [["HOST", "STATUS"], ["b", "ok"], ["c", "ok"]]


def test_ping_reaches_engines_through_unix_sockets(shipper: ShipperRunner, local_inventory: str) -> None:
    assert shipper("ping", "-i", local_inventory, "all").status == 0


def tls_inventory(lab: Lab, tmp_path: Path, ca: str) -> str:
    path = tmp_path / "tls.yml"
    path.write_text(
        f"all:\n  hosts:\n    a-tls:\n      docker_host: {lab.engine_tls_url('a')}\n"
        f"      docker_tls_ca: {ca}\n      docker_tls_cert: {lab.tls_file('client.crt')}\n"
        f"      docker_tls_key: {lab.tls_file('client.key')}\n"
    )
    return str(path)


def test_ping_reaches_an_engine_over_tcp_with_tls(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    result = shipper("ping", "-i", tls_inventory(lab, tmp_path, str(lab.tls_file("ca.crt"))), "a-tls")

    assert result.status == 0, result.stderr


def test_a_tls_engine_whose_certificate_is_not_from_the_given_ca_is_refused(
    shipper: ShipperRunner, lab: Lab, tmp_path: Path
) -> None:
    from shipper import pki

    other_ca = tmp_path / "other-ca.crt"
    pki.new_ca("someone else").write(other_ca)

    result = shipper("ping", "-i", tls_inventory(lab, tmp_path, str(other_ca)), "a-tls")

    assert result.status == 3
    assert "its TLS certificate is not trusted by docker_tls_ca" in result.stderr


def test_a_stopped_engine_is_reported_and_the_others_still_are(shipper: ShipperRunner, lab: Lab, ssh_inventory: str) -> None:
    lab.stop_engine("c")
    try:
        result = shipper("ping", "-i", ssh_inventory, "all", "--json")
        table = shipper("ping", "-i", ssh_inventory, "all")
    finally:
        lab.start_host("c")

    assert result.status == 4
    reports = {r["host"]: r for r in events(result.stdout, "ping")}
    assert reports["a"]["ok"] and reports["b"]["ok"]
    error = reports["c"]["error"]
    assert error["type"] == "EngineUnreachable"
    assert error["message"].startswith(f"cannot reach the engine on c (ssh://root@{lab.address('c')}:2222): ")
    assert f"Cannot connect to the Docker daemon at unix://{lab.engine('c').socket}" in error["message"]
    assert "start dockerd" in error["hint"]
    assert table.status == 4
    assert table.stderr.startswith("error: cannot reach the engine on c")


def write_inventory(lab: Lab, tmp_path: Path, **settings: str) -> str:
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    path = tmp_path / "hosts.yml"
    path.write_text(f"all:\n  vars:\n    ssh_config_file: {lab.ssh_config}\n  hosts:\n    a:\n{lines}")
    return str(path)


def test_an_ssh_host_that_refuses_the_key_fails_with_exit_3_and_a_hint(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    import subprocess

    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)

    result = shipper("ping", "-i", write_inventory(lab, tmp_path, ssh_key=str(stranger)), "a")

    assert result.status == 3
    assert f"cannot log in to host a over SSH (root@{lab.address('a')}:2222): the server refused the key ({stranger})" in result.stderr
    assert "hint: check ssh_user/ssh_key" in result.stderr


def test_an_unknown_host_key_is_refused_by_default(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")

    result = shipper("ping", "-i", write_inventory(lab, tmp_path, ssh_known_hosts_file=str(empty)), "a")

    assert result.status == 3
    assert "its host key (ssh-ed25519 SHA256:" in result.stderr and "is not in known_hosts" in result.stderr
    assert "ssh-keyscan -p 2222" in result.stderr


def test_accept_new_trusts_a_first_seen_host_and_remembers_it(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    fresh = tmp_path / "known_hosts"
    inventory = write_inventory(lab, tmp_path, ssh_known_hosts_file=str(fresh), ssh_strict_host_key_checking="accept-new")

    assert shipper("ping", "-i", inventory, "a").status == 0
    assert f"[{lab.address('a')}]:2222 ssh-ed25519 " in fresh.read_text()


def test_a_changed_host_key_is_refused_even_with_accept_new(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    wrong = tmp_path / "known_hosts"
    other_host_line = lab.sshd("b").known_hosts_line().split(" ", 1)[1]
    wrong.write_text(f"[{lab.address('a')}]:2222 {other_host_line}")
    inventory = write_inventory(lab, tmp_path, ssh_known_hosts_file=str(wrong), ssh_strict_host_key_checking="accept-new")

    result = shipper("ping", "-i", inventory, "a")

    assert result.status == 3
    assert "its host key changed" in result.stderr


@pytest.mark.parametrize("port", ["1"])
def test_nothing_listening_is_a_connection_refused(shipper: ShipperRunner, lab: Lab, tmp_path: Path, port: str) -> None:
    result = shipper("ping", "-i", write_inventory(lab, tmp_path, ssh_port=port), "a")

    assert result.status == 3
    assert "connection refused" in result.stderr and "is sshd running" in result.stderr


def plain_inventory(lab: Lab, tmp_path: Path, **settings: str) -> str:
    """Host a without the lab's ssh_config: its address, port and known_hosts only, plus ``settings``."""
    lines = "".join(f"      {k}: {v}\n" for k, v in settings.items())
    path = tmp_path / "plain.yml"
    path.write_text(
        f"all:\n  hosts:\n    a:\n      ansible_host: {lab.address('a')}\n      ansible_port: 2222\n      ansible_user: root\n"
        f"      ssh_known_hosts_file: {lab.known_hosts}\n{lines}"
    )
    return str(path)


def test_a_key_file_that_does_not_exist_is_named_with_the_setting_to_fix(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    result = shipper("ping", "-i", plain_inventory(lab, tmp_path, ansible_ssh_private_key_file=str(tmp_path / "gone")), "a")

    assert result.status == 3
    assert f"the key file {tmp_path / 'gone'} does not exist" in result.stderr
    assert "hint: fix ssh_key (or ansible_ssh_private_key_file)" in result.stderr


def test_a_key_with_a_passphrase_says_to_load_it_into_the_agent(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    import subprocess

    locked = tmp_path / "locked_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "secret phrase", "-f", str(locked)], check=True)

    result = shipper("ping", "-i", plain_inventory(lab, tmp_path, ssh_key=str(locked)), "a")

    assert result.status == 3
    assert "is protected by a passphrase" in result.stderr and "ssh-add" in result.stderr


def test_no_key_at_all_says_where_shipper_looked(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    # HOME is a scratch directory without ~/.ssh, and no agent runs: nothing to offer.
    result = shipper("ping", "-i", plain_inventory(lab, tmp_path), "a")

    assert result.status == 3
    assert "shipper has no key to offer (no agent, no ~/.ssh/id_* and no ssh_key)" in result.stderr


def gateway_inventory(lab: Lab, tmp_path: Path) -> tuple[str, Path]:
    """Host a reached two more ways: through a ProxyCommand, and through a ProxyJump host known only to this
    inventory's ssh_config file (not ~/.ssh/config); each gateway leaves a line in ``marks``."""
    marks, config = tmp_path / "marks", tmp_path / "ssh_config"
    hop = f"ssh -F {config} -W %h:%p b"
    a = lab.ssh_config.read_text().split("Host a\n", 1)[1].split("\nHost ", 1)[0]
    config.write_text(
        lab.ssh_config.read_text()
        + f"\nHost a-gw\n{a}\n  ProxyCommand sh -c 'echo gw %h:%p:%r >> {marks}; exec {hop}'\n"
        + f"\nHost a-jump\n{a}\n  ProxyJump jump\n"
        + f"\nHost jump\n{lab.ssh_config.read_text().split('Host b' + chr(10), 1)[1].split(chr(10) + 'Host ', 1)[0]}\n"
        + f"  ProxyCommand sh -c 'echo jump >> {marks}; exec {hop}'\n"
    )
    inventory = tmp_path / "hosts.yml"
    inventory.write_text(f"all:\n  vars:\n    ssh_config_file: {config}\n  hosts:\n    a-gw:\n    a-jump:\n")
    return str(inventory), marks


def test_a_host_whose_jump_host_fails_is_reported_with_the_gateways_own_words_at_once(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    inventory, _ = gateway_inventory(lab, tmp_path)
    config = tmp_path / "ssh_config"
    a = lab.ssh_config.read_text().split("Host a\n", 1)[1].split("\nHost ", 1)[0]
    config.write_text(f"Host a-lost\n{a}\n  ProxyJump nowhere.invalid\n\n" + config.read_text())
    Path(inventory).write_text(f"all:\n  vars:\n    ssh_config_file: {config}\n  hosts:\n    a-lost:\n")
    started = time.monotonic()

    result = shipper("ping", "-i", inventory, "a-lost")

    assert result.status == 3, result.stderr
    assert time.monotonic() - started < 5  # paramiko's ProxyCommand spun until the 10 s connect timeout
    assert "through its gateway (ProxyJump nowhere.invalid): ssh: Could not resolve hostname nowhere.invalid" in result.stderr


def test_ping_reaches_a_host_through_its_proxycommand_and_its_proxyjump_host(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    inventory, marks = gateway_inventory(lab, tmp_path)

    result = shipper("ping", "-i", inventory, "all", "--json")

    assert result.status == 0, result.stderr
    assert [r["ok"] for r in events(result.stdout, "ping")] == [True, True]
    lines = marks.read_text().splitlines()
    assert f"gw {lab.address('a')}:2222:root" in lines  # the host's own address, port and user in the tokens
    assert "jump" in lines  # the jump host was found in the inventory's ssh_config file, and used


def test_a_bastion_in_ansible_ssh_common_args_beats_ssh_configs_gateway_as_on_sshs_command_line(shipper: ShipperRunner, lab: Lab, tmp_path: Path) -> None:
    # Ansible's documented way to a host behind a jump host; a-gw's own ssh_config ProxyCommand is not used.
    _, marks = gateway_inventory(lab, tmp_path)
    inventory = tmp_path / "hosts.ini"
    inventory.write_text(f"[all:vars]\nssh_config_file={tmp_path / 'ssh_config'}\n\n[dmz]\na-gw ansible_ssh_common_args='-o ProxyJump=jump'\n")

    result = shipper("ping", "-i", str(inventory), "dmz", "--json")

    assert result.status == 0, result.stderr
    assert [r["ok"] for r in events(result.stdout, "ping")] == [True]
    assert marks.read_text().splitlines() == ["jump"]
