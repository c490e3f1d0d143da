"""How to sample and what to report: the options of a classification, checked when made.

Light on purpose (no torch): the CLI builds and checks these before anything heavy loads, and
the server client sends them without ever importing the model code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from xclip_cli.errors import UsageError
from xclip_cli.media.sampling import SAMPLINGS
from xclip_cli.results import DEFAULT_TOP_K

CROPS = (1, 3)  # the processor's centre crop, or X-CLIP's left/centre/right crops
MAX_CLIPS = 64


@dataclass(frozen=True)
class ClassifyOptions:
    """How to sample and what to report; impossible values raise ``UsageError`` at once."""

    top_k: int = DEFAULT_TOP_K
    start: float | None = None  # seconds; restricts the sampled range
    end: float | None = None
    batch_size: int = 1  # videos per vision-encoder call
    workers: int = 0  # threads decoding upcoming videos while the model runs (0: decode in line)
    timeout: float | None = None  # seconds a video's decoding may take before it becomes an error
    clips: int = 1  # temporal views per video (X-CLIP multi-view testing); probabilities are averaged
    crops: int = 1  # 1: the processor's centre crop; 3: left/centre/right crops of the short-side resize
    sampling: str = "exact"  # exact: segment centres; keyframes: nearby keyframes where they save decoding
    thumbnails: bool = False  # small JPEGs of the frames the model saw, on each result (for --report)
    multi_label: bool = False  # also score every label on its own against background prompts (tags)

    def __post_init__(self) -> None:
        if self.crops not in CROPS:
            raise UsageError(f"--crops {self.crops}: expected 1 (centre crop) or 3 (left, centre, right)")
        if self.sampling not in SAMPLINGS:
            raise UsageError(f"--sampling {self.sampling}: expected one of {', '.join(SAMPLINGS)}")
        if not 1 <= self.clips <= MAX_CLIPS:
            raise UsageError(f"--clips {self.clips}: expected 1 to {MAX_CLIPS}")
        for name, value in (("--top-k", self.top_k), ("--batch-size", self.batch_size)):
            if value < 1:
                raise UsageError(f"{name} {value}: expected at least 1")
        if self.workers < 0:
            raise UsageError(f"--workers {self.workers}: expected 0 or more")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(f"--timeout {self.timeout}: expected a positive number of seconds")
        check_range(self.start, self.end)

    @property
    def views(self) -> int:
        """Model inputs per video: temporal views times crops."""
        return self.clips * self.crops


def check_range(start: float | None, end: float | None) -> None:
    """``UsageError`` unless ``start``/``end`` are finite, non-negative and in order."""
    for name, value in (("--start", start), ("--end", end)):
        if value is not None and not (math.isfinite(value) and value >= 0):
            raise UsageError(f"{name} {value}: expected a number of seconds from 0 on")
    if end is not None and end <= (start or 0.0):
        raise UsageError(f"--end {end:g} must be after --start {start or 0:g}")


def check_windows(window: float | None, stride: float | None) -> None:
    """``UsageError`` unless ``window`` and ``stride`` (None: not known yet) are positive seconds
    and windows every ``stride`` seconds leave no gap between them (a stride of at most the window)."""
    for value in (window, stride):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise UsageError("--window and --stride must be positive numbers of seconds")
    if window is not None and stride is not None and stride > window:
        raise UsageError(
            f"--stride {stride:g} s is longer than the {window:g} s window: the seconds between windows "
            "would go unclassified (give a stride of at most the window)"
        )


@dataclass(frozen=True)
class TimelineOptions:
    """Windows of a timeline and what to keep of each; impossible values raise ``UsageError``."""

    window: float | None = None  # seconds; default: T x timeline.FRAME_SPACING
    stride: float | None = None  # seconds; default: half the window
    top_k: int = 3  # labels kept per segment
    # 1: on 2 cores batching windows gave no speed (23.7 s vs 24.8 s for 3 min of 720p) and
    # raised the peak memory (1.28 -> 1.43 GB); on a GPU larger batches pay.
    batch_size: int = 1  # windows per vision-encoder call
    timeout: float | None = None  # seconds the whole decoding may take
    thumbnails: bool = False  # a small JPEG of each window's middle frame (for --report)
    shots: bool = False  # windows follow the video's shots (PySceneDetect); --window caps their length
    multi_label: bool = False  # also tag each segment (labels scored on their own, against background prompts)

    def __post_init__(self) -> None:
        if self.shots and self.stride is not None:
            raise UsageError("--stride has no meaning with --shots: the windows follow the shots")
        if self.shots and self.timeout is not None:
            raise UsageError("--timeout cannot bound --shots' detection pass (PySceneDetect's own decoding)")
        check_windows(self.window, self.stride)
        for name, count in (("--top-k", self.top_k), ("--batch-size", self.batch_size)):
            if count < 1:
                raise UsageError(f"{name} {count}: expected at least 1")
        if self.timeout is not None and not (math.isfinite(self.timeout) and self.timeout > 0):
            raise UsageError(f"--timeout {self.timeout}: expected a positive number of seconds")
