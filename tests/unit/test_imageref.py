"""Image names, written once (imageref.py): parsed, split into registry and path by Docker's rule,
and stripped of their registry the same way wherever an image goes into another registry."""

from __future__ import annotations

import pytest

from shipper import imageref
from shipper.bundle import BundleImage
from shipper.ops.bundle_push import _repositories
from shipper.ops.move_registry import RegistryRoute, remote_repository
from shipper.registry import Address, parse_repo_ref

ROUTE = RegistryRoute(Address("reg.example:5000"), None)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("app:1", ("app", "1")),
        ("team/app:1", ("team/app", "1")),
        ("localhost/app:1", ("app", "1")),
        ("localhost:5000/team/app:1", ("team/app", "1")),
        ("reg.example/app:1", ("app", "1")),
        ("[::1]:5000/app:1", ("app", "1")),
    ],
)
def test_the_registry_part_is_taken_off_the_same_way_by_the_registry_route_and_bundle_push(name: str, expected: tuple[str, str]) -> None:
    """``localhost/app`` names registry localhost (Docker's rule): both routes must push it as ``app``."""
    repository, tag = expected

    assert remote_repository(ROUTE, name) == (f"reg.example:5000/{repository}", tag)
    assert _repositories(BundleImage("sha256:" + "0" * 64, (name,), 0, (), "")) == [expected]


@pytest.mark.parametrize(
    ("text", "registry", "path"),
    [("localhost/app", "localhost", "app"), ("team/app", "", "team/app"), ("a.b/c/d", "a.b", "c/d"), ("app", "", "app")],
)
def test_docker_s_rule_names_the_registry_part(text: str, registry: str, path: str) -> None:
    assert imageref.split_registry(text) == (registry, path)


@pytest.mark.parametrize("text", ["localhost/app:1", "reg:5000/team/app:2", "team/app:3", "[::1]:5000/app:1"])
def test_image_names_and_registry_references_agree_on_the_grammar(text: str) -> None:
    ref = imageref.parse(text)
    registry, _ = imageref.split_registry(ref.repository)
    if registry:
        assert str(parse_repo_ref(text)).endswith(text.split("/", 1)[1])


@pytest.mark.parametrize("text", ["Team/app:1", "app:-1", "reg:5000/App:1", "bad_host!/app:1"])
def test_names_outside_the_grammar_are_refused(text: str) -> None:
    from shipper.errors import UsageError

    with pytest.raises(UsageError):
        imageref.parse(text)


def test_a_reference_by_digest_names_no_tag_unless_one_is_written_with_it() -> None:
    digest = "sha256:" + "a" * 64
    by_digest = imageref.parse(f"reg:5000/app@{digest}")
    assert (by_digest.repository, by_digest.digest, by_digest.tag_name, str(by_digest)) == ("reg:5000/app", digest, None, f"reg:5000/app@{digest}")
    assert imageref.parse(f"app:1@{digest}").tag_name == "app:1"
    from shipper.errors import UsageError

    with pytest.raises(UsageError, match="is not a digest"):
        imageref.parse("app@sha256:short")
