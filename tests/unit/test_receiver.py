"""The resumable receiver's reading of a docker-save stream (archive/receiver.py), without an engine: every
member kept byte for byte for the final load, a cut and a corrupt blob told apart from a whole stream, and the
carrier IDs shipper and the receiver both compute."""

from __future__ import annotations

import hashlib
import io
import json
import tarfile

import pytest

from shipper.archive.receiver import Cut, Failed, receive, _final
from shipper.archive.receiver_carriers import Carriers, carrier_config, carrier_ids


def stream(*members: tuple[str, bytes], pax: bool = False) -> bytes:
    """A tar as docker save writes it: the members, then exactly the two zero blocks of the end marker."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT if pax else tarfile.USTAR_FORMAT) as archive:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            if pax:
                info.pax_headers = {"comment": "x" * 50}
            archive.addfile(info, io.BytesIO(data))
        end = archive.offset
    return out.getvalue()[:end] + bytes(1024)


def no_carriers() -> Carriers:
    carriers = Carriers([], set())
    carriers.finish()
    return carriers


def test_every_member_is_kept_byte_for_byte_for_the_final_load(tmp_path) -> None:  # type: ignore[no-untyped-def]
    layer = b"x" * 100_000
    name = "blobs/sha256/" + hashlib.sha256(layer).hexdigest()
    whole = stream(("manifest.json", b"[]"), (name, layer), ("big", bytes(200_000)), pax=True)

    kept = receive(io.BytesIO(whole), str(tmp_path), no_carriers())

    assert [m.name for m in kept if m.name] == ["manifest.json", name, "big"]
    again = b"".join(_final(kept, no_carriers()))
    assert again == whole
    assert tarfile.open(fileobj=io.BytesIO(again)).getnames() == ["manifest.json", name, "big"]
    assert tarfile.open(fileobj=io.BytesIO(again)).extractfile(name).read() == layer  # type: ignore[union-attr]


def test_a_stream_that_stops_before_its_end_marker_is_a_cut_wherever_it_stops(tmp_path) -> None:  # type: ignore[no-untyped-def]
    whole = stream(("manifest.json", b"[]"), ("layer", bytes(100_000)))
    for end in (100, 512, 700, len(whole) - 1024, len(whole) - 1):
        with pytest.raises(Cut):
            receive(io.BytesIO(whole[:end]), str(tmp_path), no_carriers())


def test_a_small_blob_whose_content_is_not_its_name_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """(A large one is left to the engine: its carrier's load checks the layer against the carrier's config.)"""
    whole = stream(("blobs/sha256/" + "b" * 64, bytes(7_000)))
    with pytest.raises(Failed, match="arrived corrupt"):
        receive(io.BytesIO(whole), str(tmp_path), no_carriers())


def test_a_carrier_id_is_the_digest_of_its_config_for_each_prefix_of_the_layers() -> None:
    layers = ["sha256:" + c * 64 for c in "123"]
    ids = carrier_ids([{"layers": layers, "os": "linux", "architecture": "amd64"}])

    assert len(ids) == 3
    assert ids[1] == "sha256:" + hashlib.sha256(carrier_config("linux", "amd64", layers[:2])).hexdigest()
    assert json.loads(carrier_config("linux", "amd64", layers[:2]))["config"]["Labels"] == {"io.shipper.carrier": "1"}


def test_the_receiver_code_runs_alone_on_a_host_with_only_python3(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """It is sent as source to the target: its modules may import nothing but the standard library and each other,
    and the script runs where no shipper is installed (isolated from this checkout)."""
    import ast
    import subprocess
    import sys
    from pathlib import Path

    import shipper.archive.receiver as receiver

    ours = {f"shipper.archive.{name}" for name in receiver.RECEIVER_MODULES} | {"shipper.archive"}
    ours.add("shipper.archive.boot")  # script() alone, which runs in shipper's process, never on the target
    for name in receiver.RECEIVER_MODULES:
        tree = ast.parse((Path(receiver.__file__).parent / f"{name}.py").read_text())
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
        imported |= {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module}
        assert {m for m in imported if m.split(".")[0] == "shipper"} <= ours, name
    done = subprocess.run([sys.executable, "-I", "-c", receiver.script(), "{}"], input=b"", capture_output=True, cwd=tmp_path, timeout=60)
    assert b"ModuleNotFoundError" not in done.stderr and b"ImportError" not in done.stderr, done.stderr.decode()[-2000:]


def test_an_extended_header_larger_than_any_docker_save_writes_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    info = tarfile.TarInfo("././@PaxHeader")
    info.type, info.size = tarfile.XHDTYPE, 2 << 20
    with pytest.raises(Failed, match="extended tar header"):
        receive(io.BytesIO(info.tobuf(format=tarfile.USTAR_FORMAT) + bytes(2 << 20)), str(tmp_path), no_carriers())


def test_a_receiver_stopped_by_sigterm_removes_its_spool(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run as on a target, part of a stream in and waiting for more (CI once saw it hang: see the next test)."""
    import signal

    proc = started_receiver(tmp_path)

    proc.send_signal(signal.SIGTERM)

    assert ended_by_sigterm(proc) == 143
    assert not list(tmp_path.iterdir())


