"""An Ansible user's inventory habits work in shipper unchanged: where the inventory is found, ad-hoc
hosts, what `hosts` shows of each host's variables, empty groups, !unsafe and !vault."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from shipper.errors import InventoryError
from shipper.inventory import load_inventory
from shipper.inventory.export import as_list
from tests.conftest import ShipperRunner, events, one

CORPUS = Path(__file__).parent.parent / "inventories" / "corpus"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def hosts_of(result_stdout: str) -> list[str]:
    return [h["name"] for h in events(result_stdout, "host")]


def test_group_vars_all_beats_a_group_variable_written_in_the_inventory_as_in_ansible(tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts.yml", "all:\n  children:\n    web:\n      vars: {ansible_user: webuser}\n      hosts: {w1: }\n")
    write(tmp_path / "group_vars" / "all.yml", "ansible_user: deploy\n")

    assert load_inventory(inventory).host("w1").ssh.user == "deploy"


def test_a_host_key_with_a_port_is_that_host_on_that_port(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "hosts.yml", 'all:\n  hosts:\n    "web9:2222":\n'))

    assert list(inventory.hosts) == ["web9"] and inventory.host("web9").ssh.port == 2222


def test_an_ini_inventory_is_read_with_sections_inline_variables_and_forward_children(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "hosts", "[prod:children]\nweb\n[web]\nweb1:2200 ansible_user=ops\n[web:vars]\nhttp_port=8080\n"))

    web1 = inventory.host("web1")
    assert (web1.ssh.user, web1.ssh.port, web1.vars["http_port"], web1.groups) == ("ops", 2200, 8080, ("prod", "web"))


def test_the_inventory_defaults_to_ansible_inventory_then_ansible_cfg(shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    write(tmp_path / "site" / "hosts", "[web]\nfrom-cfg\n")
    write(tmp_path / "ansible.cfg", "[defaults]\ninventory = site/hosts ; relative to this file\n")
    assert hosts_of(shipper("hosts", "--json").stdout) == ["from-cfg"]

    write(tmp_path / "env.yml", "all:\n  hosts:\n    from-env:\n")
    monkeypatch.setenv("ANSIBLE_INVENTORY", str(tmp_path / "env.yml"))
    assert hosts_of(shipper("hosts", "--json").stdout) == ["from-env"]

    monkeypatch.setenv("SHIPPER_INVENTORY", str(tmp_path / "site" / "hosts"))
    assert hosts_of(shipper("hosts", "--json").stdout) == ["from-cfg"]


def test_a_comma_list_is_an_ad_hoc_inventory_as_ansible_i_takes_it(shipper: ShipperRunner) -> None:
    result = shipper("hosts", "-i", "10.0.0.1,edge:2200,", "--json")

    assert result.status == 0, result.stderr
    shown = {h["name"]: h["ssh"]["port"] for h in events(result.stdout, "host")}
    assert shown == {"10.0.0.1": 22, "edge": 2200}


def test_an_ssh_url_is_a_target_without_any_inventory(shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no inventory/hosts.yml here

    result = shipper("hosts", "ssh://ops@10.0.0.9:2222", "--json")

    assert result.status == 0, result.stderr
    host = one(result.stdout, "host")
    assert (host["ssh"]["user"], host["ssh"]["hostname"], host["ssh"]["port"], host["engine"]["url"]) == ("ops", "10.0.0.9", 2222, "ssh://ops@10.0.0.9:2222")


def test_an_empty_group_is_a_warning_and_nothing_to_do(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts", "a\n[web]\n")

    result = shipper("ping", "web", "-i", str(inventory))

    assert result.status == 0, result.stderr
    assert "warning: group 'web' has no hosts" in result.stderr


def test_hosts_json_shows_effective_variables_and_with_v_where_each_came_from(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts.yml", "all:\n  vars: {site: lab}\n  hosts:\n    h1:\n      motd: !unsafe '{{ raw }}'\n")
    write(tmp_path / "host_vars" / "h1.yml", "site: override\n")

    result = shipper("hosts", "-i", str(inventory), "--json", "-v")

    host = one(result.stdout, "host")
    assert host["vars"] == {"motd": {"__ansible_unsafe": "{{ raw }}"}, "site": "override"}
    assert host["var_sources"]["site"] == f"{tmp_path / 'host_vars' / 'h1.yml'} line 1"
    assert host["var_sources"]["motd"] == f"host h1 ({inventory} line 5)"


def test_hosts_list_prints_what_ansible_inventory_list_prints(shipper: ShipperRunner) -> None:
    source = str(CORPUS / "ini-basic" / "hosts")

    result = shipper("hosts", "--list", "-i", source)

    assert result.status == 0, result.stderr
    assert json.loads(result.stdout) == as_list(load_inventory(source))
    assert json.loads(result.stdout)["web"]["hosts"][:2] == ["web1", "web02"]


def test_a_vault_value_is_refused_by_name_only_where_shipper_must_use_it(tmp_path: Path) -> None:
    vault = "!vault |\n      $ANSIBLE_VAULT;1.1;AES256\n      3132\n"
    unused = load_inventory(write(tmp_path / "a" / "hosts.yml", f"all:\n  hosts:\n    h1:\n  vars:\n    db_password: {vault}"))
    assert unused.host("h1").ssh.user  # loads: the vaulted value is carried, not read

    with pytest.raises(InventoryError, match="ansible_user of host h1 is encrypted with Ansible Vault"):
        load_inventory(write(tmp_path / "b" / "hosts.yml", f"all:\n  hosts:\n    h1:\n  vars:\n    ansible_user: {vault}"))


def test_an_ansible_plugin_configuration_is_refused_with_the_command_that_converts_it(tmp_path: Path) -> None:
    with pytest.raises(InventoryError) as caught:
        load_inventory(write(tmp_path / "aws_ec2.yml", "plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n"))

    assert "ansible-inventory -i" in (caught.value.hint or "") and "--list > fleet.json" in (caught.value.hint or "")


def test_a_group_vars_directory_hides_the_file_beside_it_and_reads_nested_and_extensionless_files(tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts.yml", "web:\n  hosts:\n    w1:\n")
    write(tmp_path / "group_vars" / "web" / "a.yml", "one: 1\n")
    write(tmp_path / "group_vars" / "web" / "deeper" / "b", "two: 2\n")
    write(tmp_path / "group_vars" / "web.yml", "hidden: true\n")

    assert load_inventory(inventory).host("w1").vars == {"one": 1, "two": 2}


def test_a_host_with_ansible_connection_local_uses_this_machines_engine(tmp_path: Path) -> None:
    inventory = load_inventory(write(tmp_path / "hosts", "localhost ansible_connection=local\nweb1\n"))

    assert inventory.host("localhost").engine.url == "unix:///var/run/docker.sock"
    assert inventory.host("web1").engine.scheme == "ssh"


def test_several_i_options_read_every_source_into_one_inventory_as_ansible_does(shipper: ShipperRunner, tmp_path: Path) -> None:
    first = write(tmp_path / "one" / "hosts", "[web]\nw1\n")
    second = write(tmp_path / "two" / "hosts.yml", "web:\n  hosts:\n    w2:\n")
    write(tmp_path / "two" / "group_vars" / "web.yml", "from_two: true\n")

    result = shipper("hosts", "web", "-i", str(first), "-i", str(second), "--json")

    assert result.status == 0, result.stderr
    shown = {h["name"]: h["vars"] for h in events(result.stdout, "host")}
    assert shown == {"w1": {"from_two": True}, "w2": {"from_two": True}}


def test_inventory_and_json_options_may_come_before_the_command(shipper: ShipperRunner, tmp_path: Path) -> None:
    inventory = write(tmp_path / "hosts", "[web]\nw1\n")

    before = shipper("-i", str(inventory), "--json", "hosts", "web")
    after = shipper("hosts", "web", "-i", str(inventory), "--json")

    assert before.status == 0, before.stderr
    assert events(before.stdout, "host") == events(after.stdout, "host")


def test_a_bad_or_missing_inventory_exits_2_like_any_usage_error(shipper: ShipperRunner, tmp_path: Path) -> None:
    assert shipper("hosts", "-i", str(tmp_path / "missing.yml")).status == 2
    assert shipper("hosts", "-i", str(write(tmp_path / "bad.yml", "all:\n  host:\n"))).status == 2
    assert shipper("hosts", "nosuchgroup", "-i", str(write(tmp_path / "ok", "a\n"))).status == 2


def test_images_filter_takes_dockers_reference_globs() -> None:
    from shipper.ops.fleet import matches_reference

    assert matches_reference("lab/app:1", ["lab/*"]) and matches_reference("lab/app:1", ["lab/app"])
    assert matches_reference("registry:5000/x:2", ["registry:5000/x"]) and matches_reference("lab/app:1.4", ["*:1.*"])
    assert not matches_reference("lab/app:1", ["other/*", "lab/app:2"])


def test_images_filter_other_than_reference_is_a_usage_error(shipper: ShipperRunner, tmp_path: Path) -> None:
    result = shipper("images", "all", "--filter", "dangling=true", "-i", str(write(tmp_path / "hosts", "a\n")))

    assert result.status == 2 and "--filter takes reference=PATTERN" in result.stderr


def test_completion_prints_a_script_for_each_shell(shipper: ShipperRunner) -> None:
    for shell in ("bash", "zsh", "fish"):
        result = shipper("completion", shell)
        assert result.status == 0 and "_SHIPPER_COMPLETE" in result.stdout, shell


def test_the_shell_completes_hosts_and_groups_of_the_inventory_after_a_pattern(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    inventory = write(tmp_path / "hosts", "[web]\nw1\nw2\n[db]\nd1\n")

    def complete(*words: str) -> list[str]:
        env = {**os.environ, "_SHIPPER_COMPLETE": "bash_complete", "COMP_WORDS": " ".join(("shipper",) + words), "COMP_CWORD": str(len(words))}
        done = subprocess.run([str(Path(sys.executable).parent / "shipper")], env=env, capture_output=True, text=True, timeout=60)
        return [line.split(",", 1)[1] for line in done.stdout.splitlines()]

    assert complete("ping", "-i", str(inventory), "w") == ["w1", "w2", "web"]
    assert complete("move", "app:1", "--from", "d1", "-i", str(inventory), "--to", "web:!w") == ["web:!w1", "web:!w2", "web:!web"]


def test_move_via_registry_takes_ca_and_insecure_over_the_inventorys(tmp_path: Path, shipper: ShipperRunner) -> None:
    from shipper.ops.move_registry import route_for

    inventory = load_inventory(write(tmp_path / "hosts.yml", "all:\n  hosts:\n    a:\nregistries:\n  main: {address: 'r.example:5000', ca: inv-ca.crt}\n"))
    assert route_for(inventory, "main").ca == str(tmp_path / "inv-ca.crt")
    assert route_for(inventory, "main", ca="/etc/mine/ca.crt").ca == "/etc/mine/ca.crt"
    assert route_for(inventory, "r2.example:5000", insecure=True).insecure

    result = shipper("move", "app:1", "--from", "a", "--to", "a", "--ca", "x.crt", "-i", str(tmp_path / "hosts.yml"))
    assert result.status == 2 and "--ca and --insecure are for --via registry" in result.stderr
