"""A real second writer for the lock tests: another process that holds a folder's lock until killed."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def start_lock_holder(folder: Path, command: str) -> subprocess.Popen:
    """Start a process that takes ``FolderLock(folder, command)`` and sleeps; return once it holds it.

    The caller kills it (``send_signal(SIGKILL)``, ``wait()``), which leaves its lock behind, stale."""
    code = textwrap.dedent(f"""
        import time
        from panorooms3d.run.lock import FolderLock
        FolderLock({str(folder)!r}, {command!r}).acquire()
        print("held", flush=True)
        time.sleep(120)
    """)
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    line = holder.stdout.readline().strip()
    if line != "held":
        holder.kill()
        holder.wait()
        raise AssertionError(f"the lock holder did not take the lock of {folder}: {line!r}")
    return holder
