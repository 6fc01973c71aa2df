"""The program shipper sends to a source host needs nothing but python3 itself."""

from __future__ import annotations

from pathlib import Path

from shipper.inventory import Host

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
    result = run_on_bare_python(STOP.encode() + b"\n", "{}")

    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout == b""


def test_the_source_program_reports_a_target_it_cannot_reach_before_sending_anything() -> None:
    spec = '{"expected": [], "known_hosts": "", "targets": {"b": ["sh", "-c", "echo nope >&2; exit 255"]}}'

    result = run_on_bare_python(spec.encode() + b"\n", "{}")

    assert result.returncode == 3
    assert b'"unreachable": {"b": "nope"}' in result.stdout


def source_host(tmp_path: Path) -> Host:
    from shipper.inventory import load_inventory

    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    a: {ssh_host: 10.0.0.1}\n")
    return load_inventory(path).host("a")


def test_a_save_the_source_program_stopped_is_reported_as_the_streams_fault_not_a_broken_connection(tmp_path: Path) -> None:
    from shipper.ops.streams import _source_failure

    a = source_host(tmp_path)

    bad_stream = _source_failure(a, {"status": 0, "stderr": "", "stream_error": "the archive ends early"})
    killed = _source_failure(a, {"status": -9, "stderr": "", "stream_error": "the archive ends early"})
    failed = _source_failure(a, {"status": 1, "stderr": "Error response from daemon: No such image\n", "stream_error": None})

    assert bad_stream is not None and bad_stream.message == "the stream from a (ssh://root@10.0.0.1:22) is not sound: the archive ends early"
    assert killed is not None and killed.message == "docker save on a (ssh://root@10.0.0.1:22) was killed (signal 9)"
    assert failed is not None and failed.message == "save on a (ssh://root@10.0.0.1:22) failed: Error response from daemon: No such image"
    assert _source_failure(a, {"status": 0, "stderr": "", "stream_error": None}) is None
