"""The engine matrix: what shipper does with each kind of engine, as tables.

    scripts/matrix [--keep]   (fetches trixie's Docker 26.1 and sid's 28.5 once, into /var/cache/shipper/engines;
                               --keep leaves the lab up afterwards)

A lab of its own (/tmp/shipper-lab-matrix, 127.0.5.x), every engine reached
over SSH as in a fleet: host ``old`` runs the system's Docker 20.10; one host
per other kind. Two tables:

1. For each kind, with 20.10: a full move to it, a thin move (its base already
   there: the layers that crossed are counted), a move back to 20.10, a bundle
   made on it and loaded on 20.10, a bundle made on 20.10 loaded on it, and the
   registry route. A cell is "ok" only when proven on the far side (same layers
   as the source, and the image runs where the engine runs containers), else
   the error shipper gave.
2. Moves between engines of different kinds, each proven identical by content
   on the far side: the image is saved there again and its config digest,
   layer digests (each layer hashed) and tags compared with the source's; a
   container's output where the engine runs containers.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from shipper.lab import Lab, Layer, SyntheticImage, busybox_image  # noqa: E402
from shipper.lab.multiplatform import push_index, tag_holds  # noqa: E402

KINDS = {"n26": "26", "n26c": "26-containerd", "n28": "28", "n28c": "28-containerd", "pod": "podman"}
LABELS = {"old": "20.10", "n26": "26", "n26c": "26 containerd", "n28": "28", "n28c": "28 containerd", "pod": "podman"}
BASE = (Layer(4 << 20, "matrix-base"),)
FULL = SyntheticImage("matrix/app:1", (*BASE,), cmd=("sh",), files=busybox_image().files)
THIN = SyntheticImage("matrix/app:2", (*BASE, Layer(256 << 10, "matrix-next")), cmd=("sh",), files=busybox_image().files)
CROSS = [("old", "n28c"), ("n28c", "n26"), ("n28c", "old"), ("n26c", "n28c"), ("n28", "pod"), ("pod", "n28c"), ("pod", "old")]


def shipper(*args: str) -> tuple[bool, str, str]:
    """(ok, the error line, stdout)"""
    done = subprocess.run([sys.executable, "-m", "shipper", *args], capture_output=True, text=True, cwd=ROOT)
    error = next((line[len("error: "):] for line in done.stderr.splitlines() if line.startswith("error: ")), done.stderr.strip()[-200:])
    return done.returncode == 0, error, done.stdout


def layers(lab: Lab, host: str, name: str) -> list[str] | None:
    found = lab.docker(host, "image", "inspect", "-f", "{{json .RootFS.Layers}}", name, check=False)
    return json.loads(found.stdout) if found.returncode == 0 else None


def runs(lab: Lab, host: str, name: str) -> str:
    ran = lab.docker(host, "run", "--rm", "--network", "none", name, "echo", "ran", check=False)
    return "runs" if ran.stdout.strip() == "ran" else f"does not run here ({ran.stderr.strip()[-70:]})"


def proven(lab: Lab, host: str, image: SyntheticImage) -> str:
    there = layers(lab, host, image.name)
    if there != layers(lab, "old", image.name):
        return "arrived with other layers" if there else "not there under its tag"
    return "ok" if runs(lab, host, image.name) == "runs" else "ok (containers do not run through it here)"


def cell(outcome: tuple[bool, str, str], check: str) -> str:
    ok, error, _ = outcome
    return check if ok else f"failed: {error[:220]}"


def sent_layers(outcome: tuple[bool, str, str], host: str) -> str:
    """From a --json move: "n of m layers crossed"."""
    for line in outcome[2].splitlines():
        event = json.loads(line) if line.startswith("{") else {}
        for target in event.get("targets", []) if event.get("event") == "plan" else []:
            if target["host"] == host and "layers" in target:
                counted = target["layers"]
                return f"{counted['send']} of {counted['send'] + counted['present']} layers sent"
    return "?"


def content(lab: Lab, host: str, name: str) -> dict[str, object] | str:
    """The image as the engine saves it: config digest, each layer's digest (hashed, decompressed), tags."""
    with tempfile.TemporaryDirectory() as work:
        path = Path(work) / "image.tar"
        saved = lab.docker(host, "save", "-o", str(path), name, check=False)
        if saved.returncode != 0:
            return f"save failed: {saved.stderr.strip()[-100:]}"
        with tarfile.open(path) as archive:
            entry = json.load(archive.extractfile("manifest.json"))[0]  # type: ignore[arg-type]
            config = archive.extractfile(entry["Config"]).read()  # type: ignore[union-attr]
            digests = []
            for member in entry["Layers"]:
                raw = archive.extractfile(member).read()  # type: ignore[union-attr]
                data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
                digests.append("sha256:" + hashlib.sha256(data).hexdigest())
    diff_ids = json.loads(config)["rootfs"]["diff_ids"]
    if digests != diff_ids:
        return "its layers do not hash to its config's diff IDs"
    tags = [t.removeprefix("docker.io/").removeprefix("library/") for t in entry.get("RepoTags") or []]
    return {"config": "sha256:" + hashlib.sha256(config).hexdigest(), "layers": digests, "tags": tags}


