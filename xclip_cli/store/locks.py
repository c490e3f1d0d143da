"""One writer at a time: an exclusive lock held while a file (or an index folder) is written.

The lock is an advisory ``flock`` on a small lock file beside what it guards (``.r.csv.lock``
for ``r.csv``), taken before the file is read for resuming and held until the last row is
written. The kernel drops it when the process ends, however it ends (Ctrl-C, SIGKILL, a crash),
so a killed run never leaves a lock that blocks the rerun; the lock file itself is removed on a
clean exit (a stale one is harmless and reused). The guarded file is never locked itself: it
may be replaced atomically (a resume that drops retried rows) while the lock is held. On Linux
the other writer is named from ``/proc/locks``. Without ``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO

from xclip_cli.errors import OutputError


class Busy(OutputError):
    """Another process holds the lock on a file this run must write."""


def lock_path(target: Path) -> Path:
    """Where the lock of ``target`` lives: a hidden file beside the file it leads to (a symlink
    and its target share one lock)."""
    real = Path(os.path.realpath(target))
    return real.with_name(f".{real.name}.lock")


@contextlib.contextmanager
def exclusive(target: Path | None, *, lock: Path | None = None, wait: bool = False) -> Iterator[None]:
    """Hold the lock of ``target`` (None: nothing to lock) while the block runs.

    ``lock``: the lock file, if not ``lock_path(target)``. ``wait``: block until the other
    writer is done; otherwise raise ``Busy`` at once, naming the file and, where it can be
    known, the other process."""
    if target is None:
        yield
        return
    lock = lock or lock_path(target)
    handle = _acquire(target, lock, wait)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()  # before closing: a waiter that opened it sees it gone and retries
        handle.close()


def _acquire(target: Path, lock: Path, wait: bool) -> IO[str]:
    try:
        import fcntl
    except ImportError:  # no fcntl (Windows): no lock
        fcntl = None  # type: ignore[assignment]
    while True:
        try:
            handle = open(lock, "a", encoding="utf-8")  # noqa: SIM115 (held until the lock is released)
        except OSError as exc:
            raise OutputError(f"{target}: cannot write output ({exc.strerror or exc})") from None
        if fcntl is None:
            return handle
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except OSError:
            holder = lock_holder(handle)
            handle.close()
            raise Busy(
                f"{target}: another xclip is writing it ({holder}); wait for it to end, or give this run its own output"
            ) from None
        try:
            if os.path.samestat(os.stat(lock), os.fstat(handle.fileno())):
                return handle
        except OSError:
            pass
        handle.close()  # the holder removed this lock file on its way out: lock the new one


def lock_holder(handle: IO[str]) -> str:
    """'pid N: command line' of the process holding a flock on ``handle``'s file, read from
    ``/proc/locks`` (Linux); 'another process' where that cannot be known."""
    inode = str(os.fstat(handle.fileno()).st_ino)
    try:
        with open("/proc/locks", encoding="ascii") as locks:
            lines = locks.read().splitlines()
    except OSError:
        return "another process"
    for fields in (line.split() for line in lines):
        # "1: FLOCK  ADVISORY  WRITE 12345 fd:01:9876 0 EOF" (a waiter's line has "->" after "1:")
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5].rsplit(":", 1)[-1] == inode:
            pid = fields[4]
            command = _command_line(pid)
            return f"pid {pid}: {command}" if command else f"pid {pid}"
    return "another process"


def _command_line(pid: str) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    words = [word.decode("utf-8", "replace") for word in raw.split(b"\0") if word]
    # ".venv/bin/xclip scan ..." and "python -m xclip_cli scan ..." both read as "xclip scan ...".
    for start, word in enumerate(words):
        if word.endswith(("xclip", "xclip_cli")):
            return " ".join(["xclip", *words[start + 1 :]])
    return " ".join(words)
