"""A program of shipper's own modules as one self-contained script, for a host's ``python3`` (standard library only).

Each module's source is served to ``import`` by a finder of its own, so each
runs as the module it is (its own names, its own ``from shipper.archive.X
import …``), exactly as in shipper's own process. Pasting the sources together
would let same-named functions replace each other.
"""

from __future__ import annotations

import os
from typing import Sequence

# How shipper starts a host's python3 for a program of its own: -I ignores the login's PYTHON* variables and the
# user's site-packages, -S the site module and every .pth file of the system's. The programs are standard library
# only, so nothing installed on the host can change what they run, and start-up skips what a site imports
# (a certifi .pth costs 50 ms a start on the lab's Debian).
HOST_PYTHON = "python3 -I -S"

# The finder is a finder and a loader by its methods alone: importlib.abc and importlib.util would import
# importlib.resources, pathlib and re first, a fifth of the program's start-up.
_BOOT = """import sys
from importlib.machinery import ModuleSpec
SOURCES = %(sources)s
class Finder:
    def find_spec(self, name, path=None, target=None):
        if name in ("shipper", "shipper.archive") or name in SOURCES:
            return ModuleSpec(name, self, is_package=name not in SOURCES)
        return None
    def create_module(self, spec):
        return None
    def exec_module(self, module):
        source = SOURCES.get(module.__name__)
        if source is not None:
            exec(compile(source, "<shipper " + module.__name__ + ">", "exec"), module.__dict__)
sys.meta_path.insert(0, Finder())
import shipper.archive.%(main)s
if __name__ == "__main__":
    shipper.archive.%(main)s.main()
"""


def program_script(modules: Sequence[str], main: str) -> str:
    """``modules`` of shipper.archive (in an order that imports only what came before), run as ``main``'s ``main()``."""
    here = os.path.dirname(os.path.abspath(__file__))
    sources = {}
    for module in modules:
        with open(os.path.join(here, module + ".py"), encoding="utf-8") as source:
            sources["shipper.archive." + module] = source.read()
    return _BOOT % {"sources": repr(sources), "main": main}