def identical(lab: Lab, source: str, target: str, image: SyntheticImage) -> list[str]:
    want, got = content(lab, source, image.name), content(lab, target, image.name)
    if isinstance(got, str) or isinstance(want, str):
        return [str(got if isinstance(got, str) else want)] * 3 + ["-"]
    same = lambda key: "same" if want[key] == got[key] else f"differs: {got[key]}"  # noqa: E731
    config = same("config") + f" ({str(got['config'])[7:19]})"
    return [config, same("layers") + f" ({len(got['layers'])})", same("tags"), runs(lab, target, image.name)]  # type: ignore[arg-type]


def push_multi_platform(lab: Lab, registry: str) -> str:
    """``registry``/multi/app:1: FULL (pushed from 20.10) as linux/amd64 plus a small linux/arm64 image."""
    lab.docker("old", "tag", FULL.name, f"{registry}/multi/amd:1")
    lab.docker("old", "push", "-q", f"{registry}/multi/amd:1")
    push_index(registry, ("multi/amd", "1"), "multi/app", "1")
    return f"{registry}/multi/app:1"


def registry_holds_index(registry: str) -> str:
    held = tag_holds(registry, "multi/app", "1")
    return "still the index" if held.is_index else f"replaced by {held.media_type}"


def platform_rows(lab: Lab, inventory: str, name: str) -> list[list[str]]:
    """--platform linux/arm64 of ``name`` (an index of amd64 + arm64) from 28 containerd, which pulls its arm64 too:
    by each route, into a bundle, and the refusals. Proof: the far side's image is arm64 with the source's arm64 layers."""
    lab.docker("n28c", "pull", "--platform", "linux/arm64", "-q", name)
    arm = lab.docker("n28c", "image", "inspect", "--platform", "linux/arm64", "-f", "{{json .RootFS.Layers}}", name, check=False)
    want = json.loads(arm.stdout) if arm.returncode == 0 else None

    def arrived(host: str) -> str:
        found = lab.docker(host, "image", "inspect", "-f", "{{.Architecture}} {{json .RootFS.Layers}}", name, check=False)
        if found.returncode != 0:
            return "not there under its tag"
        arch, layers = found.stdout.split(" ", 1)
        return "arm64, same layers" if arch == "arm64" and json.loads(layers) == want else f"{arch}, layers {layers.strip()[:80]}"

    def refusal(outcome: tuple[bool, str, str]) -> str:
        return f"refused: {outcome[1][:200]}" if not outcome[0] else "moved (should have been refused)"

    rows = []
    for target, via in (("old", "ssh"), ("n26c", "relay")):
        lab.docker(target, "image", "rm", "-f", name, check=False)
        moved = shipper("move", name, "--from", "n28c", "--to", target, "--via", via, "--platform", "linux/arm64", "-i", inventory)
        rows.append([f"move to {LABELS[target]} ({via})", cell(moved, "ok"), arrived(target) if moved[0] else "-"])
    bundle = Path("/tmp/shipper-lab-matrix/arm64.tar")
    bundle.unlink(missing_ok=True)
    made = shipper("bundle", "create", name, "--from", "n28c", "--platform", "linux/arm64", "-o", str(bundle), "-i", inventory)
    lab.docker("old", "image", "rm", "-f", name, check=False)
    loaded = shipper("bundle", "load", str(bundle), "--to", "old", "-i", inventory) if made[0] else made
    rows.append(["bundle create, loaded on 20.10", cell(loaded, "ok"), arrived("old") if loaded[0] else "-"])
    plain = f"http://{lab.plain_registry.host_port}"
    via = shipper("move", name, "--from", "n28c", "--to", "n28", "--via", "registry", "--registry", plain, "--platform", "linux/arm64", "-i", inventory)
    rows.append(["move through a registry", refusal(via), "-"])
    absent = shipper("move", name, "--from", "n28c", "--to", "old", "--platform", "linux/arm/v7", "-i", inventory)
    rows.append(["a platform the engine lacks (linux/arm/v7)", refusal(absent), "-"])
    older = shipper("move", name, "--from", "n26c", "--to", "old", "--platform", "linux/amd64", "-i", inventory)  # it holds arm64 (above)
    rows.append(["from 26 containerd (API 1.45: no platform there)", refusal(older), "-"])
    return rows


