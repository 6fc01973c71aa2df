"""The program shipper sends to a source host needs nothing but python3 itself."""

from __future__ import annotations

from pathlib import Path

from shipper.inventory import Host

import json
import subprocess
import sys
import time

from shipper.archive.hostpipe import LOADER, STOP, script


def run_on_bare_python(stdin: bytes, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[bytes]:
    """The program as a source host runs it; its stdin stays open until it ends, as shipper keeps it
    (the program takes the end of its stdin for shipper's end, and stops)."""
    code = script().encode()
    # -I: no user site, no PYTHONPATH, no current directory; -S: no site-packages at all.
    argv = [sys.executable, "-I", "-S", "-c", LOADER.format(size=len(code)), *args]
    with subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) as process:
        assert process.stdin is not None and process.stdout is not None and process.stderr is not None
        process.stdin.write(code + stdin)
        process.stdin.flush()
        stdout = process.stdout.read()
        stderr = process.stderr.read()
        status = process.wait(timeout=30)
    return subprocess.CompletedProcess(argv, status, stdout, stderr)


def test_the_source_program_stops_when_its_stdin_closes_mid_work() -> None:
    """shipper gone (its ssh, and so the program's stdin, closed): the program stops instead of sending on."""
    spec = '{"expected": [], "known_hosts": "", "targets": {"b": ["sh", "-c", "sleep 30"]}}'
    code = script().encode()
    started = time.monotonic()

    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", LOADER.format(size=len(code)), "{}"], input=code + spec.encode() + b"\n", capture_output=True, timeout=30
    )

    assert result.returncode != 0 and b"KeyboardInterrupt" in result.stderr
    assert time.monotonic() - started < 10


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
    from shipper.transfer.program import _source_failure

    a = source_host(tmp_path)

    bad_stream = _source_failure(a, {"status": 0, "stderr": "", "stream_error": "the archive ends early"})
    killed = _source_failure(a, {"status": -9, "stderr": "", "stream_error": "the archive ends early"})
    failed = _source_failure(a, {"status": 1, "stderr": "Error response from daemon: No such image\n", "stream_error": None})

    assert bad_stream is not None and bad_stream.message == "the stream from a (ssh://root@10.0.0.1:22) is not sound: the archive ends early"
    assert killed is not None and killed.message == "docker save on a (ssh://root@10.0.0.1:22) was killed (signal 9)"
    assert failed is not None and failed.message == "save on a (ssh://root@10.0.0.1:22) failed: Error response from daemon: No such image"
    assert _source_failure(a, {"status": 0, "stderr": "", "stream_error": None}) is None


def test_each_module_of_the_source_program_keeps_its_own_names() -> None:
    """savestream writes PAX headers (long names fit), layerstore ustar ones: in the program as sent, each
    module must call its own. Pasted together, layerstore's ``_header`` replaced savestream's, and a
    trailer member with a long name failed there while it worked in shipper's own process."""
    probe = (
        "ns = {'__name__': 'probe'}\n"
        "exec(compile(sys.stdin.read(), 'program', 'exec'), ns)\n"
        "F = ns.get('SaveStreamFilter') or sys.modules['shipper.archive.savestream'].SaveStreamFilter\n"
        "list(F(trailer=lambda stats: [('x' * 150, b'data')]).run([ARCHIVE]))\n"
        "print('ok')\n"
    )
    from shipper.lab import SyntheticImage, Layer
    from shipper.lab.images import save_stream

    archive = b"".join(save_stream([SyntheticImage("probe/app:1", (Layer(1024, "probe"),))]))
    result = subprocess.run(
        [sys.executable, "-I", "-S", "-c", f"import sys\nARCHIVE = {archive!r}\n" + probe],
        input=script().encode(), capture_output=True, timeout=30,
    )  # fmt: skip

    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert result.stdout == b"ok\n"


def test_the_targets_logins_begin_while_the_source_is_still_being_found(tmp_path: Path) -> None:
    """Where shipper planned before the program was up, the spec is waiting: each target's login (the longest wait
    before the first byte) must not wait for the source's early work (here a docker that takes 2 s to answer)."""
    import os

    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\ndate +%s.%N >> {tmp_path}/docker-started\nsleep 2\nexit 1\n")
    fake.chmod(0o755)
    target = ["sh", "-c", f"date +%s.%N > {tmp_path}/login-started; echo nope >&2; exit 255"]
    spec = json.dumps({"expected": [], "known_hosts": "", "targets": {"b": target}})
    env = dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")

    result = run_on_bare_python(spec.encode() + b"\n", '{"names": ["x:1"], "store": false}', env=env)

    assert result.returncode == 3, result.stderr.decode()
    docker_started = float((tmp_path / "docker-started").read_text().split()[0])  # the first: the early look
    login_started = float((tmp_path / "login-started").read_text())
    assert login_started - docker_started < 1.5


