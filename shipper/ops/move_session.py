"""A move as the command line and playbooks hold it: plan, then run, sharing engine connections and the
program started early on the source; a target whose link failed is planned again and resumed (``--retry``).

Planning (move_plan.py) needs only the survey; carrying a plan out (move_run.py) brings the delivery's machinery
(archives, bundles, compression, registry uploads): it is imported when a move runs, so a dry-run does not pay
for it (a fifth of its start-up, #20)."""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Callable, Sequence

from shipper.engine.pool import EnginePool
from shipper.errors import ConnectionFailed, HostKeyMismatch, HostKeyUnknown, RegistryAuthFailed, SSHAuthenticationFailed, ShipperError, UsageError
from shipper.inventory.model import Host
from shipper.ops.move_plan import MovePlan, RouteRequest, plan_move
from shipper.platforms import Platform
from shipper.progress import Reporter
from shipper.transfer.limits import RateLimits

if TYPE_CHECKING:
    from shipper.ops.move_registry import RegistryRoute
    from shipper.ops.release_policy import ReleasePolicy
    from shipper.transfer.commit import TargetResult
    from shipper.transfer.program import SourceProgram
    from shipper.transfer.store_upload import StoreUploader

__all__ = ["MoveSession", "retryable"]


class MoveSession:
    """Plan, then run, a move, with what both share: engine connections and,
    when the bytes will go host to host, the program on the source, started at
    once so that its SSH login and start-up overlap the planning.

        with MoveSession(source, targets, images, via) as session:
            plan = session.plan()
            results = session.run(plan, reporter)
    """

    def __init__(
        self, source: Host, targets: Sequence[Host], images: Sequence[str], via: RouteRequest | None = None, prestart: bool = True,
        store_read: bool = True, registry: RegistryRoute | None = None, limits: RateLimits = RateLimits(), compress: str = "auto",
        platform: Platform | None = None, resume: bool = True, releases: ReleasePolicy | None = None,
    ) -> None:  # fmt: skip
        self.source, self.targets, self.images, self.via = source, list(targets), list(images), via
        self.store_read, self.registry, self.limits, self.compress, self.platform = store_read, registry, limits, compress, platform
        self.resume, self.releases = resume, releases
        self.engines = EnginePool()
        self.program: SourceProgram | StoreUploader | None = None
        if prestart:  # a move that will run (not a dry-run): the delivery's modules are needed anyway
            from shipper.ops.move_run import prestart_program

            self.program = prestart_program(source, [t for t in self.targets if t.name != source.name], self.images, via, registry, store_read, platform)
            if self.program is not None and self.engines.share(source, self.program.session):
                self.program.session_owned = False

    def plan(self, force: bool = False) -> MovePlan:
        """The plan; with a release policy (--verify-key), every source image checked against its signed
        statement first: TrustError before anything crosses."""
        plan = self._plan(self.targets, force)
        if self.limits and plan.route == "registry":
            raise UsageError(
                "--limit-rate and --limit-total cannot hold a move through a registry: the engines push and pull by themselves",
                hint="move --via ssh (the default), relay or direct to limit the rate",
            )  # fmt: skip
        if self.releases is not None:
            from shipper.ops.release import vouch  # signatures' modules, only for a move that checks them

            plan = replace(plan, releases=vouch(plan.images, plan.source.describe(), plan.source_store, self.releases))
        return plan

    def _plan(self, targets: Sequence[Host], force: bool) -> MovePlan:
        plan = plan_move(self.source, targets, self.images, self.via, force, self.engines, self.store_read, self.registry, self.platform)
        return replace(plan, limits=self.limits, compress=self.compress, resume=self.resume)

    def run(
        self, plan: MovePlan, reporter: Reporter | None = None, retries: int = 0, on_retry: Callable[[TargetResult, int, float], None] | None = None,
    ) -> list[TargetResult]:  # fmt: skip
        """Run ``plan``; with ``retries``, a target whose link failed (retryable) is planned again and resumed, up to
        that many times, after a wait that doubles each time: what arrived before the cut is not sent again."""
        from shipper.ops.move_run import run_move  # the delivery's machinery: a dry-run never loads it

        program, self.program = self.program, None
        results = run_move(plan, reporter, self.engines, program)
        for attempt in range(2, retries + 2):
            again = [r for r in results if r.error is not None and retryable(r.error)]
            if not again:
                break
            wait = min(RETRY_WAIT * 2 ** (attempt - 2), RETRY_WAIT_MAX)
            for result in again:
                if on_retry is not None:
                    on_retry(result, attempt, wait)
            time.sleep(wait)
            self.engines.close()  # connections to a host whose link dropped may be dead: start afresh
            self.engines = EnginePool()
            hosts = [h for h in self.targets if h.name in {r.host for r in again}]
            replan = replace(self._plan(hosts, False), releases=plan.releases)
            redone = {r.host: r for r in run_move(replan, reporter, self.engines)}
            before = {r.host: r for r in again}
            results = [
                replace(redone[r.host], attempts=attempt, bytes_before=before[r.host].bytes_before + before[r.host].bytes_sent)
                if r.host in redone and r.host in before else r
                for r in results
            ]  # fmt: skip
        return results

    def __enter__(self) -> "MoveSession":
        return self

    def __exit__(self, *exc: object) -> None:
        if self.program is not None:
            self.program.cancel()
        self.engines.close()


RETRY_WAIT = 2.0  # seconds before the first retry; doubled for each one after
RETRY_WAIT_MAX = 60.0


def retryable(error: ShipperError) -> bool:
    """A failure another attempt may get past: the link to a host (SSH, connection), not a refusal or a bad image."""
    if isinstance(error, (SSHAuthenticationFailed, HostKeyUnknown, HostKeyMismatch, RegistryAuthFailed)):
        return False  # refused, not cut: the same again would be refused again
    if isinstance(error, ConnectionFailed):
        return True
    return "the stream was cut" in error.message
