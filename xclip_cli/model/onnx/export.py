"""Preparing a checkpoint for ONNX Runtime: its graphs exported once, with torch.

``prepare`` writes into ``$XCLIP_CACHE_DIR/onnx/KEY``: ``text.onnx`` (token ids -> projected
text features; dynamic batch and length), ``vision.onnx`` (pixels -> the MIT video embedding
and frame-averaged patch features; dynamic batch), ``head.onnx`` (those and text features ->
logits: prompt generator and scaled cosine; dynamic batch and labels), the tokenizer as a
``tokenizers`` file, and a manifest (``onnx_runner`` reads it; it never imports torch).
``vision-int8.onnx`` (dynamically quantised weights, ``--precision int8``) is added the first
time it is asked for. KEY names the checkpoint's identity (fingerprints of its text, vision
and head weights and settings, its tokenizer) and the library versions, so a changed
checkpoint is exported anew, never scored with stale graphs. Entries are built in a
temporary folder and renamed into place under a lock: two processes or a kill never leave a
half entry that loads; a damaged entry is rebuilt with a warning.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch

from xclip_cli.errors import OutputError, UsageError
from xclip_cli.model.onnx.cache import (
    FORMAT,
    HEAD,
    HEAD_WEIGHTS,
    MANIFEST,
    TEXT,
    TOKENIZER,
    VISION,
    add_int8,
    entry_lock,
    install_entry,
    library_versions,
    onnx_dir,
    read_manifest,
    remember_stamp,
    write_json,
)
from xclip_cli.model.torch.runner import XClipRunner
from xclip_cli.store.digest import digest

OPSET = 18


def identity(runner: XClipRunner) -> dict[str, Any]:
    """Everything the prepared folder's contents depend on."""
    return {
        "text": runner.fingerprint(),
        "vision": runner.vision_fingerprint(),
        "vision_legacy": runner.vision_fingerprint(legacy=True),
        "head": runner.head_fingerprint(),
        "tokenizer": runner.tokenizer_identity,
    }


def prepared_folder(runner: XClipRunner) -> Path:
    """Where the graphs of ``runner``'s checkpoint live (or will), in the tool's cache."""
    payload = {"format": FORMAT, "identity": identity(runner), "versions": library_versions()}
    return onnx_dir() / digest(payload)


def is_prepared(runner: XClipRunner) -> bool:
    return read_manifest(prepared_folder(runner)) is not None


def prepare(
    runner: XClipRunner, say: Callable[[str], None] | None = None, int8: bool = False, stamp: str | None = None
) -> Path:
    """The folder of ``runner``'s prepared graphs: exported now unless already there and whole.

    ``stamp`` (``onnx_cache.checkpoint_stamp`` taken before the checkpoint loaded) is pointed
    to the folder, so later runs find it without loading torch. A cache that cannot be written
    raises ``OutputError``.
    """
    if runner.precision != "fp32" or runner.device.type != "cpu":
        raise UsageError("ONNX Runtime runs fp32 (or int8) on the CPU: load the checkpoint with --precision fp32")
    folder = prepared_folder(runner)
    try:
        _prepare(runner, folder, say, int8)
    except OSError as exc:
        raise OutputError(f"cannot prepare {runner.model_id} for ONNX Runtime: {exc}") from None
    if stamp is not None:
        with contextlib.suppress(OSError):  # only costs the next run a torch load
            remember_stamp(stamp, folder)
    return folder


def _prepare(runner: XClipRunner, folder: Path, say: Callable[[str], None] | None, int8: bool) -> None:
    if read_manifest(folder) is not None:
        if say is not None:
            say(f"xclip: {runner.model_id}: its weights are the ones prepared in {folder}; reusing them")
    else:
        with entry_lock(folder):
            if read_manifest(folder) is None:  # another process may have finished it meanwhile
                if folder.exists() and say is not None:
                    say(f"xclip: warning: {folder}: damaged ONNX cache entry, exporting again")
                if say is not None:
                    say(
                        f"xclip: preparing {runner.model_id} for ONNX Runtime: once per checkpoint "
                        "(about 1.5 minutes for a base model on 2 cores); later runs start in about a second"
                    )
                install_entry(folder, lambda work: _export(runner, work, say))
    if int8:
        add_int8(folder, say)


