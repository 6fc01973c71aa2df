"""Target expressions pick hosts by name, group, comma list or glob."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper.errors import HostNotFound
from shipper.inventory import Inventory, load_inventory, select

FLEET = """\
all:
  hosts:
    admin:
  children:
    web:
      hosts: {web1:, web2:}
      children:
        canary:
          hosts: {web3:}
    db:
      hosts: {db1:, web1:}
"""


@pytest.fixture
def fleet(tmp_path: Path) -> Inventory:
    path = tmp_path / "hosts.yml"
    path.write_text(FLEET)
    return load_inventory(path)


def names(fleet: Inventory, expression: str) -> list[str]:
    return [h.name for h in select(fleet, expression)]


def test_a_host_name_selects_that_host(fleet: Inventory) -> None:
    assert names(fleet, "db1") == ["db1"]


def test_a_group_selects_its_hosts_and_its_children_hosts(fleet: Inventory) -> None:
    assert names(fleet, "web") == ["web1", "web2", "web3"]


def test_a_comma_list_is_a_union_in_the_order_given_without_repeats(fleet: Inventory) -> None:
    assert names(fleet, "db, web") == ["db1", "web1", "web2", "web3"]


def test_all_selects_every_host(fleet: Inventory) -> None:
    assert sorted(names(fleet, "all")) == ["admin", "db1", "web1", "web2", "web3"]


def test_a_glob_matches_host_and_group_names(fleet: Inventory) -> None:
    assert names(fleet, "web?") == ["web1", "web2", "web3"]
    assert names(fleet, "can*") == ["web3"]


def test_a_tilde_starts_a_regular_expression_matched_from_the_start(fleet: Inventory) -> None:
    assert names(fleet, "~web[12]") == ["web1", "web2"]
    assert names(fleet, "~(db|adm)") == ["db1", "web1", "admin"]  # the group db matches, then the host admin


def test_colons_join_ampersand_intersects_and_bang_excludes_as_in_ansible(fleet: Inventory) -> None:
    assert names(fleet, "web:db") == ["web1", "web2", "web3", "db1"]
    assert names(fleet, "web:&db") == ["web1"]
    assert names(fleet, "all:!web") == ["admin", "db1"]
    assert names(fleet, "!web") == ["admin", "db1"]  # only exclusions: from all, as Ansible does
    assert names(fleet, "!canary:web") == ["web1", "web2"]  # exclusions apply last, wherever written
    assert names(fleet, "web,&db,db1") == ["web1", "db1"]


def test_subscripts_pick_hosts_of_a_group_by_position(fleet: Inventory) -> None:
    assert names(fleet, "web[0]") == ["web1"]
    assert names(fleet, "web[-1]") == ["web3"]
    assert names(fleet, "web[1:]") == ["web2", "web3"]
    assert names(fleet, "web[0:1]") == ["web1", "web2"]


def test_ungrouped_holds_the_hosts_of_no_group(fleet: Inventory) -> None:
    assert names(fleet, "ungrouped") == ["admin"]


def test_an_empty_group_or_an_empty_intersection_selects_nothing_with_a_warning(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("a\n[web]\n[db]\nb\n")
    inventory = load_inventory(path)

    empty = select(inventory, "web")
    assert list(empty) == [] and "group 'web' has no hosts" in empty.warnings[0]
    disjoint = select(inventory, "db:&ungrouped")
    assert list(disjoint) == [] and "matches no host" in disjoint.warnings[-1]


def test_an_ssh_url_names_a_host_outside_the_inventory_where_the_command_allows_one(fleet: Inventory) -> None:
    with pytest.raises(HostNotFound, match="takes no ad-hoc host"):
        select(fleet, "ssh://ops@10.0.0.9:2222")


def test_a_name_that_matches_nothing_is_an_error_with_suggestions(fleet: Inventory) -> None:
    with pytest.raises(HostNotFound) as caught:
        select(fleet, "web,wbe1")

    assert "'wbe1' is neither a host nor a group" in caught.value.message
    assert "did you mean 'web1'" in (caught.value.hint or "")


def test_an_empty_expression_is_an_error(fleet: Inventory) -> None:
    with pytest.raises(HostNotFound):
        select(fleet, " , ")
