"""The ONNX Runtime backend's cache: prepared folders, the stamps that find them, and their manifest.

``onnx_export.prepare`` writes, once per checkpoint, a folder under ``$XCLIP_CACHE_DIR/onnx``
with the exported graphs (text encoder, vision side, head), the checkpoint's tokenizer as a
``tokenizers`` file, and a manifest with everything else a run needs: frame count,
preprocessing, the identities that name cached text features and index entries. A
*checkpoint stamp* (the checkpoint folder's path, its files' sizes and modification times, the
libraries' versions) points to that folder, so finding it costs a few ``stat`` calls and no
torch; a checkpoint whose files changed is looked at again with torch (and re-exported when
its weights differ) instead of being scored with stale graphs. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from xclip_cli.errors import OutputError
from xclip_cli.model import text_cache
from xclip_cli.model.checkpoints import local_folder
from xclip_cli.store.atomic import write_text_atomic
from xclip_cli.store.digest import digest
from xclip_cli.store.locks import exclusive

FORMAT = 4  # bump when the folder's layout or the exported graphs change
MANIFEST = "manifest.json"
VISION, VISION_INT8, HEAD, TEXT, TOKENIZER, HEAD_WEIGHTS = (
    "vision.onnx",
    "vision-int8.onnx",
    "head.onnx",
    "text.onnx",
    "tokenizer.json",
    "head-weights.npz",  # model.head.HeadWeights: the head again, for moment search in numpy
)
# What a checkpoint folder's stamp covers: weights, configs and tokenizer files.
STAMPED_SUFFIXES = frozenset({".json", ".txt", ".safetensors", ".bin", ".model", ".tiktoken", ".pt", ".pth"})


def onnx_dir() -> Path:
    return text_cache.cache_dir() / "onnx"


def library_versions() -> dict[str, str]:
    """Versions of what exports and runs the graphs, read without importing any of them."""
    found = {}
    for name in ("torch", "transformers", "onnx", "onnxscript", "onnxruntime", "tokenizers"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "absent"
    return found


def checkpoint_folder(model_id: str) -> Path | None:
    """Where a checkpoint's files are on this machine (``model.checkpoints.local_folder``)."""
    return local_folder(model_id)


def checkpoint_stamp(model_id: str) -> str | None:
    """Names the checkpoint's files as they are now (path, size, modification time each), and
    the libraries' versions. None when the checkpoint is not in a folder on this machine."""
    folder = checkpoint_folder(model_id)
    if folder is None:
        return None
    files = []
    for path in sorted(folder.iterdir()):
        if path.suffix in STAMPED_SUFFIXES and not path.name.startswith("."):
            try:
                stat = path.stat()
            except OSError:
                continue
            files.append((path.name, stat.st_size, stat.st_mtime_ns))
    payload = {"format": FORMAT, "folder": str(folder), "files": files, "versions": library_versions()}
    return digest(payload)


def stamp_path(stamp: str) -> Path:
    return onnx_dir() / "checkpoints" / f"{stamp}.json"


def find_prepared(model_id: str) -> Path | None:
    """The prepared folder of ``model_id`` as its files are now, without loading anything; None
    when it was never prepared, its files changed since, or the entry is not whole."""
    stamp = checkpoint_stamp(model_id)
    if stamp is None:
        return None
    try:
        key = json.loads(stamp_path(stamp).read_text(encoding="utf-8"))["folder"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    folder = onnx_dir() / str(key)
    manifest = read_manifest(folder)
    return None if manifest is None else folder


def read_manifest(folder: Path) -> dict[str, Any] | None:
    """The manifest of a whole entry (every file it lists present, at its size), else None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        whole = manifest["format"] == FORMAT and all(
            (folder / name).stat().st_size == size for name, size in manifest["sizes"].items()
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return manifest if whole else None


def remember_stamp(stamp: str, folder: Path) -> None:
    """Point a checkpoint's stamp (taken before it loaded) to ``folder``, atomically."""
    path = stamp_path(stamp)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_json(path, {"folder": folder.name})


@contextlib.contextmanager
def entry_lock(folder: Path) -> Iterator[None]:
    """An exclusive lock on the entry ``folder`` while the block runs: one writer per entry
    (another process preparing the same checkpoint waits for it, then finds it ready)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    with exclusive(folder, lock=folder.parent / f"{folder.name}.lock", wait=True):
        yield


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Replace ``path`` atomically: a reader sees the old file or the new one."""
    write_text_atomic(path, json.dumps(data, indent=2) + "\n")


def install_entry(folder: Path, fill: Callable[[Path], None]) -> None:
    """Build an entry in a temporary folder beside ``folder`` (``fill`` writes its files), then
    rename it into place over whatever was there. Call under ``entry_lock``:
    a kill or a failure leaves the old state, never a half entry that loads."""
    work = Path(tempfile.mkdtemp(prefix=f"{folder.name}.tmp-", dir=folder.parent))
    try:
        fill(work)
        shutil.rmtree(folder, ignore_errors=True)
        os.replace(work, folder)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def copy_prepared(folder: Path, output: Path) -> Path:
    """A copy of the prepared ``folder`` at ``output`` (absent or empty), for ``--model OUTPUT``
    anywhere: its manifest says what it was made from (model, identity, library versions).
    Written beside ``output`` and renamed into place: never half a folder that loads."""
    output = output.expanduser()
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise OutputError(f"{output}: exists and is not an empty folder; give a new one")
    output.parent.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(folder)
    assert manifest is not None
    work = Path(tempfile.mkdtemp(prefix=f".{output.name}.tmp-", dir=output.parent))
    try:
        for name in (*manifest["sizes"], MANIFEST):  # the manifest last: it marks a whole folder
            shutil.copyfile(folder / name, work / name)
        if output.exists():
            output.rmdir()
        os.replace(work, output)
    except OSError as exc:
        raise OutputError(f"{output}: cannot write the prepared model ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return output


def add_int8(folder: Path, say: Callable[[str], None] | None = None) -> None:
    """Quantise the vision graph's weights to int8 beside it (once; onnx, no torch), then list
    it in the manifest. ``--precision int8``: faster, lossy."""
    with entry_lock(folder):
        manifest = read_manifest(folder)
        if manifest is None or VISION_INT8 in manifest["sizes"]:
            return
        if say is not None:
            say(f"xclip: quantising the vision weights to int8 (once): {folder}")
        from onnxruntime.quantization import QuantType, quantize_dynamic

        temporary = folder / f"{VISION_INT8}.tmp"
        with _quiet_root_logger():
            quantize_dynamic(folder / VISION, temporary, weight_type=QuantType.QInt8)
        os.replace(temporary, folder / VISION_INT8)
        manifest["sizes"][VISION_INT8] = (folder / VISION_INT8).stat().st_size
        write_json(folder / MANIFEST, manifest)


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """The quantiser advises through the root logger, which would also install a stderr
    handler for every later log record: neither is for the user."""
    root = logging.getLogger()
    quiet = logging.NullHandler()
    root.addHandler(quiet)
    logging.disable(logging.WARNING)
    try:
        yield
    finally:
        logging.disable(logging.NOTSET)
        root.removeHandler(quiet)
