"""Temporary files and folders of atomic writes, and the debris of interrupted ones.

What scadm writes atomically as a job's output (images of a sampling job or a preparation,
checkpoints, converted model folders) is first written under a hidden name that carries the
writer's process id, ``.<name>.<pid>.tmp``, then renamed into place. A process killed mid-write leaves that temporary
behind; :func:`remove_stale` deletes the ones whose process is gone, so a restarted job finds
no debris and never deletes what a live process (another shard of the same job) is writing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

__all__ = ["temp_path", "remove_stale"]

_TEMP = re.compile(r"^\..+\.(\d+)\.tmp$")


def temp_path(final: str | os.PathLike) -> Path:
    """The temporary path for an atomic write of `final` by this process."""
    final = Path(final)
    return final.parent / f".{final.name}.{os.getpid()}.tmp"


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError, ValueError):  # gone, or a number no process can have
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def remove_stale(folder: str | os.PathLike) -> int:
    """Delete the temporaries in `folder` (not below it) left by processes that no longer run; -> how many."""
    folder = Path(folder)
    if not folder.is_dir():
        return 0
    removed = 0
    for p in folder.iterdir():
        m = _TEMP.match(p.name)
        if not m or _alive(int(m.group(1))):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed += 1
    return removed
