"""The lab the integration tests run on: real dockerd engines, sshds, and the registry.

One lab per test session, on its own directory and loopback network so it
never meets the demo's lab. Tests that stop a daemon start it again.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from collections.abc import Iterator

import pytest

from shipper.lab import Lab, busybox_image

TEST_LAB_ROOT = Path(os.environ.get("SHIPPER_TEST_LAB_DIR", "/tmp/shipper-lab-test"))
TEST_LAB_NET = "127.0.9"


def _require_lab_tools() -> None:
    missing = [b for b in ("dockerd", "sshd", "docker-registry", "ssh-keygen", "skopeo") if not (shutil.which(b) or os.path.exists(f"/usr/sbin/{b}"))]
    if missing or os.geteuid() != 0:
        pytest.fail(
            f"the lab needs root and {', '.join(missing) or 'its tools'}: run scripts/test, which installs them",
            pytrace=False,
        )


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    _require_lab_tools()
    lab = Lab(TEST_LAB_ROOT, TEST_LAB_NET)
    lab.down(purge=True)  # whatever an interrupted run left behind
    lab.up()
    yield lab
    lab.down(purge=True)


@pytest.fixture(scope="session")
def ssh_inventory(lab: Lab) -> str:
    return str(lab.inventory_path)


@pytest.fixture(scope="session")
def local_inventory(lab: Lab) -> str:
    return str(lab.local_inventory_path)


@pytest.fixture(scope="session")
def busybox_on_a(lab: Lab) -> str:
    """The runnable image, built on host a."""
    image = busybox_image()
    lab.load_images("a", [image])
    return image.name


@pytest.fixture
def plain_home(lab: Lab, clean_environment: Path) -> Path:
    """~/.ssh as a user has it: id_ed25519, and known_hosts with a's key hashed, b's plain; nothing for c."""
    ssh = clean_environment / ".ssh"
    ssh.mkdir(mode=0o700)
    shutil.copy(lab.client_key, ssh / "id_ed25519")
    (ssh / "id_ed25519").chmod(0o600)
    shutil.copy(lab.client_key.with_suffix(".pub"), ssh / "id_ed25519.pub")
    hashed = ssh / "a_only"
    hashed.write_text(lab.sshd("a").known_hosts_line())
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(hashed)], check=True, capture_output=True)
    assert hashed.read_text().startswith("|1|")
    (ssh / "known_hosts").write_text(hashed.read_text() + lab.sshd("b").known_hosts_line())  # a hashed, b plain
    for leftover in (hashed, Path(f"{hashed}.old")):
        leftover.unlink(missing_ok=True)
    return clean_environment
