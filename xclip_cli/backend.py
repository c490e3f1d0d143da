"""What the pipeline needs of a model: the seam a second engine (ONNX Runtime) implements.

``XClipRunner`` (transformers' modules on torch) is the one implementation today. Text
features depend only on the prompts (cached); the per-video side splits into the vision
features (what an index stores) and the head that scores them against text features.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

BACKENDS = ("auto", "torch", "onnx")  # --backend: auto picks ONNX Runtime where it is prepared

if TYPE_CHECKING:
    import torch

    from .labels import LabelSet
    from .preprocess import PreprocessConfig
    from .runner import VideoFeatures


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
        """``fp32``, or a lossy setting such as ``bf16``."""
        ...

    @property
    def num_frames(self) -> int:
        """Frames per video (per view) the checkpoint takes."""
        ...

    def label_text_features(self, labelset: LabelSet) -> torch.Tensor:
        """One (ensembled) text feature per label: (labels, D)."""
        ...

    def text_features(self, texts: Sequence[str]) -> torch.Tensor:
        """One text feature per text: (texts, D)."""
        ...

    def video_features(self, pixel_values: torch.Tensor) -> VideoFeatures:
        """The vision side of (videos, T, 3, H, W) pixels: what the head needs of each video."""
        ...

    def logits_from_features(self, features: VideoFeatures, text_features: torch.Tensor) -> torch.Tensor:
        """X-CLIP's head (prompt generator, scaled cosine): (videos, texts) logits."""
        ...

    def video_logits(self, pixel_values: torch.Tensor, text_features: torch.Tensor) -> torch.Tensor:
        """``logits_from_features(video_features(pixel_values), text_features)``."""
        ...

    def vision_fingerprint(self, legacy: bool = False) -> str:
        """A digest of the vision side's weights and settings: which features an index holds."""
        ...
