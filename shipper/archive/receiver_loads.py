"""The receiver's loads (receiver.py): each ``docker load`` a receiver runs, on the engine's socket or through the
docker CLI, fed as its archive comes, and the engine's answers to them read within bounds. Standard library only:
sent to the target with receiver.py (see ``RECEIVER_MODULES`` there)."""

from __future__ import annotations

import errno
import json
import os
import re
import socket
import subprocess
import threading
import time
from typing import IO, Dict, Iterator, List, Optional, Sequence

from shipper.archive import receiver_input
from shipper.archive.receiver_answers import answer_of, messages_of, read_answer, status_and_body
from shipper.archive.receiver_input import Stream

CHUNK = 1 << 20
_IMAGE_ID = re.compile(r"sha256:[0-9a-f]{64}")

# -- loads ---------------------------------------------------------------------------------------------------
# Each load goes straight to the engine's socket where the docker CLI would reach it (``POST /images/load``, the
# archive sent in chunks as it comes): the CLI in between copied every byte once more (0.9 s of CPU for 500 MB)
# and took 30-50 ms to start, twice on the way to a move's end. Where a docker context or a DOCKER_HOST that is
# not a local socket decides, or the socket does not answer, the CLI loads, as it always did.

# Seconds a load may take to answer once its archive is all in. The engine unpacks a layer while it arrives
# (the classic store: the receiver's only kind), so what is left is registering it and flushing it to disk;
# an engine silent this long is stuck, and a move must not wait on it for ever.
LOAD_ANSWER_TIME = 600.0
ENGINE_SOCKET: Optional[str] = None  # the engine's socket (main(): engine_socket()); None: the docker CLI
LOAD_REQUEST = (
    b"POST /images/load?quiet=1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: shipper-receiver\r\n"
    b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)


def engine_socket(environ: "Dict[str, str]") -> Optional[str]:
    """The engine's socket as the docker CLI finds it (shipper's probe reads it the same way, engine/streamlocal.py);
    None where a docker context decides (only the CLI reads those) or DOCKER_HOST is not a local socket."""
    if environ.get("DOCKER_CONTEXT"):
        return None
    config = os.path.join(environ.get("DOCKER_CONFIG") or os.path.join(os.path.expanduser("~"), ".docker"), "config.json")
    try:
        with open(config, "rb") as settings:
            if b"currentContext" in settings.read(1 << 20):
                return None
    except OSError:
        pass
    docker_host = environ.get("DOCKER_HOST", "")
    if not docker_host:
        return "/var/run/docker.sock"
    return docker_host[len("unix://") :] if docker_host.startswith("unix:///") else None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class Load:
    """One ``docker load``, fed as its archive comes (``write``, ``take``) and ended by ``finish``; ``abort``
    before the archive's end creates nothing. A load that gave up while fed keeps ``failure`` (what it said) and
    takes no more."""

    def __init__(self) -> None:
        self.fd = -1  # where its archive goes
        self.failure = ""
        self.output = b""  # what it said it loaded (finish)

    @property
    def alive(self) -> bool:
        return self.fd >= 0

    def _before(self, size: int) -> bytes:
        return b""  # what goes before a piece of the archive (the engine's chunk size)

    def _after(self) -> bytes:
        return b""

    def _why(self) -> str:
        return "the load stopped reading its archive"

    def _gave_up(self) -> None:
        self.failure = self._why()
        self.abort()

    def write(self, data: bytes) -> None:
        if not self.alive or not data:
            return
        try:
            _write_all(self.fd, self._before(len(data)))
            _write_all(self.fd, data)
            _write_all(self.fd, self._after())
        except OSError:  # it gave up: it says why
            self._gave_up()

    def take(self, stream: "Stream", size: int) -> None:
        """Exactly ``size`` bytes of ``stream`` into the load, moved by the kernel (splice) where it can, never
        copied through Python there; into nothing once the load gave up. Raises Cut."""
        left = size
        while left:
            piece = min(CHUNK, left)
            if not self.alive:
                left -= len(stream.read(piece))
                continue
            done = 0
            try:
                _write_all(self.fd, self._before(piece))
                while done < piece:
                    moved = -1
                    if receiver_input.SPLICE:
                        try:
                            moved = stream.splice_into(self.fd, piece - done)
                        except OSError as exc:
                            if exc.errno != errno.EINVAL:
                                raise
                            receiver_input.SPLICE = False  # no splice between these two: read and write from now on
                    if moved < 0:
                        data = stream.read(piece - done)
                        done += len(data)
                        _write_all(self.fd, data)
                    else:
                        done += moved
                _write_all(self.fd, self._after())
            except OSError as exc:
                if exc.errno not in (errno.EPIPE, errno.ECONNRESET):
                    raise
                self._gave_up()  # it stopped reading: the rest of this piece is still in the stream, read past it
                stream.read(piece - done)
            left -= piece

    def finish(self, trailer: bytes) -> Optional[str]:
        """The rest of the archive (``trailer``), then the load's end: None when it loaded, else what it said."""
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


