"""Replace a file atomically: a reader sees the old file or the new one, never half of either,
and a crash (power loss included) leaves one of them, never an empty file."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO


def write_atomic(path: Path, write: Callable[[IO[bytes]], object]) -> None:
    """``write`` fills a temporary file beside ``path``, which is flushed to the disk and moved
    into place. It gets the usual permissions (umask) and is removed if anything fails.
    Raises ``OSError``."""
    path = Path(os.path.realpath(path))  # through a symlink: the file it leads to is replaced, not the link
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())  # before the rename: it must not point at unwritten data
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise


def write_text_atomic(path: Path, text: str) -> None:
    """``text`` as UTF-8 (file names that are not UTF-8 as their bytes), atomically."""
    write_atomic(path, lambda handle: handle.write(text.encode("utf-8", "surrogateescape")))


def save_array_atomic(path: Path, array: object, dtype: str = "float32") -> None:
    """A ``.npy`` file of ``dtype``, atomically (numpy is imported by the caller's module already)."""
    import numpy as np

    write_atomic(path, lambda handle: np.save(handle, np.ascontiguousarray(array, dtype=dtype), allow_pickle=False))