class _TextSide(torch.nn.Module):
    def __init__(self, runner: XClipRunner) -> None:
        super().__init__()
        self.model = runner.model

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        return self.model.get_text_features(input_ids=input_ids, attention_mask=attention_mask).pooler_output


class _VisionSide(torch.nn.Module):
    def __init__(self, runner: XClipRunner) -> None:
        super().__init__()
        self.runner = runner
        self.model = runner.model  # registered, so the exporter sees the weights

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.runner.vision_side(pixel_values)


class _Head(torch.nn.Module):
    def __init__(self, runner: XClipRunner) -> None:
        super().__init__()
        self.runner = runner
        self.model = runner.model

    def forward(self, embeds: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        return self.runner.head(embeds, patches, text)


def _export(runner: XClipRunner, folder: Path, say: Callable[[str], None] | None = None) -> None:
    """The graphs and the tokenizer into ``folder``, then the manifest (last: it marks a whole entry)."""
    pixels = torch.zeros(2, runner.num_frames, 3, runner.image_size, runner.image_size)
    with torch.inference_mode():
        embeds, patches = runner.vision_side(pixels)
    text = torch.zeros(3, embeds.shape[-1])
    ids = torch.full((3, 7), runner.pad_token_id, dtype=torch.long)
    batch = torch.export.Dim("batch", min=1, max=4096)
    labels = torch.export.Dim("labels", min=1, max=1_000_000)
    length = torch.export.Dim("length", min=2, max=runner.max_length)
    graphs: list[tuple[torch.nn.Module, tuple[torch.Tensor, ...], str, dict[str, Any]]] = [
        (
            _TextSide(runner),
            (ids, torch.ones_like(ids)),
            TEXT,
            {"input_ids": {0: batch, 1: length}, "attention_mask": {0: batch, 1: length}},
        ),
        (_VisionSide(runner), (pixels,), VISION, {"pixel_values": {0: batch}}),
        (
            _Head(runner),
            (embeds, patches, text),
            HEAD,
            {"embeds": {0: batch}, "patches": {0: batch}, "text": {0: labels}},
        ),
    ]
    names = {
        TEXT: (["input_ids", "attention_mask"], ["text_features"]),
        VISION: (["pixel_values"], ["embeds", "patches"]),
        HEAD: (["embeds", "patches", "text_features"], ["logits"]),
    }
    with contextlib.redirect_stdout(None), _quiet_export():  # the exporter prints its progress
        for step, (module, inputs, name, dynamic) in enumerate(graphs, start=1):
            if say is not None:
                say(f"xclip: exporting {name} ({step}/{len(graphs)})")
            torch.onnx.export(
                module.eval(),
                inputs,
                str(folder / name),
                dynamo=True,
                opset_version=OPSET,
                input_names=names[name][0],
                output_names=names[name][1],
                dynamic_shapes=dynamic,
                external_data=True,
            )
    backend_tokenizer = getattr(runner.tokenizer, "backend_tokenizer", None)
    if backend_tokenizer is None:
        raise UsageError(f"{runner.model_id}: its tokenizer has no `tokenizers` form; use --backend torch")
    backend_tokenizer.save(str(folder / TOKENIZER))
    runner.head_weights().save(folder / HEAD_WEIGHTS)
    config = {
        "num_frames": runner.num_frames,
        "image_size": runner.image_size,
        "projection_dim": int(embeds.shape[-1]),
        "max_length": runner.max_length,
        "pad_token_id": runner.pad_token_id,
    }
    manifest = {
        "format": FORMAT,
        "model": runner.model_id,
        "identity": identity(runner),
        "config": config,
        "preprocess": runner.preprocess.to_dict(),
        "versions": library_versions(),
        "sizes": {item.name: item.stat().st_size for item in folder.iterdir()},
    }
    write_json(folder / MANIFEST, manifest)


@contextlib.contextmanager
def _quiet_export() -> Iterator[None]:
    import logging
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        previous = logging.getLogger("torch.onnx").level
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        try:
            yield
        finally:
            logging.getLogger("torch.onnx").setLevel(previous)
