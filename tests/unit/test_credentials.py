"""Registry credentials: read and kept the way the Docker CLI does, helpers included."""

from __future__ import annotations

import base64
import json
import os
import stat
import sys
from pathlib import Path

import pytest

from shipper.errors import ShipperError, UsageError
from shipper.registry.credentials import Credentials, from_docker_config, from_password_file, store

HELPER = """#!{python}
# A credential helper speaking the docker-credential protocol, keeping its secrets in a JSON file.
import json, sys
path = {store!r}
action = sys.argv[1]
data = sys.stdin.read()
try:
    kept = json.load(open(path))
except FileNotFoundError:
    kept = {{}}
if action == "store":
    entry = json.loads(data)
    kept[entry["ServerURL"]] = entry
    json.dump(kept, open(path, "w"))
elif action == "get":
    if data.strip() not in kept:
        print("credentials not found in native keychain")
        sys.exit(1)
    print(json.dumps(kept[data.strip()]))
"""


@pytest.fixture
def helper(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real ``docker-credential-filestore`` program on PATH; the file it keeps secrets in."""
    bin_dir, secrets = tmp_path / "bin", tmp_path / "secrets.json"
    bin_dir.mkdir()
    program = bin_dir / "docker-credential-filestore"
    program.write_text(HELPER.format(python=sys.executable, store=str(secrets)))
    program.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return secrets


def test_auths_in_the_docker_config_are_read_for_the_registry(tmp_path: Path) -> None:
    auth = base64.b64encode(b"deploy:s3cret:with:colons").decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"https://reg.example:5000/v1/": {"auth": auth}}}))

    found = from_docker_config("reg.example:5000", tmp_path)

    assert found == Credentials("deploy", "s3cret:with:colons", str(tmp_path / "config.json"))
    assert from_docker_config("other.example:5000", tmp_path) is None
    assert "s3cret" not in repr(found)


def test_login_keeps_credentials_in_a_private_config_file(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"auths": {}, "detachKeys": "ctrl-x"}))

    where = store("reg.example:5000", Credentials("deploy", "pw"), tmp_path)

    config = json.loads((tmp_path / "config.json").read_text())
    assert where == str(tmp_path / "config.json")
    assert config["detachKeys"] == "ctrl-x"  # the rest of the file is kept
    assert base64.b64decode(config["auths"]["reg.example:5000"]["auth"]) == b"deploy:pw"
    assert stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == 0o600


def test_a_credential_helper_stores_and_gives_them_back(tmp_path: Path, helper: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credsStore": "filestore"}))

    where = store("reg.example:5000", Credentials("deploy", "pw"), tmp_path)

    assert where == "docker-credential-filestore"
    assert "pw" not in (tmp_path / "config.json").read_text()
    assert from_docker_config("reg.example:5000", tmp_path) == Credentials("deploy", "pw", "docker-credential-filestore")


def test_a_missing_credential_helper_is_named(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps({"credHelpers": {"reg.example:5000": "nonesuch"}}))

    with pytest.raises(ShipperError, match="docker-credential-nonesuch is not installed"):
        from_docker_config("reg.example:5000", tmp_path)


def test_a_password_file_gives_its_first_line(tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("first line\nsecond\n")

    assert from_password_file("deploy", str(tmp_path / "pw")).password == "first line"
    with pytest.raises(UsageError, match="needs a username"):
        from_password_file(None, str(tmp_path / "pw"))
