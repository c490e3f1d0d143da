"""Disk cache of text-encoder outputs (after the text projection), one file per prompt list.

Only these can be cached: X-CLIP's final label vectors depend on the video. Files live under
``$XCLIP_CACHE_DIR``, else ``$XDG_CACHE_HOME/xclip-cli``, else ``~/.cache/xclip-cli``, and
are named by a hash of the model's text-side fingerprint and the prompts (their texts and a
digest of the tokenizer's files, or their token ids), so a changed checkpoint, tokenizer or
prompt list never reads a stale entry.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from xclip_cli.store.atomic import save_array_atomic
from xclip_cli.store.digest import digest

CACHE_VERSION = "2"  # bump when the stored layout or the computation changes


def cache_dir() -> Path:
    """Where text features are stored (not created until something is written)."""
    override = os.environ.get("XCLIP_CACHE_DIR")
    if override:
        return Path(override).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "xclip-cli"


def cache_key(model_fingerprint: str, prompts: dict[str, Any]) -> str:
    """A stable name for the features of these prompts under this model.

    ``prompts`` names them exactly: their token ids, or their texts with the identity of the
    tokenizer that would make them (so a warm cache needs no tokenizer at all).
    """
    payload = json.dumps(prompts, sort_keys=True, ensure_ascii=True)
    return digest(f"v{CACHE_VERSION}\n{model_fingerprint}\n{payload}")


def load(key: str, expected_rows: int) -> np.ndarray | None:
    """The cached float32 array for ``key``, or None if absent or unreadable."""
    path = cache_dir() / "text-features" / f"{key}.npy"
    try:
        array = np.load(path, allow_pickle=False)
    except Exception:  # absent, truncated, or not an .npy at all: recompute
        return None
    if array.ndim != 2 or array.shape[0] != expected_rows or array.dtype != np.float32:
        return None
    return array


def store(key: str, array: np.ndarray) -> None:
    """Write atomically, so concurrent runs and crashes never leave a half-written file.

    A cache that cannot be written (read-only home, full disk) is skipped silently: it only
    costs speed.
    """
    folder = cache_dir() / "text-features"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        save_array_atomic(folder / f"{key}.npy", array)
