"""Small JPEGs of what the model saw, for the HTML report, and where a scan keeps them.

A thumbnail is made from a preprocessed frame (the model's input, crop and all): the
normalisation undone, shrunk, JPEG-encoded. Nothing is decoded twice. A scan appends each
video's thumbnails to a JSONL file beside the report as the video finishes, like its rows, so
a resumed scan still reports every video it ever finished.
"""

from __future__ import annotations

import base64
import io
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from xclip_cli.errors import OutputError
from xclip_cli.media.preprocess import PreprocessConfig
from xclip_cli.store.table import complete_lines, trim_partial_line

if TYPE_CHECKING:
    from xclip_cli.media.decode import SampledVideo

THUMBNAIL_SIZE = 96  # pixels on the longer side: about 3 KB as a JPEG
MAX_THUMBNAILS = 8  # per video: a page of thousands of videos stays tens of MB, whatever T and --clips
JPEG_QUALITY = 80


def thumbnail(pixels: np.ndarray, config: PreprocessConfig, size: int = THUMBNAIL_SIZE) -> bytes:
    """A JPEG of one preprocessed frame, (3, H, W) float32 as the model takes it."""
    from PIL import Image

    mean = np.asarray(config.mean, dtype=np.float32)[:, None, None]
    std = np.asarray(config.std, dtype=np.float32)[:, None, None]
    image = (pixels * std + mean) / config.rescale_factor
    rgb = np.clip(np.rint(image), 0, 255).astype(np.uint8).transpose(1, 2, 0)
    picture = Image.fromarray(rgb)
    picture.thumbnail((size, size), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, format="JPEG", quality=JPEG_QUALITY)
    return buffer.getvalue()


def video_thumbnails(video: SampledVideo[np.ndarray], config: PreprocessConfig) -> tuple[bytes, ...]:
    """JPEGs of the frames the model saw, every view's, in time order: at most ``MAX_THUMBNAILS``,
    evenly spread. A frame with several crops, (crops, 3, H, W), shows its middle one."""
    seen = sorted(
        {
            time: frame
            for plan, frames in zip(video.plans, video.views, strict=True)
            for time, frame in zip(plan.timestamps, frames, strict=True)
        }.items()
    )
    if len(seen) > MAX_THUMBNAILS:
        seen = [seen[round(i * (len(seen) - 1) / (MAX_THUMBNAILS - 1))] for i in range(MAX_THUMBNAILS)]
    return tuple(thumbnail(frame[len(frame) // 2] if frame.ndim == 4 else frame, config) for _, frame in seen)


def base64_jpegs(jpegs: Iterable[bytes]) -> list[str]:
    """JPEGs as the text a page (or the store) carries them in."""
    return [base64.b64encode(jpeg).decode("ascii") for jpeg in jpegs]


def store_path(report: Path) -> Path:
    """Where a scan keeps thumbnails for the report ``report``: ``NAME.thumbs.jsonl`` beside it."""
    return report.with_name(report.stem + ".thumbs.jsonl")


class ThumbnailStore:
    """The thumbnails of every video a scan finished: appended and flushed one video at a time."""

    def __init__(self, path: Path, overwrite: bool = False) -> None:
        self.path = path
        try:
            if not overwrite and path.exists():
                trim_partial_line(path, quoted=False)  # a line cut off by a kill, as results files do
            self.handle = open(path, "w" if overwrite else "a", encoding="utf-8")  # noqa: SIM115 (closed in close)
        except OSError as exc:
            raise OutputError(f"{path}: cannot write thumbnails ({exc.strerror or exc})") from None

    def add(self, path: str, jpegs: Iterable[bytes]) -> None:
        encoded = base64_jpegs(jpegs)
        if not encoded:
            return
        # ASCII: a file name that is not UTF-8 (kept as surrogates) round-trips through \udcxx escapes.
        self.handle.write(json.dumps({"path": path, "jpeg": encoded}, ensure_ascii=True) + "\n")
        self.handle.flush()

    def close(self) -> None:
        self.handle.close()


def read_thumbnails(path: Path) -> dict[str, list[str]]:
    """Path -> base64 JPEGs from a thumbnail store; a line cut off by a kill is left out."""
    if not os.path.exists(path):
        return {}
    found: dict[str, list[str]] = {}
    for line in complete_lines(path, quoted=False):
        try:
            record = json.loads(line)
            found[str(record["path"])] = [str(item) for item in record["jpeg"]]
        except (ValueError, KeyError, TypeError):
            continue  # not a store line: skipped, like a damaged one
    return found