def test_a_sigterm_the_kernel_gives_a_helper_thread_still_ends_the_receiver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Python runs handlers in the main thread only: a signal delivered to the carrier thread must still wake the
    main thread's read of the stream (tgkill aims it at that thread, as the kernel sometimes does)."""
    import ctypes
    import os
    import signal
    from pathlib import Path

    tgkill = {"x86_64": 234, "aarch64": 131}.get(os.uname().machine)
    if tgkill is None:
        pytest.skip("tgkill's syscall number is known here for x86_64 and aarch64 only")
    proc = started_receiver(tmp_path)
    helpers = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir() if int(t.name) != proc.pid]
    assert helpers, "the receiver runs its carrier thread"

    assert ctypes.CDLL(None, use_errno=True).syscall(tgkill, proc.pid, helpers[0], signal.SIGTERM) == 0

    assert ended_by_sigterm(proc) == 143
    assert not list(tmp_path.iterdir())


def test_a_header_whose_size_is_not_octal_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    header = bytearray(stream(("x", b"abc"))[:512])
    header[124:136] = b"99999999999\0"
    with pytest.raises(Failed, match="not an octal number"):
        receive(io.BytesIO(bytes(header) + bytes(1024)), str(tmp_path), no_carriers())


def test_a_full_spool_ends_the_receiver_with_a_line_docker_failure_reads_as_a_full_disk(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    """As a full /var/tmp on a target: a 1 MiB tmpfs, a 2 MB member. The receiver says so, exits 1, and its spool goes."""
    import os
    import subprocess

    from shipper.archive.receiver import run

    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (the lab's machines run the tests as root)")
    spool = tmp_path / "small"
    spool.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(spool)], check=True)
    try:
        status = run({"images": [], "held": [], "spool": str(spool)}, io.BytesIO(stream(("big", bytes(2_000_000)))), io.BytesIO())
        left = list(spool.iterdir())
    finally:
        subprocess.run(["umount", str(spool)], check=True)

    assert status == 1 and left == []
    said = capsys.readouterr().err
    assert "cannot keep the stream under" in said and "no space left on device" in said


