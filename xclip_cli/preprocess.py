"""Frame preprocessing in torch, matching the checkpoint's VideoMAE image processor.

Resize (shortest edge or fixed size, with antialiasing) on uint8, centre crop, rescale and
normalise. Every parameter comes from the checkpoint's processor config. Working on uint8
rounds like transformers' own resize: measured equal (to 2.4e-7) to its torchvision backend,
and within one uint8 step of its PIL backend (the one available beside a CPU-only torch; the
tests hold us to that), while several times faster than the PIL path.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from .errors import ModelLoadError

# PIL resampling codes used in processor configs -> torch interpolation modes.
# (PIL's nearest differs from torch's, and X-CLIP checkpoints use bilinear or bicubic.)
_RESAMPLE_MODES = {2: "bilinear", 3: "bicubic"}
_SIZE_KEYS = ({"shortest_edge"}, {"height", "width"})


@dataclass(frozen=True)
class PreprocessConfig:
    """The image-processor settings that X-CLIP checkpoints use."""

    shortest_edge: int | None  # resize so the short side has this length (aspect kept) ...
    resize_to: tuple[int, int] | None  # ... or to this exact (height, width); None: no resize
    crop: tuple[int, int] | None  # centre crop (height, width); None: no crop
    mode: str  # torch interpolation mode
    rescale_factor: float  # 1.0 when rescaling is off
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_image_processor(cls, processor: Any) -> PreprocessConfig:
        """Read the settings from a transformers image processor (either backend)."""
        size = _as_dict(processor.size) if processor.do_resize else {}
        shortest = size.get("shortest_edge")
        if processor.do_resize and set(size) not in _SIZE_KEYS:
            raise ModelLoadError(f"unsupported image processor size {size!r}: expected shortest_edge or height/width")
        crop = _as_dict(processor.crop_size) if processor.do_center_crop else {}
        resample = int(getattr(processor.resample, "value", processor.resample))
        if resample not in _RESAMPLE_MODES:
            raise ModelLoadError(f"unsupported resample mode {resample} in the image processor config")
        mean = processor.image_mean if processor.do_normalize else (0.0, 0.0, 0.0)
        std = processor.image_std if processor.do_normalize else (1.0, 1.0, 1.0)
        return cls(
            shortest_edge=int(shortest) if shortest else None,
            resize_to=None if shortest or not size else (int(size["height"]), int(size["width"])),
            crop=(int(crop["height"]), int(crop["width"])) if crop else None,
            mode=_RESAMPLE_MODES[resample],
            rescale_factor=float(processor.rescale_factor) if processor.do_rescale else 1.0,
            mean=_triple(mean),
            std=_triple(std),
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) after resizing, as transformers computes it (truncating)."""
        if self.resize_to is not None:
            return self.resize_to
        if self.shortest_edge is None:
            return height, width
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (new_long, self.shortest_edge) if width <= height else (self.shortest_edge, new_long)


def preprocess_frame(rgb: np.ndarray, config: PreprocessConfig) -> torch.Tensor:
    """One HxWx3 uint8 frame -> normalised float32 tensor (3, crop_h, crop_w)."""
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)  # 1x3xHxW uint8
    height, width = image.shape[-2:]
    size = config.output_size(height, width)
    if size != (height, width):
        image = F.interpolate(image, size=size, mode=config.mode, antialias=True)
    if config.crop is not None:
        image = _centre_crop(image, config.crop)
    pixels = image[0].to(torch.float32) * config.rescale_factor
    mean = torch.tensor(config.mean, dtype=torch.float32).view(3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(3, 1, 1)
    return (pixels - mean) / std


def preprocess_crops(rgb: np.ndarray, config: PreprocessConfig, crops: int = 1) -> torch.Tensor:
    """One frame -> (crops, 3, crop_h, crop_w): the processor's centre crop, or three crops.

    Three crops follow X-CLIP's test protocol (mmaction's ``ThreeCrop``): resize the short side
    to the crop size, then take crops at the start, the middle and the end of the long side.
    """
    if crops == 1:
        return preprocess_frame(rgb, config).unsqueeze(0)
    if crops != 3:
        raise ValueError("crops must be 1 or 3")
    crop_h, crop_w = config.crop or (config.shortest_edge or 0,) * 2
    if not crop_h:
        raise ValueError("three crops need a checkpoint whose processor crops or resizes the short side")
    image = torch.from_numpy(rgb).permute(2, 0, 1).unsqueeze(0)
    height, width = image.shape[-2:]
    short = min(crop_h, crop_w)
    size = (int(short * height / width), short) if width <= height else (short, int(short * width / height))
    size = (max(size[0], crop_h), max(size[1], crop_w))
    if size != (height, width):
        image = F.interpolate(image, size=size, mode=config.mode, antialias=True)
    height, width = size
    step_h, step_w = (height - crop_h) // 2, (width - crop_w) // 2
    offsets = [(0, i * step_w) for i in range(3)] if step_w else [(i * step_h, 0) for i in range(3)]
    views = torch.cat([image[..., top : top + crop_h, left : left + crop_w] for top, left in offsets])
    pixels = views.to(torch.float32) * config.rescale_factor
    mean = torch.tensor(config.mean, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(config.std, dtype=torch.float32).view(1, 3, 1, 1)
    return (pixels - mean) / std


def _centre_crop(image: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    """Centre crop like transformers: zero-pad first when the image is smaller than the crop."""
    crop_h, crop_w = crop
    height, width = image.shape[-2:]
    if height < crop_h or width < crop_w:
        pad_h, pad_w = max(0, crop_h - height), max(0, crop_w - width)
        top, left = (pad_h + 1) // 2, (pad_w + 1) // 2
        image = F.pad(image, (left, pad_w - left, top, pad_h - top))
        height, width = image.shape[-2:]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[..., top : top + crop_h, left : left + crop_w]


def _as_dict(size: Any) -> dict[str, Any]:
    if isinstance(size, dict):
        return {k: v for k, v in size.items() if v is not None}
    if hasattr(size, "__dict__"):  # transformers' SizeDict
        return {k: v for k, v in vars(size).items() if v is not None}
    if isinstance(size, int):
        return {"shortest_edge": size}
    raise ModelLoadError(f"unsupported image processor size {size!r}")


def _triple(values: Any) -> tuple[float, float, float]:
    values = list(values) if isinstance(values, (list, tuple)) else [float(values)] * 3
    return (float(values[0]), float(values[1]), float(values[2]))
