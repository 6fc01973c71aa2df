"""Tiered moves, planned from the inventory alone (shipper/ops/move_registry.py): which cache each host pulls
through, who pulls first, and a registry_mirror that names no registry."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from shipper.errors import InventoryError
from shipper.inventory import load_inventory
from shipper.ops.move_registry import _warming_order, route_for


def inventory(tmp_path: Path, mirrors: dict[str, str]) -> Path:
    hosts = {name: ({"registry_mirror": mirrors[name]} if name in mirrors else None) for name in ("a1", "a2", "a3", "b1", "b2", "lone")}
    data = {
        "all": {"hosts": hosts},
        "registries": {"central": {"address": "central.example:5000"}, "site-a": {"address": "cache-a.example:5000"},
                       "site-b": {"address": "cache-b.example:5000"}},
    }  # fmt: skip
    path = tmp_path / "hosts.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_each_host_pulls_through_its_sites_cache_and_one_per_cache_goes_first(tmp_path: Path) -> None:
    loaded = load_inventory(inventory(tmp_path, {"a1": "site-a", "a2": "site-a", "a3": "site-a", "b1": "site-b", "b2": "site-b"}))
    route = route_for(loaded, "central")

    assert {host: str(cache.address) for host, cache in route.mirrors.items()} == {
        "a1": "cache-a.example:5000", "a2": "cache-a.example:5000", "a3": "cache-a.example:5000", "b1": "cache-b.example:5000", "b2": "cache-b.example:5000",
    }  # fmt: skip
    first, then = _warming_order([loaded.host(n) for n in ("a1", "a2", "a3", "b1", "b2", "lone")], route)
    assert [h.name for h in first] == ["a1", "b1", "lone"]  # one per cache, all caches at once, and hosts without one
    assert [h.name for h in then] == ["a2", "a3", "b2"]


def test_a_registry_mirror_naming_no_registry_is_an_inventory_error_not_a_silent_fallback(tmp_path: Path) -> None:
    loaded = load_inventory(inventory(tmp_path, {"a1": "site-c"}))
    with pytest.raises(InventoryError, match="names 'site-c', which is not in the inventory's registries"):
        route_for(loaded, "central")


def test_a_host_whose_mirror_is_the_central_registry_itself_pulls_from_it_directly(tmp_path: Path) -> None:
    loaded = load_inventory(inventory(tmp_path, {"a1": "central"}))
    assert route_for(loaded, "central").mirrors == {}


def test_a_move_names_its_source_once_and_from_a_registry_takes_only_what_applies(tmp_path: Path) -> None:
    from tests.conftest import ShipperRunner

    path = str(inventory(tmp_path, {}))
    both = ShipperRunner()("move", "app:1", "--from", "a1", "--from-registry", "central", "--to", "b1", "-i", path)
    unsupported = ShipperRunner()("move", "app:1", "--from-registry", "central", "--to", "b1", "--limit-rate", "5M", "-i", path)

    assert both.status == 2 and "--from HOST or --from-registry REGISTRY (one of them)" in both.stderr
    assert unsupported.status == 2 and "--from-registry takes --to, --force, --dry-run, --platform" in unsupported.stderr


def test_an_upstream_ca_given_by_mistake_as_an_endless_file_is_refused_without_reading_it_all(tmp_path: Path) -> None:
    from shipper.errors import UsageError
    from shipper.ops.registry import mirror_for

    loaded = load_inventory(inventory(tmp_path, {}))
    with pytest.raises(UsageError, match="is over 1 MiB: not a CA certificate"):
        mirror_for(loaded, "central", None, None, "/dev/zero")
