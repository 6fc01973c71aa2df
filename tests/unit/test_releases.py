"""Release statements (shipper/releases.py): DSSE's encoding, an envelope written and read back, and every way an
image can differ from the release a statement vouches for (the check each target's image passes before its tags
move)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shipper import releases, signing
from shipper.releases import Release

RELEASE = Release("sha256:" + "c" * 64, ("sha256:" + "1" * 64, "sha256:" + "2" * 64), "k" * 64, ("lab/app:1",), "linux/amd64")


def test_the_signature_covers_dsse_pre_authentication_encoding() -> None:
    """The example in the DSSE specification (protocol.md)."""
    assert releases.pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_an_envelope_written_is_read_back_with_its_key_and_refused_with_another(tmp_path: Path) -> None:
    private, public = signing.generate(tmp_path / "release", None)
    _, other = signing.generate(tmp_path / "other", None)
    path = releases.write(tmp_path / "r", RELEASE, "build", signing.load_private(private, None))

    assert path.name == f"{RELEASE.content}.dsse.json"
    back = releases.read(tmp_path / "r", RELEASE.content, [other, public], "lab/app:1")
    assert (back.config, back.diff_ids, back.tags, back.signed_by) == (RELEASE.config, RELEASE.diff_ids, RELEASE.tags, str(public))
    with pytest.raises(signing.TrustError, match="verifies with none of the keys"):
        releases.read(tmp_path / "r", RELEASE.content, [other], "lab/app:1")
    (tmp_path / "r" / "x.dsse.json").write_bytes(b"[]")
    with pytest.raises(signing.TrustError, match="is not a DSSE envelope"):
        releases.read(tmp_path / "r", "x", [public], "lab/app:1")


@pytest.mark.parametrize(
    ("config", "diff_ids", "content", "tag", "said"),
    [
        ("sha256:" + "d" * 64, RELEASE.diff_ids, RELEASE.content, None, "its config is"),
        (None, RELEASE.diff_ids[:1], RELEASE.content, None, "its layers differ"),
        (None, RELEASE.diff_ids, "j" * 64, None, "its configuration differs"),
        (RELEASE.config, RELEASE.diff_ids, RELEASE.content, "lab/app:latest", "is not a tag the release was signed under"),
    ],
)
def test_an_image_that_differs_from_its_release_in_any_way_is_refused(
    config: str | None, diff_ids: tuple[str, ...], content: str, tag: str | None, said: str
) -> None:  # fmt: skip
    with pytest.raises(signing.TrustError, match=said):
        releases.check(RELEASE, "on b", config, diff_ids, content, tag)
    releases.check(RELEASE, "on b", RELEASE.config, RELEASE.diff_ids, RELEASE.content, "lab/app:1")  # the release itself passes
