"""Decode only the sampled frames of a video with PyAV.

Two passes over the file: a demux-only pass reads every video packet's presentation
timestamp and keyframe flag (cheap: no decoding), which gives exact frame times whatever the
header claims; then the planned frames are decoded, seeking to the keyframe before a target
only when that skips work, and decoding forward from there; frames that are neither sampled
nor referenced are skipped by the decoder. Each decoded frame is turned upright (display
rotation) and handed to ``transform`` at once, so at most the T sampled frames, already
transformed, are kept.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Generic, TypeVar

import av
import numpy as np

from .errors import VideoError
from .sampling import SamplingPlan, frame_span, plan_segment_centres

T = TypeVar("T")
# PyAV's default: slice threads. Frame threads ("AUTO") measured no faster on one-slice
# 720p H.264 and 2x slower on multi-slice files (benchmarks/bench_classify.py).
THREAD_TYPE = "SLICE"
SEEK_ATTEMPTS = 3  # keyframes tried, going back, before decoding from the start


@dataclass(frozen=True)
class VideoInfo:
    """What the decoder found out about a video, from its packets and frames, not its header."""

    width: int  # as displayed, after rotation
    height: int
    duration: float  # seconds covered by the video's frames
    num_frames: int
    rotation: int  # degrees counter-clockwise applied to reach the upright picture
    codec: str


@dataclass(frozen=True)
class SampledVideo(Generic[T]):
    """The sampled frames (after ``transform``) with the plan that chose them."""

    frames: tuple[T, ...]
    plan: SamplingPlan
    info: VideoInfo


@dataclass(frozen=True)
class _FrameIndex:
    pts: list[int]  # presentation timestamps in display order, in stream time base
    keyframe_pts: list[int]  # sorted
    time_base: Fraction


def sample_video(
    path: str | Path,
    num_frames: int,
    *,
    start: float | None = None,
    end: float | None = None,
    transform: Callable[[np.ndarray], T] = lambda rgb: rgb,  # type: ignore[assignment,return-value]
) -> SampledVideo[T]:
    """Decode ``num_frames`` frames of ``path`` chosen by ``plan_segment_centres``.

    ``transform`` receives each upright HxWx3 uint8 RGB frame as soon as it is decoded.
    Raises ``VideoError`` naming the file when it cannot be opened, has no video stream, or
    no frame decodes.
    """
    name = str(path)
    try:
        with av.open(name, mode="r") as container:
            stream = _video_stream(container, name)
            index = _index_frames(container, stream)
            times = [float((pts - index.pts[0]) * index.time_base) for pts in index.pts]
            if not times:
                raise VideoError(name, "no video frames found")
            if start is not None and start >= frame_span(times):
                raise VideoError(name, f"--start {start:g} s is not before the end ({frame_span(times):.2f} s)")
            plan = plan_segment_centres(times, num_frames, start, end)
            wanted = sorted({index.pts[i] for i in plan.frame_indices})
            decoded, shape, rotation = _decode_targets(container, stream, index, wanted, transform)
    except VideoError:
        raise
    except av.FFmpegError as exc:
        raise VideoError(name, _ffmpeg_reason(exc)) from None
    except OSError as exc:
        raise VideoError(name, exc.strerror or str(exc)) from None
    height, width = shape
    info = VideoInfo(
        width=width,
        height=height,
        duration=plan.duration,
        num_frames=len(index.pts),
        rotation=rotation,
        codec=stream.codec_context.name,
    )
    frames = tuple(decoded[index.pts[i]] for i in plan.frame_indices)
    return SampledVideo(frames=frames, plan=plan, info=info)


def _video_stream(container: av.container.InputContainer, name: str) -> av.VideoStream:
    streams = [s for s in container.streams.video if not s.disposition & av.stream.Disposition.attached_pic]
    if not streams:
        reason = "only a cover picture, no video" if container.streams.video else "no video stream"
        raise VideoError(name, reason)
    return streams[0]


def _index_frames(container: av.container.InputContainer, stream: av.VideoStream) -> _FrameIndex:
    """Read every packet's pts and keyframe flag without decoding."""
    pts: set[int] = set()
    keyframes: set[int] = set()
    for packet in container.demux(stream):
        if packet.pts is None or packet.size == 0:
            continue
        pts.add(packet.pts)
        if packet.is_keyframe:
            keyframes.add(packet.pts)
    if stream.time_base is None:
        raise VideoError(container.name, "the video stream has no time base")
    ordered = sorted(pts)
    # Without a keyframe flag (rare) we can only decode from the start.
    keyframe_pts = sorted(keyframes) or ordered[:1]
    return _FrameIndex(pts=ordered, keyframe_pts=keyframe_pts, time_base=stream.time_base)


