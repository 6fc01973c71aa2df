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
    assert names(fleet, "web[12]") == ["web1", "web2"]
    assert names(fleet, "can*") == ["web3"]


def test_a_name_that_matches_nothing_is_an_error_with_suggestions(fleet: Inventory) -> None:
    with pytest.raises(HostNotFound) as caught:
        select(fleet, "web,wbe1")

    assert "'wbe1' is neither a host nor a group" in caught.value.message
    assert "did you mean 'web1'" in (caught.value.hint or "")


def test_an_empty_expression_is_an_error(fleet: Inventory) -> None:
    with pytest.raises(HostNotFound):
        select(fleet, " , ")
