"""Fixtures every test shares: a clean environment and an in-process CLI."""

from __future__ import annotations

import io
import json
from typing import Any
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Iterator

import pytest

from shipper.cli.main import run
from shipper.cli.schema import problems
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


def events(stdout: str, kind: str | None = None) -> list[dict[str, Any]]:
    """The events of a --json output (those of ``kind``, if given)."""
    parsed = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    return [e for e in parsed if kind is None or e["event"] == kind]


def one(stdout: str, kind: str) -> dict[str, Any]:
    """The single event of ``kind`` in a --json output."""
    (found,) = events(stdout, kind)
    return found


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
        result = CLIResult(status, env.stdout.getvalue(), env.stderr.getvalue())  # type: ignore[attr-defined]
        if "--json" in args:  # every --json output any test sees is checked against the schema
            broken = problems(result.stdout, status)
            assert not broken, f"shipper {' '.join(args)}: --json output breaks the schema: {broken}\n{result.stdout[:2000]}"
        return result
