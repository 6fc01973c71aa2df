"""The CLI without engines: listing hosts, and how errors and exit codes look."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import ShipperRunner, one


@pytest.fixture
def inventory(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text("all:\n  hosts:\n    a: {ansible_host: 10.0.0.1}\n  children:\n    web:\n      hosts: {b: {docker_host: 'unix:///run/b.sock'}}\n")
    return path


def test_hosts_lists_each_host_and_how_its_engine_is_reached(shipper: ShipperRunner, inventory: Path) -> None:
    result = shipper("hosts", "-i", str(inventory))

    assert result.status == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["HOST", "ENGINE", "SSH", "GROUPS"]
    assert lines[1].split()[:2] == ["a", "ssh://root@10.0.0.1:22"]
    assert lines[2].split()[:2] == ["b", "unix:///run/b.sock"]


def test_hosts_json_holds_the_resolved_settings_and_their_sources(shipper: ShipperRunner, inventory: Path) -> None:
    result = shipper("hosts", "-i", str(inventory), "--json", "web")

    assert result.status == 0
    b = one(result.stdout, "host")
    assert b["name"] == "b" and b["groups"] == ["web"]
    assert b["engine"] == {"url": "unix:///run/b.sock", "scheme": "unix", "derived": False}


def test_the_inventory_defaults_to_shipper_inventory_from_the_environment(
    shipper: ShipperRunner, inventory: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHIPPER_INVENTORY", str(inventory))

    assert shipper("hosts").stdout.count("\n") == 3


def test_a_bad_inventory_is_one_line_with_file_and_line_then_a_hint(shipper: ShipperRunner, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("all:\n  hosts:\n    a:\n      ssh_usr: x\n")

    result = shipper("hosts", "-i", str(bad))

    assert result.status == 2  # the user's input: a usage error
    assert result.stderr.splitlines() == [
        f"error: {bad} line 4: unknown setting 'ssh_usr' for host a",
        result.stderr.splitlines()[1],
    ]
    assert result.stderr.splitlines()[1].startswith("hint: did you mean 'ssh_user'?")
    assert "Traceback" not in result.stderr


def test_an_unknown_target_exits_2_and_suggests_names(shipper: ShipperRunner, inventory: Path) -> None:
    result = shipper("ping", "-i", str(inventory), "wbe")

    assert result.status == 2
    assert "'wbe' is neither a host nor a group" in result.stderr
    assert "did you mean 'web'" in result.stderr


def test_usage_errors_exit_2(shipper: ShipperRunner) -> None:
    assert shipper("ping").status == 2
    assert shipper("frobnicate").status == 2


def test_traceback_flag_shows_the_stack(shipper: ShipperRunner, tmp_path: Path) -> None:
    result = shipper("--traceback", "hosts", "-i", str(tmp_path / "missing.yml"))

    assert result.status == 2
    assert "Traceback" in result.stderr and "error: inventory" in result.stderr


def test_registry_commands_do_not_resolve_the_default_inventorys_hosts(
    shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkout's own inventory names the demo lab's ssh_config, absent until the demo runs: a registry
    command only needs the inventory's registries, so a host's missing ssh_config must not stop it."""
    (tmp_path / "inventory").mkdir()
    (tmp_path / "inventory" / "hosts.yml").write_text("all:\n  vars: {ssh_config_file: /nonexistent/ssh_config}\n  hosts: {a: }\n")
    monkeypatch.chdir(tmp_path)

    result = shipper("registry", "ls", "http://127.0.0.1:9")

    assert result.status == 3, result.stderr
    assert "cannot reach registry 127.0.0.1:9" in result.stderr
    assert "ssh_config" not in result.stderr


def test_dockers_password_stdin_and_u_are_understood(shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``docker login -u NAME --password-stdin`` is what users type: the password is read from stdin, then the registry is asked."""
    import io
    import sys

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))

    result = shipper("registry", "login", "http://127.0.0.1:9", "-u", "deploy", "--password-stdin")

    assert result.status == 3, result.stderr
    assert "cannot reach registry 127.0.0.1:9" in result.stderr
    assert sys.stdin.read() == ""  # the password line was taken


def test_registry_up_takes_username_as_every_other_command_does(shipper: ShipperRunner, inventory: Path) -> None:
    result = shipper("registry", "up", "a", "--username", "deploy", "--password-file", "/nonexistent", "-i", str(inventory))

    assert "no such option" not in result.stderr.lower()
    assert "cannot read the password file /nonexistent" in result.stderr


def test_skopeos_tls_verify_and_cert_dir_are_understood(shipper: ShipperRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from shipper.cli.main import _with_aliases

    certs = tmp_path / "certs.d"
    certs.mkdir()
    (certs / "registry.crt").write_text("not read here")
    assert _with_aliases(["registry", "ls", "r:5000", "--tls-verify=false"]) == ["registry", "ls", "r:5000", "--insecure"]
    assert _with_aliases(["registry", "ls", "r:5000", "--cert-dir", str(certs)]) == ["registry", "ls", "r:5000", "--ca", str(certs / "registry.crt")]
    assert _with_aliases(["play", "x.yml", "--", "--tls-verify=false"])[-1] == "--tls-verify=false"  # after --, an argument

    monkeypatch.chdir(tmp_path)
    result = shipper("registry", "ls", "127.0.0.1:9", "--tls-verify=false")
    assert result.status == 3 and "cannot reach registry 127.0.0.1:9" in result.stderr  # taken, then the registry asked


def test_what_an_engine_says_comes_with_the_remedy_where_one_is_known() -> None:
    from shipper.engine.messages import engine_remedy

    assert "free space" in (engine_remedy("write /var/lib/docker/tmp/x: no space left on device") or "")
    assert "docker group" in (engine_remedy("Got permission denied while trying to connect") or "")
    assert "Docker 20.10" in (engine_remedy("client version 1.43 is too new. Maximum supported API version is 1.40") or "")
    assert engine_remedy("something nobody has seen") is None


def test_every_ssh_engine_and_registry_failure_has_a_hint_even_where_its_place_knows_none() -> None:
    from shipper.errors import EngineError, RegistryError, SSHError

    for error in (SSHError("ssh broke"), EngineError("engine broke"), RegistryError("registry broke")):
        assert error.hint, type(error).__name__
    assert EngineError("x", hint="a better one").hint == "a better one"


def test_a_reader_that_goes_away_ends_shipper_quietly_not_with_a_traceback(tmp_path: Path) -> None:
    """``shipper hosts --json | head -1``: the rest of the output has nowhere to go; that is no error worth a stack."""
    import subprocess
    import sys

    inventory = tmp_path / "many.yml"
    inventory.write_text("all:\n  hosts:\n" + "".join(f"    h{i:04d}: {{ansible_host: 10.0.{i // 250}.{i % 250 + 1}}}\n" for i in range(2000)))
    proc = subprocess.Popen(
        [sys.executable, "-m", "shipper", "hosts", "-i", str(inventory), "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stdout.readline()
    proc.stdout.close()  # as head does after its line
    _, stderr = proc.communicate(timeout=60)

    assert b"Traceback" not in stderr and b"BrokenPipeError" not in stderr, stderr.decode()[-2000:]
    assert proc.returncode == 141  # as a shell reports a pipeline's writer ended by SIGPIPE


def test_the_quick_exit_waits_for_work_under_way_and_never_for_an_idle_pool() -> None:
    """The CLI ends without the interpreter's teardown (0.1 s a command): a thread still working is waited for, an
    executor's idle worker is told to stop (joining it as it was would wait for ever), and the status is kept."""
    import subprocess
    import sys

    program = (
        "import concurrent.futures, threading, time\n"
        "from shipper.cli.main import _exit_now\n"
        "pool = concurrent.futures.ThreadPoolExecutor(2); pool.submit(lambda: 1).result()\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('finished', flush=True))).start()\n"
        "_exit_now(3)\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=30)

    assert (done.returncode, done.stdout) == (3, "finished\n"), done.stderr


def test_an_interrupted_exit_waits_for_its_threads_only_a_few_seconds() -> None:
    """Ctrl-C or SIGTERM: a thread still blocked on something no cleanup closed is given INTERRUPTED_GRACE to end,
    not for ever; one that ends meanwhile is waited for; the status is kept."""
    import subprocess
    import sys
    import time

    program = (
        "import threading, time\n"
        "from shipper.cli.main import _exit_now\n"
        "threading.Thread(target=lambda: time.sleep(120)).start()\n"
        "threading.Thread(target=lambda: (time.sleep(0.3), print('finished', flush=True))).start()\n"
        "_exit_now(143)\n"
    )
    began = time.monotonic()
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True, timeout=60)

    assert (done.returncode, done.stdout) == (143, "finished\n"), done.stderr
    assert time.monotonic() - began < 10
    assert "ended without waiting any longer for 1 thread(s)" in done.stderr  # said: it is a defect to find
