"""A program of shipper's own modules as one self-contained script, for a host's ``python3`` (standard library only).

Each module's source is served to ``import`` by a finder of its own, so each
runs as the module it is (its own names, its own ``from shipper.archive.X
import …``), exactly as in shipper's own process. Pasting the sources together
would let same-named functions replace each other.
"""

from __future__ import annotations

import os
from typing import Sequence

_BOOT = """import importlib.abc, importlib.util, sys
SOURCES = %(sources)s
class Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    def find_spec(self, name, path=None, target=None):
        if name in ("shipper", "shipper.archive") or name in SOURCES:
            return importlib.util.spec_from_loader(name, self, is_package=name not in SOURCES)
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