class CliLoad(Load):
    """``docker load -q ARGS``, fed on its standard input."""

    def __init__(self, args: Sequence[str] = ()) -> None:
        super().__init__()
        self.proc: Optional["subprocess.Popen[bytes]"] = subprocess.Popen(
            ["docker", "load", "-q", *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0
        )
        self.fd = self.proc.stdin.fileno()  # type: ignore[union-attr]
        self.said: List[bytes] = []
        self.loaded: List[bytes] = []
        self.readers = [
            threading.Thread(target=lambda: self.said.append(self.proc.stderr.read()), daemon=True),  # type: ignore[union-attr]
            threading.Thread(target=lambda: self.loaded.append(self.proc.stdout.read()), daemon=True),  # type: ignore[union-attr]
        ]
        for reader in self.readers:
            reader.start()

    def _gave_up(self) -> None:
        try:
            self.proc.wait(timeout=5)  # type: ignore[union-attr]  # it closed its input: it is saying why and ending
        except subprocess.TimeoutExpired:
            pass
        self.abort()  # its stderr, read to the end, says why
        self.failure = b"".join(self.said).decode(errors="replace").strip() or "docker load stopped reading its archive"

    def finish(self, trailer: bytes) -> Optional[str]:
        assert self.proc is not None
        try:
            _write_all(self.fd, trailer)
        except OSError:
            pass  # it quit early: its status and stderr say why
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.fd = -1
        try:
            status = self.proc.wait(timeout=LOAD_ANSWER_TIME)
        except subprocess.TimeoutExpired:
            self.abort()
            return _silent()
        for reader in self.readers:
            reader.join()
        self.proc = None
        self.output = b"".join(self.loaded)
        if status != 0:
            return b"".join(self.said).decode(errors="replace").strip() or f"docker load exited with status {status}"
        return None

    def abort(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            for reader in self.readers:
                reader.join(timeout=5)  # a child it left holding its output must not hold us too
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc = None
        self.fd = -1


class EngineLoad(Load):
    """``POST /images/load`` on the engine's socket ``path``, the archive in HTTP chunks. Raises OSError when the
    socket cannot be reached (the CLI then)."""

    def __init__(self, path: str, request: bytes = LOAD_REQUEST) -> None:
        super().__init__()
        self.sock: Optional[socket.socket] = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.sock.connect(path)
            self.sock.sendall(request)
        except OSError:
            self.sock.close()
            raise
        self.fd = self.sock.fileno()
        self.messages: List[dict] = []  # the engine's answer, once finished

    def _before(self, size: int) -> bytes:
        return b"%x\r\n" % size

    def _after(self) -> bytes:
        return b"\r\n"

    def _why(self) -> str:
        # It stopped reading: its answer, if it sent one, says why (a full disk, say).
        failed = None
        if self.sock is not None:
            try:
                failed, _ = answer_of(read_answer(self.sock, time.monotonic() + 10))
            except OSError:
                pass
        return failed or "the engine stopped reading the archive"

    def send_file(self, path: str) -> None:
        """The whole of file ``path`` as one chunk, by the kernel (sendfile)."""
        assert self.sock is not None
        with open(path, "rb") as archive:
            size = os.fstat(archive.fileno()).st_size
            self.sock.sendall(self._before(size))
            self.sock.sendfile(archive, 0, size)
            self.sock.sendall(self._after())

    def finish(self, trailer: bytes) -> Optional[str]:
        assert self.sock is not None
        try:
            if trailer:
                self.sock.sendall(self._before(len(trailer)) + trailer + self._after())
            self.sock.sendall(b"0\r\n\r\n")
        except OSError:
            pass  # it stopped reading: its answer says why
        try:
            answer = read_answer(self.sock, time.monotonic() + LOAD_ANSWER_TIME)
            failed, self.output = answer_of(answer)
            self.messages = messages_of(answer)
        except TimeoutError:
            failed = _silent()
        except OSError as exc:
            failed = f"the engine did not answer the load: {exc.strerror or exc}"
        self.abort()
        return failed

    def abort(self) -> None:
        if self.sock is not None:
            self.sock.close()  # a body without its end: the engine's load fails and creates nothing
            self.sock = None
        self.fd = -1


class EngineImport(EngineLoad):
    """A base layer's carrier made by ``docker import`` (``POST /images/create?fromSrc=-``): the body is the layer's
    tar itself, and the engine unpacks it straight into its store as it comes. A load first unpacks its archive
    to a directory of its own and registers the layer only once the archive has ended (0.5 s for 100 MiB after
    the last byte here, and every byte written twice). Only a base layer can come this way: an import has no
    parent. The engine checks nothing against a config here, so ``finish`` asks for the new image's layers and
    says what arrived if it is not ``digest``. A body without its end (``abort``) creates nothing."""

    def __init__(self, path: str, label: str, digest: str) -> None:
        request = (
            b"POST /images/create?fromSrc=-&changes=LABEL%%20%s%%3D1 HTTP/1.1\r\nHost: docker\r\nUser-Agent: shipper-receiver\r\n"
            b"Content-Type: application/x-tar\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" % label.encode()
        )
        super().__init__(path, request)
        self.digest = digest
        self.image_id = ""  # the image it made

    def finish(self, trailer: bytes) -> Optional[str]:
        failed = super().finish(b"")  # the layer is the whole body: nothing goes after it
        if failed is not None:
            return failed
        made = [m.get("status") for m in self.messages if _IMAGE_ID.fullmatch(str(m.get("status")))]
        if not made:
            return "the engine's answer to the import named no image"
        self.image_id = str(made[-1])
        layers = image_layers(self.image_id)
        if layers == [self.digest]:
            return None
        remove_images([self.image_id])  # not what was asked for: not a carrier of anything
        self.image_id = ""
        if layers is None:
            return f"the engine did not say what it made of layer {self.digest} (its image could not be read)"
        return f"layer {self.digest} arrived corrupt: the engine made {', '.join(layers) or 'nothing'} of it"


def image_layers(image_id: str) -> Optional[List[str]]:
    """The layers (diff IDs) of image ``image_id`` on the engine's socket, or None where it cannot say."""
    if ENGINE_SOCKET is None:
        return None
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(60)
            sock.connect(ENGINE_SOCKET)
            sock.sendall(f"GET /images/{image_id}/json HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
            answer = read_answer(sock, time.monotonic() + 60)
    except OSError:
        return None
    status, body = status_and_body(answer)
    if status != "200":
        return None
    try:
        layers = json.loads(body)["RootFS"]["Layers"]
    except (ValueError, KeyError, TypeError):
        return None
    return [str(layer) for layer in layers] if isinstance(layers, list) else None


def _silent() -> str:
    return f"the engine did not answer the load within {LOAD_ANSWER_TIME:g} s of its archive's end: check dockerd on this host"


def _engine_load() -> Optional[EngineLoad]:
    """A load on the engine's socket, where there is one that answers."""
    if ENGINE_SOCKET is not None:
        try:
            return EngineLoad(ENGINE_SOCKET)
        except OSError:
            pass  # not there, or not ours to use: the CLI says why, if anything is wrong
    return None


def start_import(label: str, digest: str) -> Optional[EngineImport]:
    """A base layer's import on the engine's socket (``EngineImport``), or None where there is none that answers."""
    if ENGINE_SOCKET is not None:
        try:
            return EngineImport(ENGINE_SOCKET, label, digest)
        except OSError:
            pass
    return None


def start_load(cli_args: Sequence[str] = ()) -> Load:
    """A load on the engine's socket where there is one that answers, else ``docker load -q CLI_ARGS``."""
    return _engine_load() or CliLoad(cli_args)



def load_file(path: str) -> Optional[str]:
    """Load the archive in file ``path``; None when it worked, else what it said."""
    load = _engine_load()
    if load is not None:
        try:
            load.send_file(path)
        except OSError:
            pass  # it stopped reading: its answer says why
        return load.finish(b"")
    done = subprocess.run(["docker", "load", "-q", "-i", path], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    if done.returncode != 0:
        return done.stderr.decode(errors="replace").strip() or f"docker load exited with status {done.returncode}"
    return None


def load_stream(chunks: Iterator[bytes], out: IO[bytes]) -> Optional[str]:
    """The image's own load of ``chunks``, its output passed on to ``out``; None when it worked, else what it said."""
    load = start_load()
    try:
        for chunk in chunks:
            load.write(chunk)
            if not load.alive:
                break  # it quit early: it says why
    except OSError as exc:  # a spooled member could not be read back
        load.abort()
        return f"cannot read the stream back from the spool: {exc.strerror or exc}"
    failed = load.failure or load.finish(b"")
    if failed is None:
        try:
            out.write(load.output)
            out.flush()
        except OSError:
            pass  # the connection dropped after the last byte: the image is in, nobody to tell (the next move finds it)
    return failed


def remove_images(image_ids: Sequence[str]) -> None:
    """The carriers, once the image holds their layers (those never made are not there: errors ignored)."""
    if not image_ids:
        return
    if ENGINE_SOCKET is not None:
        try:
            for image_id in image_ids:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                    sock.settimeout(60)
                    sock.connect(ENGINE_SOCKET)
                    sock.sendall(f"DELETE /images/{image_id} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
                    read_answer(sock, time.monotonic() + 60)
            return
        except OSError:
            pass  # the CLI, then
    subprocess.run(["docker", "rmi", *image_ids], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
