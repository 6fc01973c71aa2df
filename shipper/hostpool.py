"""The host pool: one function per host, concurrently, keeping every host's outcome.

A failing host never stops the others: its ``ShipperError`` is kept in its
``Outcome`` and the caller decides what the whole run amounts to.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Generic, TypeVar
from collections.abc import Callable, Iterator, Sequence

from shipper.errors import ConnectionFailed, ExitStatus, ShipperError
from shipper.inventory.model import Host

T = TypeVar("T")

MAX_PARALLEL_HOSTS = 32  # threads mostly wait on the network; beyond this sshd rate limits bite (MaxStartups 10:30:100)
_forks = MAX_PARALLEL_HOSTS  # --forks: hosts worked on at once, for every command of this process


def set_forks(forks: int) -> None:
    """At most ``forks`` hosts at once from now on (Ansible's ``--forks``)."""
    global _forks
    _forks = max(1, forks)


def forks() -> int:
    return _forks


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """What happened on one host: a value or an error."""

    host: Host
    value: T | None = None
    error: ShipperError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def for_each_host(hosts: Sequence[Host], action: Callable[[Host], T]) -> list[Outcome[T]]:
    """``action(host)`` for every host at once; outcomes in the hosts' order."""

    def attempt(host: Host) -> Outcome[T]:
        try:
            return Outcome(host, value=action(host))
        except ShipperError as exc:
            return Outcome(host, error=exc)

    if len(hosts) <= 1:
        return [attempt(h) for h in hosts]
    with worker_pool(min(len(hosts), _forks)) as pool:
        return list(pool.map(attempt, hosts))


@contextlib.contextmanager
def worker_pool(workers: int, name: str = "") -> Iterator[ThreadPoolExecutor]:
    """A thread pool waited for on the way out, unless the way out is an interruption (Ctrl-C, SIGTERM, SIGHUP:
    a ``BaseException``). Then its queued work is dropped and its running work is not waited for: a plain pool's
    exit would wait for it (a pull, a cache's filling: minutes) before any cleanup further out could run, and it
    is those cleanups (engines closed, fillings stopped) that end the work still running."""
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix=name)
    try:
        yield pool
    except Exception:
        pool.shutdown(wait=True)
        raise
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def exit_status(outcomes: Sequence[Outcome[T]]) -> ExitStatus:
    """See ``exit_status_of``."""
    return exit_status_of([o.error for o in outcomes])


def exit_status_of(errors: Sequence[ShipperError | None]) -> ExitStatus:
    """0 when all succeeded, 4 when some failed; when all failed, 3 if all were connection failures, else 1."""
    failed = [e for e in errors if e is not None]
    if not failed:
        return ExitStatus.OK
    if len(failed) < len(errors):
        return ExitStatus.PARTIAL
    if all(isinstance(e, ConnectionFailed) for e in failed):
        return ExitStatus.CONNECTION
    return ExitStatus.ERROR
