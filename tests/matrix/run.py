"""The engine matrix: what shipper does with each kind of engine, as a table.

    scripts/matrix        (fetches trixie's Docker 26.1 and sid's 28.5 once, into /var/cache/shipper/engines)

A lab of its own (/tmp/shipper-lab-matrix, 127.0.5.x): host ``old`` runs the
system's Docker 20.10; one host per other kind. For each kind: a full move from
20.10, a thin move (the base already there), a move back to 20.10, a bundle
load, and the registry route. Each cell is "ok" (proven on the far side: same
layers, and the image runs where it can) or the error shipper gave.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image  # noqa: E402

KINDS = {"n26": "26", "n26c": "26-containerd", "n28": "28", "n28c": "28-containerd", "pod": "podman"}
BASE = (Layer(4 << 20, "matrix-base"),)
FULL = SyntheticImage("matrix/app:1", (*BASE,), cmd=("sh",), files=busybox_image().files)
THIN = SyntheticImage("matrix/app:2", (*BASE, Layer(256 << 10, "matrix-next")), cmd=("sh",), files=busybox_image().files)


def shipper(*args: str) -> tuple[bool, str]:
    done = subprocess.run([sys.executable, "-m", "shipper", *args], capture_output=True, text=True, cwd=ROOT)
    error = next((line[len("error: "):] for line in done.stderr.splitlines() if line.startswith("error: ")), done.stderr.strip()[-200:])
    return done.returncode == 0, error


def layers(lab: Lab, host: str, name: str) -> list[str] | None:
    found = lab.docker(host, "image", "inspect", "-f", "{{json .RootFS.Layers}}", name, check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def proven(lab: Lab, host: str, image: SyntheticImage) -> str:
    if layers(lab, host, image.name) != layers(lab, "old", image.name):
        return "arrived with other layers" if layers(lab, host, image.name) else "not there under its tag"
    ran = lab.docker(host, "run", "--rm", "--network", "none", image.name, "echo", "ran", check=False)
    return "ok" if ran.stdout.strip() == "ran" else f"ok (does not run here: {ran.stderr.strip()[-80:]})"


def cell(ok_error: tuple[bool, str], check: str) -> str:
    ok, error = ok_error
    return check if ok else f"failed: {error[:160]}"


def main() -> None:
    lab = Lab(Path("/tmp/shipper-lab-matrix"), "127.0.5", ("old", *KINDS), kinds=KINDS)
    lab.down(purge=True)
    lab.up()
    inventory = str(lab.local_inventory_path)
    plain = f"http://{lab.plain_registry.host_port}"
    rows = []
    try:
        lab.load_images("old", [FULL, THIN])
        for host, kind in KINDS.items():
            info = shipper("ping", host, "-i", inventory)
            full = shipper("move", FULL.name, "--from", "old", "--to", host, "-i", inventory)
            full_cell = cell(full, proven(lab, host, FULL))
            thin = shipper("move", THIN.name, "--from", "old", "--to", host, "-i", inventory, "--json")
            thin_cell = cell(thin, proven(lab, host, THIN))
            lab.docker("old", "image", "rm", "-f", THIN.name, check=False)
            back = shipper("move", THIN.name, "--from", host, "--to", "old", "-i", inventory)
            back_cell = cell(back, "ok" if layers(lab, "old", THIN.name) else "not there")
            lab.load_images("old", [THIN])
            bundle = Path(f"/tmp/shipper-lab-matrix/{host}.tar")
            bundle.unlink(missing_ok=True)
            made = shipper("bundle", "create", FULL.name, "--from", "old", "-o", str(bundle), "-i", inventory)
            lab.docker(host, "image", "rm", "-f", FULL.name, check=False)
            loaded = shipper("bundle", "load", str(bundle), "--to", host, "-i", inventory) if made[0] else made
            bundle_cell = cell(loaded, proven(lab, host, FULL))
            lab.docker(host, "image", "rm", "-f", FULL.name, check=False)
            via = shipper("move", FULL.name, "--from", "old", "--to", host, "--via", "registry", "--registry", plain, "-i", inventory)
            registry_cell = cell(via, proven(lab, host, FULL))
            rows.append([f"{kind} ({'up' if info[0] else 'down'})", full_cell, thin_cell, back_cell, bundle_cell, registry_cell])
    finally:
        lab.down(purge=True)
    print(f"engine matrix, {time.strftime('%Y-%m-%d')}: 20.10 (classic) with each kind\n")
    print("| engine | move from 20.10 | thin move | move to 20.10 | bundle load | via registry |\n|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")


if __name__ == "__main__":
    main()