def test_receivers_of_the_same_images_take_turns_and_the_lock_file_goes_with_the_lock(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A cut receiver goes on loading carriers after its link died; the retry's receiver waits for it (else it
    would remove carriers the cut one then makes again, left behind)."""
    import threading
    import time

    from shipper.archive.receiver import Exclusive

    path = str(tmp_path / "images.lock")
    first = Exclusive(path)
    got: list[float] = []

    def second() -> None:
        lock = Exclusive(path, wait=30)
        got.append(time.monotonic())
        assert lock.fd >= 0
        lock.release()

    waiter = threading.Thread(target=second)
    waiter.start()
    time.sleep(0.5)
    assert got == []  # still waiting
    released = time.monotonic()
    first.release()
    waiter.join(timeout=10)
    assert got and got[0] >= released
    assert not (tmp_path / "images.lock").exists()


def test_a_lock_held_for_ever_or_a_symlink_in_its_place_does_not_stop_a_receiver(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """/var/tmp is shared: another user may hold the file, or plant a symlink where it goes. The receiver waits a
    bounded time, never follows the link, and goes on without the lock."""
    import time

    from shipper.archive.receiver import Exclusive

    held = Exclusive(str(tmp_path / "held.lock"))
    started = time.monotonic()
    unlocked = Exclusive(str(tmp_path / "held.lock"), wait=0.5)
    assert unlocked.fd < 0 and 0.4 < time.monotonic() - started < 5
    held.release()
    assert not (tmp_path / "held.lock").exists()

    (tmp_path / "planted.lock").symlink_to(tmp_path / "victim")
    planted = Exclusive(str(tmp_path / "planted.lock"), wait=0.5)
    assert planted.fd < 0 and not (tmp_path / "victim").exists()
    planted.release()
    assert (tmp_path / "planted.lock").is_symlink()


def started_receiver(tmp_path):  # type: ignore[no-untyped-def]
    """A receiver run as on a target (python3, its own file as the program, faulthandler on), part of a stream in
    and waiting for more: its process, once a member is spooled half way."""
    import subprocess
    import sys
    import time

    import shipper.archive.receiver as receiver

    spec = json.dumps({"images": [], "held": [], "spool": str(tmp_path)})
    proc = subprocess.Popen([sys.executable, "-X", "faulthandler", "-c", receiver.script(), spec],
                            stdin=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(stream(("big", bytes(200_000)))[:150_000])
    proc.stdin.flush()
    deadline = time.monotonic() + 10
    while not any(tmp_path.glob("shipper-receive-*/member-*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert any(tmp_path.glob("shipper-receive-*/member-*"))
    return proc


def ended_by_sigterm(proc) -> int:  # type: ignore[no-untyped-def]
    """Its exit status; should it hang, SIGABRT makes faulthandler print every thread's stack into the failure."""
    import signal
    import subprocess

    try:
        return int(proc.wait(timeout=30))
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, stacks = proc.communicate(timeout=10)
        raise AssertionError(f"the receiver did not end on SIGTERM; its threads:\n{stacks.decode(errors='replace')[-4000:]}") from None


class Trickle(io.RawIOBase):
    """A pipe's way of reading: at most ``piece`` bytes a read, whatever was asked."""

    def __init__(self, data: bytes, piece: int) -> None:
        self.data, self.piece, self.at = data, piece, 0

    def read(self, size: int = -1) -> bytes:
        taken = self.data[self.at : self.at + min(size, self.piece)]
        self.at += len(taken)
        return taken


def framed(whole: bytes, mode: str) -> bytes:
    from shipper.archive.wire import Framer

    framer = Framer(mode)
    return b"".join(framer.frame(whole[i : i + 300_000]) for i in range(0, len(whole), 300_000))


@pytest.mark.parametrize("mode", ["zlib", "none"])
def test_a_framed_stream_is_unframed_by_the_receiver_itself_byte_for_byte(tmp_path, mode: str) -> None:  # type: ignore[no-untyped-def]
    # It took a decoder process in front of it: one more process and pipe for every byte.
    from shipper.archive.receiver_input import FramedInput

    layer = bytes(range(256)) * 2000  # compresses: zlib frames
    name = "blobs/sha256/" + hashlib.sha256(layer).hexdigest()
    whole = stream(("manifest.json", b"[]"), (name, layer), ("random", hashlib.sha512(b"x").digest() * 5000))

    kept = receive(FramedInput(Trickle(framed(whole, mode), 70_000)), str(tmp_path), no_carriers())  # type: ignore[arg-type]

    assert b"".join(_final(kept, no_carriers())) == whole


