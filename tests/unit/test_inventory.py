"""The inventory: Ansible's shape, shipper's precedence, and errors that name the line."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from shipper.errors import InventoryError
from shipper.inventory import load_inventory


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


ANSIBLE_INVENTORY = """\
all:
  vars:
    ansible_user: deploy
    ansible_python_interpreter: /usr/bin/python3
  hosts:
    bastion:
      ansible_host: 203.0.113.10
      ansible_port: 2201
  children:
    web:
      hosts:
        web[01:03].example.com:
    db:
      hosts:
        db-[a:b]:
          ansible_ssh_private_key_file: ~/.ssh/db_key
          ansible_connection: ssh
"""


def test_an_ansible_inventory_is_used_unchanged(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path, "hosts.yml", ANSIBLE_INVENTORY))

    assert list(inventory.hosts) == [
        "bastion", "web01.example.com", "web02.example.com", "web03.example.com", "db-a", "db-b",
    ]  # fmt: skip
    bastion = inventory.host("bastion")
    assert (bastion.ssh.hostname, bastion.ssh.port, bastion.ssh.user) == ("203.0.113.10", 2201, "deploy")
    assert bastion.engine.url == "ssh://deploy@203.0.113.10:2201"
    assert bastion.engine.derived
    db = inventory.host("db-b")
    assert db.ssh.identity_files == (str(Path.home() / ".ssh/db_key"),)
    assert db.vars["ansible_connection"] == "ssh"  # unknown ansible_* keys stay as free variables
    assert db.groups == ("db",)


def test_variables_apply_all_then_parent_then_child_then_host(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts.yml",
        """\
        all:
          vars: {level: all, from_all: 1, ssh_port: 2000}
          children:
            site:
              vars: {level: site, from_site: 1}
              children:
                web:
                  vars: {level: web}
                  hosts:
                    w1: {level: host}
                    w2:
        """,
    )
    inventory = load_inventory(path)

    assert inventory.host("w1").vars["level"] == "host"
    w2 = inventory.host("w2").vars
    assert (w2["level"], w2["from_all"], w2["from_site"], w2["ssh_port"]) == ("web", 1, 1, 2000)
    assert inventory.host("w2").groups == ("site", "web")


def test_group_vars_and_host_vars_files_beside_the_inventory_override_inline_values(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  vars: {colour: inline}\n  children:\n    web:\n      vars: {size: s}\n      hosts:\n        w1:\n")
    write(tmp_path, "group_vars/all.yml", "colour: from-file\n")
    write(tmp_path, "group_vars/web/10-size.yml", "size: m\n")
    write(tmp_path, "host_vars/w1.yaml", "ssh_user: alice\n")

    w1 = load_inventory(path).host("w1")

    assert (w1.vars["colour"], w1.vars["size"], w1.ssh.user) == ("from-file", "m", "alice")


def test_groups_at_the_same_depth_apply_in_name_order(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "beta:\n  vars: {x: beta}\n  hosts: {h:}\nalpha:\n  vars: {x: alpha}\n  hosts: {h:}\n")

    assert load_inventory(path).host("h").vars["x"] == "beta"


def test_shipper_names_win_over_ansible_aliases_at_one_level_but_not_across_levels(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts.yml",
        """\
        all:
          vars: {ssh_port: 2000}
          hosts:
            same_level: {ssh_port: 3000, ansible_port: 4000}
            host_alias: {ansible_port: 5000}
        """,
    )
    inventory = load_inventory(path)

    assert inventory.host("same_level").ssh.port == 3000
    assert inventory.host("host_alias").ssh.port == 5000


def test_ssh_config_fills_in_what_the_inventory_leaves_out(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "ssh_config",
        """\
        Host edge
          HostName 192.0.2.7
          Port 2222
          User ops
          IdentityFile ~/.ssh/edge
          UserKnownHostsFile /etc/shipper/known_hosts
          StrictHostKeyChecking accept-new
        """,
    )
    path = write(tmp_path, "hosts.yml", f"all:\n  vars: {{ssh_config_file: {config}}}\n  hosts:\n    edge:\n    edge2: {{ssh_host: edge, ssh_user: root}}\n")
    inventory = load_inventory(path)

    edge = inventory.host("edge").ssh
    assert (edge.hostname, edge.port, edge.user) == ("192.0.2.7", 2222, "ops")
    assert edge.identity_files == (str(Path.home() / ".ssh/edge"),)
    assert edge.known_hosts_files[0] == "/etc/shipper/known_hosts"
    assert edge.strict_host_key_checking == "accept-new"
    assert edge.sources["ssh_port"] == "ssh_config"
    edge2 = inventory.host("edge2").ssh
    assert (edge2.hostname, edge2.user) == ("192.0.2.7", "root")
    assert edge2.sources["ssh_user"] == "inventory"


def test_a_fleets_ssh_config_is_read_without_asking_for_the_local_user_per_block(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # paramiko asked the password database once per Host block a host is not in: 40 hosts x 41 blocks here.
    blocks = "".join(f"Host web{i}\n  HostName 192.0.2.{i}\n" for i in range(40))
    config = write(tmp_path, "ssh_config", blocks + "Match user nobody-here\n  Port 2200\n")
    hosts = "".join(f"    web{i}:\n" for i in range(40))
    path = write(tmp_path, "hosts.yml", f"all:\n  vars: {{ssh_config_file: {config}}}\n  hosts:\n{hosts}")
    import getpass
    asked = []
    real = getpass.getuser
    monkeypatch.setattr(getpass, "getuser", lambda: asked.append(1) or real())

    inventory = load_inventory(path)

    assert inventory.host("web39").ssh.hostname == "192.0.2.39"
    assert inventory.host("web39").ssh.port == 22  # the Match block was still weighed: not this user
    assert len(asked) <= 5 * 40  # a few per host (its Match block, twice), not one per Host block


def test_explicit_values_beat_the_inventory(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  hosts:\n    h: {ssh_user: deploy, ssh_port: 22}\n")

    h = load_inventory(path, explicit_ssh={"ssh_user": "admin"}).host("h")

    assert (h.ssh.user, h.ssh.sources["ssh_user"]) == ("admin", "explicit")


def test_the_default_ssh_config_is_the_users(tmp_path: Path) -> None:
    write(Path.home(), ".ssh/config", "Host mine\n  HostName 198.51.100.1\n  Port 2022\n")
    path = write(tmp_path, "hosts.yml", "all:\n  hosts:\n    mine:\n")

    assert load_inventory(path).host("mine").ssh.destination.endswith("@198.51.100.1:2022")


def test_docker_host_forms(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "hosts.yml",
        """\
        all:
          hosts:
            local: {docker_host: "unix:///run/docker.sock"}
            remote_tls: {docker_host: "tcp://10.1.2.3", docker_cert_path: /etc/certs}
            over_ssh: {docker_host: "ssh://ops@10.1.2.4:2200", ssh_key: /k}
        """,
    )
    inventory = load_inventory(path)

    assert inventory.host("local").engine.scheme == "unix"
    tls = inventory.host("remote_tls").engine
    assert tls.url == "tcp://10.1.2.3:2376"
    assert tls.tls is not None and (tls.tls.ca, tls.tls.cert, tls.tls.key) == ("/etc/certs/ca.pem", "/etc/certs/cert.pem", "/etc/certs/key.pem")
    over_ssh = inventory.host("over_ssh")
    assert over_ssh.engine.url == "ssh://ops@10.1.2.4:2200"
    assert (over_ssh.ssh.user, over_ssh.ssh.port, over_ssh.ssh.identity_files) == ("ops", 2200, ("/k",))


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        ("all:\n  host:\n    a:\n", 2, ["unknown key 'host' in group 'all'", "hosts:"]),
        ("all:\n  hosts:\n    a:\n      ssh_prot: 22\n", 4, ["unknown setting 'ssh_prot'", "did you mean 'ssh_port'"]),
        ("all:\n  hosts:\n    a: 10.0.0.1\n", 3, ["host 'a' must be followed by a mapping", "ansible_host: 10.0.0.1"]),
        ("all:\n  hosts:\n    - a\n    - b\n", 2, ["hosts of group 'all' must be a mapping"]),
        ("all:\n  hosts:\n    a:\n      ssh_port: ssh\n", 4, ["ssh_port of host a must be a port number"]),
        ("all:\n  hosts:\n    a:\n      ssh_port: 70000\n", 4, ["between 1 and 65535"]),
        ("all:\n  hosts:\n    a:\n      docker_host: http://x\n", 3, ["is in no form shipper knows"]),
        ("all:\n  hosts:\n    a:\n    a b:\n", 4, ["'a b' is not a valid host name"]),
        ("all:\n  hosts:\n    a:\n  hosts:\n    b:\n", 4, ["key 'hosts' is given twice (first at line 2)"]),
        ("all:\n  hosts:\n    a:\n   b: [\n", 4, ["not valid YAML"]),
        ("web:\n  children:\n    app:\n      children:\n        web:\n", 3, ["groups form a cycle: web -> app -> web"]),
        ("", None, ["the inventory is empty"]),
    ],
)
def test_a_bad_inventory_names_the_file_the_line_and_what_is_wrong(tmp_path: Path, text: str, line: int | None, words: list[str]) -> None:
    path = write(tmp_path, "hosts.yml", text)

    with pytest.raises(InventoryError) as caught:
        load_inventory(path)

    shown = f"{caught.value.message}\n{caught.value.hint or ''}"
    assert shown.startswith(f"{path} line {line}:" if line else str(path))
    for word in words:
        assert word in shown


def test_a_missing_inventory_says_how_to_name_one(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(tmp_path / "nope.yml")

    assert "SHIPPER_INVENTORY" in (caught.value.hint or "")


def test_an_ssh_config_file_that_does_not_exist_is_an_error(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  vars: {ssh_config_file: /nonexistent/config}\n  hosts: {a:}\n")

    with pytest.raises(InventoryError, match="ssh_config_file /nonexistent/config does not exist"):
        load_inventory(path)


def test_the_example_inventory_in_the_repository_loads() -> None:
    inventory = load_inventory(Path(__file__).resolve().parents[2] / "inventory/example.yml")

    assert inventory.host("web02.example.com").ssh.port == 2200
    assert inventory.host("edge1").engine.url == "tcp://10.0.9.1:2376"
    assert sorted(inventory.host("edge1").groups) == ["edge", "site"]


def test_the_ini_example_reaches_every_host_as_the_yaml_example_does() -> None:
    root = Path(__file__).resolve().parents[2] / "inventory"
    from_yaml, from_ini = load_inventory(root / "example.yml"), load_inventory(root / "example.ini")

    assert list(from_ini.hosts) == list(from_yaml.hosts)
    for name, host in from_yaml.hosts.items():
        assert (from_ini.host(name).ssh.destination, from_ini.host(name).engine.url) == (host.ssh.destination, host.engine.url)


def test_variables_of_other_roles_are_free_and_near_misses_of_shippers_settings_are_not(tmp_path: Path) -> None:
    """Docker roles name their variables docker_users, docker_registry_mirror, …: free, as in Ansible.
    A key close to one of shipper's own (ssh_prot, docker_cert) is still taken for a misspelling,
    and shipper_* is shipper's alone."""
    path = write(tmp_path, "hosts.yml", "all:\n  hosts:\n    a:\n      docker_users: [deploy]\n      docker_daemon_options: {debug: true}\n      ssh_args: -C\n")

    host = load_inventory(path).host("a")

    assert host.vars["docker_users"] == ["deploy"] and host.vars["docker_daemon_options"] == {"debug": True} and host.vars["ssh_args"] == "-C"
    for bad, suggestion in (("docker_cert", "docker_cert_path"), ("ssh_prot", "ssh_port"), ("shipper_anything", "")):
        path = write(tmp_path, "bad.yml", f"all:\n  hosts:\n    a:\n      {bad}: x\n")
        with pytest.raises(InventoryError, match=f"unknown setting '{bad}'") as caught:
            load_inventory(path)
        assert suggestion in (caught.value.hint or "")


