"""Replace a file atomically: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8; file names that are not UTF-8 as their bytes) beside ``path``,
    flush it to the disk, then move it into place: a crash leaves the old file or the new one,
    never an empty one. The temporary file gets the usual permissions (umask) and is removed
    if anything fails. Raises ``OSError``."""
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise
