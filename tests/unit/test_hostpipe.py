"""The program shipper sends to a source host needs nothing but python3 itself."""

from __future__ import annotations

import subprocess
import sys

from shipper.archive.hostpipe import LOADER, STOP, script


def run_on_bare_python(stdin: bytes, *args: str) -> subprocess.CompletedProcess[bytes]:
    code = script().encode()
    # -I: no user site, no PYTHONPATH, no current directory; -S: no site-packages at all.
    return subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOADER.format(size=len(code)), *args], input=code + stdin, capture_output=True, timeout=30
    )


def test_the_source_program_runs_with_the_standard_library_alone() -> None:
    result = run_on_bare_python(STOP.encode() + b"\n", "[]")

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""


def test_the_source_program_reports_a_target_it_cannot_reach_before_sending_anything() -> None:
    spec = '{"expected": [], "known_hosts": "", "targets": {"b": ["sh", "-c", "echo nope >&2; exit 255"]}}'

    result = run_on_bare_python(spec.encode() + b"\n", "[]")

    assert result.returncode == 3
    assert b'"unreachable": {"b": "nope"}' in result.stdout
