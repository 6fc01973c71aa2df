"""Engine API versions, compared without docker-py."""

from __future__ import annotations

import pytest

from shipper.engine.versions import NEWEST_API, OLDEST_API, is_api_version, version_lt


def test_the_versions_shipper_speaks_are_docker_pys() -> None:
    from docker.constants import DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION

    assert (NEWEST_API, OLDEST_API) == (DEFAULT_DOCKER_API_VERSION, MINIMUM_DOCKER_API_VERSION)


@pytest.mark.parametrize("a, b", [("1.9", "1.10"), ("1.24", "1.41"), ("1.41", "1.41.1"), ("1", "1.1")])
def test_versions_compare_by_number_not_by_text(a: str, b: str) -> None:
    from docker.utils import version_lt as docker_version_lt

    assert version_lt(a, b) and not version_lt(b, a)
    assert docker_version_lt(a, b) and not docker_version_lt(b, a)
    assert not version_lt(a, a)


@pytest.mark.parametrize("said", ["", "1.x", "-1.41", "1.41 ", "v1.41", "1." * 10, "9" * 50])
def test_what_is_not_a_version_is_said_so(said: str) -> None:
    assert not is_api_version(said)
    with pytest.raises(ValueError):
        version_lt(said, "1.41")