def test_a_framed_stream_cut_anywhere_is_a_cut_and_a_frame_no_sender_makes_is_refused(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import struct
    import zlib

    from shipper.archive import receiver_input, wire

    whole = stream(("manifest.json", b"[]"), ("layer", bytes(100_000)))
    frames = framed(whole, "zlib")
    for end in (4, 9, 20, len(frames) // 2, len(frames) - 1):
        with pytest.raises(Cut):
            receive(receiver_input.FramedInput(io.BytesIO(frames[:end])), str(tmp_path), no_carriers())  # type: ignore[arg-type]
    bomb = zlib.compress(bytes(5_000_000))
    for bad, says in (
        (b"Q" + struct.pack(">II", 10, 10) + bytes(10), "framing is broken"),
        (b"R" + struct.pack(">II", wire.MAX_FRAME + 1, wire.MAX_FRAME + 1), "framing is broken"),
        (b"R" + struct.pack(">II", 10, 20) + bytes(10), "framing is broken"),
        (b"Z" + struct.pack(">II", len(bomb), 1000) + bomb, "does not unpack to the length it says"),
        (b"Z" + struct.pack(">II", 5, 1000) + b"nope!", "does not unpack to the length it says"),
    ):
        with pytest.raises(Failed, match=says):
            receive(receiver_input.FramedInput(io.BytesIO(bad)), str(tmp_path), no_carriers())  # type: ignore[arg-type]
    assert (receiver_input.FRAME_HEADER.format, receiver_input.MAX_FRAME) == (wire.HEADER.format, wire.MAX_FRAME)  # it runs alone: a copy


@pytest.mark.parametrize(
    "environ, config, found",
    [
        ({}, None, "/var/run/docker.sock"),
        ({"DOCKER_HOST": "unix:///run/user/1000/docker.sock"}, None, "/run/user/1000/docker.sock"),
        ({"DOCKER_HOST": "tcp://10.0.0.5:2376"}, None, None),
        ({"DOCKER_HOST": "ssh://elsewhere"}, None, None),
        ({"DOCKER_CONTEXT": "remote"}, None, None),
        ({}, '{"currentContext": "remote"}', None),
        ({}, '{"auths": {}}', "/var/run/docker.sock"),
    ],
)
def test_the_receiver_loads_on_the_socket_the_docker_cli_would_use_and_leaves_contexts_to_the_cli(tmp_path, environ, config, found) -> None:  # type: ignore[no-untyped-def]
    from shipper.archive.receiver_loads import engine_socket
    from shipper.engine.streamlocal import socket_from_probe

    if config is not None:
        (tmp_path / "config.json").write_text(config)
    environ = {**environ, "DOCKER_CONFIG": str(tmp_path)}

    assert engine_socket(environ) == found
    # shipper's probe of the host reads the same rules from the shell's point of view
    probed = f"shipper-probe|{environ.get('DOCKER_HOST', '')}|{environ.get('DOCKER_CONTEXT', '')}|{'context' if config and 'currentContext' in config else ''}|"
    assert socket_from_probe(probed) == found


@pytest.mark.parametrize(
    "answer, said, output",
    [
        (b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2c\r\n{"stream":"Loaded image ID: sha256:abc\\n"}\n\r\n0\r\n\r\n', None, b"Loaded image ID: sha256:abc\n"),
        (b'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n{"errorDetail":{"message":"write /x: no space left on device"},"error":"write /x: no space left on device"}', "write /x: no space left on device", b""),
        (b'HTTP/1.1 500 Internal Server Error\r\nContent-Length: 30\r\n\r\n{"message":"unexpected EOF"}\n', "Error response from daemon: unexpected EOF", b""),
        (b'HTTP/1.1 400 Bad Request\r\n\r\nnot json at all', "Error response from daemon: not json at all", b""),
        (b"HTTP/1.1 200 OK\r\nContent-", "the engine's answer to the load was cut short", b""),
        (b"", "the engine's answer to the load was cut short", b""),
        (b'HTTP/1.1 200 OK\r\n\r\n{"error": ["odd"]}', "['odd']", b""),
    ],
)
def test_an_engines_answer_to_a_load_is_read_as_the_docker_cli_reports_it(answer: bytes, said: str | None, output: bytes) -> None:
    from shipper.archive.receiver_answers import answer_of as _answer_of

    assert _answer_of(answer) == (said, output)


def test_the_receiver_tells_the_sender_how_often_its_input_was_backed_up() -> None:
    """Half a second's looks at the input pipe: backed up (its engine is slower than the link) when it is at least
    half full, waiting on the link when it is empty."""
    import os

    from shipper.archive.receiver_input import PACE, Pace

    into, reader_end = os.pipe()
    taken, out = os.pipe()
    try:
        pace = Pace(into, out)
        os.write(reader_end, b"x" * (pace.half + 1))
        pace.start()
        backed_up = os.read(taken, 100).decode()
        os.read(into, pace.half + 1)  # drained: the receiver waits on its input now
        pace.stop()
        pace = Pace(into, out).start()
        waiting = os.read(taken, 100).decode()
        pace.stop()
    finally:
        for fd in (into, reader_end, taken, out):
            os.close(fd)

    assert backed_up == f"{PACE} 1.00\n" and waiting == f"{PACE} 0.00\n"


def test_an_engine_that_never_answers_a_load_ends_it_with_a_clear_error_not_a_wait_for_ever(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The whole archive sent, the engine goes silent: the receiver (and so the move) must not wait for ever."""
    import socket
    import threading
    import time

    from shipper.archive import receiver_loads as receiver

    monkeypatch.setattr(receiver, "LOAD_ANSWER_TIME", 0.5)
    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()
    held = []

    def silent() -> None:
        conn, _ = server.accept()
        held.append(conn)
        while conn.recv(65536):
            pass  # reads everything, answers nothing

    threading.Thread(target=silent, daemon=True).start()
    load = receiver.EngineLoad(path)
    load.write(b"x" * 1024)
    started = time.monotonic()

    failed = load.finish(b"")

    assert failed is not None and "did not answer the load within 0.5 s" in failed
    assert time.monotonic() - started < 3
    server.close()


def test_a_docker_load_that_never_ends_is_killed_with_a_clear_error(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import os
    import time

    from shipper.archive import receiver_loads as receiver

    monkeypatch.setattr(receiver, "LOAD_ANSWER_TIME", 0.5)
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\ncat > /dev/null\nexec sleep 30\n")  # one process, as the docker CLI is
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    load = receiver.CliLoad()
    load.write(b"x" * 1024)
    started = time.monotonic()

    failed = load.finish(b"")

    assert failed is not None and "did not answer the load within 0.5 s" in failed
    assert time.monotonic() - started < 3 and load.proc is None


def _scripted_engine(tmp_path, answers: list[bytes]):  # type: ignore[no-untyped-def]
    """A unix socket that answers each connection with the next of ``answers`` once the request's body has ended
    (or at once, for a request without one), then closes it."""
    import socket
    import threading

    path = str(tmp_path / "engine.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen()

    def serve() -> None:
        for answer in answers:
            conn, _ = server.accept()
            seen = b""
            while b"\r\n\r\n" not in seen or (b"chunked" in seen and not seen.endswith(b"0\r\n\r\n")):
                piece = conn.recv(65536)
                if not piece:
                    break
                seen += piece
            conn.sendall(answer)
            conn.close()

    threading.Thread(target=serve, daemon=True).start()
    return path


def _http(body: bytes, status: str = "200 OK") -> bytes:
    return b"HTTP/1.1 " + status.encode() + b"\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n" + body


@pytest.mark.parametrize(
    ("answers", "said"),
    [
        ([_http(b'{"errorDetail":{"message":"write /var/lib/docker/tmp: no space left on device"},"error":"no space"}\n')], "no space left on device"),
        ([_http(b'{"message":"invalid tar header"}', "500 Internal Server Error")], "Error response from daemon: invalid tar header"),
        ([_http(b'{"status":"Downloading"}\n')], "the engine's answer to the import named no image"),
        ([_http(b'{"status":"sha256:' + b"1" * 64 + b'"}\n'), _http(b'{"RootFS":{"Layers":["sha256:' + b"2" * 64 + b'"]}}'), _http(b"")],
         "arrived corrupt: the engine made sha256:" + "2" * 64),
        ([_http(b'{"status":"sha256:' + b"1" * 64 + b'"}\n'), _http(b"{}", "404 Not Found"), _http(b"")], "the engine did not say what it made"),
    ],
    ids=["full-disk", "refused", "no-image", "other-layer", "unreadable"],
)  # fmt: skip
def test_an_imports_failure_is_what_the_engine_said_or_what_it_made_instead(tmp_path, monkeypatch, answers, said) -> None:  # type: ignore[no-untyped-def]
    from shipper.archive import receiver_loads

    monkeypatch.setattr(receiver_loads, "ENGINE_SOCKET", _scripted_engine(tmp_path, answers))
    load = receiver_loads.start_import("io.shipper.carrier", "sha256:" + "3" * 64)
    assert load is not None
    load.write(b"x" * 1024)

    failed = load.finish(b"")

    assert failed is not None and said in failed
    assert load.image_id == ""


def test_an_import_that_made_the_layer_it_came_under_is_a_carrier(tmp_path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from shipper.archive import receiver_loads

    layer = "sha256:" + "3" * 64
    made = b'{"status":"sha256:' + b"1" * 64 + b'"}\n'
    engine = _scripted_engine(tmp_path, [_http(made), _http(b'{"RootFS":{"Layers":["' + layer.encode() + b'"]}}')])
    monkeypatch.setattr(receiver_loads, "ENGINE_SOCKET", engine)
    load = receiver_loads.start_import("io.shipper.carrier", layer)
    assert load is not None
    load.write(b"x" * 1024)

    assert load.finish(b"") is None
    assert load.image_id == "sha256:" + "1" * 64
