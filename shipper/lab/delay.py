"""Latency for the lab, where the kernel has no netem: a TCP relay that holds every byte for a while each way.

``DelayRelay(("127.0.6.2", 2299), ("127.0.6.2", 2222), delay=0.05)`` joins each
connection it accepts to one of its own to the upstream address; whatever it
reads from either side it writes to the other ``delay`` seconds after it
arrived. A round trip through it costs ``2 * delay`` more, as netem's delay
does, and bytes behind the ones held are not held longer: the link's rate
stays what it was. The relay runs in a thread of its own (an asyncio loop);
``stop()`` closes every connection.

``far_inventory(lab)`` writes the lab's inventory, ssh_config and known_hosts
again with every host reached at ``FAR_PORT``, where the relays listen.
"""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Optional, Tuple

from shipper.lab.daemons import SSH_PORT
from shipper.lab.lab import Lab

Address = Tuple[str, int]
FAR_PORT = 2299  # where a lab host's relay listens, on the host's address
PIECE = 64 << 10
HELD = 256  # pieces held at most each way (16 MiB): a reader waits for the writer beyond that


class DelayRelay:
    def __init__(self, listen: Address, upstream: Address, delay: float) -> None:
        self.listen, self.upstream, self.delay = listen, upstream, delay
        self.connections = 0  # accepted so far
        self.bound: Optional[Address] = None  # the address listened on (its port, where ``listen`` asked for 0)
        self.trace: Optional[list] = None  # a list to record (time, connection, "up"/"down", bytes) in, for a look
        self._loop = asyncio.new_event_loop()
        self._server: Optional[asyncio.base_events.Server] = None
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"delay-{listen[0]}:{listen[1]}", daemon=True)
        self._tasks: "set[asyncio.Task[None]]" = set()

    def start(self) -> "DelayRelay":
        self._thread.start()
        started = asyncio.run_coroutine_threadsafe(self._serve(), self._loop)
        started.result(timeout=10)
        return self

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)

    def __enter__(self) -> "DelayRelay":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _serve(self) -> None:
        self._server = await asyncio.start_server(self._joined, *self.listen, reuse_address=True)
        self.bound = self._server.sockets[0].getsockname()[:2]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _joined(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        self.connections += 1
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        try:
            server_in, server_out = await asyncio.open_connection(*self.upstream)
        except OSError:
            client_out.close()
            return
        number = self.connections
        try:
            await asyncio.gather(self._pipe(client_in, server_out, (number, "up")), self._pipe(server_in, client_out, (number, "down")))
        except asyncio.CancelledError:
            pass  # the relay stops: the connection ends with it
        finally:
            for writer in (client_out, server_out):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, way: Tuple[int, str]) -> None:
        """One way: each piece read is written ``delay`` seconds after it came; the end passed on as an end."""
        queue: "asyncio.Queue[Tuple[float, bytes]]" = asyncio.Queue(maxsize=HELD)

        async def hold() -> None:
            while True:
                try:
                    piece = await reader.read(PIECE)
                except OSError:
                    piece = b""
                await queue.put((time.monotonic() + self.delay, piece))
                if self.trace is not None:
                    self.trace.append((time.monotonic(), *way, len(piece)))
                if not piece:
                    return

        holding = asyncio.ensure_future(hold())
        try:
            while True:
                due, piece = await queue.get()
                wait = due - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                if not piece:
                    if writer.can_write_eof():
                        writer.write_eof()
                    return
                writer.write(piece)
                await writer.drain()
        except OSError:
            return
        finally:
            holding.cancel()


def far_inventory(lab: Lab, port: int = FAR_PORT) -> Path:
    """The lab's inventory with every host reached at ``port`` on its address (its relay's: ``relays_for``), its
    host key listed there too. Returns the inventory's path."""
    config = lab.root / "far_ssh_config"
    known = lab.root / "far_known_hosts"
    known.write_text(lab.known_hosts.read_text().replace(f"]:{SSH_PORT} ", f"]:{port} "))
    config.write_text(lab.ssh_config.read_text().replace(f"Port {SSH_PORT}\n", f"Port {port}\n").replace(str(lab.known_hosts), str(known)))
    inventory = lab.root / "far.yml"
    inventory.write_text(lab.inventory_path.read_text().replace(str(lab.ssh_config), str(config)))
    return inventory


def relays_for(lab: Lab, rtt: float, port: int = FAR_PORT) -> "list[DelayRelay]":
    """A started relay in front of every lab host's sshd, adding ``rtt`` seconds to each round trip."""
    return [DelayRelay((lab.address(n), port), (lab.address(n), SSH_PORT), rtt / 2).start() for n in lab.names]
