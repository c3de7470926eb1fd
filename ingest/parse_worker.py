"""The helper process that parses content blobs. Kept light to import (it is spawned fresh), and it
exits when the sync that started it is gone, even if that one was killed outright."""
from __future__ import annotations

import os
import threading
import time

from .normalize import decode_blob

__all__ = ["decode_blob", "exit_with_parent"]


def exit_with_parent(parent_pid: int) -> None:
    """Process-pool initializer: a watchdog thread that ends this process once its parent has died."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()
