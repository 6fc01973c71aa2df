"""What a program shipper sends to a host does when shipper is gone. Standard library only (sent with them)."""

from __future__ import annotations

import os
import signal
import sys
import threading


def stop_when_shipper_is_gone() -> None:
    """shipper keeps the program's stdin open while it lives: its end (shipper ended, however abruptly, and its
    ssh with it) sends the program SIGTERM, so that nothing goes on (a target loading, an upload) that nobody
    will check."""

    def watch() -> None:
        # os.read, not sys.stdin: a daemon thread blocked inside a buffered reader's lock aborts the interpreter at exit.
        while os.read(sys.stdin.fileno(), 4096):
            pass
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()
