"""The lab itself: real engines, sshds and a registry that behave like a fleet's."""

from __future__ import annotations

import requests

from shipper import htpasswd
from shipper.lab import Lab, Layer, SyntheticImage, image_id


def test_starting_the_lab_again_changes_nothing(lab: Lab) -> None:
    pids = {n: lab.engine(n).pidfile.read_text() for n in lab.names}

    lab.up()

    assert {n: lab.engine(n).pidfile.read_text() for n in lab.names} == pids
    assert all(h["engine"] and h["sshd"] for h in lab.status()["hosts"].values())


def test_each_engine_is_its_own(lab: Lab) -> None:
    image = SyntheticImage("lab/only-on-b:1", (Layer(1024, "only-on-b"),))
    lab.load_images("b", [image])

    assert lab.docker("b", "image", "inspect", "-f", "{{.Id}}", image.name).stdout.strip() == image_id(image)
    assert lab.docker("a", "image", "inspect", image.name, check=False).returncode != 0


def test_a_runnable_image_runs(lab: Lab, busybox_on_a: str) -> None:
    result = lab.docker("a", "run", "--rm", "--network", "none", busybox_on_a, "echo", "hello from a")

    assert result.stdout == "hello from a\n"


def test_sshd_sessions_reach_that_hosts_engine(lab: Lab) -> None:
    import subprocess

    result = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "c", "echo $DOCKER_HOST; docker info --format '{{.DockerRootDir}}'"],
        capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip

    assert result.stdout.split() == [f"unix://{lab.engine('c').socket}", str(lab.engine("c").dir / "data")]


def test_a_hosts_sessions_have_a_home_of_their_own_as_a_fleet_hosts_do(lab: Lab) -> None:
    # Not this machine's /root: its .bashrc (a developer's pyenv init) ran in every SSH command, 127 ms of CPU each,
    # and put pyenv's python3 before the system's; a Debian host's root has /etc/skel's (#20).
    import subprocess

    result = subprocess.run(
        ["ssh", "-F", str(lab.ssh_config), "c", "echo $HOME; command -v python3"], capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip

    assert result.stdout.split() == [str(lab.sshd("c").home), "/usr/bin/python3"]


def test_the_registry_wants_a_bcrypt_password_over_tls_from_the_lab_ca(lab: Lab) -> None:
    ca = str(lab.tls_file("ca.crt"))
    user, password = lab.registry_credentials()

    anonymous = requests.get(f"{lab.registry.url}/v2/", verify=ca, timeout=10)
    wrong = requests.get(f"{lab.registry.url}/v2/", verify=ca, auth=(user, "wrong"), timeout=10)
    right = requests.get(f"{lab.registry.url}/v2/", verify=ca, auth=(user, password), timeout=10)

    assert anonymous.status_code == 401 and anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    assert wrong.status_code == 401
    assert right.status_code == 200
    assert htpasswd.is_bcrypt_file((lab.registry.dir / "auth/htpasswd").read_text())
