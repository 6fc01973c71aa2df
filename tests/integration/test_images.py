"""``shipper images``: what each engine holds, side by side."""

from __future__ import annotations


from shipper.lab import Lab, Layer, SyntheticImage, image_id
from tests.conftest import ShipperRunner, events


def test_images_shows_each_image_and_which_hosts_hold_it(shipper: ShipperRunner, lab: Lab, ssh_inventory: str) -> None:
    shared = SyntheticImage("lab/shared:1", (Layer(2 << 20, "shared-base"), Layer(1024, "shared-top")))
    only_a = SyntheticImage("lab/only-a:1", (Layer(2 << 20, "shared-base"), Layer(1024, "only-a")))
    lab.load_images("a", [shared, only_a])
    lab.load_images("c", [shared])

    result = shipper("images", "-i", ssh_inventory, "a,c", "--json")
    table = shipper("images", "-i", ssh_inventory, "a,c")

    assert result.status == 0, result.stderr
    rows = {r["name"]: r for r in events(result.stdout, "image")}
    assert rows["lab/shared:1"]["hosts"] == ["a", "c"] and rows["lab/shared:1"]["id"] == image_id(shared)
    assert rows["lab/only-a:1"]["hosts"] == ["a"]
    lines = {line.split()[0]: line.split() for line in table.stdout.splitlines()}
    assert lines["IMAGE"][-2:] == ["a", "c"]
    assert lines["lab/shared:1"][-2:] == ["yes", "yes"]
    assert lines["lab/only-a:1"][-2:] == ["yes", "-"]


def test_the_same_tag_with_different_ids_shows_as_two_rows(shipper: ShipperRunner, lab: Lab, ssh_inventory: str) -> None:
    lab.load_images("b", [SyntheticImage("lab/drift:1", (Layer(512, "drift-b"),))])
    lab.load_images("c", [SyntheticImage("lab/drift:1", (Layer(512, "drift-c"),))])

    rows = events(shipper("images", "-i", ssh_inventory, "web", "--json").stdout, "image")

    drift = [r for r in rows if r["name"] == "lab/drift:1"]
    assert sorted(r["hosts"] for r in drift) == [["b"], ["c"]]


def test_a_failed_host_is_reported_and_marked_unknown(shipper: ShipperRunner, lab: Lab, ssh_inventory: str) -> None:
    lab.stop_engine("b")
    try:
        result = shipper("images", "-i", ssh_inventory, "a,b")
    finally:
        lab.start_host("b")

    assert result.status == 4
    assert result.stderr.startswith("error: cannot reach the engine on b")
    header, *rows = result.stdout.splitlines()
    assert all(row.split()[-1] == "?" for row in rows)


def test_images_filter_reference_shows_only_the_matching_names(shipper: ShipperRunner, lab: Lab, ssh_inventory: str) -> None:
    wanted = SyntheticImage("lab/filtered-in:1", (Layer(4096, "filtered-in"),))
    other = SyntheticImage("lab/filtered-out:1", (Layer(4096, "filtered-out"),))
    lab.load_images("a", [wanted, other])

    result = shipper("images", "-i", ssh_inventory, "a", "--filter", "reference=lab/filtered-in*", "--json")

    assert result.status == 0, result.stderr
    assert [r["name"] for r in events(result.stdout, "image")] == ["lab/filtered-in:1"]
