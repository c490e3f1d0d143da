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
SAMPLINGS = ("exact", "keyframes")  # exact: the frames at the sample points; keyframes: near ones


@dataclass(frozen=True)
class SamplingPlan:
    """The frames to feed the model, as indices into the video's frames in display order."""

    frame_indices: tuple[int, ...]
    timestamps: tuple[float, ...]  # seconds from the first frame, one per sampled frame
    duration: float  # seconds covered by all frames of the video
    substitutes: int = 0  # frames that are keyframes standing in for the exact ones (keyframe sampling)


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
    lo, step, duration = _segments(times, num_frames, views, start, end)
    plans = []
    for view in range(views):
        points = [lo + (i + (view + 0.5) / views) * step for i in range(num_frames)]
        # The epsilon keeps float noise from moving a point that sits on a frame time back a frame.
        indices = tuple(max(0, bisect.bisect_right(times, point + TIME_EPSILON) - 1) for point in points)
        plans.append(
            SamplingPlan(frame_indices=indices, timestamps=tuple(times[i] for i in indices), duration=duration)
        )
    return tuple(plans)


def _segments(
    times: Sequence[float], num_frames: int, views: int, start: float | None, end: float | None
) -> tuple[float, float, float]:
    """(start of the range, segment length, the video's duration) for ``plan_views``."""
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
    return lo, (hi - lo) / num_frames, duration


def plan_keyframe_views(
    times: Sequence[float],
    keyframes: Sequence[int],
    num_frames: int,
    views: int = 1,
    start: float | None = None,
    end: float | None = None,
) -> tuple[SamplingPlan, ...]:
    """``plan_views`` with keyframes standing in for exact frames where they are near.

    Each sample point owns its part of its segment (with N views, the N-th of the segment
    around it). The keyframe nearest the point inside that part replaces the exact frame
    (a keyframe decodes on its own: no chain of earlier frames); a part without a keyframe
    keeps the exact frame. A substitute that would repeat a frame used elsewhere in the view
    goes back to the exact frame, so keyframes never add repeats exact sampling would not
    have; an exact frame that is itself a keyframe stays. ``keyframes`` are frame indices
    (display order) of the video's keyframes. ``substitutes`` counts frames that differ from
    the exact plan's.
    """
    exact = plan_views(times, num_frames, views, start, end)
    lo, step, duration = _segments(times, num_frames, views, start, end)
    ordered = sorted(set(keyframes), key=lambda index: times[index])
    key_times = [times[index] for index in ordered]
    is_keyframe = set(ordered)
    plans = []
    for view, plan in enumerate(exact):
        chosen = list(plan.frame_indices)
        substituted = [False] * num_frames
        for i in range(num_frames):
            if chosen[i] in is_keyframe:
                continue  # already free to decode
            part_lo = lo + (i + view / views) * step
            part_hi = part_lo + step / views
            point = (part_lo + part_hi) / 2
            first = bisect.bisect_left(key_times, part_lo - TIME_EPSILON)
            last = bisect.bisect_left(key_times, part_hi - TIME_EPSILON)
            if step > 0 and first < last:
                best = min(range(first, last), key=lambda k: (abs(key_times[k] - point), key_times[k]))
                chosen[i], substituted[i] = ordered[best], True
        while True:  # undo substitutes that repeat a frame used elsewhere in the view
            counts = {index: chosen.count(index) for index in chosen}
            repeated = [i for i in range(num_frames) if substituted[i] and counts[chosen[i]] > 1]
            if not repeated:
                break
            for i in repeated:
                chosen[i], substituted[i] = plan.frame_indices[i], False
        plans.append(
            SamplingPlan(
                frame_indices=tuple(chosen),
                timestamps=tuple(times[index] for index in chosen),
                duration=duration,
                substitutes=sum(substituted),
            )
        )
    return tuple(plans)
