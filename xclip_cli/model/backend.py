"""What the pipeline needs of a model: the seam the two backends implement, in numpy.

``runner.XClipRunner`` runs transformers' modules on torch; ``onnx_runner.OnnxRunner`` runs
graphs exported from them on ONNX Runtime, without importing torch. Text features depend only
on the prompts (cached); the per-video side splits into the vision features (what an index
stores) and the head that scores them against text features. Arrays are float32 numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

BACKENDS = ("auto", "torch", "onnx")  # --backend: auto picks ONNX Runtime on the CPU
ONNX_PRECISIONS = ("fp32", "int8")  # what ONNX Runtime runs (bf16 is torch's)

if TYPE_CHECKING:  # numpy too: `xclip --help` imports this module for BACKENDS, and stays light
    import numpy as np

    from xclip_cli.labels import LabelSet
    from xclip_cli.media.preprocess import PreprocessConfig
    from xclip_cli.model.head import HeadWeights


@dataclass(frozen=True)
class VideoFeatures:
    """Per video: the MIT video embedding (B x D) and the frame-averaged patch features the
    prompt generator attends to (B x P x D). Enough to score any text later (``xclip embed``)."""

    embeds: np.ndarray
    patches: np.ndarray

    def __len__(self) -> int:
        return int(self.embeds.shape[0])


class Backend(Protocol):
    """A loaded X-CLIP checkpoint, as the pipeline uses it."""

    @property
    def model_id(self) -> str:
        """The checkpoint as the user named it: a hub id or a folder."""
        ...

    @property
    def preprocess(self) -> PreprocessConfig:
        """Resize, crop and normalisation, from the checkpoint."""
        ...

    @property
    def precision(self) -> str:
        """``fp32``, or a lossy setting such as ``bf16`` or ``int8``."""
        ...

    @property
    def backend(self) -> str:
        """What runs the model: ``torch`` or ``onnx`` (ONNX Runtime)."""
        ...

    @property
    def num_frames(self) -> int:
        """Frames per video (per view) the checkpoint takes."""
        ...

    def label_text_features(self, labelset: LabelSet) -> np.ndarray:
        """One (ensembled) text feature per label: (labels, D)."""
        ...

    def text_features(self, texts: Sequence[str]) -> np.ndarray:
        """One text feature per text: (texts, D)."""
        ...

    def video_features(self, pixel_values: np.ndarray) -> VideoFeatures:
        """The vision side of (videos, T, 3, H, W) pixels: what the head needs of each video."""
        ...

    def logits_from_features(self, features: VideoFeatures, text_features: np.ndarray) -> np.ndarray:
        """X-CLIP's head (prompt generator, scaled cosine): (videos, texts) logits."""
        ...

    def head_weights(self) -> HeadWeights:
        """The head's weights for ``model.head.head_logits`` (moment search: many windows, few texts)."""
        ...

    def video_logits(self, pixel_values: np.ndarray, text_features: np.ndarray) -> np.ndarray:
        """``logits_from_features(video_features(pixel_values), text_features)``."""
        ...

    def fingerprint(self) -> str:
        """A digest of the text side's weights and settings: names cached text features."""
        ...

    def vision_fingerprint(self, legacy: bool = False) -> str:
        """A digest of the vision side's weights and settings: which features an index holds."""
        ...


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (then float32): probabilities that sum to 1 per row."""
    import numpy as np

    shifted = logits.astype(np.float64) - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return (exp / exp.sum(axis=-1, keepdims=True)).astype(np.float32)
