"""--platform as users type it, compared as containerd compares platforms."""

from __future__ import annotations

import json

import pytest

from shipper.errors import UsageError
from shipper.platforms import Platform, parse_platform


@pytest.mark.parametrize(
    "typed, meant",
    [
        ("linux/amd64", Platform("linux", "amd64")),
        ("linux/x86_64", Platform("linux", "amd64")),
        ("linux/aarch64", Platform("linux", "arm64")),
        ("linux/arm64/v8", Platform("linux", "arm64")),  # arm64's default variant: the same platform
        ("linux/arm", Platform("linux", "arm", "v7")),
        ("Linux/ARM/v6", Platform("linux", "arm", "v6")),
        ("linux", Platform("linux")),
    ],
)
def test_a_platform_is_read_as_docker_normalizes_it(typed: str, meant: Platform) -> None:
    assert parse_platform(typed) == meant


@pytest.mark.parametrize("typed", ["", "linux/", "linux/amd64/v1/extra", "linux/amd 64", "linux/$(reboot)", "a" * 40])
def test_anything_else_is_a_usage_error_that_shows_the_form(typed: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_platform(typed)
    assert "os[/arch[/variant]]" in (caught.value.hint or "")


def test_an_images_platform_matches_what_was_asked_whatever_its_spelling() -> None:
    assert parse_platform("linux/arm64").matches("linux", "arm64", "v8")
    assert parse_platform("linux/arm64/v8").matches("linux", "aarch64")
    assert parse_platform("linux").matches("linux", "s390x")
    assert not parse_platform("linux/arm64").matches("linux", "amd64")
    assert not parse_platform("linux/arm/v6").matches("linux", "arm", "v7")
    assert not parse_platform("windows/amd64").matches("linux", "amd64")


def test_the_engine_is_given_the_oci_platform_as_json_without_empty_parts() -> None:
    assert json.loads(parse_platform("linux/arm/v7").to_api()) == {"os": "linux", "architecture": "arm", "variant": "v7"}
    assert json.loads(parse_platform("linux/amd64").to_api()) == {"os": "linux", "architecture": "amd64"}
