"""Registry names and challenges: checked and parsed before anything is sent."""

from __future__ import annotations

import pytest

from shipper.errors import UsageError
from shipper.registry.auth import parse_challenge
from shipper.registry.names import Address, parse_address, parse_repo_ref


def test_a_reference_splits_into_registry_repository_and_tag_or_digest() -> None:
    ref = parse_repo_ref("reg.example:5000/team/app:1.2")
    pinned = parse_repo_ref("localhost/app@sha256:" + "a" * 64)

    assert (ref.registry.host, ref.repository, ref.tag, ref.reference) == ("reg.example:5000", "team/app", "1.2", "1.2")
    assert (pinned.registry.host, pinned.repository, pinned.digest) == ("localhost", "app", "sha256:" + "a" * 64)


@pytest.mark.parametrize(
    "text",
    ["reg.example:5000/Team/app:1", "reg.example:5000/app:-bad", "reg.example:5000/a/../b:1", "reg.example:5000/app@sha256:xyz", "app:1"],
)
def test_bad_references_are_refused(text: str) -> None:
    with pytest.raises(UsageError):
        parse_repo_ref(text)


def test_addresses_know_their_scheme_and_whether_they_are_loopback() -> None:
    assert parse_address("https://reg.example:5000/") == Address("reg.example:5000")
    assert parse_address("http://127.0.0.1:5000").plain_http
    assert parse_address("127.0.0.1:5000").is_loopback and not parse_address("10.0.0.1:5000").is_loopback
    with pytest.raises(UsageError):
        parse_address("reg example:5000")


def test_bearer_and_basic_challenges_are_parsed() -> None:
    bearer = parse_challenge('Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push"')
    basic = parse_challenge('Basic realm="shipper-lab"')

    assert bearer is not None and bearer.scheme == "bearer"
    assert bearer.params == {"realm": "https://auth.example/token", "service": "registry.example", "scope": "repository:a/b:pull,push"}
    assert basic is not None and (basic.scheme, basic.params) == ("basic", {"realm": "shipper-lab"})
