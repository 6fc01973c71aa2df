"""shipper reads every inventory of the corpus exactly as ansible-core does.

ansible-core is the reference, installed with the test extras and run as a
subprocess (shipper never imports it). For each inventory of
``tests/inventories/corpus``:

- ``ansible-inventory --list`` and shipper agree on every group, its hosts
  and children (in order), and every effective variable of every host;
- ``ansible PATTERN --list-hosts`` and shipper's target selection agree,
  host for host and in order;
- the address, port, user and key that ``ansible -m ping`` hands to ssh (a
  stand-in ssh records its arguments) are the ones shipper dials.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from shipper.inventory import load_inventory, select
from shipper.inventory.export import as_list

CORPUS = Path(__file__).parent / "corpus"
BIN = Path(sys.executable).parent

SOURCES = {
    "ini-basic": "hosts",
    "yaml-basic": "hosts.yml",
    "precedence-files": "hosts.yml",
    "depth-priority": "hosts.ini",
    "vars-dirs": "hosts.yml",
    "inventory-dir": "inv",
    "script-meta": "inventory.py",
    "script-nometa": "inventory.py",
    "unsafe-vault": "hosts.yml",
    "ungrouped-empty": "hosts.yml",
    "addresses": "hosts",
    "login-aliases": "hosts.yml",
    "other-roles": "hosts.yml",
    "yaml-as-json": "hosts.json",
    "many-groups": "hosts.ini",
}

PATTERNS = {
    "ini-basic": ["web", "prod:&web", "all:!web", "web[0]", "web[1:2]", "~web-[ac]", "web0*", "ungrouped", "later:db"],
    "yaml-basic": ["prod", "prod:!db", "web:&prod", "~mq[ab]", "empty", "all", "!web", "web01,db1,web01"],
    "depth-priority": ["grand", "alpha:&beta", "alpha:!gamma", "parent[-1]"],
    "many-groups": ["region:&web:!canary", "web:db", "h*", "eu:us:&canary"],
    "ungrouped-empty": ["ungrouped", "empty_parent", "nothing:web"],
}


def ansible(tool: str, *args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    # Run from a scratch directory with a scratch HOME: no ansible.cfg, no ~/.ansible.cfg.
    environment = {"PATH": os.environ["PATH"], "HOME": os.environ["HOME"], "ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": str(cwd / "tmp"), **(env or {})}
    done = subprocess.run([str(BIN / tool), *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=120)
    assert done.returncode in (0, 4), f"{tool} {' '.join(args)} failed:\n{done.stderr}"
    return done.stdout


def source(case: str) -> str:
    return str(CORPUS / case / SOURCES[case])


def ansible_list(path: str, cwd: Path) -> dict[str, Any]:
    listed = json.loads(ansible("ansible-inventory", "-i", path, "--list", cwd=cwd))
    listed["_meta"].pop("profile", None)
    return listed


def test_the_corpus_has_at_least_a_dozen_inventories_in_both_formats() -> None:
    assert len(SOURCES) >= 12
    assert all((CORPUS / case / name).exists() for case, name in SOURCES.items())


@pytest.mark.parametrize("case", sorted(SOURCES))
def test_groups_hosts_and_every_effective_variable_equal_ansible_inventory_list(case: str, tmp_path: Path) -> None:
    expected = ansible_list(source(case), tmp_path)

    assert as_list(load_inventory(source(case))) == expected


def test_the_json_that_ansible_inventory_prints_is_an_inventory_shipper_reads(tmp_path: Path) -> None:
    # What a user of any inventory plugin does: ansible-inventory -i aws_ec2.yml --list > fleet.json.
    for case in ("yaml-basic", "ini-basic", "unsafe-vault", "depth-priority"):
        printed = ansible("ansible-inventory", "-i", source(case), "--list", cwd=tmp_path)
        fleet = tmp_path / f"{case}.json"
        fleet.write_text(printed)

        assert as_list(load_inventory(fleet)) == ansible_list(source(case), tmp_path), case


@pytest.mark.parametrize("case", sorted(PATTERNS))
def test_host_patterns_select_what_ansible_list_hosts_selects(case: str, tmp_path: Path) -> None:
    inventory = load_inventory(source(case))
    for pattern in PATTERNS[case]:
        printed = ansible("ansible", "-i", source(case), pattern, "--list-hosts", cwd=tmp_path)
        expected = [line.strip() for line in printed.splitlines()[1:] if line.strip()]

        assert [h.name for h in select(inventory, pattern)] == expected, pattern


def ansible_logins(path: str, tmp_path: Path) -> dict[str, dict[str, Any]]:
    """What ansible -m ping hands to ssh for each host, read off a stand-in ssh that records its arguments."""
    log = tmp_path / "ssh-log"
    log.mkdir()
    fake = tmp_path / "ssh"
    fake.write_text('#!/bin/sh\nprintf "%s\\n" "$@" > "$FAKE_SSH_LOG/$$.args"\nexit 255\n')
    fake.chmod(0o755)
    env = {"ANSIBLE_SSH_EXECUTABLE": str(fake), "FAKE_SSH_LOG": str(log), "ANSIBLE_HOST_KEY_CHECKING": "False", "ANSIBLE_SSH_PIPELINING": "False"}
    ansible("ansible", "-i", path, "all", "-m", "ping", "-c", "ssh", "-f", "10", cwd=tmp_path, env=env)
    logins: dict[str, dict[str, Any]] = {}
    for record in log.iterdir():
        args = record.read_text().splitlines()
        options = dict(a.split("=", 1) for a, prev in zip(args[1:], args) if prev == "-o" and "=" in a)
        address = args[-2]  # then the remote command, one argument
        logins[address + ":" + options.get("Port", "22")] = {
            "address": address,
            "port": int(options.get("Port", 22)),
            "user": options.get("User", '"root"').strip('"'),
            "keys": [options["IdentityFile"].strip('"')] if "IdentityFile" in options else [],
        }
    return logins


@pytest.mark.parametrize("case", ["login-aliases", "addresses", "ini-basic", "precedence-files", "script-meta"])
def test_each_host_is_dialled_with_the_address_port_user_and_key_ansible_uses(case: str, tmp_path: Path) -> None:
    expected = ansible_logins(source(case), tmp_path)
    ours = {}
    hosts = load_inventory(source(case)).hosts.values()
    for host in hosts:
        ssh = host.ssh
        ours[f"{ssh.hostname}:{ssh.port}"] = {"address": ssh.hostname, "port": ssh.port, "user": ssh.user, "keys": list(ssh.identity_files)}

    assert len(ours) == len(hosts), "two hosts of the case dial the same address and port: the stand-in ssh cannot tell them apart"
    assert ours == expected