def _decode_targets(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    index: _FrameIndex,
    wanted: list[int],
    transform: Callable[[np.ndarray], T],
) -> tuple[dict[int, T], tuple[int, int], int]:
    """Decode the frames whose pts are in ``wanted`` (sorted), seeking only when it skips work."""
    stream.thread_type = THREAD_TYPE
    targets = set(wanted)
    decoded: dict[int, T] = {}
    shape = (0, 0)
    rotation = 0
    frames: Iterator[av.VideoFrame] | None = None
    position: int | None = None  # pts of the last frame decoded
    for target in wanted:
        keyframe = index.keyframe_pts[max(0, bisect.bisect_right(index.keyframe_pts, target) - 1)]
        if frames is None or position is None or keyframe > position:
            frames = _frames_from_before(container, stream, index, target, targets)
        frame = _next_frame_at(frames, target)
        if frame is None:
            frames = None  # this stretch ended early; a fresh seek may still reach later targets
            continue
        position = frame.pts
        rotation = _rotation(frame)
        rgb = np.rot90(frame.to_ndarray(format="rgb24"), k=rotation // 90)
        shape = rgb.shape[:2]
        decoded[target] = transform(np.ascontiguousarray(rgb))
    missing = [pts for pts in wanted if pts not in decoded]
    if missing:
        if not decoded:
            raise VideoError(container.name, "no frame could be decoded")
        # The stream ended early (frames dropped by the decoder): use the last frame we have.
        last = decoded[max(decoded)]
        for pts in missing:
            decoded[pts] = last
    return decoded, shape, rotation


def _frames_from_before(
    container: av.container.InputContainer,
    stream: av.VideoStream,
    index: _FrameIndex,
    target: int,
    targets: set[int],
) -> Iterator[av.VideoFrame]:
    """Frames decoded from a keyframe at or before ``target``.

    Some demuxers land after the requested keyframe (MPEG-TS lands on the next one, or at the
    end): the first decoded frame tells, and an earlier keyframe is tried, then the start.
    """
    position = max(0, bisect.bisect_right(index.keyframe_pts, target) - 1)
    for candidate in range(position, max(-1, position - SEEK_ATTEMPTS), -1):
        container.seek(index.keyframe_pts[candidate], stream=stream, backward=True, any_frame=False)
        frames = _decode_skipping(container, stream, targets)
        first = next(frames, None)
        if first is not None and first.pts is not None and first.pts <= target:
            return itertools.chain([first], frames)
    return _decode_from_start(container.name, stream.index, targets)


def _decode_from_start(name: str, stream_index: int, targets: set[int]) -> Iterator[av.VideoFrame]:
    """Last resort when seeking cannot be trusted: a fresh container, decoded from the start."""
    with av.open(name) as container:
        yield from _decode_skipping(container, container.streams[stream_index], targets)


def _decode_skipping(
    container: av.container.InputContainer, stream: av.VideoStream, targets: set[int]
) -> Iterator[av.VideoFrame]:
    """Decode forward, telling the decoder to skip frames that are neither sampled nor referenced.

    Non-reference frames (most B-frames) can be dropped without changing any other frame, so
    only packets of sampled frames are decoded in full.
    """
    codec = stream.codec_context
    for packet in container.demux(stream):
        codec.skip_frame = "DEFAULT" if packet.pts is None or packet.pts in targets else "NONREF"
        yield from packet.decode()


def _next_frame_at(frames: Iterator[av.VideoFrame], target: int) -> av.VideoFrame | None:
    """The first frame at or after ``target`` (the target itself unless the decoder dropped it)."""
    for frame in frames:
        if frame.pts is not None and frame.pts >= target:
            return frame
    return None


def _rotation(frame: av.VideoFrame) -> int:
    """Counter-clockwise degrees (0, 90, 180, 270) that turn the frame upright."""
    degrees = getattr(frame, "rotation", 0) or 0
    return round(degrees / 90.0) % 4 * 90


def _ffmpeg_reason(exc: av.FFmpegError) -> str:
    text = getattr(exc, "strerror", None) or str(exc)
    if "Invalid data" in text:
        return "not a video file ffmpeg can read (invalid data)"
    return text