def registry_bundle_rows(lab: Lab, inventory: str) -> list[list[str]]:
    """A bundle made from the registry (multi/app:1, the index of linux/amd64 + linux/arm64 as it is stored there,
    gzip layers and all), loaded on each kind of engine: each gets linux/amd64 under multi/app:1, FULL's layers."""
    bundle = Path("/tmp/shipper-lab-matrix/registry.tar")
    bundle.unlink(missing_ok=True)
    made = shipper("bundle", "create", "--from-registry", f"http://{lab.plain_registry.host_port}", "multi/app:1", "-o", str(bundle))
    want = layers(lab, "old", FULL.name)
    rows = []
    for host in ("old", "n26", "n26c", "n28", "n28c", "pod"):
        lab.docker(host, "image", "rm", "-f", "multi/app:1", check=False)
        loaded = shipper("bundle", "load", str(bundle), "--to", host, "-i", inventory) if made[0] else made
        got = layers(lab, host, "multi/app:1")
        rows.append([LABELS[host], cell(loaded, "ok"), "amd64, same layers" if got == want else f"layers {got}"])
    return rows


def main() -> None:
    lab = Lab(Path("/tmp/shipper-lab-matrix"), "127.0.5", ("old", *KINDS), kinds=KINDS)
    lab.down(purge=True)
    lab.up()
    inventory = str(lab.inventory_path)
    plain = f"http://{lab.plain_registry.host_port}"
    rows, cross, multi, pulled, platforms = [], [], [], [], []
    started = time.monotonic()
    try:
        lab.load_images("old", [FULL, THIN])
        for host, kind in KINDS.items():
            ping = shipper("ping", host, "-i", inventory)
            full = shipper("move", FULL.name, "--from", "old", "--to", host, "-i", inventory)
            full_cell = cell(full, proven(lab, host, FULL))
            thin = shipper("move", THIN.name, "--from", "old", "--to", host, "-i", inventory, "--json")
            thin_cell = cell(thin, proven(lab, host, THIN))
            thin_cell += f" ({sent_layers(thin, host)})" if thin[0] else ""
            lab.docker("old", "image", "rm", "-f", THIN.name, check=False)
            back = shipper("move", THIN.name, "--from", host, "--to", "old", "-i", inventory, "--json")
            back_cell = cell(back, "ok" if layers(lab, "old", THIN.name) else "not there")
            back_cell += f" ({sent_layers(back, 'old')})" if back[0] else ""
            lab.load_images("old", [THIN])
            made_there = Path(f"/tmp/shipper-lab-matrix/from-{host}.tar")
            made_there.unlink(missing_ok=True)
            made = shipper("bundle", "create", THIN.name, "--from", host, "-o", str(made_there), "-i", inventory)
            lab.docker("old", "image", "rm", "-f", THIN.name, check=False)
            loaded_old = shipper("bundle", "load", str(made_there), "--to", "old", "-i", inventory) if made[0] else made
            bundle_out_cell = cell(loaded_old, "ok" if layers(lab, "old", THIN.name) else "not there")
            lab.load_images("old", [THIN])
            bundle = Path(f"/tmp/shipper-lab-matrix/to-{host}.tar")
            bundle.unlink(missing_ok=True)
            made = shipper("bundle", "create", FULL.name, "--from", "old", "-o", str(bundle), "-i", inventory)
            lab.docker(host, "image", "rm", "-f", FULL.name, check=False)
            loaded = shipper("bundle", "load", str(bundle), "--to", host, "-i", inventory) if made[0] else made
            bundle_cell = cell(loaded, proven(lab, host, FULL))
            lab.docker(host, "image", "rm", "-f", FULL.name, check=False)
            via = shipper("move", FULL.name, "--from", "old", "--to", host, "--via", "registry", "--registry", plain, "-i", inventory, "--json")
            registry_cell = cell(via, proven(lab, host, FULL))
            if via[0] and "moby/moby#49784" in via[2]:
                registry_cell += " (the pull left it incomplete: moby/moby#49784; sent over SSH instead)"
            if not via[0]:  # leave the image there for the moves between kinds
                shipper("move", FULL.name, "--from", "old", "--to", host, "-i", inventory)
            label = f"{LABELS[host]}" + ("" if ping[0] else " (down)")
            rows.append([label, full_cell, thin_cell, back_cell, bundle_out_cell, bundle_cell, registry_cell])
        for source, target in CROSS:
            lab.docker(target, "image", "rm", "-f", FULL.name, check=False)
            moved = shipper("move", FULL.name, "--from", source, "--to", target, "-i", inventory)
            proof = identical(lab, source, target, FULL) if moved[0] else [f"failed: {moved[1][:200]}", "", "", ""]
            cross.append([LABELS[source], LABELS[target], *proof])
        # A containerd store whose base came by a pull holds it unpacked, but not as uncompressed content:
        # a thin load there makes an image without layers, and shipper must send it again whole.
        thin_bundle = Path("/tmp/shipper-lab-matrix/thin.tar")
        thin_bundle.unlink(missing_ok=True)
        shipper("bundle", "create", THIN.name, "--from", "n28", "-o", str(thin_bundle), "-i", inventory)  # an OCI layout (Docker 25+)
        remote = f"{lab.plain_registry.host_port}/{FULL.name}"  # pushed there by the registry cells
        for host in ("n26c", "n28c"):
            cells = []
            for way in ("move", "bundle load"):
                held = lab.docker(host, "images", "-aq").stdout.split()
                lab.docker(host, "image", "rm", "-f", *held, check=False)
                lab.docker(host, "pull", "-q", remote)
                if way == "move":
                    done = shipper("move", THIN.name, "--from", "old", "--to", host, "-i", inventory, "--json")
                else:
                    done = shipper("bundle", "load", str(thin_bundle), "--to", host, "-i", inventory, "--json")
                resent = " (sent again whole)" if "sent again with every layer" in done[2] else ""
                cells.append(cell(done, proven(lab, host, THIN)) + resent)
            pulled.append([LABELS[host], *cells])
        name = push_multi_platform(lab, lab.plain_registry.host_port)
        # An engine that holds none of its layers yet (else the pull is incomplete: moby/moby#49784, see README).
        held = lab.docker("n28c", "images", "-aq").stdout.split()
        lab.docker("n28c", "image", "rm", "-f", *held, check=False)
        lab.docker("n28c", "pull", "-q", name)
        partial = SyntheticImage(name, FULL.layers, cmd=FULL.cmd, files=FULL.files)
        for target, via in (("old", "ssh"), ("n26c", "ssh"), ("pod", "ssh"), ("n28", "registry")):
            extra = ["--registry", plain] if via == "registry" else []
            moved = shipper("move", name, "--from", "n28c", "--to", target, "--via", via, *extra, "-i", inventory)
            proof = identical(lab, "n28c", target, partial) if moved[0] else [f"failed: {moved[1][:200]}", "", "", ""]
            multi.append([f"28 containerd → {LABELS[target]} ({via})", *proof, registry_holds_index(lab.plain_registry.host_port)])
        platforms = platform_rows(lab, inventory, name)
        from_registry = registry_bundle_rows(lab, inventory)
    finally:
        if "--keep" not in sys.argv:  # --keep: leave the lab up, to look into a failed cell
            lab.down(purge=True)
    print(f"engine matrix, {time.strftime('%Y-%m-%d')}, over SSH, {time.monotonic() - started:.0f} s\n")
    print("| engine | move from 20.10 | thin move from 20.10 | move to 20.10 | its bundle, loaded on 20.10 | bundle from 20.10, loaded on it | via registry |")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    print("\n| from | to | config digest | layer digests | tags | container |\n|---|---|---|---|---|---|")
    for row in cross:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    print("\nA thin stream to a containerd store whose base came by a pull (held unpacked, not as uncompressed content):\n")
    print("| engine | thin move from 20.10 | thin bundle load |\n|---|---|---|")
    for row in pulled:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    print("\nA multi-platform image (index: linux/amd64 + linux/arm64) of which the 28 containerd engine holds amd64 only:\n")
    print("| move | config digest | layer digests | tags | container | the registry's tag afterwards |\n|---|---|---|---|---|---|")
    for row in multi:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    print("\nOne platform of a multi-platform image (--platform), the 28 containerd engine holding linux/amd64 and linux/arm64:\n")
    print("| what | outcome | proof on the far side |\n|---|---|---|")
    for row in platforms:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    print("\nA bundle made from the registry (bundle create --from-registry: the index as stored, gzip layers), loaded on each engine:\n")
    print("| engine | bundle load | proof |\n|---|---|---|")
    for row in from_registry:
        print("| " + " | ".join(c.replace("|", "/") for c in row) + " |")
    failed = [row[0] for row in from_registry if row[1] != "ok" or row[2] != "amd64, same layers"]
    failed += [row[0] for row in platforms if not (row[1] == "ok" and row[2] == "arm64, same layers" or row[1].startswith("refused"))]
    failed += [c for row in rows for c in row[1:] if not c.startswith("ok")] + [c for row in cross for c in row[2:5] if not c.startswith("same")]
    failed += [c for row in multi for c in row[1:4] if not c.startswith("same")] + [c for row in pulled for c in row[1:] if not c.startswith("ok")] + [row[5] for row in multi if row[5] != "still the index"]
    if failed:
        print(f"\n{len(failed)} cell(s) failed")
        sys.exit(1)


if __name__ == "__main__":
    main()
