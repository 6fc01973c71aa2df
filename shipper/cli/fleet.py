"""``shipper hosts``, ``ping`` and ``images``: look at the fleet."""

from __future__ import annotations

import json
from typing import Any

import click

from shipper.errors import UsageError
from shipper.cli.options import env_of, finish, inventory_option, json_option
from shipper.cli.output import Env, human_size, short_id, table
from shipper.cli.targets import choose, complete_targets, open_inventory
from shipper.inventory import Host, export
from shipper.inventory.export import json_value
from shipper.ops import fleet
from shipper.hostpool import Outcome, exit_status


def _host_json(host: Host, verbose: bool) -> dict[str, Any]:
    s = host.ssh
    document = {
        "name": host.name,
        "groups": list(host.groups),
        "engine": {"url": host.engine.url, "scheme": host.engine.scheme, "derived": host.engine.derived},
        "ssh": {
            "alias": s.alias,
            "hostname": s.hostname,
            "port": s.port,
            "user": s.user,
            "identity_files": list(s.identity_files),
            "known_hosts_files": list(s.known_hosts_files),
            "strict_host_key_checking": s.strict_host_key_checking,
            "proxy": s.proxy_command or s.proxy_jump,
            "sources": dict(s.sources),
        },
        "origin": str(host.origin),
        "vars": {key: json_value(value) for key, value in sorted(host.vars.items())},
    }
    if verbose:
        document["var_sources"] = dict(sorted(host.var_sources.items()))
    return document


@click.command()
@inventory_option
@json_option
@click.option("-v", "--verbose", is_flag=True, help="Also show each host's variables and where each setting and variable came from.")
@click.option("--list", "as_list", is_flag=True, help="Print the inventory as ansible-inventory --list prints it (to compare the two, or to save it).")
@click.argument("target", default="all", shell_complete=complete_targets)
@click.pass_context
def hosts(ctx: click.Context, inventory_path: str, as_json: bool, verbose: bool, as_list: bool, target: str) -> None:
    """List the hosts TARGET names (default: all) and how each is reached."""
    env = env_of(ctx)
    inventory = open_inventory(inventory_path, target)
    if as_list:
        env.document(export.as_list(inventory))
        return
    selected = choose(env, inventory, target)
    if as_json:
        for h in selected:
            env.emit("host", _host_json(h, verbose))
        env.summary["hosts"] = len(selected)
        return
    headers = ["HOST", "ENGINE", "SSH", "GROUPS"] + (["SSH SETTINGS FROM"] if verbose else [])
    rows = []
    for h in selected:
        row = [h.name, h.engine.url, h.ssh.destination, ",".join(h.groups) or "-"]
        if verbose:
            row.append(" ".join(f"{k}={v}" for k, v in h.ssh.sources.items() if v != "default"))
        rows.append(row)
    env.out(table(headers, rows))
    if verbose:
        for h in selected:
            env.out(f"\n{h.name}:" + ("" if h.vars else " (no variables)"))
            if h.vars:
                env.out(table(["  VARIABLE", "VALUE", "FROM"], [[f"  {k}", _shown(v), h.var_sources.get(k, "")] for k, v in sorted(h.vars.items())]))


def _shown(value: Any) -> str:
    text = json.dumps(json_value(value)) if not isinstance(value, str) else value
    return text if len(text) <= 60 else text[:57] + "..."


def _report_failures(env: Env, outcomes: list[Outcome[Any]]) -> None:
    for outcome in outcomes:
        if outcome.error is not None:
            env.error(outcome.error)


@click.command()
@inventory_option
@json_option
@click.argument("target", shell_complete=complete_targets)
@click.pass_context
def ping(ctx: click.Context, inventory_path: str, as_json: bool, target: str) -> None:
    """Reach the engine of every host TARGET names; exit 4 if some failed."""
    env = env_of(ctx)
    outcomes = fleet.ping(choose(env, open_inventory(inventory_path, target), target))
    if as_json:
        for outcome in outcomes:
            env.emit("ping", _ping_json(outcome))
        env.summary.update(hosts=len(outcomes), failed=sum(1 for o in outcomes if not o.ok))
    else:
        env.out(table(["HOST", "STATUS", "ENGINE", "API", "STORE", "OS/ARCH", "RTT"], [_ping_row(o) for o in outcomes]))
        _report_failures(env, outcomes)
    finish(exit_status(outcomes))


def _ping_row(outcome: Outcome[fleet.PingReport]) -> list[str]:
    if outcome.value is None:
        return [outcome.host.name, "failed", type(outcome.error).__name__, "", "", "", ""]
    info, rtt = outcome.value.info, outcome.value.rtt_seconds
    return [
        outcome.host.name,
        "ok",
        f"{info.product} {info.version}",
        info.client_api_version,
        f"{info.image_store} ({info.storage_driver})",
        f"{info.os}/{info.arch}",
        f"{rtt * 1000:.1f} ms",
    ]


def _ping_json(outcome: Outcome[fleet.PingReport]) -> dict[str, Any]:
    result: dict[str, Any] = {"host": outcome.host.name, "engine_url": outcome.host.engine.url, "ok": outcome.ok}
    if outcome.value is not None:
        result["engine"] = vars(outcome.value.info)
        result["rtt_ms"] = round(outcome.value.rtt_seconds * 1000, 3)
        if outcome.value.channel:
            result["channel"] = outcome.value.channel
    if outcome.error is not None:
        result["error"] = outcome.error.to_json()
    return result


@click.command()
@inventory_option
@json_option
@click.option("-a", "--all", "untagged", is_flag=True, help="Include untagged images.")
@click.option("-f", "--filter", "filters", multiple=True, metavar="reference=PATTERN", help="Only images whose name matches (docker images --filter): lab/*, app:1.*")
@click.argument("target", shell_complete=complete_targets)
@click.pass_context
def images(ctx: click.Context, inventory_path: str, as_json: bool, untagged: bool, filters: tuple[str, ...], target: str) -> None:
    """Images across the hosts TARGET names, side by side."""
    env = env_of(ctx)
    references = []
    for item in filters:
        key, sep, value = item.partition("=")
        if key != "reference" or not sep or not value:
            raise UsageError(f"--filter takes reference=PATTERN, not {item!r}", hint="for example --filter 'reference=lab/*'")
        references.append(value)
    selected = choose(env, open_inventory(inventory_path, target), target)
    rows, outcomes = fleet.images(selected, untagged=untagged, references=references)
    names = [h.name for h in selected]
    if as_json:
        for o in outcomes:
            env.emit("engine", {"host": o.host.name, "ok": o.ok, **({"error": o.error.to_json()} if o.error else {})})
        for r in rows:
            env.emit("image", {"name": r.name, "id": r.id, "size": r.size, "hosts": r.hosts})
        env.summary.update(hosts=len(outcomes), failed=sum(1 for o in outcomes if not o.ok), images=len(rows))
    else:
        failed = {o.host.name for o in outcomes if not o.ok}
        marks = lambda r: ["?" if n in failed else ("yes" if n in r.hosts else "-") for n in names]  # noqa: E731
        env.out(table(["IMAGE", "ID", "SIZE", *names], [[r.name, short_id(r.id), human_size(r.size), *marks(r)] for r in rows]))
        _report_failures(env, outcomes)
    finish(exit_status(outcomes))
