"""Registry credentials: where they come from and where ``login`` keeps them, the Docker CLI's way.

Sources, in the order a command takes them: a password file (``--password-file``,
or ``-`` for stdin) with a username; the Docker CLI's config
(``$DOCKER_CONFIG/config.json`` or ``~/.docker/config.json``): a credential
helper named for the registry in ``credHelpers``, else the ``credsStore``
helper, else the base64 ``auth`` of ``auths``. Never from the command line:
argv is visible to every user of the machine.

A password is held only in ``Credentials.password`` and never printed (its
``repr`` hides it).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from shipper.secretfile import first_line
from shipper.errors import RegistryAuthFailed, ShipperError, UsageError

HELPER_TIMEOUT = 30


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)
    source: str = ""  # where they came from, for messages

    def basic(self) -> str:
        return base64.b64encode(f"{self.username}:{self.password}".encode()).decode()


def config_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    if env.get("DOCKER_CONFIG"):
        return Path(env["DOCKER_CONFIG"])
    return Path(env.get("HOME") or Path.home()) / ".docker"


def _key(server: str) -> str:
    """The registry part of a config key: ``https://reg:5000/v1/`` -> ``reg:5000``."""
    return server.split("://", 1)[-1].split("/", 1)[0]


def _read_config(directory: Path) -> dict[str, Any]:
    path = directory / "config.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ShipperError(f"cannot read {path}: {exc}", hint="fix or remove the file (it is the Docker CLI's config)") from None
    return data if isinstance(data, dict) else {}


def from_password_file(username: str | None, path: str) -> Credentials:
    """The first line of ``path`` (``-``: stdin) as the password."""
    if not username:
        raise UsageError("a password file needs a username", hint="add --username NAME")
    password = first_line(path, "password")
    return Credentials(username, password, "stdin" if path == "-" else f"password file {path}")


def from_docker_config(registry: str, directory: Path | None = None) -> Credentials | None:
    """What the Docker CLI would use for ``registry`` (host:port), or None."""
    directory = directory or config_dir()
    config = _read_config(directory)
    helpers = config.get("credHelpers") or {}
    helper = next((h for server, h in helpers.items() if _key(server) == registry), None) or config.get("credsStore")
    if helper:
        found = _helper_get(str(helper), registry)
        if found is not None:
            return found
    for server, entry in (config.get("auths") or {}).items():
        if _key(server) == registry and isinstance(entry, dict) and entry.get("auth"):
            try:
                username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
            except (ValueError, UnicodeDecodeError):
                raise ShipperError(f"the credentials for {registry} in {directory / 'config.json'} are not valid base64") from None
            return Credentials(username, password, str(directory / "config.json"))
    return None


def _run_helper(helper: str, action: str, data: str) -> subprocess.CompletedProcess[str]:
    program = f"docker-credential-{helper}"
    try:
        return subprocess.run([program, action], input=data, capture_output=True, text=True, timeout=HELPER_TIMEOUT)
    except FileNotFoundError:
        raise ShipperError(
            f"the Docker config names the credential helper {helper!r}, but {program} is not installed",
            hint=f"install {program}, or remove credsStore/credHelpers from the Docker config",
        ) from None
    except subprocess.TimeoutExpired:
        raise RegistryAuthFailed(f"{program} did not answer within {HELPER_TIMEOUT} s") from None


def _helper_get(helper: str, registry: str) -> Credentials | None:
    for server in (registry, f"https://{registry}"):
        result = _run_helper(helper, "get", server)
        if result.returncode == 0:
            try:
                data = json.loads(result.stdout)
                return Credentials(str(data["Username"]), str(data["Secret"]), f"docker-credential-{helper}")
            except (ValueError, KeyError, TypeError):
                raise ShipperError(f"docker-credential-{helper} gave an answer shipper cannot read") from None
    return None


def store(registry: str, credentials: Credentials, directory: Path | None = None) -> str:
    """Keep ``credentials`` for ``registry`` the way ``docker login`` does; where they went."""
    directory = directory or config_dir()
    config = _read_config(directory)
    helper = (config.get("credHelpers") or {}).get(registry) or config.get("credsStore")
    if helper:
        payload = json.dumps({"ServerURL": registry, "Username": credentials.username, "Secret": credentials.password})
        result = _run_helper(str(helper), "store", payload)
        if result.returncode != 0:
            raise ShipperError(f"docker-credential-{helper} could not store the credentials: {result.stdout.strip() or result.stderr.strip()}")
        config.setdefault("auths", {})[registry] = {}
        where = f"docker-credential-{helper}"
    else:
        config.setdefault("auths", {})[registry] = {"auth": credentials.basic()}
        where = str(directory / "config.json")
    _write_private(directory / "config.json", json.dumps(config, indent="\t") + "\n")
    return where


def _write_private(path: Path, text: str) -> None:
    """Write ``path`` with mode 0600, atomically (a crash never leaves half a config)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=".config.json.")
    try:
        with os.fdopen(fd, "w") as out:
            out.write(text)
        os.chmod(temporary, 0o600)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise
