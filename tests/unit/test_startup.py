"""What a shipper command pays before it does anything: imports it needs, nothing else."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def run_python(code: str, home: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60, env={"HOME": str(home), "PATH": "/usr/bin:/bin"})


def test_a_command_that_reaches_hosts_does_not_import_invoke(tmp_path: Path) -> None:
    # paramiko imports Invoke only for ssh_config's Match exec: a tenth of shipper's start-up.
    result = run_python(
        """
        import sys
        import shipper.cli.main, shipper.cli.fleet, shipper.ops.fleet, shipper.transport.ssh, shipper.engine
        print(sorted(m for m in sys.modules if m.split(".")[0] in ("invoke", "fabric")))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_match_exec_in_the_users_ssh_config_still_runs_once_invoke_is_lent(tmp_path: Path) -> None:
    ran = tmp_path / "ran"
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "config").write_text(f'Match exec "echo %h >> {ran}"\n  Port 2222\n')
    (tmp_path / "hosts.yml").write_text("all:\n  hosts:\n    web1:\n")
    result = run_python(
        f"""
        from pathlib import Path
        from shipper.inventory import load_inventory
        print(load_inventory(Path("{tmp_path / 'hosts.yml'}")).host("web1").ssh.port)
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "2222"
    assert set(ran.read_text().split()) == {"web1"}  # paramiko looks up twice (its final pass)


def test_a_move_without_a_terminal_loads_neither_progress_bars_nor_certificates(tmp_path: Path) -> None:
    # rich draws only on a terminal; cryptography's x509 serves a registry's bootstrap: each a tenth of start-up.
    result = run_python(
        """
        import sys
        import shipper.cli.main, shipper.cli.move, shipper.ops.move_run
        print(sorted(m for m in sys.modules if m.split(".")[0] == "rich" or m in ("cryptography.x509", "shipper.pki")))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_every_name_provision_offers_is_what_it_names_not_a_module() -> None:
    # Its names load when first used; a submodule called like one of them (gc) once shadowed the function.
    import types

    from shipper import provision

    for name in provision.__all__:
        assert not isinstance(getattr(provision, name), types.ModuleType), name


def test_provision_offers_exactly_the_names_it_knows_where_to_find() -> None:
    from shipper import provision

    assert sorted(provision.__all__) == sorted(provision._HOMES)


def test_a_dry_run_loads_no_transfer_machinery(tmp_path: Path) -> None:
    # move --dry-run plans and prints: the delivery (sources, sinks, the host-to-host program), bundles, registry
    # uploads and compression serve a move that runs. They were a fifth of a dry-run's start-up (#20).
    result = run_python(
        """
        import sys
        import shipper.cli.main, shipper.cli.move, shipper.ops.move_session, shipper.ops.move_plan
        unused = ("shipper.transfer.delivery", "shipper.transfer.sinks", "shipper.transfer.sources", "shipper.transfer.program",
                  "shipper.transfer.store_upload", "shipper.bundle", "shipper.ops.bundle", "shipper.ops.oci_bundle",
                  "shipper.ops.move_from_registry", "shipper.ops.move_run", "shipper.ops.registry_upload", "zstandard")
        print(sorted(m for m in sys.modules if m in unused))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_a_move_host_to_host_loads_no_registry_client_before_its_source_program_starts(tmp_path: Path) -> None:
    # The program on the source is started as the move begins (its login overlaps the planning); the registry's
    # client and requests, which only a move through a registry uses, were 70 ms in front of it.
    result = run_python(
        """
        import sys
        import shipper.cli.main, shipper.cli.move, shipper.ops.move_session, shipper.ops.move_run, shipper.transfer.program
        print(sorted(m for m in sys.modules if m in ("requests", "shipper.registry.client", "shipper.ops.registry_upload", "shipper.ops.move_registry")))
        """,
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
