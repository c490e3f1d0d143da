"""Frame preprocessing in numpy and Pillow, equal to the checkpoint's VideoMAE image processor.

Resize (shortest edge or fixed size) with Pillow, as transformers' PIL backend does, centre
crop on uint8, then rescale and normalise in float32. Every parameter comes from the
checkpoint's processor config. Torch-free, so the ONNX Runtime path never imports torch; the
tests hold it to transformers' own processor within one uint8 step (it is exact in practice).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from xclip_cli.errors import ModelLoadError

# Pillow's resampling filters, by the codes processor configs use (PIL.Image.Resampling).
RESAMPLE_NAMES = {0: "nearest", 1: "lanczos", 2: "bilinear", 3: "bicubic", 4: "box", 5: "hamming"}
_SIZE_KEYS = ({"shortest_edge"}, {"height", "width"})
# What an image processor's settings say, as attributes or JSON keys.
_SETTINGS = (
    "do_resize", "size", "do_center_crop", "crop_size", "resample", "do_rescale", "rescale_factor", "do_normalize",
    "image_mean", "image_std",
)  # fmt: skip
DEFAULT_RESAMPLE = 2  # bilinear: VideoMAE's, when a config does not say
DEFAULT_RESCALE = 1 / 255  # VideoMAE's, absent from the hub's legacy configs


@dataclass(frozen=True)
class PreprocessConfig:
    """The image-processor settings that X-CLIP checkpoints use."""

    shortest_edge: int | None  # resize so the short side has this length (aspect kept) ...
    resize_to: tuple[int, int] | None  # ... or to this exact (height, width); None: no resize
    crop: tuple[int, int] | None  # centre crop (height, width); None: no crop
    resample: int  # Pillow filter code (2: bilinear, 3: bicubic, ...)
    rescale_factor: float  # 1.0 when rescaling is off
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @classmethod
    def from_image_processor(cls, processor: Any) -> PreprocessConfig:
        """Read the settings from a transformers image processor (either backend)."""
        return cls.from_settings({key: getattr(processor, key) for key in _SETTINGS if hasattr(processor, key)})

    @classmethod
    def from_settings(cls, settings: Mapping[str, Any]) -> PreprocessConfig:
        """Read an image processor's settings: its attributes, or its JSON (a checkpoint's
        ``preprocessor_config.json``, or ``processor_config.json``'s ``image_processor``). What is
        missing takes VideoMAE's defaults (every step on, bilinear, 1/255); ``ModelLoadError``
        for what no X-CLIP checkpoint uses. The one reader of these settings."""
        on = {
            key: bool(settings.get(key, True)) for key in ("do_resize", "do_center_crop", "do_rescale", "do_normalize")
        }
        size = _as_dict(settings.get("size")) if on["do_resize"] else {}
        shortest = size.get("shortest_edge")
        if on["do_resize"] and set(size) not in _SIZE_KEYS:
            raise ModelLoadError(f"unsupported image processor size {size!r}: expected shortest_edge or height/width")
        crop_size = settings.get("crop_size")
        crop = {"height": crop_size, "width": crop_size} if isinstance(crop_size, int) else _as_dict(crop_size)
        crop = crop if on["do_center_crop"] else {}
        if on["do_center_crop"] and set(crop) != {"height", "width"}:
            raise ModelLoadError(f"unsupported image processor crop size {crop!r}: expected height/width")
        resample = settings.get("resample", DEFAULT_RESAMPLE)
        resample = int(getattr(resample, "value", resample))
        if resample not in RESAMPLE_NAMES:
            raise ModelLoadError(f"unsupported resample mode {resample} in the image processor config")
        mean = settings.get("image_mean") if on["do_normalize"] else (0.0, 0.0, 0.0)
        std = settings.get("image_std") if on["do_normalize"] else (1.0, 1.0, 1.0)
        if mean is None or std is None:
            raise ModelLoadError("the image processor config normalises without image_mean and image_std")
        return cls(
            shortest_edge=int(shortest) if shortest else None,
            resize_to=None if shortest or not size else (int(size["height"]), int(size["width"])),
            crop=(int(crop["height"]), int(crop["width"])) if crop else None,
            resample=resample,
            rescale_factor=float(settings.get("rescale_factor", DEFAULT_RESCALE)) if on["do_rescale"] else 1.0,
            mean=_triple(mean),
            std=_triple(std),
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (the ONNX Runtime backend's manifest stores it)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        def pair(value: Any) -> tuple[int, int] | None:
            return None if value is None else (int(value[0]), int(value[1]))

        return cls(
            shortest_edge=None if data["shortest_edge"] is None else int(data["shortest_edge"]),
            resize_to=pair(data["resize_to"]),
            crop=pair(data["crop"]),
            resample=int(data["resample"]),
            rescale_factor=float(data["rescale_factor"]),
            mean=_triple(data["mean"]),
            std=_triple(data["std"]),
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


def preprocess_frame(rgb: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """One HxWx3 uint8 frame -> normalised float32 array (3, crop_h, crop_w)."""
    image = _resized(rgb, config.output_size(*rgb.shape[:2]), config.resample)
    if config.crop is not None:
        image = _centre_crop(image, config.crop)
    return _normalised(image[None], config)[0]


def preprocess_crops(rgb: np.ndarray, config: PreprocessConfig, crops: int = 1) -> np.ndarray:
    """One frame -> (crops, 3, crop_h, crop_w): the processor's centre crop, or three crops.

    Three crops follow X-CLIP's test protocol (mmaction's ``ThreeCrop``): resize the short side
    to the crop size, then take crops at the start, the middle and the end of the long side.
    """
    if crops == 1:
        return preprocess_frame(rgb, config)[None]
    if crops != 3:
        raise ValueError("crops must be 1 or 3")
    crop_h, crop_w = config.crop or (config.shortest_edge or 0,) * 2
    if not crop_h:
        raise ValueError("three crops need a checkpoint whose processor crops or resizes the short side")
    height, width = rgb.shape[:2]
    short = min(crop_h, crop_w)
    size = (int(short * height / width), short) if width <= height else (short, int(short * width / height))
    height, width = max(size[0], crop_h), max(size[1], crop_w)
    image = _resized(rgb, (height, width), config.resample)
    step_h, step_w = (height - crop_h) // 2, (width - crop_w) // 2
    offsets = [(0, i * step_w) for i in range(3)] if step_w else [(i * step_h, 0) for i in range(3)]
    views = np.stack([image[top : top + crop_h, left : left + crop_w] for top, left in offsets])
    return _normalised(views, config)


def _resized(rgb: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Pillow's resize (antialiased, on uint8), exactly as transformers' PIL backend calls it."""
    if size == rgb.shape[:2]:
        return rgb
    from PIL import Image

    return np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), resample=resample, reducing_gap=None))


def _normalised(images: np.ndarray, config: PreprocessConfig) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32, rescaled and normalised."""
    mean = np.asarray(config.mean, dtype=np.float32)
    scale = np.float32(config.rescale_factor) / np.asarray(config.std, dtype=np.float32)
    pixels = images.astype(np.float32) * scale - mean / np.asarray(config.std, dtype=np.float32)
    return np.ascontiguousarray(pixels.transpose(0, 3, 1, 2))


def _centre_crop(image: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """Centre crop like transformers: zero-pad first when the image is smaller than the crop."""
    crop_h, crop_w = crop
    height, width = image.shape[:2]
    if height < crop_h or width < crop_w:
        padded = np.zeros((max(height, crop_h), max(width, crop_w), image.shape[2]), dtype=image.dtype)
        top, left = (padded.shape[0] - height + 1) // 2, (padded.shape[1] - width + 1) // 2
        padded[top : top + height, left : left + width] = image
        image, (height, width) = padded, padded.shape[:2]
    top, left = (height - crop_h) // 2, (width - crop_w) // 2
    return image[top : top + crop_h, left : left + crop_w]


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
