"""Engine connections: one place for every endpoint kind, errors that name the host."""

from __future__ import annotations

import itertools
import subprocess
import sys
from collections.abc import Iterator

import pytest

from shipper.engine import connect
from shipper.errors import EngineError
from shipper.inventory import load_inventory
from shipper.lab import Lab, Layer, SyntheticImage, image_id, save_stream


def cut(chunks: Iterator[bytes], limit: int) -> Iterator[bytes]:
    sent = 0
    for chunk in chunks:
        if sent + len(chunk) > limit:
            yield chunk[: limit - sent]
            return
        sent += len(chunk)
        yield chunk


def test_a_truncated_archive_is_refused_in_the_engines_words_and_tags_nothing(lab: Lab, ssh_inventory: str) -> None:
    image = SyntheticImage("lab/truncated:1", (Layer(3 << 20, "truncated"),))
    host = load_inventory(ssh_inventory).host("b")

    with connect(host, timeout=None) as engine, pytest.raises(EngineError) as caught:
        engine.load(cut(save_stream([image]), 1 << 20))

    assert caught.value.message.startswith(f"cannot load images on b (ssh://root@{lab.address('b')}:2222): engine said ")
    assert lab.docker("b", "image", "inspect", image.name, check=False).returncode != 0


def test_a_loaded_image_arrives_with_its_id_and_tag_over_ssh(lab: Lab, ssh_inventory: str) -> None:
    image = SyntheticImage("lab/over-ssh:1", (Layer(1 << 20, "over-ssh"),))

    with connect(load_inventory(ssh_inventory).host("c"), timeout=None) as engine:
        assert engine.load(save_stream([image])) == ["lab/over-ssh:1"]
        ids = {i.id for i in engine.images() if image.name in i.tags}

    assert ids == {image_id(image)}


def test_one_ssh_channel_serves_every_api_call(lab: Lab, ssh_inventory: str) -> None:
    # docker-py opened a new `docker system dial-stdio` for each distinct API path.
    with connect(load_inventory(ssh_inventory).host("a")) as engine:
        for _ in itertools.repeat(None, 3):
            engine.info()
            engine.images()
            engine.ping()
        transport = engine.session.client.get_transport() if engine.session else None
        assert transport is not None
        assert len(transport._channels.values()) == 1  # type: ignore[attr-defined]


def test_requests_go_over_a_channel_to_the_hosts_own_engine_socket_with_no_process_started_there(lab: Lab, ssh_inventory: str) -> None:
    # The socket is the one dial-stdio would reach: each lab host's sshd sets its own DOCKER_HOST (this machine also
    # has /var/run/docker.sock, which must not be used instead).
    inventory = load_inventory(ssh_inventory)
    roots = {}
    for name in ("a", "b"):
        with connect(inventory.host(name)) as engine:
            roots[name] = engine.info().data_root
            assert engine.channel == "streamlocal"

    assert roots == {name: str(lab.root / name / "data") for name in ("a", "b")}


def test_a_survey_of_a_host_uses_one_channel_of_its_own_and_none_of_docker_pys_connections(lab: Lab, ssh_inventory: str) -> None:
    # version, _ping, info, images and inspect on one kept-alive channel (quickget.py): a fifth of the CPU per host.
    with connect(load_inventory(ssh_inventory).host("a")) as engine:
        engine.ping()
        engine.info()
        engine.images()
        assert engine.inspect_image("shipper/none-such:1") is None
        assert engine.round_trips == 4  # /version at connect is not counted, as before
        assert engine._api is None  # docker-py was never needed


def test_a_survey_over_ssh_never_loads_docker_py(lab: Lab, ssh_inventory: str) -> None:
    # docker-py with requests and urllib3 is a quarter of a command's start-up: ping, images and a dry-run read
    # through the quick channel alone, so they do without it (#20). A change of state (a tag) loads it.
    code = f"""
import sys
from shipper.engine import connect
from shipper.inventory import load_inventory
with connect(load_inventory({ssh_inventory!r}).host("a")) as engine:
    engine.ping(); engine.info(); engine.images(); engine.inspect_image("shipper/none-such:1")
    print(engine.channel, engine.round_trips, sorted(m for m in ("docker", "requests", "urllib3") if m in sys.modules))
"""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().split(maxsplit=2) == ["streamlocal", "4", "[]"]


def test_a_host_that_refuses_the_sockets_channel_is_reached_through_dial_stdio(lab: Lab, ssh_inventory: str) -> None:
    with connect(load_inventory(ssh_inventory).host("a")) as engine:
        assert engine.socket is not None
        engine.socket._path = "/nonexistent/docker.sock"  # sshd refuses it, as it refuses every one under AllowStreamLocalForwarding no
        assert engine.quick is not None
        engine.quick.close()  # and so does the next quick GET: refused too, so it goes through docker-py's

        assert engine.info().data_root == str(lab.root / "a" / "data")
        assert engine.channel == "dial-stdio"
        assert engine.quick is None and engine.ping() > 0  # every later small GET too


def test_the_client_speaks_the_engines_api_version(lab: Lab, local_inventory: str) -> None:
    with connect(load_inventory(local_inventory).host("a")) as engine:
        info = engine.info()

    assert info.client_api_version == info.api_version == "1.41"
