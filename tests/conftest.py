"""Fixtures every test shares: a clean environment and an in-process CLI."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from shipper.cli.main import run
from shipper.cli.output import Env

_LEAKY_ENV = (
    "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH",
    "SHIPPER_INVENTORY", "SSH_AUTH_SOCK", "ANSIBLE_INVENTORY", "ANSIBLE_CONFIG",
)  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Keep the user's ~/.ssh, ~/.docker, agent and DOCKER_* settings out of every test."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    for name in _LEAKY_ENV:
        monkeypatch.delenv(name, raising=False)
    yield home


@dataclass
class CLIResult:
    status: int
    stdout: str
    stderr: str


@pytest.fixture
def shipper() -> "ShipperRunner":
    return ShipperRunner()


class ShipperRunner:
    """Runs ``shipper ARGS`` in this process, capturing what it writes."""

    def __call__(self, *args: str) -> CLIResult:
        env = Env(stdout=io.StringIO(), stderr=io.StringIO())
        status = run(list(args), env)
        return CLIResult(status, env.stdout.getvalue(), env.stderr.getvalue())  # type: ignore[attr-defined]
