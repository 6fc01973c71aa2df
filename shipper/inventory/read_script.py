"""Dynamic inventories: executable scripts, and the JSON that ``ansible-inventory --list`` prints.

Any inventory plugin a user already runs (clouds, CMDBs) reaches shipper
through either door: ``ansible-inventory -i aws_ec2.yml --list > fleet.json``,
or a script that prints that JSON when called with ``--list`` (Ansible's
``script`` plugin protocol: groups with ``hosts``/``children``/``vars``, and
``_meta.hostvars``; without ``_meta``, ``--host NAME`` is asked per host).
``{"__ansible_unsafe": ...}`` and ``{"__ansible_vault": ...}`` are read back
as the tags they stand for.

A script is run without a shell, with stdin from /dev/null, under a time
limit and an output cap; one that other users may write to is refused, as
OpenSSH refuses such a config file (it would run as whoever runs shipper).
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import threading
from pathlib import Path
from typing import Any

from shipper.errors import InventoryError, Origin
from shipper.inventory.graph import Graph
from shipper.yamlfile import Unsafe, Vaulted, mark_unsafe

SCRIPT_TIMEOUT = 60.0  # seconds for one run of an inventory script
MAX_OUTPUT = 64 * 1024 * 1024  # bytes of JSON a script may print
MAX_HOST_CALLS = 1000  # "--host NAME" runs, for scripts without _meta


def is_list_json(data: Any) -> bool:
    """Whether parsed JSON has the shape of ``--list`` output rather than of a YAML inventory."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(isinstance(body, list) or (isinstance(body, dict) and isinstance(body.get("hosts"), list)) for body in data.values())


def read_list_json(data: Any, graph: Graph, origin: Origin, host_vars: Any = None) -> list[str]:
    """Add ``--list`` JSON to ``graph``; returns the hosts it listed (whose variables ``_meta`` gives)."""
    if not isinstance(data, dict):
        raise InventoryError(f"{origin.path}: inventory JSON must be an object of groups, not {type(data).__name__}")
    listed: dict[str, None] = {}
    meta = data.get("_meta")
    if meta is not None and not isinstance(meta, dict):
        raise InventoryError(f"{origin.path}: '_meta' must be an object")
    hostvars = meta.get("hostvars") if isinstance(meta, dict) else None
    if meta is not None and not isinstance(hostvars, dict):
        raise InventoryError(f"{origin.path}: '_meta.hostvars' must be an object of hosts")
    for group, body in data.items():
        if group != "_meta":
            _group(graph, str(group), body, origin, listed)
    for host in listed:
        variables = hostvars.get(host, {}) if hostvars is not None else (host_vars(host) if host_vars else {})
        if not isinstance(variables, dict):
            raise InventoryError(f"{origin.path}: the variables of host {host!r} must be an object")
        for key, value in variables.items():
            graph.set_host_var(host, key, _tags(value), origin)
    return list(listed)


def _group(graph: Graph, name: str, body: Any, origin: Origin, listed: dict[str, None]) -> None:
    graph.add_group(name, origin)
    if not isinstance(body, dict):
        body = {"hosts": body}
    elif not any(k in body for k in ("hosts", "vars", "children")):
        body = {"hosts": [name], "vars": mark_unsafe(dict(body))}  # Ansible's shorthand: a group that is its own only host, never templated
    hosts = body.get("hosts", [])
    if not isinstance(hosts, list):
        raise InventoryError(f"{origin.path}: '{name}.hosts' must be a list of host names")
    for host in hosts:
        if not isinstance(host, str):
            raise InventoryError(f"{origin.path}: '{name}.hosts' holds {host!r}, which is not a host name")
        graph.add_host(host, origin, name)
        listed[host] = None
    variables = body.get("vars", {})
    if not isinstance(variables, dict):
        raise InventoryError(f"{origin.path}: '{name}.vars' must be an object")
    for key, value in variables.items():
        graph.set_group_var(name, key, _tags(value), origin)
    children = body.get("children", [])
    if not isinstance(children, list):
        raise InventoryError(f"{origin.path}: '{name}.children' must be a list of group names")
    for child in children:
        graph.add_group(str(child), origin)
        graph.add_child(name, str(child), origin)


