"""One writer per artifacts directory: a lock file (``.adapterx.lock``, an advisory ``flock``) that a second
``adapterx run`` on the same directory waits for (up to ``--wait`` seconds) or is refused by, with a message
naming the run that holds it. Nothing of the running study is touched by the second run, and once the first
has finished every phase it wrote is reused, not redone.

Jobs of one recipe (``--job N``) share the directory (shared lock: they run in parallel on a cluster) and
exclude a full run; a training phase that two jobs both need (an intermediate adapter the fusion job also
trains) is locked on its own directory, so the second job waits for it and then reuses it. The kernel
releases a lock when its process ends, however it ends (kill -9 included): a lock is never stale.
"""

from __future__ import annotations

import fcntl
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from adapterx.core.errors import AdapterxError

LOCK_FILE = ".adapterx.lock"
POLL_SECONDS = 0.2


class DirectoryBusy(AdapterxError):
    """Another adapterx process holds the directory's lock (and waiting for it timed out)."""


@contextmanager
def locked(
    directory: str | os.PathLike,
    *,
    shared: bool = False,
    wait: float | None = 0.0,
    log: Callable[[str], None] | None = None,
    hint: str = "",
) -> Iterator[None]:
    """Hold `directory`'s lock (shared or exclusive) for the block. `wait`: seconds to wait for another holder
    (None: as long as it takes; 0: refuse at once); then DirectoryBusy naming the holder (plus `hint`)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    acquired = False
    try:
        _acquire(fd, path, shared, wait, log, hint)
        acquired = True
        if not shared:
            _write_holder(fd)
        yield
    finally:
        if not shared and acquired:
            os.ftruncate(fd, 0)  # the holder's details go with it
        os.close(fd)  # releases the lock


def _acquire(fd: int, path: Path, shared: bool, wait: float | None, log, hint: str) -> None:
    deadline = None if wait is None else time.monotonic() + wait
    announced = False
    while True:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = describe_holder(path)
            if deadline is not None and time.monotonic() >= deadline:
                waited = f" (waited {wait:g} s)" if wait else ""
                raise DirectoryBusy(
                    f"{path.parent}: in use by another adapterx run ({holder}){waited}; "
                    f"{hint or 'try again when it has finished'}"
                ) from None
            if not announced and log is not None:
                log(f"{path.parent} is in use by another adapterx run ({holder}); waiting")
                announced = True
            time.sleep(POLL_SECONDS)


def _write_holder(fd: int) -> None:
    info = {
        "pid": os.getpid(),
        "host": platform.node(),
        "since": datetime.now().isoformat(timespec="seconds"),
        "command": " ".join(["adapterx", *sys.argv[1:]])[:300],
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)


def describe_holder(path: Path) -> str:
    """'pid 123 on host, since 2025-01-01T12:00:00: adapterx run r.yaml' (or what is known of it)."""
    try:
        info = json.loads(Path(path).read_text(encoding="utf-8"))
        return f"pid {info['pid']} on {info['host']}, since {info['since']}: {info['command']}"
    except (OSError, ValueError, KeyError, TypeError):
        return "jobs of this recipe, or one that has just started"
