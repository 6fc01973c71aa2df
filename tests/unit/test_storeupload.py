"""The upload program on a source host sends only to the registry it was given: a registry's upload location
elsewhere is refused, whatever it says."""

from __future__ import annotations

import base64

import pytest

from shipper.archive.storeupload import Registry, UploadError


def registry(url: str = "https://reg.example:5000") -> Registry:
    return Registry(url, "", False, "Bearer secret")


@pytest.mark.parametrize(
    ("location", "path"),
    [
        ("/v2/app/blobs/uploads/1f?_state=x", "/v2/app/blobs/uploads/1f?_state=x"),
        ("https://reg.example:5000/v2/app/blobs/uploads/1f", "/v2/app/blobs/uploads/1f"),
        ("v2/app/blobs/uploads/1f", "/v2/app/blobs/uploads/1f"),
    ],
)
def test_a_location_on_the_registrys_own_origin_is_followed(location: str, path: str) -> None:
    assert registry().own(location) == path


@pytest.mark.parametrize(
    "location",
    [
        "https://evil.example:5000/v2/app/blobs/uploads/1f",  # another host: it would get the token
        "http://reg.example:5000/v2/app/blobs/uploads/1f",  # the same host in clear text
        "https://reg.example:5001/v2/app/blobs/uploads/1f",  # another port
        "//evil.example/v2/app/blobs/uploads/1f",  # scheme-relative
    ],
)
def test_a_location_anywhere_else_is_refused(location: str) -> None:
    with pytest.raises(UploadError, match="another origin"):
        registry().own(location)


def test_the_authorization_is_sent_and_nothing_else_secret() -> None:
    assert registry().headers({"Content-Length": "0"}) == {"User-Agent": "shipper", "Content-Length": "0", "Authorization": "Bearer secret"}
    assert "Authorization" not in Registry("https://reg.example:5000", "", False, "").headers({})


def test_a_url_that_is_no_registry_is_refused() -> None:
    with pytest.raises(UploadError):
        Registry("file:///etc/passwd", "", False, "")


def test_credentials_a_hostile_registry_echoes_in_its_answer_are_not_repeated() -> None:
    basic = Registry("https://reg.example:5000", "", False, "Basic " + base64.b64encode(b"deploy:s3cret-pw").decode())
    bearer = Registry("https://reg.example:5000", "", False, "Bearer eyJtoken.part")

    echoed = basic.redact(f"denied: you sent {basic.authorization.split()[1]} (password s3cret-pw)")
    assert "s3cret-pw" not in echoed and basic.authorization.split()[1] not in echoed
    assert "eyJtoken.part" not in bearer.redact("the registry answered 400: bad token eyJtoken.part")
