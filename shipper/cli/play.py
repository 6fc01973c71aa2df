"""``shipper play``: run a playbook over the inventory."""

from __future__ import annotations

from pathlib import Path

import click

from shipper.cli.targets import complete_targets
from shipper.cli.options import env_of, finish, inventory_option, json_option
from shipper.cli.output import table
from shipper.errors import ExitStatus, UsageError
from shipper.inventory import load_inventory
from shipper.playbook import HostResult, load_playbook, prepare, run


def _extra(pairs: tuple[str, ...]) -> dict[str, str]:
    extra = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-e takes KEY=VALUE, not {pair!r}")
        extra[key.strip()] = value
    return extra


@click.command("play")
@inventory_option
@json_option
@click.argument("playbook_path", metavar="PLAYBOOK")
@click.option("-e", "--extra-var", "extra", multiple=True, metavar="KEY=VALUE", help="A variable for the templates (wins over vars:).")
@click.option("--check", is_flag=True, help="Say what every step would change on every host; change nothing.")
@click.option("--limit", metavar="TARGET", help="Only these hosts (an Ansible host pattern).", shell_complete=complete_targets)
@click.option("--fail-fast", is_flag=True, help="Stop the whole play at the first failed step.")
@click.pass_context
def play(ctx: click.Context, inventory_path: str, as_json: bool, playbook_path: str, extra: tuple[str, ...], check: bool, limit: str | None, fail_fast: bool) -> None:
    """Run PLAYBOOK's steps over the inventory: per step and host, changed, unchanged or failed.

    Everything is checked first (the file, every template for every host);
    a host that fails a step takes no further part, the others go on.
    """
    env = env_of(ctx)
    playbook = load_playbook(Path(playbook_path))
    prepared = prepare(playbook, load_inventory(inventory_path), _extra(extra), limit, check)
    rows: list[list[str]] = []

    def show(result: HostResult) -> None:
        if as_json:
            env.json_line({"event": "result", "check": check, **result.to_json()})
        else:
            detail = result.error.message if result.error else result.detail
            rows.append([result.step, result.host, ("would change" if check and result.status == "changed" else result.status), detail])

    results = run(prepared, fail_fast, show)
    if not as_json:
        env.out(table(["STEP", "HOST", "RESULT", "DETAIL"], rows))
        for result in results:
            if result.error is not None:
                env.error(result.error)
    counts = {s: sum(1 for r in results if r.status == s) for s in ("changed", "unchanged", "failed", "skipped")}
    if as_json:
        env.summary.update(check=check, **counts)
    else:
        said = {"changed": "would change"} if check else {}
        env.out(", ".join(f"{n} {said.get(s, s)}" for s, n in counts.items() if n) or "nothing to do")
    finish(int(ExitStatus.PARTIAL) if counts["failed"] else 0)
