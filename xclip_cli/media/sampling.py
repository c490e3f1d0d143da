"""Which frames to sample: X-CLIP's test protocol, computed from presentation timestamps.

The protocol splits the sampled range into T equal segments and takes the centre frame of
each. On a constant-rate video this gives the same frames as X-CLIP's index-based
``SampleFrames(test_mode=True)``: frame ``int((i + 0.5) * N / T)``.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import median

TIME_EPSILON = 1e-9  # seconds


@dataclass(frozen=True)
class SamplingPlan:
    """The frames to feed the model, as indices into the video's frames in display order."""

    frame_indices: tuple[int, ...]
    timestamps: tuple[float, ...]  # seconds from the first frame, one per sampled frame
    duration: float  # seconds covered by all frames of the video


def frame_span(times: Sequence[float]) -> float:
    """Duration covered by frames at ``times`` (sorted): last minus first plus one frame."""
    if len(times) < 2:
        return 0.0
    steps = [b - a for a, b in itertools.pairwise(times) if b > a]
    return times[-1] - times[0] + (median(steps) if steps else 0.0)


def plan_segment_centres(
    times: Sequence[float],
    num_frames: int,
    start: float | None = None,
    end: float | None = None,
) -> SamplingPlan:
    """The single-view plan: ``plan_views(times, num_frames, 1, start, end)[0]``."""
    return plan_views(times, num_frames, 1, start, end)[0]


def plan_views(
    times: Sequence[float],
    num_frames: int,
    views: int = 1,
    start: float | None = None,
    end: float | None = None,
) -> tuple[SamplingPlan, ...]:
    """Pick ``num_frames`` frames per view from equal segments of ``[start, end)``.

    With one view, the frames sit at the segment centres. With ``views`` N, view k takes the
    point (k + 0.5) / N of the way into every segment, so the views interleave evenly and
    together cover the video N times more densely (X-CLIP's multi-view testing).
    ``times`` are the presentation times of every frame in seconds, sorted ascending and
    relative to the first frame (so ``times[0] == 0``). Each point maps to the frame on
    screen at that instant: the last frame whose time is not after it. Videos with fewer
    frames than ``num_frames`` repeat frames. Raises ``ValueError`` if there is no frame.
    """
    if not times:
        raise ValueError("the video has no frames")
    if num_frames < 1 or views < 1:
        raise ValueError("num_frames and views must be at least 1")
    duration = frame_span(times)
    lo = 0.0 if start is None else max(0.0, start)
    hi = duration if end is None else min(end, duration)
    if hi <= lo:
        # A one-frame video or a range inside one frame: the frame on screen at ``lo``.
        hi = lo
    step = (hi - lo) / num_frames
    plans = []
    for view in range(views):
        points = [lo + (i + (view + 0.5) / views) * step for i in range(num_frames)]
        # The epsilon keeps float noise from moving a point that sits on a frame time back a frame.
        indices = tuple(max(0, bisect.bisect_right(times, point + TIME_EPSILON) - 1) for point in points)
        plans.append(
            SamplingPlan(frame_indices=indices, timestamps=tuple(times[i] for i in indices), duration=duration)
        )
    return tuple(plans)