def _tags(value: Any) -> Any:
    if isinstance(value, dict):
        if set(value) == {"__ansible_unsafe"} and isinstance(value["__ansible_unsafe"], str):
            return Unsafe(value["__ansible_unsafe"])
        if set(value) == {"__ansible_vault"} and isinstance(value["__ansible_vault"], str):
            return Vaulted(value["__ansible_vault"])
        return {k: _tags(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_tags(v) for v in value]
    return value


def read_script(path: Path, graph: Graph) -> None:
    """Run the inventory script ``path`` with ``--list`` (and ``--host`` where it gives no ``_meta``)."""
    _check_owner(path)
    origin = Origin(str(path), None)
    data = _run(path, ["--list"])
    calls = 0

    def host_vars(host: str) -> Any:
        nonlocal calls
        calls += 1
        if calls > MAX_HOST_CALLS:
            raise InventoryError(f"inventory script {path} gives no _meta.hostvars for more than {MAX_HOST_CALLS} hosts", hint="print '_meta': {'hostvars': ...} in --list")
        return _run(path, ["--host", host], empty_ok=True)

    read_list_json(data, graph, origin, host_vars)


def _check_owner(path: Path) -> None:
    info = path.stat()
    if info.st_mode & (stat.S_IWGRP | stat.S_IWOTH) or info.st_uid not in (0, os.getuid()):
        raise InventoryError(
            f"inventory script {path} may be changed by other users (mode {stat.filemode(info.st_mode)}, owner uid {info.st_uid}); shipper will not run it",
            hint=f"chmod go-w {path} (and own it yourself), or remove its execute bit to read it as a file",
        )


def _run(path: Path, args: list[str], empty_ok: bool = False) -> Any:
    command = f"{path} {' '.join(args)}"
    try:
        process = subprocess.Popen([str(path), *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except OSError as exc:
        raise InventoryError(f"cannot run inventory script {path}: {exc.strerror}", hint="check its #! line, or remove its execute bit to read it as a file") from None
    try:
        stdout, stderr = _bounded(process, command)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    if process.returncode != 0:
        detail = stderr.decode("utf-8", "replace").strip()[-500:]
        raise InventoryError(f"inventory script '{command}' failed with exit code {process.returncode}" + (f": {detail}" if detail else ""))
    if empty_ok and not stdout.strip():
        return {}
    try:
        return json.loads(stdout)
    except (ValueError, RecursionError) as exc:
        raise InventoryError(f"inventory script '{command}' printed something that is not JSON: {exc}"[:500]) from None


def _bounded(process: subprocess.Popen[bytes], command: str) -> tuple[bytes, bytes]:
    # communicate() would read without limit; a thread per stream keeps both pipes drained under the cap.
    chunks: dict[str, list[bytes]] = {"out": [], "err": []}
    too_big = threading.Event()

    def drain(stream: Any, key: str, cap: int) -> None:
        total = 0
        while block := stream.read(65536):
            total += len(block)
            if total > cap:
                too_big.set()
                process.kill()
                return
            chunks[key].append(block)

    threads = [threading.Thread(target=drain, args=(process.stdout, "out", MAX_OUTPUT), daemon=True),
               threading.Thread(target=drain, args=(process.stderr, "err", 1024 * 1024), daemon=True)]  # fmt: skip
    for thread in threads:
        thread.start()
    try:
        process.wait(timeout=SCRIPT_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        raise InventoryError(f"inventory script '{command}' gave no answer in {SCRIPT_TIMEOUT:.0f} s", hint="run it by hand to see where it hangs") from None
    for thread in threads:
        thread.join(timeout=5)
    if too_big.is_set():
        raise InventoryError(f"inventory script '{command}' printed more than {MAX_OUTPUT // 2**20} MiB")
    return b"".join(chunks["out"]), b"".join(chunks["err"])