def _fake_docker_saving(tmp_path: Path, archive: bytes) -> dict[str, str]:
    """A ``docker`` whose save writes ``archive``: the program's source, without an engine."""
    import os

    (tmp_path / "archive.tar").write_bytes(archive)
    fake = tmp_path / "docker"
    fake.write_text(f"#!/bin/sh\n[ \"$1\" = save ] && exec cat {tmp_path}/archive.tar\nexit 1\n")
    fake.chmod(0o755)
    return dict(os.environ, PATH=f"{tmp_path}:{os.environ['PATH']}")


def _wait_for(path: Path, seconds: float = 20) -> bool:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)
    return path.exists()


def _with_early_login(leg: list[str], env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The source's program on a bare python, started with one early login (to b) running ``leg``; its code
    is written already, the spec not yet."""
    code = script().encode()
    argv = [sys.executable, "-I", "-S", "-c", LOADER.format(size=len(code)), json.dumps({"early": {"b": leg}, "known_hosts": ""})]
    program = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert program.stdin is not None
    program.stdin.write(code)
    program.stdin.flush()
    return program


def _report_for_b(program: subprocess.Popen[bytes], spec: dict) -> dict:
    """Give ``program`` its spec; what it reports of target b, once it has ended well."""
    assert program.stdin is not None and program.stdout is not None
    program.stdin.write(json.dumps(spec).encode() + b"\n")
    program.stdin.flush()
    outcome = json.loads(program.stdout.read())
    program.stdin.close()
    assert program.wait(timeout=30) == 0
    return outcome["targets"]["b"]


def test_a_targets_login_started_before_the_spec_is_given_its_command_by_the_spec(tmp_path: Path) -> None:
    """Host to host, a handful of targets' logins start with the program (shipper is still planning); the spec
    then tells each what to run, and the stream follows its command on the same connection."""
    from shipper.archive.hostpipe import READY
    from shipper.lab import Layer, SyntheticImage, image_id
    from shipper.lab.images import save_stream
    from shipper.transfer.resume import late_command

    image = SyntheticImage("early/app:1", (Layer(256 << 10, "early-app"),))
    env = _fake_docker_saving(tmp_path, b"".join(save_stream([image])))
    leg = ["sh", "-c", f"touch {tmp_path}/logged-in; {late_command(READY)}"]
    never = ["sh", "-c", f"touch {tmp_path}/started-late; exit 255"]  # the fallback, not wanted here
    spec = {
        "expected": [image_id(image)], "known_hosts": "", "targets": {"b": never},
        "late": {"b": f"echo {READY}; cat > {tmp_path}/received"},
    }  # fmt: skip
    with _with_early_login(leg, env) as program:
        assert _wait_for(tmp_path / "logged-in"), "the early login never started"
        report = _report_for_b(program, spec)

    assert (report["status"], report["error"]) == (0, None), report
    assert report["sent"] == (tmp_path / "received").stat().st_size > 256 << 10
    assert not (tmp_path / "started-late").exists()


def test_an_early_login_the_plan_leaves_out_ends_having_run_nothing(tmp_path: Path) -> None:
    import os

    from shipper.archive.hostpipe import READY
    from shipper.transfer.resume import late_command

    # $$: the shell's pid, which the waiting stub (python3, by exec) keeps.
    leg = ["sh", "-c", f"echo $$ > {tmp_path}/pid; touch {tmp_path}/logged-in; {late_command(READY)}"]
    with _with_early_login(leg) as program:
        assert program.stdin is not None
        assert _wait_for(tmp_path / "logged-in")
        pid = int((tmp_path / "pid").read_text())
        program.stdin.write(STOP.encode() + b"\n")  # the plan: nothing to send
        program.stdin.flush()
        assert program.wait(timeout=30) == 0

    deadline = time.monotonic() + 10
    while os.path.exists(f"/proc/{pid}") and b"zombie" not in _state(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{pid}") or b"zombie" in _state(pid)


def _state(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            return status.read().lower()
    except OSError:
        return b"zombie"


def test_an_early_login_that_failed_is_started_again_the_usual_way(tmp_path: Path) -> None:
    """The early login could not log in (a host key that changed meanwhile, a network blip): the target's
    ssh is started again, as without early logins, with the command in its argv."""
    from shipper.archive.hostpipe import READY
    from shipper.lab import Layer, SyntheticImage, image_id
    from shipper.lab.images import save_stream

    image = SyntheticImage("early/retry:1", (Layer(64 << 10, "early-retry"),))
    env = _fake_docker_saving(tmp_path, b"".join(save_stream([image])))
    failing = ["sh", "-c", "echo 'Host key verification failed.' >&2; exit 255"]
    usual = ["sh", "-c", f"echo {READY}; cat > {tmp_path}/received"]
    spec = {"expected": [image_id(image)], "known_hosts": "", "targets": {"b": usual}, "late": {"b": "exit 99"}}
    with _with_early_login(failing, env) as program:
        report = _report_for_b(program, spec)

    assert (report["status"], report["error"]) == (0, None), report
    assert report["sent"] == (tmp_path / "received").stat().st_size > 64 << 10
