"""``python -m shipper.lab up|down|status``: run the local lab by hand."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from shipper.errors import ShipperError
from shipper.lab.images import BUSYBOX, Layer, SyntheticImage
from shipper.lab.lab import DEFAULT_NET, DEFAULT_ROOT, Lab


def demo_image(name: str, size_mb: int) -> SyntheticImage:
    """A runnable image (busybox) over a base and an app layer of random data."""
    base = Layer(size_mb * 3 // 4 << 20, "demo-base")
    app = Layer(size_mb // 4 << 20, f"demo-app-{name}")
    return SyntheticImage(name, (base, app), cmd=("sh", "-c", f"echo hello from {name}"), files=(("bin/busybox", BUSYBOX),))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m shipper.lab", description=__doc__)
    parser.add_argument("action", choices=["up", "down", "status", "build"])
    parser.add_argument("image", nargs="*", help="with build: HOST NAME, e.g. 'a demo/app:1'")
    parser.add_argument("--size-mb", type=int, default=64, help="with build: size of the image's data layer")
    parser.add_argument("--root", type=Path, default=DEFAULT_ROOT, help="lab directory (default %(default)s)")
    parser.add_argument("--net", default=DEFAULT_NET, help="first three octets of the hosts' loopback addresses")
    parser.add_argument("--hosts", default="a,b,c", help="host names, comma separated (default %(default)s)")
    parser.add_argument("--links", metavar="RATE", help="each host in a network namespace of its own, on a link of RATE both ways "
                        "(tc's syntax: 100mbit); --net must then lie in 198.18.0.0/15, e.g. 198.18.3")
    parser.add_argument("--no-registry", action="store_true", help="do not start the registry")
    parser.add_argument("--purge", action="store_true", help="with down: remove the lab directory too")
    args = parser.parse_args(argv)
    lab = Lab(args.root, args.net, [h for h in args.hosts.split(",") if h], links=args.links)
    try:
        if args.action == "up":
            lab.up(registry=not args.no_registry)
            print(f"lab up: {', '.join(lab.names)}; inventory {lab.inventory_path}", file=sys.stderr)
            print(f"  export SHIPPER_INVENTORY={lab.inventory_path}", file=sys.stderr)
        elif args.action == "build":
            if len(args.image) != 2:
                parser.error("build takes HOST NAME")
            host, name = args.image
            loaded = lab.load_images(host, [demo_image(name, args.size_mb)])
            print(f"built {', '.join(loaded)} on {host}", file=sys.stderr)
        elif args.action == "down":
            lab.down(purge=args.purge)
        else:
            print(json.dumps(lab.status(), indent=2))
    except ShipperError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        if exc.hint:
            print(f"hint: {exc.hint}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
