"""The programs shipper starts with a host's python3 run only the standard library: nothing in the login's
working directory, its PYTHONPATH or the host's site-packages can stand in for a module they import."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from shipper.archive.boot import HOST_PYTHON
from shipper.archive.wire import receiver as decoder_command
from shipper.transfer.resume import load_command

SPEC = {"images": [{"layers": ["sha256:" + "a" * 64], "os": "linux", "architecture": "amd64"}], "held": []}


def _planted(tmp_path: Path) -> Path:
    """A directory holding modules named as the standard library's, each leaving a mark when imported."""
    planted = tmp_path / "planted"
    planted.mkdir()
    for module in ("json", "zlib", "struct", "os", "sitecustomize", "usercustomize"):
        (planted / f"{module}.py").write_text(f"open({str(tmp_path / 'imported')!r}, 'a').write('{module}\\n')\n")
    return planted


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(decoder_command("cat >/dev/null"), id="the stream's decoder"),
        pytest.param(load_command(SPEC), id="the resumable receiver"),
        pytest.param(load_command(None, "READY", frames=True), id="the decoder before docker load"),
    ],
)
def test_a_host_program_ignores_modules_in_its_working_directory_and_pythonpath(tmp_path: Path, command: str) -> None:
    planted = _planted(tmp_path)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "docker").write_text("#!/bin/sh\ncat >/dev/null\n")  # the plain load's stand-in: only the python side is under test
    (bin_dir / "docker").chmod(0o755)
    env = dict(os.environ, PYTHONPATH=str(planted), PATH=f"{bin_dir}:{os.environ['PATH']}", PYTHONSTARTUP=str(planted / "os.py"))

    subprocess.run(["sh", "-c", command], cwd=planted, env=env, input=b"", capture_output=True, timeout=60)

    assert not (tmp_path / "imported").exists(), (tmp_path / "imported").read_text()


def test_every_host_program_is_started_isolated() -> None:
    """-I (no PYTHON* variables, no user site, no working directory) and -S (no site-packages, no .pth files)."""
    assert HOST_PYTHON.split() == ["python3", "-I", "-S"]
    assert decoder_command("docker load -q").startswith(f"{HOST_PYTHON} -c ")
    assert f"{HOST_PYTHON} -c " in load_command(SPEC)
