"""Test helpers: tiny X-CLIP checkpoints and synthetic videos, built on the fly."""

from __future__ import annotations

import json
import os
import shutil
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import pytest
from typer.testing import CliRunner

DATA = Path(__file__).parent / "data"
TOKENIZER_DIR = DATA / "clip_tokenizer"
VIDEOS = DATA / "videos"
README = Path(__file__).parent.parent / "README.md"
IMAGE_SIZE = 30  # transformers' own X-CLIP tests use 30x30 images with 2x2 patches
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


def tiny_config(num_frames: int = 8, seed_tag: int = 0):
    """A small X-CLIP config with the real CLIP vocabulary size."""
    from transformers import XCLIPConfig

    text = {
        "vocab_size": 49408,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "max_position_embeddings": 77,
    }
    vision = {
        "image_size": IMAGE_SIZE,
        "patch_size": 2,
        "num_frames": num_frames,
        "hidden_size": 32,
        "intermediate_size": 37,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "mit_hidden_size": 64,
        "mit_intermediate_size": 128,
        "mit_num_hidden_layers": 1,
        "mit_num_attention_heads": 4,
    }
    return XCLIPConfig(text_config=text, vision_config=vision, projection_dim=64, prompt_layers=2)


def save_tiny_checkpoint(
    folder: Path,
    seed: int = 0,
    num_frames: int = 8,
    legacy_preprocessor: bool = False,
    resample: int = 2,
) -> Path:
    """Save a random tiny X-CLIP with a real CLIP tokenizer and a VideoMAE processor config.

    ``legacy_preprocessor`` writes the hub's ``preprocessor_config.json`` layout instead of
    the ``processor_config.json`` that transformers 5 saves.
    """
    import torch
    from transformers import CLIPTokenizer, VideoMAEImageProcessor, XCLIPModel, XCLIPProcessor

    torch.manual_seed(seed)
    model = XCLIPModel(tiny_config(num_frames)).eval()
    # A larger logit scale than the init value makes probabilities less flat, so
    # differences would show.
    with torch.no_grad():
        model.logit_scale.fill_(4.0)
    model.save_pretrained(folder)
    tokenizer = CLIPTokenizer(str(TOKENIZER_DIR / "vocab.json"), str(TOKENIZER_DIR / "merges.txt"))
    if legacy_preprocessor:
        tokenizer.save_pretrained(folder)
        (folder / "preprocessor_config.json").write_text(
            json.dumps(
                {
                    "crop_size": IMAGE_SIZE,
                    "do_center_crop": True,
                    "do_normalize": True,
                    "do_resize": True,
                    "feature_extractor_type": "VideoMAEFeatureExtractor",
                    "image_mean": list(MEAN),
                    "image_std": list(STD),
                    "processor_class": "XCLIPProcessor",
                    "resample": resample,
                    "size": IMAGE_SIZE,
                }
            )
        )
    else:
        image_processor = VideoMAEImageProcessor(
            size={"shortest_edge": IMAGE_SIZE},
            crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
            image_mean=list(MEAN),
            image_std=list(STD),
            resample=resample,
        )
        XCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def write_video(
    path: Path,
    num_frames: int = 24,
    size: tuple[int, int] = (64, 48),
    rate: int = 12,
    codec: str = "libx264",
    gop: int = 6,
    pattern: str = "moving",
    options: dict[str, str] | None = None,
) -> Path:
    """Write a small synthetic video whose every frame is different (frame number encoded).

    Frames carry their index in the red channel of a block, so tests can tell which frame
    the decoder returned.
    """
    if options is None and codec == "libx264":
        options = {"g": str(gop), "crf": "10", "bf": "2"}
    frames = [frame_pixels(index, *size, pattern) for index in range(num_frames)]
    encode_video(path, frames, codec=codec, rate=rate, options=options)
    return path


def encode_video(
    path: Path,
    frames: list[np.ndarray],
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    rate: int = 12,
    options: dict[str, str] | None = None,
    container_options: dict[str, str] | None = None,
    pts: list[int] | None = None,
    rotation: int = 0,
    fmt: str | None = None,
) -> Path:
    """Encode RGB frames with any codec, pixel format, timestamps (in 1/rate s) and rotation:
    the one PyAV encoding loop of the tests."""
    height, width = frames[0].shape[:2]
    with av.open(str(path), mode="w", format=fmt, options=container_options or {}) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.time_base = Fraction(1, rate)
        if options:
            stream.options = options
        if rotation:
            stream.set_display_rotation(rotation)
        for index, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = index if pts is None else pts[index]
            frame.time_base = Fraction(1, rate)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def frame_pixels(index: int, width: int, height: int, pattern: str = "moving") -> np.ndarray:
    """The RGB picture of frame ``index``: a flat colour code plus a moving bar."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    # The frame number in steps of 10, readable after lossy coding (up to 625 frames).
    image[..., 0] = (index % 25) * 10
    image[..., 1] = 80
    image[..., 2] = (index // 25) * 10
    if pattern == "moving":
        x = (index * 3) % max(1, width - 8)
        image[:, x : x + 8, :] = 255
    return image


def frame_number(rgb: np.ndarray) -> int:
    """Recover the frame index that ``frame_pixels`` encoded (from a bar-free column block)."""
    height, _width = rgb.shape[:2]
    red, blue = (float(np.median(rgb[: height // 4, :, channel])) for channel in (0, 2))
    return round(red / 10) + 25 * round(blue / 10)


def invoke(args: list[str], input: str | None = None, env: dict[str, str] | None = None) -> Any:
    """The ``xclip`` command run in-process (typer's CliRunner), stdout and stderr apart."""
    from xclip_cli.cli import app

    return CliRunner().invoke(app, args, input=input, env=env)


def need_program(name: str, package: str | None = None) -> str:
    """A real program a test drives (ffmpeg, jq): its path. `.ci/run` installs it, so CI fails
    without it; elsewhere the test skips, saying why."""
    path = shutil.which(name)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is not installed: .ci/run installs it")
        pytest.skip(f"{name} is not installed here (sudo apt install {package or name}); CI runs this test")
    return path


def readme_lines(start: str) -> list[str]:
    """The README's lines that begin with ``start`` (its examples, run by tests so they cannot rot)."""
    return [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith(start)]