def test_a_bastion_in_ansible_ssh_common_args_is_used_as_ansible_uses_it(tmp_path: Path) -> None:
    # Ansible's documented jump host: -o ProxyCommand="ssh -W %h:%p -q bastion" (or -o ProxyJump, -J) in
    # ansible_ssh_common_args, set for a group; on ssh's command line it beats ssh_config's ProxyJump.
    config = write(tmp_path, "ssh_config", "Host *\n  ProxyJump from-config\n")
    write(tmp_path, "inv/group_vars/dmz.yml", "ansible_ssh_common_args: '-o ProxyCommand=\"ssh -W %h:%p -q ops@bastion.example\"'\n")
    write(
        tmp_path,
        "inv/hosts.ini",
        f"""\
        [all:vars]
        ssh_config_file={config}

        [dmz]
        web1 ansible_host=10.0.0.5
        web2 ansible_ssh_common_args='-o ProxyJump=jump1' ansible_ssh_extra_args='-J ignored-after-the-first'

        [lan]
        db1 ansible_ssh_extra_args='-oStrictHostKeyChecking=no -J jump2,jump3'
        db2
        db3 ansible_ssh_common_args='-o ProxyJump=none'
        """,
    )
    inventory = load_inventory(tmp_path / "inv")

    ssh = {name: inventory.host(name).ssh for name in ("web1", "web2", "db1", "db2", "db3")}
    assert (ssh["web1"].proxy_command, ssh["web1"].proxy_jump) == ("ssh -W %h:%p -q ops@bastion.example", None)
    assert (ssh["web2"].proxy_command, ssh["web2"].proxy_jump) == (None, "jump1")  # the host's own beats its group's
    assert (ssh["db1"].proxy_command, ssh["db1"].proxy_jump) == (None, "jump2,jump3")
    assert (ssh["db2"].proxy_command, ssh["db2"].proxy_jump) == (None, "from-config")
    assert (ssh["db3"].proxy_command, ssh["db3"].proxy_jump) == (None, None)  # none: straight there, whatever ssh_config says
    assert ssh["web1"].sources["proxy"] == "inventory" and ssh["db2"].sources["proxy"] == "ssh_config"


def test_ssh_arguments_a_shell_could_not_read_are_an_error_naming_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "hosts.yml", "all:\n  hosts:\n    web1:\n      ansible_ssh_common_args: '-o ProxyCommand=\"ssh -W %h:%p'\n")
    with pytest.raises(InventoryError, match="ansible_ssh_common_args of host web1 must be ssh arguments as a shell reads them") as caught:
        load_inventory(path)
    assert "hosts.yml" in str(caught.value.origin)
