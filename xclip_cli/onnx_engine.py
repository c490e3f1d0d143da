"""The ONNX Runtime engine: X-CLIP's per-video side run by onnxruntime instead of torch eager.

``prepare`` exports two graphs per checkpoint, once, into the tool's cache: ``vision.onnx``
(pixels -> the MIT video embedding and the frame-averaged patch features; dynamic batch) and
``head.onnx`` (those and the text features -> logits: prompt generator and scaled cosine;
dynamic batch and labels), plus ``vision-int8.onnx``, the vision graph with dynamically
quantised int8 weights (``--precision int8``: faster, lossy, never a default). The folder is
named by the checkpoint's identity (fingerprints of its vision and head weights, the frame
count) and the torch, onnx and onnxruntime versions, so a changed checkpoint is exported
anew, never scored with stale graphs. It is written in a temporary folder and renamed into
place under a lock: two processes or a kill never leave a half entry that loads; a damaged
entry is rebuilt.

``OnnxRunner`` implements ``backend.Backend``. In this first version the text side (run once
per label set, then cached) stays on the torch runner it wraps.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import text_cache
from .errors import UsageError
from .labels import LabelSet
from .preprocess import PreprocessConfig
from .runner import VideoFeatures, XClipRunner

FORMAT = 2
OPSET = 18
MANIFEST = "manifest.json"
VISION, VISION_INT8, HEAD = "vision.onnx", "vision-int8.onnx", "head.onnx"


def _versions() -> dict[str, str]:
    return {name: version(name) for name in ("torch", "onnx", "onnxruntime", "onnxscript")}


def prepared_folder(runner: XClipRunner) -> Path:
    """Where the graphs of ``runner``'s checkpoint live (or will), in the tool's cache."""
    identity = {
        "format": FORMAT,
        "vision": runner.vision_fingerprint(),
        "head": runner.head_fingerprint(),
        "frames": runner.num_frames,
        "versions": _versions(),
    }
    key = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:20]
    return text_cache.cache_dir() / "onnx" / key


def is_prepared(runner: XClipRunner) -> bool:
    return _complete(prepared_folder(runner)) is True


def prepare(runner: XClipRunner, say: Callable[[str], None] | None = None) -> Path:
    """The folder of ``runner``'s exported graphs: exported now unless already there and whole."""
    folder = prepared_folder(runner)
    if _complete(folder) is True:
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.parent / f"{folder.name}.lock"):
        state = _complete(folder)
        if state is True:  # another process finished it while this one waited
            return folder
        if state is False and say is not None:
            say(f"xclip: warning: {folder}: damaged ONNX cache entry, exporting again")
        if say is not None:
            say(f"xclip: preparing {runner.model_id} for ONNX Runtime (once; later runs reuse it)")
        work = Path(tempfile.mkdtemp(prefix=f"{folder.name}.tmp-", dir=folder.parent))
        try:
            _export(runner, work)
            shutil.rmtree(folder, ignore_errors=True)
            os.replace(work, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return folder


def _complete(folder: Path) -> bool | None:
    """True: a whole entry; None: no entry; False: something there that cannot be trusted."""
    if not folder.exists():
        return None
    try:
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        sizes = manifest["sizes"]
        return all((folder / name).stat().st_size == size for name, size in sizes.items())
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a", encoding="utf-8") as handle:
        try:
            import fcntl

            fcntl.flock(handle, fcntl.LOCK_EX)
        except ImportError:  # no fcntl (Windows): no lock
            pass
        yield


class _VisionSide(torch.nn.Module):
    def __init__(self, runner: XClipRunner) -> None:
        super().__init__()
        self.runner = runner
        self.model = runner.model  # registered, so the exporter sees the weights

    def forward(self, pixel_values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.runner.video_features.__wrapped__(self.runner, pixel_values)  # type: ignore[attr-defined]
        return features.embeds, features.patches


class _Head(torch.nn.Module):
    def __init__(self, runner: XClipRunner) -> None:
        super().__init__()
        self.runner = runner
        self.model = runner.model

    def forward(self, embeds: torch.Tensor, patches: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        features = VideoFeatures(embeds, patches)
        return self.runner.logits_from_features.__wrapped__(self.runner, features, text)  # type: ignore[attr-defined]


def _export(runner: XClipRunner, folder: Path) -> None:
    """Both graphs into ``folder``, then the manifest (last: its presence marks a whole entry)."""
    if runner.precision != "fp32":
        raise UsageError(f"--backend onnx runs fp32 only, not --precision {runner.precision}")
    pixels = torch.zeros(2, runner.num_frames, 3, runner.image_size, runner.image_size)
    features = runner.video_features(pixels)
    text = torch.zeros(3, features.embeds.shape[-1])
    batch = torch.export.Dim("batch", min=1, max=4096)
    labels = torch.export.Dim("labels", min=1, max=1_000_000)
    with contextlib.redirect_stdout(None), _quiet_export():  # the exporter prints its progress
        torch.onnx.export(
            _VisionSide(runner).eval(),
            (pixels,),
            str(folder / "vision.onnx"),
            dynamo=True,
            opset_version=OPSET,
            input_names=["pixel_values"],
            output_names=["embeds", "patches"],
            dynamic_shapes={"pixel_values": {0: batch}},
            external_data=True,
        )
        torch.onnx.export(
            _Head(runner).eval(),
            (features.embeds, features.patches, text),
            str(folder / "head.onnx"),
            dynamo=True,
            opset_version=OPSET,
            input_names=["embeds", "patches", "text_features"],
            output_names=["logits"],
            dynamic_shapes={"embeds": {0: batch}, "patches": {0: batch}, "text": {0: labels}},
            external_data=True,
        )
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(folder / VISION, folder / VISION_INT8, weight_type=QuantType.QInt8)
    sizes = {item.name: item.stat().st_size for item in folder.iterdir()}
    manifest = {"format": FORMAT, "model": runner.model_id, "versions": _versions(), "sizes": sizes}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")


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


@dataclass
class OnnxRunner:
    """``Backend`` on ONNX Runtime: the per-video side from the prepared graphs."""

    torch_runner: XClipRunner  # the checkpoint's identity, configs and (cached) text side
    folder: Path
    int8: bool = False  # the vision graph with int8 weights (lossy)
    _sessions: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def load(cls, runner: XClipRunner, say: Callable[[str], None] | None = None, int8: bool = False) -> OnnxRunner:
        """Prepare (if needed) and open the graphs of ``runner``'s checkpoint."""
        import onnxruntime

        folder = prepare(runner, say)
        engine = cls(runner, folder, int8)
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3  # errors only: its warnings are not the user's business
        for role, name in (("vision", VISION_INT8 if int8 else VISION), ("head", HEAD)):
            engine._sessions[role] = onnxruntime.InferenceSession(
                str(folder / name), options, providers=["CPUExecutionProvider"]
            )
        return engine

    @property
    def model_id(self) -> str:
        return self.torch_runner.model_id

    @property
    def preprocess(self) -> PreprocessConfig:
        return self.torch_runner.preprocess

    @property
    def precision(self) -> str:
        return "int8" if self.int8 else self.torch_runner.precision

    @property
    def num_frames(self) -> int:
        return self.torch_runner.num_frames

    def label_text_features(self, labelset: LabelSet) -> torch.Tensor:
        return self.torch_runner.label_text_features(labelset)

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        return self.torch_runner.text_features(texts)

    def vision_fingerprint(self, legacy: bool = False) -> str:
        """The torch side's, told apart for int8 features (an index never mixes the two)."""
        fingerprint = self.torch_runner.vision_fingerprint(legacy)
        return hashlib.sha256(f"{fingerprint} int8".encode()).hexdigest() if self.int8 else fingerprint

    def video_features(self, pixel_values: torch.Tensor) -> VideoFeatures:
        pixels = np.ascontiguousarray(pixel_values.float().cpu().numpy())
        embeds, patches = self._sessions["vision"].run(None, {"pixel_values": pixels})
        return VideoFeatures(torch.from_numpy(embeds), torch.from_numpy(patches))

    def logits_from_features(self, features: VideoFeatures, text_features: torch.Tensor) -> torch.Tensor:
        inputs = {
            "embeds": features.embeds.float().cpu().numpy(),
            "patches": features.patches.float().cpu().numpy(),
            "text_features": text_features.float().cpu().numpy(),
        }
        (logits,) = self._sessions["head"].run(None, inputs)
        return torch.from_numpy(logits)

    def video_logits(self, pixel_values: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        return self.logits_from_features(self.video_features(pixel_values), text_features)
