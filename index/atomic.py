"""Writing derived files so a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import glob
import os
import tempfile
import time
from pathlib import Path
from typing import BinaryIO, Callable


STALE_SECONDS = 3600  # a write takes seconds: a temporary file this old was left by a process killed mid-write


def write_atomically(path: Path, write: Callable[[BinaryIO], None]) -> None:
    """Call `write` on a temporary file in the same folder, fsync it, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; derived data holds nothing secret
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def remove_stale_temporaries(path: Path, older_than: float = STALE_SECONDS) -> int:
    """Delete the temporary files of `path` that a killed process left behind (each as big as the file itself).
    Only old ones: a younger one may be another process's write in progress."""
    removed = 0
    cutoff = time.time() - older_than
    for leftover in path.parent.glob(glob.escape(path.name) + ".*.tmp"):
        try:
            if leftover.stat().st_mtime < cutoff:
                leftover.unlink()
                removed += 1
        except OSError:
            pass  # gone meanwhile, or not ours to remove
    return removed


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
