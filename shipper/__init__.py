"""shipper: move Docker images between Docker engines, and deploy them."""

import sys

__version__ = "0.1.0"


def _import_paramiko_without_invoke() -> None:
    """paramiko imports Invoke at once, only to run ssh_config's ``Match exec`` commands with it: a tenth of
    every shipper command's start-up (about 115M instructions, 30-50 ms here), for a line few configs have.
    So paramiko is imported first, with Invoke hidden; ``inventory.resolve`` lends it Invoke when a config
    has a ``Match exec``. Nothing to do when the embedding program imported paramiko already."""
    if "paramiko" in sys.modules or "invoke" in sys.modules:
        return
    sys.modules["invoke"] = None  # type: ignore[assignment]  # `import invoke` raises ImportError
    try:
        import paramiko.config  # noqa: F401
    finally:
        del sys.modules["invoke"]


_import_paramiko_without_invoke()
